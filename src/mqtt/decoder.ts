// Streaming MQTT 3.1.1 decoder: wire bytes in arbitrary chunks to Packet values.
// Pure core: imports nothing from @devicescript, runs unchanged in Node and in the VM.
// Spec: http://docs.oasis-open.org/mqtt/mqtt/v3.1.1/os/mqtt-v3.1.1-os.html
//
// Usage:
//     decoder.push(chunk)
//     for (;;) {
//         const result = decoder.next()
//         if (result === null) break // needs more bytes
//         if (result.error) { close the connection; break }
//         handle(result.packet)
//     }
//
// The decoder is an explicit state machine (fixed header byte, remaining length,
// body) in the shape of mqtt-packet's parser. next() returns at most one packet per
// call, so the caller can yield between packets: the DeviceScript VM stops a script
// that runs too long without awaiting.
//
// Protocol violations are never thrown: next() returns a DecodeFailure once and the
// decoder is dead from then on (push() drops input, next() returns null). The peer
// broke the protocol, so the connection must be closed, [MQTT-4.8]. reset() makes
// the decoder usable again for a new connection.
//
// Memory: push() keeps a reference to each chunk (it copies nothing) until next()
// has consumed it, so push one chunk, then call next() until it returns null. The
// only bytes the decoder copies are the body of the packet being read, collected
// into one Buffer allocated at the announced length, which is never more than
// maxPacketBytes.

import { splitAt } from "../util/arrays"
import {
    ConnackPacket,
    ConnectPacket,
    Packet,
    PacketType,
    PublishPacket,
    SUBACK_FAILURE,
    Subscription,
    Will,
} from "./packets"
import {
    CONNECT_FLAG_CLEAN_SESSION,
    CONNECT_FLAG_PASSWORD,
    CONNECT_FLAG_USERNAME,
    CONNECT_FLAG_WILL,
    CONNECT_FLAG_WILL_QOS_SHIFT,
    CONNECT_FLAG_WILL_RETAIN,
    MAX_REMAINING_LENGTH,
    PROTOCOL_LEVEL,
    REQUIRED_HEADER_FLAGS,
} from "./codec"
import { validateTopicFilterBytes, validateTopicNameBytes } from "./topics"

/** Why the decoder rejected its input. Every member is a reason to close the connection. */
export enum ProtocolError {
    /** Packet type 0 or 15, [MQTT-2.2.1]. */
    ReservedPacketType = 1,
    /** Fixed header flags other than the required ones, [MQTT-2.2.2-1]. */
    InvalidHeaderFlags = 2,
    /** PUBLISH with both QoS bits set, [MQTT-3.3.1-4]. */
    InvalidQos = 3,
    /** PUBLISH with qos 0 and the dup flag set, [MQTT-3.3.1-2]. */
    DupWithQos0 = 4,
    /** Remaining length continued past its 4th byte, [MQTT-2.2.3]. */
    MalformedRemainingLength = 5,
    /** The whole packet would be longer than maxPacketBytes. */
    PacketTooLarge = 6,
    /** A fixed-size packet announced a different remaining length. */
    UnexpectedRemainingLength = 7,
    /** The body ended before a fixed field (byte, packet id, ...). */
    PacketTruncated = 8,
    /** A length-prefixed string or binary field runs past the end of the body. */
    FieldOverrunsPacket = 9,
    /** Bytes left over after the last field of a CONNECT. */
    TrailingBytes = 10,
    /** A string is not well-formed UTF-8, [MQTT-1.5.3-1]. */
    InvalidUtf8 = 11,
    /** A string contains U+0000, [MQTT-1.5.3-2]. */
    NullCharacter = 12,
    /** CONNECT protocol name is not "MQTT", [MQTT-3.1.2-1]. */
    InvalidProtocolName = 13,
    /** CONNECT protocol level is not 4 (MQTT 3.1.1), [MQTT-3.1.2-2]. */
    UnsupportedProtocolLevel = 14,
    /** CONNECT reserved flag bit 0 is set, [MQTT-3.1.2-3]. */
    ConnectReservedFlag = 15,
    /** Will QoS 3, or will QoS or retain set without the will flag, [MQTT-3.1.2-13..15]. */
    InvalidWillFlags = 16,
    /** CONNECT password flag set without the username flag, [MQTT-3.1.2-22]. */
    PasswordWithoutUsername = 17,
    /** CONNACK acknowledge flags bits 7..1 not zero, [MQTT-3.2.2.1]. */
    ConnackReservedFlags = 18,
    /** CONNACK return code above 5, [MQTT-3.2.2.3]. */
    InvalidConnackReturnCode = 19,
    /** CONNACK with session present and a non-zero return code, [MQTT-3.2.2-4]. */
    SessionPresentWithRefusal = 20,
    /** Packet id 0 where a non-zero one is required, [MQTT-2.3.1-1]. */
    PacketIdZero = 21,
    /** Topic name empty or containing wildcards, [MQTT-4.7.3-1], [MQTT-3.3.2-2]. */
    InvalidTopicName = 22,
    /** Topic filter breaking the wildcard rules, [MQTT-4.7.1-2], [MQTT-4.7.1-3]. */
    InvalidTopicFilter = 23,
    /** SUBSCRIBE, SUBACK or UNSUBSCRIBE without a single entry, [MQTT-3.8.3-3], [MQTT-3.10.3-2]. */
    EmptyPayload = 24,
    /** SUBSCRIBE requested QoS byte with reserved bits set or QoS 3, [MQTT-3-8.3-4]. */
    InvalidSubscriptionOptions = 25,
    /** SUBACK return code not 0, 1, 2 or 0x80, [MQTT-3.9.3-2]. */
    InvalidSubackReturnCode = 26,
    /** A packet only clients send (CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT) came from the server. */
    ClientOnlyPacket = 27,
}

/**
 * One line describing each ProtocolError, citing the spec clause, on the line of the error's value
 * (line 0 is empty). One literal rather than a switch or an array: the firmware's code section has
 * a hard 64 KB limit, and every literal in code costs bytes of it.
 */
const PROTOCOL_ERROR_TEXTS = splitAt(
    `
[MQTT-2.2.1] reserved packet type 0 or 15
[MQTT-2.2.2-1] fixed header flags differ from the required ones
[MQTT-3.3.1-4] PUBLISH must not have both QoS bits set
[MQTT-3.3.1-2] PUBLISH with qos 0 must not set dup
[MQTT-2.2.3] remaining length longer than 4 bytes
packet larger than the maximum this client accepts
remaining length wrong for a fixed-size packet
packet ends before its fields do
[MQTT-1.5.3] length-prefixed field runs past the end of the packet
bytes left after the last field of the packet
[MQTT-1.5.3-1] string is not well-formed UTF-8
[MQTT-1.5.3-2] string contains U+0000
[MQTT-3.1.2-1] CONNECT protocol name is not "MQTT"
[MQTT-3.1.2-2] CONNECT protocol level is not 4
[MQTT-3.1.2-3] CONNECT reserved flag is set
[MQTT-3.1.2-13] CONNECT will QoS or retain inconsistent with the will flag
[MQTT-3.1.2-22] CONNECT password flag set without username flag
[MQTT-3.2.2.1] CONNACK reserved flags are set
[MQTT-3.2.2.3] CONNACK return code is reserved
[MQTT-3.2.2-4] CONNACK refuses the connection but sets session present
[MQTT-2.3.1-1] packet id must not be 0
[MQTT-3.3.2-2] invalid topic name
[MQTT-4.7.1] invalid topic filter
[MQTT-3.8.3-3] packet must carry at least one entry
[MQTT-3-8.3-4] SUBSCRIBE requested QoS has reserved bits set
[MQTT-3.9.3-2] SUBACK return code is not 0, 1, 2 or 0x80
a server sent a packet only clients send`,
    "\n"
)

/** One line describing `error`, citing the spec clause. */
export function protocolErrorText(error: ProtocolError): string {
    const text = error >= 1 && error < PROTOCOL_ERROR_TEXTS.length ? PROTOCOL_ERROR_TEXTS[error] : ""
    return text || `unknown protocol error ${error}`
}

/**
 * The two shapes next() returns. Both declare all three fields so that code
 * compiled without strictNullChecks (DeviceScript) can test `result.error` on a
 * DecodeResult; narrowing does not work there, so cast after the test:
 *     if (result.error) { const failure = result as DecodeFailure; ... }
 */

/** next() decoded a complete, valid packet: `packet` is set, `error` never is. */
export interface DecodedPacket {
    packet: Packet
    error?: undefined
    message?: undefined
}

/**
 * next() met a protocol violation. `error` is the reason (never 0, so
 * `if (result.error)` tells the cases apart; protocolErrorText(error) describes it
 * in general), `message` the detail of this input (which packet, which field, the
 * offending value). The decoder is dead afterwards: close the connection.
 */
export interface DecodeFailure {
    packet?: undefined
    error: ProtocolError
    message: string
}

export type DecodeResult = DecodedPacket | DecodeFailure

/** Largest packet the wire format can express: fixed header byte, 4 length bytes, body. */
export const MAX_PACKET_BYTES = 1 + 4 + MAX_REMAINING_LENGTH

/** States of the decoder's state machine. */
enum DecoderState {
    /** Waiting for the first byte of a fixed header. */
    FixedHeader = 0,
    /** Reading the 1..4 bytes of the remaining length. */
    RemainingLength = 1,
    /** Collecting the body into `body`. */
    Body = 2,
    /** A protocol error happened; nothing more is decoded until reset(). */
    Dead = 3,
    /** Skipping the body of a PUBLISH over the size limit, reading only its packet id. */
    Skip = 4,
}

function failure(error: ProtocolError, detail: string): DecodeFailure {
    return { error: error, message: detail }
}

/**
 * Checks that bytes [start, end) are well-formed UTF-8 (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF) without U+0000. Returns 0 when
 * valid, else the ProtocolError. Done by hand because DeviceScript's toString does
 * not reject bad UTF-8.
 */
export function checkUtf8(bytes: Buffer, start: number, end: number): number {
    let i = start
    while (i < end) {
        const first = bytes[i]
        if (first < 0x80) {
            if (first === 0) return ProtocolError.NullCharacter
            i++
            continue
        }
        let continuationCount = 0
        // Allowed range of the second byte; later bytes are always 0x80..0xBF.
        let secondMin = 0x80
        let secondMax = 0xbf
        if (first >= 0xc2 && first <= 0xdf) {
            continuationCount = 1
        } else if (first >= 0xe0 && first <= 0xef) {
            continuationCount = 2
            if (first === 0xe0)
                secondMin = 0xa0 // overlong
            else if (first === 0xed) secondMax = 0x9f // surrogates
        } else if (first >= 0xf0 && first <= 0xf4) {
            continuationCount = 3
            if (first === 0xf0)
                secondMin = 0x90 // overlong
            else if (first === 0xf4) secondMax = 0x8f // above U+10FFFF
        } else {
            return ProtocolError.InvalidUtf8
        }
        if (i + continuationCount >= end) return ProtocolError.InvalidUtf8
        const second = bytes[i + 1]
        if (second < secondMin || second > secondMax) return ProtocolError.InvalidUtf8
        for (let k = 2; k <= continuationCount; k++) {
            const next = bytes[i + k]
            if (next < 0x80 || next > 0xbf) return ProtocolError.InvalidUtf8
        }
        i += continuationCount + 1
    }
    return 0
}

/**
 * Reads the fields of one complete body. On the first problem it records a
 * failure and every later read returns a harmless default, so parse functions
 * check `failed` once per step instead of after every read.
 */
class BodyReader {
    position = 0
    failed: DecodeFailure = null

    constructor(
        readonly body: Buffer,
        readonly packetName: string
    ) {}

    fail(error: ProtocolError, detail: string) {
        if (this.failed === null) this.failed = failure(error, `${this.packetName}: ${detail}`)
    }

    remaining(): number {
        return this.body.length - this.position
    }

    readByte(what: string): number {
        if (this.failed !== null) return 0
        if (this.remaining() < 1) {
            this.fail(ProtocolError.PacketTruncated, `no room for ${what}`)
            return 0
        }
        const value = this.body[this.position]
        this.position++
        return value
    }

    /** Big-endian, [MQTT-1.5.2]. */
    readUint16(what: string): number {
        if (this.failed !== null) return 0
        if (this.remaining() < 2) {
            this.fail(ProtocolError.PacketTruncated, `no room for ${what}`)
            return 0
        }
        const value = (this.body[this.position] << 8) | this.body[this.position + 1]
        this.position += 2
        return value
    }

    readPacketId(): number {
        const packetId = this.readUint16("packet id")
        if (this.failed === null && packetId === 0) this.fail(ProtocolError.PacketIdZero, "packet id is 0")
        return packetId
    }

    /** A 2-byte length followed by that many bytes, [MQTT-1.5.6]; returns its start. */
    private readLengthPrefixedStart(what: string): number {
        const length = this.readUint16(`length of ${what}`)
        if (this.failed !== null) return -1
        if (length > this.remaining()) {
            this.fail(ProtocolError.FieldOverrunsPacket, `${what} claims ${length} bytes, ${this.remaining()} left`)
            return -1
        }
        const start = this.position
        this.position += length
        return start
    }

    readBinary(what: string): Buffer {
        const start = this.readLengthPrefixedStart(what)
        if (start < 0) return null
        return this.body.slice(start, this.position)
    }

    /** The raw bytes of a UTF-8 string field, checked for well-formedness and U+0000. */
    readStringBytes(what: string): Buffer {
        const start = this.readLengthPrefixedStart(what)
        if (start < 0) return null
        const problem = checkUtf8(this.body, start, this.position)
        if (problem === ProtocolError.NullCharacter) {
            this.fail(ProtocolError.NullCharacter, `${what} contains U+0000`)
            return null
        }
        if (problem !== 0) {
            this.fail(ProtocolError.InvalidUtf8, `${what} is not UTF-8`)
            return null
        }
        return this.body.slice(start, this.position)
    }

    readString(what: string): string {
        const bytes = this.readStringBytes(what)
        if (bytes === null) return null
        return bytes.toString()
    }

    readTopicName(what: string): string {
        const bytes = this.readStringBytes(what)
        if (bytes === null) return null
        const problem = validateTopicNameBytes(bytes)
        if (problem !== null) {
            this.fail(ProtocolError.InvalidTopicName, `${what}: ${problem}`)
            return null
        }
        return bytes.toString()
    }

    readTopicFilter(what: string): string {
        const bytes = this.readStringBytes(what)
        if (bytes === null) return null
        const problem = validateTopicFilterBytes(bytes)
        if (problem !== null) {
            this.fail(ProtocolError.InvalidTopicFilter, `${what}: ${problem}`)
            return null
        }
        return bytes.toString()
    }

    /** The result: the failure if any, else the packet. */
    finish(packet: Packet): DecodeResult {
        if (this.failed !== null) return this.failed
        return { packet: packet }
    }
}

const PACKET_NAMES: string[] = [
    "reserved packet type 0",
    "CONNECT",
    "CONNACK",
    "PUBLISH",
    "PUBACK",
    "PUBREC",
    "PUBREL",
    "PUBCOMP",
    "SUBSCRIBE",
    "SUBACK",
    "UNSUBSCRIBE",
    "UNSUBACK",
    "PINGREQ",
    "PINGRESP",
    "DISCONNECT",
    "reserved packet type 15",
]

/** Remaining length of packets that have a fixed size, -1 for variable-size ones. */
function fixedRemainingLength(type: number): number {
    switch (type) {
        case PacketType.Connack:
        case PacketType.Puback:
        case PacketType.Pubrec:
        case PacketType.Pubrel:
        case PacketType.Pubcomp:
        case PacketType.Unsuback:
            return 2
        case PacketType.Pingreq:
        case PacketType.Pingresp:
        case PacketType.Disconnect:
            return 0
        default:
            return -1
    }
}

function hexByte(value: number): string {
    const digits = "0123456789abcdef"
    return "0x" + digits[(value >> 4) & 15] + digits[value & 15]
}

function decodeConnect(reader: BodyReader): DecodeResult {
    const name = reader.readStringBytes("protocol name")
    if (reader.failed !== null) return reader.failed
    if (name.length !== 4 || name[0] !== 0x4d || name[1] !== 0x51 || name[2] !== 0x54 || name[3] !== 0x54) {
        reader.fail(ProtocolError.InvalidProtocolName, `got "${name.toString()}"`)
        return reader.failed
    }
    const level = reader.readByte("protocol level")
    const flags = reader.readByte("connect flags")
    if (reader.failed !== null) return reader.failed
    if (level !== PROTOCOL_LEVEL) {
        reader.fail(ProtocolError.UnsupportedProtocolLevel, `got ${level}`)
        return reader.failed
    }
    if (flags & 0x01) {
        reader.fail(ProtocolError.ConnectReservedFlag, `flags ${hexByte(flags)}`)
        return reader.failed
    }
    const hasWill = (flags & CONNECT_FLAG_WILL) !== 0
    const willQos = (flags >> CONNECT_FLAG_WILL_QOS_SHIFT) & 3
    const willRetain = (flags & CONNECT_FLAG_WILL_RETAIN) !== 0
    if (willQos === 3 || (!hasWill && (willQos !== 0 || willRetain))) {
        reader.fail(ProtocolError.InvalidWillFlags, `flags ${hexByte(flags)}`)
        return reader.failed
    }
    const hasUsername = (flags & CONNECT_FLAG_USERNAME) !== 0
    const hasPassword = (flags & CONNECT_FLAG_PASSWORD) !== 0
    if (hasPassword && !hasUsername) {
        reader.fail(ProtocolError.PasswordWithoutUsername, `flags ${hexByte(flags)}`)
        return reader.failed
    }
    const keepaliveS = reader.readUint16("keepalive")
    const clientId = reader.readString("client id")
    const packet: ConnectPacket = {
        type: PacketType.Connect,
        clientId: clientId,
        keepaliveS: keepaliveS,
        cleanSession: (flags & CONNECT_FLAG_CLEAN_SESSION) !== 0,
    }
    if (hasWill) {
        const topic = reader.readTopicName("will topic")
        const payload = reader.readBinary("will payload")
        const will: Will = {
            topic: topic,
            payload: payload,
            qos: willQos,
            retain: willRetain,
        }
        packet.will = will
    }
    if (hasUsername) packet.username = reader.readString("username")
    if (hasPassword) packet.password = reader.readBinary("password")
    if (reader.failed === null && reader.remaining() > 0)
        reader.fail(ProtocolError.TrailingBytes, `${reader.remaining()} bytes after the last field`)
    return reader.finish(packet)
}

function decodeConnack(reader: BodyReader): DecodeResult {
    const acknowledgeFlags = reader.readByte("acknowledge flags")
    const returnCode = reader.readByte("return code")
    if (reader.failed !== null) return reader.failed
    if (acknowledgeFlags > 1) {
        reader.fail(ProtocolError.ConnackReservedFlags, `flags ${hexByte(acknowledgeFlags)}`)
    } else if (returnCode > 5) {
        reader.fail(ProtocolError.InvalidConnackReturnCode, `return code ${returnCode}`)
    } else if (acknowledgeFlags === 1 && returnCode !== 0) {
        reader.fail(ProtocolError.SessionPresentWithRefusal, `return code ${returnCode}`)
    }
    const packet: ConnackPacket = {
        type: PacketType.Connack,
        sessionPresent: acknowledgeFlags === 1,
        returnCode: returnCode,
    }
    return reader.finish(packet)
}

function decodePublish(reader: BodyReader, flags: number): DecodeResult {
    const qos = (flags >> 1) & 3
    const topic = reader.readTopicName("topic")
    const packet: PublishPacket = {
        type: PacketType.Publish,
        topic: topic,
        payload: null,
        qos: qos,
        dup: (flags & 0x08) !== 0,
        retain: (flags & 0x01) !== 0,
    }
    if (qos > 0) packet.packetId = reader.readPacketId()
    if (reader.failed !== null) return reader.failed
    packet.payload = reader.body.slice(reader.position, reader.body.length)
    return reader.finish(packet)
}

function decodeSubscribe(reader: BodyReader): DecodeResult {
    const packetId = reader.readPacketId()
    if (reader.failed === null && reader.remaining() === 0) reader.fail(ProtocolError.EmptyPayload, "no topic filter")
    const subscriptions: Subscription[] = []
    while (reader.failed === null && reader.remaining() > 0) {
        const topic = reader.readTopicFilter("topic filter")
        const options = reader.readByte("requested QoS")
        if (reader.failed !== null) break
        if (options > 2) {
            reader.fail(ProtocolError.InvalidSubscriptionOptions, `requested QoS byte ${hexByte(options)}`)
            break
        }
        subscriptions.push({ topic: topic, qos: options })
    }
    return reader.finish({
        type: PacketType.Subscribe,
        packetId: packetId,
        subscriptions: subscriptions,
    })
}

function decodeSuback(reader: BodyReader): DecodeResult {
    const packetId = reader.readPacketId()
    if (reader.failed === null && reader.remaining() === 0) reader.fail(ProtocolError.EmptyPayload, "no return code")
    const returnCodes: number[] = []
    while (reader.failed === null && reader.remaining() > 0) {
        const code = reader.readByte("return code")
        if (code > 2 && code !== SUBACK_FAILURE) {
            reader.fail(ProtocolError.InvalidSubackReturnCode, `return code ${hexByte(code)}`)
            break
        }
        returnCodes.push(code)
    }
    return reader.finish({
        type: PacketType.Suback,
        packetId: packetId,
        returnCodes: returnCodes,
    })
}

function decodeUnsubscribe(reader: BodyReader): DecodeResult {
    const packetId = reader.readPacketId()
    if (reader.failed === null && reader.remaining() === 0) reader.fail(ProtocolError.EmptyPayload, "no topic filter")
    const topics: string[] = []
    while (reader.failed === null && reader.remaining() > 0) {
        const topic = reader.readTopicFilter("topic filter")
        if (reader.failed !== null) break
        topics.push(topic)
    }
    return reader.finish({
        type: PacketType.Unsubscribe,
        packetId: packetId,
        topics: topics,
    })
}

/**
 * Decodes a complete body whose fixed header was already checked: the packets a server sends.
 * The ones only clients send are a protocol error, and their decoders stay out of the firmware.
 */
function decodeServerPacketBody(type: number, flags: number, body: Buffer): DecodeResult {
    const reader = new BodyReader(body, PACKET_NAMES[type])
    switch (type) {
        case PacketType.Connack:
            return decodeConnack(reader)
        case PacketType.Publish:
            return decodePublish(reader, flags)
        case PacketType.Puback:
        case PacketType.Pubrec:
        case PacketType.Pubrel:
        case PacketType.Pubcomp:
        case PacketType.Unsuback: {
            const packetId = reader.readPacketId()
            return reader.finish({ type: type, packetId: packetId })
        }
        case PacketType.Suback:
            return decodeSuback(reader)
        case PacketType.Pingresp:
            return reader.finish({ type: type })
        case PacketType.Connect:
        case PacketType.Subscribe:
        case PacketType.Unsubscribe:
        case PacketType.Pingreq:
        case PacketType.Disconnect:
            return failure(ProtocolError.ClientOnlyPacket, PACKET_NAMES[type])
        default:
            return failure(ProtocolError.ReservedPacketType, `type ${type}`)
    }
}

/** Decodes a complete body whose fixed header was already checked: any packet type. */
function decodeAnyPacketBody(type: number, flags: number, body: Buffer): DecodeResult {
    switch (type) {
        case PacketType.Connect:
            return decodeConnect(new BodyReader(body, PACKET_NAMES[type]))
        case PacketType.Subscribe:
            return decodeSubscribe(new BodyReader(body, PACKET_NAMES[type]))
        case PacketType.Unsubscribe:
            return decodeUnsubscribe(new BodyReader(body, PACKET_NAMES[type]))
        case PacketType.Pingreq:
        case PacketType.Disconnect:
            return new BodyReader(body, PACKET_NAMES[type]).finish({ type: type })
        default:
            return decodeServerPacketBody(type, flags, body)
    }
}

/**
 * Longest topic of a PUBLISH the client decodes; a longer one is skipped. The node's own topics
 * (commands, time) are far shorter, and checking a topic's UTF-8 costs VM steps per byte.
 */
export const MAX_TOPIC_BYTES = 256

/** PUBACK's fixed header byte: type 4, flags 0 [MQTT-3.4.1]. */
const PUBACK_FIRST_BYTE = 0x40

/** Body parts up to this size are copied byte by byte instead of through a slice. */
const SMALL_COPY_BYTES = 8

/**
 * A client's streaming decoder: the packets a server sends (CONNACK, PUBLISH, the acknowledgements,
 * SUBACK, UNSUBACK, PINGRESP). PacketDecoder below decodes every type.
 */
export class ClientPacketDecoder {
    /** Largest whole packet (fixed header included) accepted, in bytes. */
    readonly maxPacketBytes: number

    private state = DecoderState.FixedHeader
    /** Chunks pushed and not yet consumed; the first is read from `chunkOffset`. */
    private chunks: Buffer[] = []
    private chunkIndex = 0
    private chunkOffset = 0
    private pendingBytes = 0

    private packetType = 0
    private headerFlags = 0
    private remainingLength = 0
    private remainingLengthBytes = 0
    private remainingLengthMultiplier = 1
    private body: Buffer = null
    private bodyFilled = 0
    private failure: DecodeFailure = null
    /** While skipping an oversized PUBLISH: its topic length (-1 until read) and packet id so far. */
    private skipTopicBytes = -1
    private skipPacketId = 0

    /**
     * maxPacketBytes bounds a whole packet, fixed header included; larger packets
     * are rejected with PacketTooLarge as soon as their remaining length is known,
     * before any of their body is buffered. Values below 2 or above the protocol
     * maximum are clamped.
     */
    constructor(
        maxPacketBytes: number,
        /** Longest PUBLISH topic decoded; a longer one is skipped like an oversized packet. */
        readonly maxTopicBytes = MAX_TOPIC_BYTES
    ) {
        let limit = Math.floor(maxPacketBytes)
        if (!(limit >= 2)) limit = 2
        if (limit > MAX_PACKET_BYTES) limit = MAX_PACKET_BYTES
        this.maxPacketBytes = limit
    }

    /**
     * Adds received bytes. Never throws and copies nothing: the chunk is read in
     * place by next(), so do not modify it afterwards. A dead decoder drops it.
     */
    push(chunk: Buffer) {
        if (this.state === DecoderState.Dead) return
        if (!chunk || !(chunk.length > 0)) return
        this.chunks.push(chunk)
        this.pendingBytes += chunk.length
    }

    /**
     * Decodes the next packet. Returns null when more bytes are needed (or the
     * decoder is dead), a DecodedPacket, or once a DecodeFailure after which the
     * decoder is dead until reset(). Never throws; consumes only the bytes of one
     * packet per call.
     */
    next(): DecodeResult | null {
        for (;;) {
            if (this.state === DecoderState.Dead) return null
            if (this.state === DecoderState.Body && this.bodyFilled === this.remainingLength)
                return this.completePacket()
            if (this.chunkIndex >= this.chunks.length) {
                this.dropConsumedChunks()
                return null
            }
            const packetId = this.nextPuback()
            if (packetId) return { packet: { type: PacketType.Puback, packetId: packetId } }
            const chunk = this.chunks[this.chunkIndex]
            if (this.state === DecoderState.Body) {
                this.collectBody(chunk)
            } else if (this.state === DecoderState.Skip) {
                const skipped = this.skipBody(chunk)
                if (skipped !== null) return skipped
            } else {
                const byte = chunk[this.chunkOffset]
                this.advance(1)
                const result =
                    this.state === DecoderState.FixedHeader
                        ? this.readFixedHeaderByte(byte)
                        : this.readRemainingLengthByte(byte)
                if (result !== null) return result
            }
        }
    }

    /**
     * The fast path for what a publishing client receives most: when the next packet is a whole,
     * valid PUBACK within one chunk, consumes it and returns its packet id, without a body buffer,
     * a state machine or a packet object. Otherwise returns 0 and consumes nothing: next() then
     * decodes whatever comes (a PUBACK split between chunks, or with id 0, included).
     */
    nextPuback(): number {
        if (this.state !== DecoderState.FixedHeader || this.chunkIndex >= this.chunks.length) return 0
        const chunk = this.chunks[this.chunkIndex]
        const at = this.chunkOffset
        if (chunk[at] !== PUBACK_FIRST_BYTE || at + 4 > chunk.length || chunk[at + 1] !== 2) return 0
        const packetId = chunk[at + 2] * 256 + chunk[at + 3]
        if (packetId === 0) return 0
        // What advance(4) does, inline: this runs for every PUBACK.
        this.pendingBytes -= 4
        if (at + 4 < chunk.length) this.chunkOffset = at + 4
        else {
            this.chunks[this.chunkIndex] = null
            this.chunkIndex++
            this.chunkOffset = 0
        }
        return packetId
    }

    /**
     * Makes a dead (or busy) decoder usable again, forgetting all pushed bytes and
     * any partly read packet. Use it for a new connection.
     */
    reset() {
        this.chunks = []
        this.chunkIndex = 0
        this.chunkOffset = 0
        this.pendingBytes = 0
        this.failure = null
        this.startPacket()
    }

    /** The failure that killed the decoder, or null while it is alive. */
    deadReason(): DecodeFailure | null {
        return this.failure
    }

    /**
     * Bytes the decoder itself has allocated for the packet being read: the
     * preallocated body, at most maxPacketBytes. Pushed chunks are not counted.
     */
    bufferedBytes(): number {
        return this.body === null ? 0 : this.body.length
    }

    /** Bytes pushed but not yet consumed by next(). */
    pendingInputBytes(): number {
        return this.pendingBytes
    }

    private startPacket() {
        this.state = DecoderState.FixedHeader
        this.packetType = 0
        this.headerFlags = 0
        this.remainingLength = 0
        this.remainingLengthBytes = 0
        this.remainingLengthMultiplier = 1
        this.body = null
        this.bodyFilled = 0
    }

    private die(result: DecodeFailure): DecodeFailure {
        this.startPacket()
        this.state = DecoderState.Dead
        this.failure = result
        this.chunks = []
        this.chunkIndex = 0
        this.chunkOffset = 0
        this.pendingBytes = 0
        return result
    }

    private advance(count: number) {
        this.chunkOffset += count
        this.pendingBytes -= count
        if (this.chunkOffset >= this.chunks[this.chunkIndex].length) {
            this.chunks[this.chunkIndex] = null
            this.chunkIndex++
            this.chunkOffset = 0
        }
    }

    private dropConsumedChunks() {
        if (this.chunkIndex > 0) {
            this.chunks = []
            this.chunkIndex = 0
            this.chunkOffset = 0
        }
    }

    private readFixedHeaderByte(byte: number): DecodeResult | null {
        const type = byte >> 4
        const flags = byte & 0x0f
        if (type === 0 || type === 15) return this.die(failure(ProtocolError.ReservedPacketType, `type ${type}`))
        if (type === PacketType.Publish) {
            const qos = (flags >> 1) & 3
            if (qos === 3) return this.die(failure(ProtocolError.InvalidQos, `first byte ${hexByte(byte)}`))
            if (qos === 0 && (flags & 0x08) !== 0)
                return this.die(failure(ProtocolError.DupWithQos0, `first byte ${hexByte(byte)}`))
        } else if (flags !== REQUIRED_HEADER_FLAGS[type]) {
            return this.die(
                failure(
                    ProtocolError.InvalidHeaderFlags,
                    `${PACKET_NAMES[type]} needs flags ${hexByte(REQUIRED_HEADER_FLAGS[type])}, got ${hexByte(flags)}`
                )
            )
        }
        this.packetType = type
        this.headerFlags = flags
        this.state = DecoderState.RemainingLength
        return null
    }

    /** [MQTT-2.2.3]: 7 bits per byte, least significant first, top bit = more. */
    private readRemainingLengthByte(byte: number): DecodeResult | null {
        this.remainingLength += (byte & 0x7f) * this.remainingLengthMultiplier
        this.remainingLengthMultiplier *= 128
        this.remainingLengthBytes++
        if (byte & 0x80) {
            if (this.remainingLengthBytes >= 4)
                return this.die(failure(ProtocolError.MalformedRemainingLength, "continuation bit set in the 4th byte"))
            return null
        }
        const type = this.packetType
        const expected = fixedRemainingLength(type)
        if (expected >= 0 && this.remainingLength !== expected)
            return this.die(
                failure(
                    ProtocolError.UnexpectedRemainingLength,
                    `${PACKET_NAMES[type]} needs remaining length ${expected}, got ${this.remainingLength}`
                )
            )
        const packetBytes = 1 + this.remainingLengthBytes + this.remainingLength
        if (packetBytes > this.maxPacketBytes && type === PacketType.Publish) {
            // A message too large for us is skipped, not a reason to close: closing would make the
            // broker send it again on every reconnect. Only its packet id is kept, to acknowledge it.
            this.state = DecoderState.Skip
            this.bodyFilled = 0
            this.skipTopicBytes = -1
            this.skipPacketId = 0
            return null
        }
        if (packetBytes > this.maxPacketBytes)
            return this.die(
                failure(
                    ProtocolError.PacketTooLarge,
                    `${PACKET_NAMES[type]} of ${packetBytes} bytes, limit ${this.maxPacketBytes}`
                )
            )
        this.state = DecoderState.Body
        this.body = Buffer.alloc(this.remainingLength)
        this.bodyFilled = 0
        return null
    }

    private collectBody(chunk: Buffer) {
        const available = chunk.length - this.chunkOffset
        const needed = this.remainingLength - this.bodyFilled
        const count = available < needed ? available : needed
        if (this.chunkOffset === 0 && count === chunk.length) this.body.set(chunk, this.bodyFilled)
        else if (count <= SMALL_COPY_BYTES)
            // Acknowledgements have 2-byte bodies: a byte loop beats allocating a slice in the VM.
            for (let i = 0; i < count; i++) this.body[this.bodyFilled + i] = chunk[this.chunkOffset + i]
        else this.body.set(chunk.slice(this.chunkOffset, this.chunkOffset + count), this.bodyFilled)
        this.bodyFilled += count
        this.advance(count)
    }

    /**
     * Consumes what `chunk` holds of an oversized PUBLISH's body, in one step however long it is,
     * picking out the topic length (its first two bytes) and the packet id (the two bytes after
     * the topic). Returns the skipped message once its last byte is consumed, else null.
     */
    private skipBody(chunk: Buffer): DecodeResult | null {
        const from = this.bodyFilled
        const available = chunk.length - this.chunkOffset
        const needed = this.remainingLength - from
        const count = available < needed ? available : needed
        // Visits only the bytes wanted, jumping over the topic and the payload: a megabyte costs
        // the same few steps as a kilobyte. Byte 0 and 1 come before any other, so the topic
        // length is known by the time the jump needs it.
        const end = from + count
        let at = from
        while (at < end) {
            const byte = chunk[this.chunkOffset + at - from]
            const topicEnd = 2 + this.skipTopicBytes
            if (at === 0) this.skipTopicBytes = byte * 256
            else if (at === 1) this.skipTopicBytes += byte
            else if (at < topicEnd) {
                at = topicEnd
                continue
            } else if (at < topicEnd + 2) this.skipPacketId = this.skipPacketId * 256 + byte
            else break
            at++
        }
        this.bodyFilled += count
        this.advance(count)
        if (this.bodyFilled < this.remainingLength) return null
        return this.skippedPublish(
            `a message of ${1 + this.remainingLengthBytes + this.remainingLength} bytes`,
            this.skipPacketId
        )
    }

    /** The PUBLISH just read, without its topic and payload: `what` went over a limit. */
    private skippedPublish(what: string, packetId: number): DecodeResult {
        const flags = this.headerFlags
        const qos = (flags >> 1) & 3
        if (qos && !packetId) return this.die(failure(ProtocolError.PacketIdZero, "skipped PUBLISH"))
        this.startPacket()
        const packet: PublishPacket = {
            type: PacketType.Publish,
            topic: "",
            payload: Buffer.alloc(0),
            qos,
            dup: (flags & 0x08) !== 0,
            retain: (flags & 0x01) !== 0,
            skipped: what,
        }
        if (qos) packet.packetId = packetId
        return { packet }
    }

    private completePacket(): DecodeResult {
        const body = this.body
        const topicBytes = body.length >= 2 ? body[0] * 256 + body[1] : 0
        if (this.packetType === PacketType.Publish && topicBytes > this.maxTopicBytes) {
            // Validating a topic costs VM steps per byte: a long one would stop the program.
            const packetId = body.length >= topicBytes + 4 ? body[topicBytes + 2] * 256 + body[topicBytes + 3] : 0
            return this.skippedPublish(`a topic of ${topicBytes} bytes`, packetId)
        }
        const result = this.decodeBody(this.packetType, this.headerFlags, this.body)
        if (result.error) return this.die(result as DecodeFailure)
        this.startPacket()
        return result
    }

    protected decodeBody(type: number, flags: number, body: Buffer): DecodeResult {
        return decodeServerPacketBody(type, flags, body)
    }
}

/** The streaming decoder for every packet type, both directions: for brokers and conformance tests. */
export class PacketDecoder extends ClientPacketDecoder {
    constructor(maxPacketBytes: number) {
        super(maxPacketBytes, 65535)
    }

    protected override decodeBody(type: number, flags: number, body: Buffer): DecodeResult {
        return decodeAnyPacketBody(type, flags, body)
    }
}
