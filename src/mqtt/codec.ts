// MQTT 3.1.1 packet encoder: Packet values to wire bytes.
// Pure core: imports nothing from @devicescript, runs unchanged in Node and in the VM.
// Spec: http://docs.oasis-open.org/mqtt/mqtt/v3.1.1/os/mqtt-v3.1.1-os.html
//
// Encoding is only done on packets we build ourselves, so an invalid packet is a
// programming error: encodePacket throws an Error whose message names the problem
// (and cites the spec clause where there is one).

import {
    ConnackPacket,
    ConnectPacket,
    Packet,
    PacketType,
    PublishPacket,
    SUBACK_FAILURE,
    SubackPacket,
    SubscribePacket,
    UnsubscribePacket,
} from "./packets"
import { MAX_STRING_BYTES, validateTopicFilterBytes, validateTopicNameBytes } from "./topics"

/** Largest value the variable-length "remaining length" can hold, [MQTT-2.2.3]. */
export const MAX_REMAINING_LENGTH = 268435455

/** Protocol name and level of MQTT 3.1.1, [MQTT-3.1.2-1], [MQTT-3.1.2-2]. */
export const PROTOCOL_NAME = "MQTT"
export const PROTOCOL_LEVEL = 4

// Connect flags, [MQTT-3.1.2.3].
export const CONNECT_FLAG_USERNAME = 0x80
export const CONNECT_FLAG_PASSWORD = 0x40
export const CONNECT_FLAG_WILL_RETAIN = 0x20
export const CONNECT_FLAG_WILL_QOS_SHIFT = 3
export const CONNECT_FLAG_WILL = 0x04
export const CONNECT_FLAG_CLEAN_SESSION = 0x02

/**
 * The fixed header flags (low nibble of the first byte) every packet type other
 * than PUBLISH must carry, [MQTT-2.2.2-1]. Indexed by packet type; PUBLISH and the
 * reserved types 0 and 15 hold -1.
 */
export const REQUIRED_HEADER_FLAGS: number[] = [
    -1, // 0 reserved
    0, // CONNECT
    0, // CONNACK
    -1, // PUBLISH: dup, qos, retain
    0, // PUBACK
    0, // PUBREC
    2, // PUBREL
    0, // PUBCOMP
    2, // SUBSCRIBE
    0, // SUBACK
    2, // UNSUBSCRIBE
    0, // UNSUBACK
    0, // PINGREQ
    0, // PINGRESP
    0, // DISCONNECT
    -1, // 15 reserved
]

function isInteger(value: number, min: number, max: number): boolean {
    return typeof value === "number" && Math.floor(value) === value && value >= min && value <= max
}

function checkPacketId(packetId: number, what: string) {
    if (!isInteger(packetId, 1, 65535))
        throw new Error(`[MQTT-2.3.1-1] ${what} packet id must be an integer 1..65535, got ${packetId}`)
}

function checkQos(qos: number, what: string) {
    if (!isInteger(qos, 0, 2)) throw new Error(`${what} qos must be 0, 1 or 2, got ${qos}`)
}

/** UTF-8 bytes of a string field, checked for length and U+0000, [MQTT-1.5.3]. */
function encodeStringField(value: string, what: string): Buffer {
    if (typeof value !== "string") throw new Error(`${what} must be a string, got ${value}`)
    const bytes = Buffer.from(value)
    if (bytes.length > MAX_STRING_BYTES)
        throw new Error(`[MQTT-1.5.3] ${what} must be at most ${MAX_STRING_BYTES} bytes of UTF-8, got ${bytes.length}`)
    for (let i = 0; i < bytes.length; i++) {
        if (bytes[i] === 0) throw new Error(`[MQTT-1.5.3-2] ${what} must not contain U+0000`)
    }
    return bytes
}

function checkBinaryField(value: Buffer, what: string) {
    if (!value || typeof value.length !== "number") throw new Error(`${what} must be a Buffer`)
    if (value.length > MAX_STRING_BYTES)
        throw new Error(`[MQTT-1.5.6] ${what} must be at most ${MAX_STRING_BYTES} bytes, got ${value.length}`)
}

/**
 * The last topic name encoded and validated: a node publishes to a handful of topics over and
 * over, and converting and checking the same string for every publish is the costliest part of
 * encoding a small PUBLISH in the VM. The cached bytes are only ever copied, never modified.
 */
let lastTopicName = ""
let lastTopicBytes: Buffer = null

function encodeTopicName(topic: string, what: string): Buffer {
    if (typeof topic !== "string") throw new Error(`${what} must be a string, got ${topic}`)
    if (topic === lastTopicName && lastTopicBytes !== null) return lastTopicBytes
    const bytes = Buffer.from(topic)
    const problem = validateTopicNameBytes(bytes)
    if (problem !== null) throw new Error(`${what}: ${problem}`)
    lastTopicName = topic
    lastTopicBytes = bytes
    return bytes
}

function encodeTopicFilter(filter: string, what: string): Buffer {
    if (typeof filter !== "string") throw new Error(`${what} must be a string, got ${filter}`)
    const bytes = Buffer.from(filter)
    const problem = validateTopicFilterBytes(bytes)
    if (problem !== null) throw new Error(`${what}: ${problem}`)
    return bytes
}

/** Number of bytes encodeRemainingLength produces for a valid length. */
export function remainingLengthSize(length: number): number {
    if (length < 128) return 1
    if (length < 16384) return 2
    if (length < 2097152) return 3
    return 4
}

/**
 * The variable-length encoding of a remaining length, 1 to 4 bytes, [MQTT-2.2.3].
 * Throws when the length is not an integer 0..268435455.
 */
export function encodeRemainingLength(length: number): Buffer {
    checkRemainingLength(length)
    const bytes = Buffer.alloc(remainingLengthSize(length))
    writeRemainingLength(bytes, 0, length)
    return bytes
}

function checkRemainingLength(length: number) {
    if (!isInteger(length, 0, MAX_REMAINING_LENGTH))
        throw new Error(`[MQTT-2.2.3] remaining length must be an integer 0..${MAX_REMAINING_LENGTH}, got ${length}`)
}

/** Writes the length's 1 to 4 digits at `offset`, [MQTT-2.2.3]; returns the offset after them. */
function writeRemainingLength(bytes: Buffer, offset: number, length: number) {
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

/** Writes one packet into a buffer allocated once at its final size. */
class PacketWriter {
    readonly bytes: Buffer
    private offset = 0

    constructor(firstByte: number, remainingLength: number) {
        checkRemainingLength(remainingLength)
        this.bytes = Buffer.alloc(1 + remainingLengthSize(remainingLength) + remainingLength)
        this.writeByte(firstByte)
        // The length digits go straight into the packet: no separate buffer per packet.
        this.offset = writeRemainingLength(this.bytes, this.offset, remainingLength)
    }

    writeByte(value: number) {
        this.bytes[this.offset] = value & 0xff
        this.offset++
    }

    /** Big-endian, [MQTT-1.5.2]. */
    writeUint16(value: number) {
        this.writeByte(value >> 8)
        this.writeByte(value)
    }

    writeBytes(value: Buffer) {
        if (value.length === 0) return
        this.bytes.set(value, this.offset)
        this.offset += value.length
    }

    /** A 2-byte length followed by the bytes, [MQTT-1.5.3], [MQTT-1.5.6]. */
    writeLengthPrefixed(value: Buffer) {
        this.writeUint16(value.length)
        this.writeBytes(value)
    }

    finish(): Buffer {
        if (this.offset !== this.bytes.length)
            throw new Error(`internal encoder error: wrote ${this.offset} of ${this.bytes.length} bytes`)
        return this.bytes
    }
}

function encodeConnect(p: ConnectPacket): Buffer {
    const protocolName = Buffer.from(PROTOCOL_NAME)
    if (typeof p.clientId !== "string") throw new Error(`CONNECT client id must be a string, got ${p.clientId}`)
    const clientId = encodeStringField(p.clientId, "CONNECT client id")
    if (clientId.length === 0 && !p.cleanSession)
        throw new Error("[MQTT-3.1.3-7] CONNECT with an empty client id must set clean session")
    if (!isInteger(p.keepaliveS, 0, 65535))
        throw new Error(`CONNECT keepalive must be an integer 0..65535 seconds, got ${p.keepaliveS}`)

    let flags = 0
    if (p.cleanSession) flags |= CONNECT_FLAG_CLEAN_SESSION
    let remainingLength = 2 + protocolName.length + 1 + 1 + 2
    remainingLength += 2 + clientId.length

    let willTopic: Buffer = null
    const will = p.will
    if (will) {
        willTopic = encodeTopicName(will.topic, "CONNECT will topic")
        checkQos(will.qos, "CONNECT will")
        checkBinaryField(will.payload, "CONNECT will payload")
        flags |= CONNECT_FLAG_WILL | (will.qos << CONNECT_FLAG_WILL_QOS_SHIFT)
        if (will.retain) flags |= CONNECT_FLAG_WILL_RETAIN
        remainingLength += 2 + willTopic.length + 2 + will.payload.length
    }

    let username: Buffer = null
    if (p.username !== undefined && p.username !== null) {
        username = encodeStringField(p.username, "CONNECT username")
        flags |= CONNECT_FLAG_USERNAME
        remainingLength += 2 + username.length
    }
    const password = p.password
    if (password !== undefined && password !== null) {
        if (username === null) throw new Error("[MQTT-3.1.2-22] CONNECT password requires a username")
        checkBinaryField(password, "CONNECT password")
        flags |= CONNECT_FLAG_PASSWORD
        remainingLength += 2 + password.length
    }

    const writer = new PacketWriter(PacketType.Connect << 4, remainingLength)
    writer.writeLengthPrefixed(protocolName)
    writer.writeByte(PROTOCOL_LEVEL)
    writer.writeByte(flags)
    writer.writeUint16(p.keepaliveS)
    writer.writeLengthPrefixed(clientId)
    if (will) {
        writer.writeLengthPrefixed(willTopic)
        writer.writeLengthPrefixed(will.payload)
    }
    if (username !== null) writer.writeLengthPrefixed(username)
    if (password !== undefined && password !== null) writer.writeLengthPrefixed(password)
    return writer.finish()
}

function encodeConnack(p: ConnackPacket): Buffer {
    if (!isInteger(p.returnCode, 0, 5))
        throw new Error(`[MQTT-3.2.2.3] CONNACK return code must be 0..5, got ${p.returnCode}`)
    if (p.sessionPresent && p.returnCode !== 0)
        throw new Error("[MQTT-3.2.2-4] CONNACK with a non-zero return code must not set session present")
    const writer = new PacketWriter(PacketType.Connack << 4, 2)
    writer.writeByte(p.sessionPresent ? 1 : 0)
    writer.writeByte(p.returnCode)
    return writer.finish()
}

/** DeviceScript's native copy, which Node's Buffer lacks; in the VM, Buffer.set costs about six times as much. */
const NATIVE_BLIT = !!(Buffer.alloc(1) as any).blitAt

/**
 * Encodes a PUBLISH into `bytes` at `offset`, so that a client can encode straight into the
 * buffer it sends from; returns the offset after it, or, when the room left in `bytes` is too
 * small, minus the packet's size (writing nothing). Throws an Error naming the problem when the packet is invalid.
 * Written by hand rather than through PacketWriter, with the checks inline: PUBLISH is the
 * packet a node encodes most, and every function call counts in the VM (about 1 us each).
 */
export function encodePublishInto(p: PublishPacket, bytes: Buffer, offset: number): number {
    const topic =
        p.topic === lastTopicName && lastTopicBytes !== null
            ? lastTopicBytes
            : encodeTopicName(p.topic, "PUBLISH topic")
    const qos = p.qos
    if (!(qos === 0 || qos === 1 || qos === 2)) checkQos(qos, "PUBLISH")
    const packetId = p.packetId
    if (qos > 0) {
        if (!(packetId >= 1 && packetId <= 65535 && (packetId | 0) === packetId)) checkPacketId(packetId, "PUBLISH")
    } else if (packetId !== undefined && packetId !== null)
        throw new Error("[MQTT-2.3.1-5] PUBLISH with qos 0 must not carry a packet id")
    if (qos === 0 && p.dup) throw new Error("[MQTT-3.3.1-2] PUBLISH with qos 0 must not set dup")
    const payload = p.payload
    if (!payload || typeof payload.length !== "number") throw new Error("PUBLISH payload must be a Buffer")
    const remainingLength = 2 + topic.length + (qos > 0 ? 2 : 0) + payload.length
    if (remainingLength > MAX_REMAINING_LENGTH)
        throw new Error(`[MQTT-2.2.3] PUBLISH remaining length ${remainingLength} exceeds ${MAX_REMAINING_LENGTH}`)
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
        bytes[offset] = packetId >> 8
        bytes[offset + 1] = packetId & 0xff
        offset += 2
    }
    if (payload.length === 0) return offset
    if (NATIVE_BLIT) (bytes as any).blitAt(offset, payload, 0, payload.length)
    else bytes.set(payload, offset)
    return offset + payload.length
}

const EMPTY = Buffer.alloc(0)

function encodePublish(p: PublishPacket): Buffer {
    // Into no room at all: the answer is minus the size.
    const bytes = Buffer.alloc(-encodePublishInto(p, EMPTY, 0))
    encodePublishInto(p, bytes, 0)
    return bytes
}

function ackName(type: PacketType): string {
    switch (type) {
        case PacketType.Puback:
            return "PUBACK"
        case PacketType.Pubrec:
            return "PUBREC"
        case PacketType.Pubrel:
            return "PUBREL"
        case PacketType.Pubcomp:
            return "PUBCOMP"
        default:
            return "UNSUBACK"
    }
}

function encodeAck(type: PacketType, packetId: number): Buffer {
    checkPacketId(packetId, ackName(type))
    const writer = new PacketWriter((type << 4) | REQUIRED_HEADER_FLAGS[type], 2)
    writer.writeUint16(packetId)
    return writer.finish()
}

function encodeSubscribe(p: SubscribePacket): Buffer {
    checkPacketId(p.packetId, "SUBSCRIBE")
    const subscriptions = p.subscriptions
    if (!subscriptions || subscriptions.length < 1)
        throw new Error("[MQTT-3.8.3-3] SUBSCRIBE must carry at least one subscription")
    const filters: Buffer[] = []
    let remainingLength = 2
    for (let i = 0; i < subscriptions.length; i++) {
        const filter = encodeTopicFilter(subscriptions[i].topic, "SUBSCRIBE topic filter")
        checkQos(subscriptions[i].qos, "SUBSCRIBE requested")
        filters.push(filter)
        remainingLength += 2 + filter.length + 1
    }
    const writer = new PacketWriter(
        (PacketType.Subscribe << 4) | REQUIRED_HEADER_FLAGS[PacketType.Subscribe],
        remainingLength
    )
    writer.writeUint16(p.packetId)
    for (let i = 0; i < filters.length; i++) {
        writer.writeLengthPrefixed(filters[i])
        writer.writeByte(subscriptions[i].qos)
    }
    return writer.finish()
}

function encodeSuback(p: SubackPacket): Buffer {
    checkPacketId(p.packetId, "SUBACK")
    const codes = p.returnCodes
    if (!codes || codes.length < 1) throw new Error("[MQTT-3.9.3] SUBACK must carry at least one return code")
    for (let i = 0; i < codes.length; i++) {
        const code = codes[i]
        if (!isInteger(code, 0, 2) && code !== SUBACK_FAILURE)
            throw new Error(`[MQTT-3.9.3-2] SUBACK return code must be 0, 1, 2 or 0x80, got ${code}`)
    }
    const writer = new PacketWriter(PacketType.Suback << 4, 2 + codes.length)
    writer.writeUint16(p.packetId)
    for (let i = 0; i < codes.length; i++) writer.writeByte(codes[i])
    return writer.finish()
}

function encodeUnsubscribe(p: UnsubscribePacket): Buffer {
    checkPacketId(p.packetId, "UNSUBSCRIBE")
    const topics = p.topics
    if (!topics || topics.length < 1)
        throw new Error("[MQTT-3.10.3-2] UNSUBSCRIBE must carry at least one topic filter")
    const filters: Buffer[] = []
    let remainingLength = 2
    for (let i = 0; i < topics.length; i++) {
        const filter = encodeTopicFilter(topics[i], "UNSUBSCRIBE topic filter")
        filters.push(filter)
        remainingLength += 2 + filter.length
    }
    const writer = new PacketWriter(
        (PacketType.Unsubscribe << 4) | REQUIRED_HEADER_FLAGS[PacketType.Unsubscribe],
        remainingLength
    )
    writer.writeUint16(p.packetId)
    for (let i = 0; i < filters.length; i++) writer.writeLengthPrefixed(filters[i])
    return writer.finish()
}

function encodeEmpty(type: PacketType): Buffer {
    const writer = new PacketWriter(type << 4, 0)
    return writer.finish()
}

/**
 * Encodes one packet to its wire bytes, byte-identical to what mqtt-packet
 * generates for MQTT 3.1.1. Throws an Error naming the problem when the packet is
 * invalid (bad topic or filter, packet id 0 or above 65535 where one is required,
 * qos out of range, remaining length above 268435455, ...).
 */
export function encodePacket(p: Packet): Buffer {
    if (!p) throw new Error("cannot encode a missing packet")
    switch (p.type) {
        case PacketType.Connack:
            return encodeConnack(p)
        case PacketType.Suback:
            return encodeSuback(p)
        case PacketType.Unsuback:
            return encodeAck(p.type, p.packetId)
        case PacketType.Pingresp:
            return encodeEmpty(p.type)
        case PacketType.Unsubscribe:
            return encodeUnsubscribe(p)
        default:
            return encodeClientPacket(p)
    }
}

/**
 * Encodes a packet the node sends, as encodePacket does; the packets only servers send, and
 * UNSUBSCRIBE (the node never unsubscribes), are refused, and their encoders stay out of the firmware.
 */
export function encodeClientPacket(p: Packet): Buffer {
    if (!p) throw new Error("cannot encode a missing packet")
    switch (p.type) {
        case PacketType.Connect:
            return encodeConnect(p)
        case PacketType.Publish:
            return encodePublish(p)
        case PacketType.Puback:
        case PacketType.Pubrec:
        case PacketType.Pubrel:
        case PacketType.Pubcomp:
            return encodeAck(p.type, p.packetId)
        case PacketType.Subscribe:
            return encodeSubscribe(p)
        case PacketType.Pingreq:
        case PacketType.Disconnect:
            return encodeEmpty(p.type)
        default:
            throw new Error(`cannot encode unknown packet type ${(p as Packet).type}`)
    }
}
