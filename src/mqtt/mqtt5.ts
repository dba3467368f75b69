// The MQTT 5 half of the codec: properties [MQTT-2.2.2] and reason codes [MQTT-2.4], read and
// written. The encoder (codec.ts) and the decoder (decoder.ts) take MQTT5 as their protocol
// version: given it they speak MQTT 5, without it 3.1.1. They are handed it rather than import it,
// so that an image that speaks only 3.1.1 does not carry this code (the VM's code section is
// budgeted, see test/node/image-budget.test.ts).
// Pure core: imports nothing from @devicescript, runs unchanged in Node and in the VM.
// Spec: https://docs.oasis-open.org/mqtt/mqtt/v5.0/os/mqtt-v5.0-os.html
//
// As in codec.ts, what the node encodes is not checked here: test/fixtures/mqtt-codec.ts checks
// every property and reason code a packet carries before encoding it.

import { BodyPart, framePacket, writeRemainingLength } from "./codec"
import { checkUtf8, hexByte, HEX_DIGITS, ProtocolError } from "./decoder"
import { Mqtt5Codec, PacketType, ProtocolVersion, Subscription } from "./packets"

/**
 * The MQTT 5 properties [MQTT-2.2.2.2], a line each: the identifier as hexByte writes it, the type,
 * the packet types that may carry it as hex digits (0 for a will's properties), ":", the name, ":",
 * and the identifier and type again (for the encoder, which looks properties up by name). Types:
 * b a Byte of 0 or 1; h a Two Byte Integer, H one that must not be 0; w a Four Byte Integer, W one
 * that must not be 0; V a Variable Byte Integer that must not be 0; s a UTF-8 string, t one that
 * must be a topic name [MQTT-3.3.2-14]; d binary data; p a UTF-8 string pair. The p and V values
 * are arrays: a user property may repeat anywhere, a subscription identifier only in a PUBLISH
 * [MQTT-3.3.4-4]; every other property at most once. One literal, searched with the native
 * indexOf, rather than code: see PROTOCOL_ERROR_TEXTS in decoder.ts.
 */
export const PROPERTY_TABLE = `
0x01b03:payloadFormatIndicator:0x01b
0x02w03:messageExpiryInterval:0x02w
0x03s03:contentType:0x03s
0x08t03:responseTopic:0x08t
0x09d03:correlationData:0x09d
0x0bV38:subscriptionIdentifiers:0x0bV
0x11w12e:sessionExpiryInterval:0x11w
0x12s2:assignedClientIdentifier:0x12s
0x13h2:serverKeepAlive:0x13h
0x15s12f:authenticationMethod:0x15s
0x16d12f:authenticationData:0x16d
0x17b1:requestProblemInformation:0x17b
0x18w0:willDelayInterval:0x18w
0x19b1:requestResponseInformation:0x19b
0x1as2:responseInformation:0x1as
0x1cs2e:serverReference:0x1cs
0x1fs245679bef:reasonString:0x1fs
0x21H12:receiveMaximum:0x21H
0x22h12:topicAliasMaximum:0x22h
0x23H3:topicAlias:0x23H
0x24b2:maximumQoS:0x24b
0x25b2:retainAvailable:0x25b
0x26p0123456789abef:userProperties:0x26p
0x27W12:maximumPacketSize:0x27W
0x28b2:wildcardSubscriptionAvailable:0x28b
0x29b2:subscriptionIdentifiersAvailable:0x29b
0x2ab2:sharedSubscriptionAvailable:0x2ab
`

/**
 * The reason codes each packet type may carry [MQTT-2.4]: "0x" and the type, "0x" and the code, as
 * hexByte writes them, a pair for each (apart, so that a match is always a whole pair).
 */
const REASON_CODES = `
0x020x00 0x020x80 0x020x81 0x020x82 0x020x83 0x020x84 0x020x85 0x020x86 0x020x87 0x020x88 0x020x89 0x020x8a 0x020x8c 0x020x90 0x020x95 0x020x97 0x020x99 0x020x9a 0x020x9b 0x020x9c 0x020x9d 0x020x9f
0x040x00 0x040x10 0x040x80 0x040x83 0x040x87 0x040x90 0x040x91 0x040x97 0x040x99
0x050x00 0x050x10 0x050x80 0x050x83 0x050x87 0x050x90 0x050x91 0x050x97 0x050x99
0x060x00 0x060x92
0x070x00 0x070x92
0x090x00 0x090x01 0x090x02 0x090x80 0x090x83 0x090x87 0x090x8f 0x090x91 0x090x97 0x090x9e 0x090xa1 0x090xa2
0x0b0x00 0x0b0x11 0x0b0x80 0x0b0x83 0x0b0x87 0x0b0x8f 0x0b0x91
0x0e0x00 0x0e0x04 0x0e0x80 0x0e0x81 0x0e0x82 0x0e0x83 0x0e0x87 0x0e0x89 0x0e0x8b 0x0e0x8d 0x0e0x8e 0x0e0x8f 0x0e0x90 0x0e0x93 0x0e0x94 0x0e0x95 0x0e0x96 0x0e0x97 0x0e0x98 0x0e0x99 0x0e0x9a 0x0e0x9b 0x0e0x9c 0x0e0x9d 0x0e0x9e 0x0e0x9f 0x0e0xa0 0x0e0xa1 0x0e0xa2
0x0f0x00 0x0f0x18 0x0f0x19
`

/** Where the last Variable Byte Integer read ended. */
let variableIntegerEnd = 0

/**
 * The Variable Byte Integer at `at` [MQTT-1.5.5], read no further than `end`: its value, and
 * variableIntegerEnd after it; -1 when it runs past `end`, -2 when it goes on past its 4th byte.
 */
function readVariableByteInteger(body: Buffer, at: number, end: number): number {
    let value = 0
    for (let shift = 0; shift < 28; shift += 7) {
        if (at >= end) return -1
        const byte = body[at++]
        value += (byte & 0x7f) << shift
        if (byte < 0x80) {
            variableIntegerEnd = at
            return value
        }
    }
    return -2
}

function propertyFailure(error: ProtocolError, detail: string): number {
    MQTT5.detail = detail
    return -error
}

function readProperties(body: Buffer, at: number, kind: number, holder: any): number {
    const table = PROPERTY_TABLE
    const length = readVariableByteInteger(body, at, body.length)
    if (length < 0)
        return propertyFailure(
            length < -1 ? ProtocolError.MalformedVariableByteInteger : ProtocolError.PacketTruncated,
            "property length"
        )
    let i = variableIntegerEnd
    const end = i + length
    if (end > body.length) return propertyFailure(ProtocolError.PropertyLengthOverrun, "property length")
    let properties: any = null
    while (i < end) {
        const id = body[i++]
        const entry = table.indexOf(hexByte(id))
        if (entry < 0) return propertyFailure(ProtocolError.UnknownProperty, hexByte(id))
        const colon = table.indexOf(":", entry)
        const name = table.slice(colon + 1, table.indexOf(":", colon + 1))
        const allowedAt = table.indexOf(HEX_DIGITS[kind], entry + 5)
        if (allowedAt < 0 || allowedAt > colon) return propertyFailure(ProtocolError.PropertyNotAllowed, name)
        const typeCode = table.charCodeAt(entry + 4)
        // In lower case: the same type without the rule against 0.
        const type = typeCode | 0x20
        let value: any = 0
        /** Where the value ends: past `end` when it runs past the properties. */
        let next = i
        /** Strings (or binary data) still to read. */
        let missing = 0
        if (type === 0x76) {
            value = readVariableByteInteger(body, i, end)
            if (value < -1) return propertyFailure(ProtocolError.MalformedVariableByteInteger, name)
            next = value < 0 ? end + 1 : variableIntegerEnd
        } else if (type === 0x62 || type === 0x68 || type === 0x77) {
            next += type === 0x62 ? 1 : type === 0x68 ? 2 : 4
            for (let k = i; k < next && next <= end; k++) value = value * 256 + body[k]
            // The VM multiplies whole numbers in 32 bits and wraps: from 2^31 on, a value comes out 2^32 low.
            if (value < 0) value += 4294967296
        } else {
            // A string, binary data or a string pair: each a 2-byte length and its bytes.
            missing = type === 0x70 ? 2 : 1
            const parts: any[] = []
            while (missing && next + 2 <= end) {
                const start = next + 2
                next = start + body[next] * 256 + body[next + 1]
                if (next > end) break
                let part: any = body.slice(start, next)
                if (type !== 0x64) {
                    const problem = checkUtf8(body, start, next, type === 0x74)
                    if (problem) return propertyFailure(problem, name)
                    part = part.toString()
                }
                parts.push(part)
                missing--
            }
            value = type === 0x70 ? parts : parts[0]
        }
        if (missing || next > end) return propertyFailure(ProtocolError.PropertyLengthOverrun, name)
        // Compared with 0, not tested with !: the VM's ! takes 2^31 and more for 0.
        if ((type === 0x62 && value > 1) || (typeCode < 0x60 && value === 0))
            return propertyFailure(ProtocolError.InvalidPropertyValue, name)
        if (!properties) properties = {}
        const previous = properties[name]
        if (previous !== undefined && type !== 0x70 && (type !== 0x76 || kind !== PacketType.Publish))
            return propertyFailure(ProtocolError.DuplicateProperty, name)
        if (type === 0x70 || type === 0x76) {
            if (previous) previous.push(value)
            else properties[name] = [value]
        } else properties[name] = value
        i = next
    }
    if (properties) holder.properties = properties
    if (kind === PacketType.Publish && !holder.topic && !(properties && properties.topicAlias))
        return propertyFailure(ProtocolError.InvalidTopicName, "topic is empty and there is no topic alias")
    return end
}

function propertyParts(properties: any): BodyPart[] {
    const table = PROPERTY_TABLE
    const parts: BodyPart[] = []
    if (properties)
        for (const name of Object.keys(properties)) {
            const value = properties[name]
            if (value == null) continue
            // After the name: ":0x", two hex digits (the first 0 to 2) and the type.
            const at = table.indexOf(":" + name + ":") + name.length + 4
            const low = table.charCodeAt(at + 1)
            const id = (table.charCodeAt(at) - 48) * 16 + (low < 0x61 ? low - 48 : low - 87)
            const type = table.charCodeAt(at + 2) | 0x20
            for (const v of type === 0x70 || type === 0x76 ? value : [value]) {
                parts.push(id)
                if (type === 0x76) {
                    // A Variable Byte Integer is written as a remaining length is [MQTT-1.5.5].
                    const digits = Buffer.alloc(4)
                    for (let k = 0, end = writeRemainingLength(digits, 0, v); k < end; k++) parts.push(digits[k])
                } else if (type === 0x70) parts.push(v[0], v[1])
                else if (type === 0x68) parts.push(v >> 8, v & 0xff)
                else if (type === 0x77) {
                    // In halves: the VM's whole-number arithmetic is 32-bit, and values reach 2^32 - 1.
                    const high = Math.floor(v / 65536)
                    const low = (v / 65536 - high) * 65536
                    parts.push(high >> 8, high & 0xff, low >> 8, low & 0xff)
                } else parts.push(v)
            }
        }
    return parts
}

function pushProperties(body: BodyPart[], properties: any) {
    const parts = propertyParts(properties)
    // Framing them measures them: the property length is the frame's remaining length, after byte 0.
    const block = framePacket(0, parts)
    for (let i = 1; block[i - 1] > 0x7f || i === 1; i++) body.push(block[i])
    for (const part of parts) body.push(part)
}

function propertyBlock(properties: any): Buffer {
    return framePacket(0, propertyParts(properties)).slice(1)
}

function subscriptionOptions(s: Subscription): number {
    return s.qos | (s.noLocal ? 4 : 0) | (s.retainAsPublished ? 8 : 0) | ((s.retainHandling || 0) << 4)
}

function pushReason(body: BodyPart[], p: any) {
    // A DISCONNECT always carries them (as mqtt-packet writes it); an acknowledgement leaves out a
    // reason code of 0 when there are no properties [MQTT-3.4.2.1].
    if (p.reasonCode || p.properties || p.type === PacketType.Disconnect) {
        body.push(p.reasonCode || 0)
        pushProperties(body, p.properties)
    }
}

/** MQTT 5, for the encoder and the decoder. */
export const MQTT5: Mqtt5Codec = {
    version: ProtocolVersion.Mqtt5,
    readProperties,
    detail: "",
    reasonCodes: REASON_CODES,
    pushProperties,
    propertyBlock,
    subscriptionOptions,
    pushReason,
}
