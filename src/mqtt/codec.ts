// Encoder of the packets an MQTT client sends, MQTT 3.1.1 or MQTT 5: Packet values to wire bytes.
// Pure core: imports nothing from @devicescript, runs unchanged in Node and in the VM.
// Spec: http://docs.oasis-open.org/mqtt/mqtt/v3.1.1/os/mqtt-v3.1.1-os.html
//       https://docs.oasis-open.org/mqtt/mqtt/v5.0/os/mqtt-v5.0-os.html
//
// The node encodes only packets it builds itself, from values its own code produces: topics from
// its configuration (validated on the host before it is built in, src/config.ts), packet ids and
// QoS from the session. Nothing is checked here, so that no check costs code in the firmware:
// test/fixtures/mqtt-codec.ts holds the checked encoder (every rule of the spec, each violation
// an Error naming it) and the encoders of the packets only servers send, and the session's tests
// run every packet the session sends through it.

import { Mqtt5Codec, Packet, PacketType, PublishPacket } from "./packets"

/** Largest value the variable-length "remaining length" can hold, [MQTT-2.2.3]. */
export const MAX_REMAINING_LENGTH = 268435455

/** Protocol name and level of MQTT 3.1.1, [MQTT-3.1.2-1], [MQTT-3.1.2-2]; MQTT 5's level is 5. */
export const PROTOCOL_NAME = "MQTT"
export const PROTOCOL_LEVEL = 4

// Connect flags, [MQTT-3.1.2.3].
export const CONNECT_FLAG_USERNAME = 0x80
export const CONNECT_FLAG_PASSWORD = 0x40
export const CONNECT_FLAG_WILL_RETAIN = 0x20
export const CONNECT_FLAG_WILL_QOS_SHIFT = 3
export const CONNECT_FLAG_WILL = 0x04
export const CONNECT_FLAG_CLEAN_SESSION = 0x02

/** Number of bytes writeRemainingLength produces for a valid length. */
export function remainingLengthSize(length: number): number {
    if (length < 128) return 1
    if (length < 16384) return 2
    if (length < 2097152) return 3
    return 4
}

/** Writes the length's 1 to 4 digits at `offset`, [MQTT-2.2.3]; returns the offset after them. */
export function writeRemainingLength(bytes: Buffer, offset: number, length: number) {
    let rest = length
    // A for loop: DeviceScript has no do-while.
    for (;;) {
        let digit = rest % 128
        rest = Math.floor(rest / 128)
        if (rest > 0) digit = digit | 0x80
        bytes[offset++] = digit
        if (rest === 0) return offset
    }
}

/** DeviceScript's native copy, which Node's Buffer lacks; in the VM, Buffer.set costs about six times as much. */
const NATIVE_BLIT = !!(Buffer.alloc(1) as any).blitAt

/** Copies `length` bytes of `src` from `srcOffset` into `dst` at `dstOffset`, allocating nothing. */
export function copyInto(dst: Buffer, dstOffset: number, src: Buffer, srcOffset: number, length: number) {
    if (NATIVE_BLIT) (dst as any).blitAt(dstOffset, src, srcOffset, length)
    else dst.set((src as any).subarray(srcOffset, srcOffset + length), dstOffset)
}

/**
 * The last topic name encoded: a node publishes to a handful of topics over and over, and
 * converting the same string for every publish costs time in the VM. The cached bytes are only
 * ever copied, never modified.
 */
let lastTopicName = ""
let lastTopicBytes = Buffer.alloc(0)

/** The property block of a PUBLISH in 3.1.1: there is none. */
const NO_PROPERTIES = Buffer.alloc(0)

/**
 * Encodes a PUBLISH into `bytes` at `offset`, so that a client can encode straight into the
 * buffer it sends from; returns the offset after it, or, when the room left in `bytes` is too
 * small, minus the packet's size (writing nothing). Written by hand rather than through
 * framePacket: PUBLISH is the packet a node encodes most, and every function call counts in the
 * VM (about 1 us each). Given the MQTT 5 codec (`mqtt5`, the protocol version) the packet carries its
 * properties, an empty block when it has none.
 */
export function encodePublishInto(p: PublishPacket, bytes: Buffer, offset: number, mqtt5?: Mqtt5Codec): number {
    if (p.topic !== lastTopicName) {
        lastTopicBytes = Buffer.from(p.topic)
        lastTopicName = p.topic
    }
    const topic = lastTopicBytes
    const qos = p.qos
    const payload = p.payload
    const properties = mqtt5 ? mqtt5.propertyBlock(p.properties) : NO_PROPERTIES
    const remainingLength = 2 + topic.length + (qos > 0 ? 2 : 0) + properties.length + payload.length
    const lengthBytes = remainingLength < 128 ? 1 : remainingLengthSize(remainingLength)
    const size = 1 + lengthBytes + remainingLength
    if (offset + size > bytes.length) return -size

    let firstByte = (PacketType.Publish << 4) | (qos << 1)
    if (p.dup) firstByte |= 0x08
    if (p.retain) firstByte |= 0x01
    bytes[offset] = firstByte
    if (lengthBytes === 1) {
        bytes[offset + 1] = remainingLength
        offset += 2
    } else offset = writeRemainingLength(bytes, offset + 1, remainingLength)
    bytes[offset] = topic.length >> 8
    bytes[offset + 1] = topic.length & 0xff
    offset += 2
    if (NATIVE_BLIT) (bytes as any).blitAt(offset, topic, 0, topic.length)
    else bytes.set(topic, offset)
    offset += topic.length
    if (qos > 0) {
        bytes[offset] = p.packetId >> 8
        bytes[offset + 1] = p.packetId & 0xff
        offset += 2
    }
    if (properties.length) {
        if (NATIVE_BLIT) (bytes as any).blitAt(offset, properties, 0, properties.length)
        else bytes.set(properties, offset)
        offset += properties.length
    }
    if (payload.length === 0) return offset
    if (NATIVE_BLIT) (bytes as any).blitAt(offset, payload, 0, payload.length)
    else bytes.set(payload, offset)
    return offset + payload.length
}

/**
 * A packet's body as parts, in order: a number is one byte, a string or Buffer a field (its
 * 2-byte length, then its bytes, a string as UTF-8 [MQTT-1.5.3], [MQTT-1.5.6]). A body of byte
 * numbers costs the VM 8 bytes a byte: a CONNECT with a will built that way was the allocation
 * that failed on a fragmented heap, asking for 540 bytes to encode about 70.
 */
export type BodyPart = number | string | Buffer

/**
 * The packet of first byte `firstByte` and body `parts`, with the remaining length between them.
 * Each string of `parts` is replaced by its UTF-8 bytes.
 */
export function framePacket(firstByte: number, parts: BodyPart[]): Buffer {
    let length = 0
    for (let i = 0; i < parts.length; i++) {
        const x = parts[i]
        if (typeof x === "number") length++
        else {
            // Converted once, in place: the strings are short (topics, ids).
            const bytes = typeof x === "string" ? Buffer.from(x) : x
            parts[i] = bytes
            length += 2 + bytes.length
        }
    }
    const bytes = Buffer.alloc(1 + remainingLengthSize(length) + length)
    bytes[0] = firstByte
    let offset = writeRemainingLength(bytes, 1, length)
    for (const x of parts) {
        if (typeof x === "number") bytes[offset++] = x
        else {
            const field = x as Buffer
            bytes[offset] = field.length >> 8
            bytes[offset + 1] = field.length & 0xff
            copyInto(bytes, offset + 2, field, 0, field.length)
            offset += 2 + field.length
        }
    }
    return bytes
}

/**
 * Encodes a packet the node sends other than PUBLISH (encodePublishInto): CONNECT, PUBACK,
 * PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, PINGREQ, DISCONNECT, byte-identical to what mqtt-packet
 * generates for MQTT 3.1.1, or given the MQTT 5 codec (`mqtt5`, the protocol version) for MQTT 5.
 * The node never sends AUTH: it does not use enhanced authentication.
 */
export function encodeClientPacket(p: Packet, mqtt5?: Mqtt5Codec): Buffer {
    const v5 = !!mqtt5
    const body: BodyPart[] = []
    let firstByte = p.type << 4
    if (p.type === PacketType.Connect) {
        const will = p.will
        let flags = p.cleanSession ? CONNECT_FLAG_CLEAN_SESSION : 0
        if (will)
            flags |=
                CONNECT_FLAG_WILL |
                (will.qos << CONNECT_FLAG_WILL_QOS_SHIFT) |
                (will.retain ? CONNECT_FLAG_WILL_RETAIN : 0)
        if (p.username != null) flags |= CONNECT_FLAG_USERNAME
        if (p.password != null) flags |= CONNECT_FLAG_PASSWORD
        body.push(PROTOCOL_NAME, v5 ? mqtt5.version : PROTOCOL_LEVEL, flags, p.keepaliveS >> 8, p.keepaliveS & 0xff)
        if (v5) mqtt5.pushProperties(body, p.properties)
        body.push(p.clientId)
        if (will) {
            if (v5) mqtt5.pushProperties(body, will.properties)
            body.push(will.topic, will.payload)
        }
        if (p.username != null) body.push(p.username)
        if (p.password != null) body.push(p.password)
    } else if (p.type === PacketType.Subscribe) {
        // SUBSCRIBE, like PUBREL, carries the header flags 2 [MQTT-3.8.1-1].
        firstByte |= 2
        body.push(p.packetId >> 8, p.packetId & 0xff)
        if (v5) mqtt5.pushProperties(body, p.properties)
        for (const s of p.subscriptions) body.push(s.topic, v5 ? mqtt5.subscriptionOptions(s) : s.qos)
    } else if (p.type !== PacketType.Pingreq) {
        const ack = p as any
        if (p.type === PacketType.Pubrel) firstByte |= 2
        if (p.type !== PacketType.Disconnect) body.push(ack.packetId >> 8, ack.packetId & 0xff)
        if (v5) mqtt5.pushReason(body, ack)
    }
    return framePacket(firstByte, body)
}
