// Streaming decoder of what an MQTT client receives, MQTT 3.1.1 or MQTT 5: wire bytes in arbitrary
// chunks to Packet values. Pure core: imports nothing from @devicescript, runs unchanged in Node and
// in the VM.
// Spec: http://docs.oasis-open.org/mqtt/mqtt/v3.1.1/os/mqtt-v3.1.1-os.html
//       https://docs.oasis-open.org/mqtt/mqtt/v5.0/os/mqtt-v5.0-os.html
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
// It decodes the packets a server sends (CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP,
// SUBACK, UNSUBACK, PINGRESP, and in MQTT 5 DISCONNECT and AUTH); one only clients send is a
// protocol error. In MQTT 5 it also reads reason codes and properties, and checks each property
// against its packet: known, allowed there, not repeated where the spec allows it once, of a value
// in its range, inside the property length. Rules that depend on what was negotiated or on the
// direction (a topic alias above the maximum the client announced, a session expiry interval in a
// server's DISCONNECT) are the session's to check. The decoder of every type, for tests and
// conformance checks, extends it in test/fixtures/mqtt-codec.ts.
//
// Memory: push() keeps a reference to the chunk (it copies nothing unless the previous chunk was
// not drained yet) until next() has consumed it, so push one chunk, then call next() until it
// returns null. The only other bytes the decoder copies are the body of the packet being read,
// collected into one Buffer allocated at the announced length, which is never more than
// maxPacketBytes.

import { splitAt } from "../util/arrays"
import { Mqtt5Codec, Packet, PacketType, PublishPacket } from "./packets"

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
    /** CONNECT protocol level is not the decoder's (4 for MQTT 3.1.1, 5 for MQTT 5), [MQTT-3.1.2-2]. */
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
    /**
     * A packet only clients send (CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, and in 3.1.1 DISCONNECT)
     * came from the server.
     */
    ClientOnlyPacket = 27,
    /** MQTT 5: a property identifier the spec does not define, [MQTT-2.2.2.2]. */
    UnknownProperty = 28,
    /** MQTT 5: a property its packet may not carry, [MQTT-2.2.2.2]. */
    PropertyNotAllowed = 29,
    /** MQTT 5: a property included more than once where the spec allows it once, [MQTT-2.2.2.2]. */
    DuplicateProperty = 30,
    /** MQTT 5: a property value outside its range (0 where it must not be 0, a byte other than 0 or 1). */
    InvalidPropertyValue = 31,
    /** MQTT 5: the property length runs past the packet, or a property past the property length, [MQTT-2.2.2.1]. */
    PropertyLengthOverrun = 32,
    /** MQTT 5: a reason code its packet may not carry, [MQTT-2.4]. */
    InvalidReasonCode = 33,
    /** MQTT 5: a Variable Byte Integer inside the body continued past its 4th byte, [MQTT-1.5.5]. */
    MalformedVariableByteInteger = 34,
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
[MQTT-3.1.2-2] CONNECT protocol level is not the expected one
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
a server sent a packet only clients send
[MQTT-2.2.2.2] property identifier not defined by MQTT 5
[MQTT-2.2.2.2] property not allowed in this packet
[MQTT-2.2.2.2] property included more than once
[MQTT-2.2.2.2] property value out of its range
[MQTT-2.2.2.1] property runs past the property length or the packet
[MQTT-2.4] reason code not allowed in this packet
[MQTT-1.5.5] variable byte integer longer than 4 bytes`,
    "\n"
)

/** One line describing `error`, citing the spec clause. */
export function protocolErrorText(error: ProtocolError): string {
    return (error > 0 && PROTOCOL_ERROR_TEXTS[error]) || `unknown protocol error ${error}`
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
export const MAX_PACKET_BYTES = 1 + 4 + 268435455

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

/**
 * Checks that bytes [start, end) are well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF) without U+0000, and with `topicName` also a topic name: not
 * empty, without the wildcards + and # [MQTT-4.7.3-1], [MQTT-3.3.2-2]. Returns 0 when valid, else
 * the ProtocolError (InvalidUtf8, NullCharacter or InvalidTopicName). Done by hand because
 * DeviceScript's toString does not reject bad UTF-8. UTF-8 never uses an ASCII byte inside a
 * multi-byte character, so the bytes of + and # are those characters.
 */
export function checkUtf8(bytes: Buffer, start: number, end: number, topicName?: boolean): number {
    if (topicName && start === end) return ProtocolError.InvalidTopicName
    let i = start
    while (i < end) {
        const first = bytes[i]
        if (first < 0x80) {
            if (first === 0) return ProtocolError.NullCharacter
            if (topicName && (first === 0x2b || first === 0x23)) return ProtocolError.InvalidTopicName
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
 * The name of each packet type, for error messages. One literal: see PROTOCOL_ERROR_TEXTS. Type 0
 * is reserved and never named; its place names a will's properties, which have their own set.
 */
export const PACKET_NAMES = splitAt(
    "will CONNECT CONNACK PUBLISH PUBACK PUBREC PUBREL PUBCOMP SUBSCRIBE SUBACK UNSUBSCRIBE UNSUBACK PINGREQ PINGRESP DISCONNECT AUTH",
    " "
)

/**
 * Per packet type 0..15, the fixed header flags it must carry [MQTT-2.2.2-1] (PUBLISH has its own
 * rules, the reserved types are refused before, and type 15 only exists in MQTT 5), and the
 * remaining length of the fixed-size packets ("-": variable) in 3.1.1 and in MQTT 5.
 */
const HEADER_FLAGS = "-00-002020200000"
const FIXED_LENGTHS = "--2-2222---2000-"
const FIXED_LENGTHS_5 = "------------00--"

export const HEX_DIGITS = "0123456789abcdef"

export function hexByte(value: number): string {
    return "0x" + HEX_DIGITS[(value >> 4) & 15] + HEX_DIGITS[value & 15]
}

/** A PUBLISH of the first byte's `flags` without topic and payload yet. */
function publishPacket(flags: number): PublishPacket {
    return {
        type: PacketType.Publish,
        topic: "",
        payload: EMPTY,
        qos: (flags >> 1) & 3,
        dup: (flags & 0x08) !== 0,
        retain: (flags & 0x01) !== 0,
    }
}

const EMPTY = Buffer.alloc(0)

/**
 * Longest topic of a PUBLISH the client decodes; a longer one is skipped. The node's own topics
 * (commands, time) are far shorter, and checking a topic's UTF-8 costs VM steps per byte.
 */
export const MAX_TOPIC_BYTES = 256

/** PUBACK's fixed header byte: type 4, flags 0 [MQTT-3.4.1]. */
const PUBACK_FIRST_BYTE = 0x40

/**
 * A client's streaming decoder: the packets a server sends (CONNACK, PUBLISH, the acknowledgements,
 * SUBACK, UNSUBACK, PINGRESP, and in MQTT 5 DISCONNECT and AUTH).
 * @devsWhenUsed
 */
export class ClientPacketDecoder {
    protected state = DecoderState.FixedHeader
    /** The chunk being read, from `offset`; null once consumed. */
    protected chunk: Buffer = null
    protected offset = 0
    private packetType = 0
    private headerFlags = 0
    private remainingLength = 0
    private remainingLengthBytes = 0
    protected body: Buffer = null
    private bodyFilled = 0
    /** While skipping an oversized PUBLISH: its topic length and packet id as far as read. */
    private skipTopicBytes = 0
    private skipPacketId = 0
    /** Decodes a complete body whose fixed header was checked; a decoder of every type replaces it. */
    protected decodeBody = decodeServerPacketBody

    /**
     * maxPacketBytes bounds a whole packet, fixed header included (at least 2); larger packets are
     * rejected with PacketTooLarge as soon as their remaining length is known, before any of their
     * body is buffered, except a PUBLISH, which is skipped (only its packet id read, to
     * acknowledge it) and returned with `skipped` set; so is a PUBLISH whose topic is longer than
     * maxTopicBytes. `mqtt5` is the protocol version the connection speaks (what CONNECT asked for):
     * MQTT5 of src/mqtt/mqtt5.ts for MQTT 5, nothing for 3.1.1; a client sets it for each connection.
     */
    constructor(
        readonly maxPacketBytes: number,
        readonly maxTopicBytes: number,
        public mqtt5?: Mqtt5Codec
    ) {}

    /**
     * Adds received bytes. Never throws and copies nothing unless bytes of the previous chunk are
     * still unread: the chunk is read in place by next(), so do not modify it afterwards. A dead
     * decoder drops it.
     */
    push(chunk: Buffer) {
        if (this.state === DecoderState.Dead || !chunk || !(chunk.length > 0)) return
        const previous = this.chunk
        if (previous) {
            const rest = previous.length - this.offset
            const joined = Buffer.alloc(rest + chunk.length)
            joined.set(previous.slice(this.offset), 0)
            joined.set(chunk, rest)
            chunk = joined
        }
        this.chunk = chunk
        this.offset = 0
    }

    /**
     * Decodes the next packet. Returns null when more bytes are needed (or the
     * decoder is dead), a DecodedPacket, or once a DecodeFailure after which the
     * decoder is dead until reset(). Never throws; consumes only the bytes of one
     * packet per call.
     */
    next(): DecodeResult | null {
        for (;;) {
            const state = this.state
            if (state === DecoderState.Dead) return null
            if (state >= DecoderState.Body && this.bodyFilled === this.remainingLength) return this.completePacket()
            const chunk = this.chunk
            const at = this.offset
            if (!chunk) return null
            if (state >= DecoderState.Body) {
                // What the chunk holds of the body, in one step however long it is.
                const from = this.bodyFilled
                const count = Math.min(chunk.length - at, this.remainingLength - from)
                if (state === DecoderState.Body) this.body.set(chunk.slice(at, at + count), from)
                else {
                    // An oversized PUBLISH: only its topic length (bytes 0 and 1) and the packet id
                    // after the topic are read, jumping over the rest. Bytes 0 and 1 come first, so
                    // the topic length is whole by the time the jump needs it.
                    const end = from + count
                    const base = at - from
                    let i = from
                    for (; i < end && i < 2; i++) this.skipTopicBytes = this.skipTopicBytes * 256 + chunk[base + i]
                    const idAt = 2 + this.skipTopicBytes
                    for (i = i > idAt ? i : idAt; i < end && i < idAt + 2; i++)
                        this.skipPacketId = this.skipPacketId * 256 + chunk[base + i]
                }
                this.bodyFilled = from + count
                this.consume(at + count)
                continue
            }
            const byte = chunk[at]
            this.consume(at + 1)
            if (state === DecoderState.FixedHeader) {
                const type = byte >> 4
                const flags = byte & 0x0f
                if (type === 0 || (type === 15 && !this.mqtt5))
                    return this.die(ProtocolError.ReservedPacketType, `type ${type}`)
                if (type === PacketType.Publish) {
                    const qos = (flags >> 1) & 3
                    if (qos === 3) return this.die(ProtocolError.InvalidQos, `first byte ${hexByte(byte)}`)
                    if (qos === 0 && (flags & 0x08) !== 0)
                        return this.die(ProtocolError.DupWithQos0, `first byte ${hexByte(byte)}`)
                } else {
                    const required = HEADER_FLAGS.charCodeAt(type) - 48
                    if (flags !== required)
                        return this.die(
                            ProtocolError.InvalidHeaderFlags,
                            `${PACKET_NAMES[type]} needs flags ${hexByte(required)}, got ${hexByte(flags)}`
                        )
                }
                this.packetType = type
                this.headerFlags = flags
                this.remainingLength = 0
                this.remainingLengthBytes = 0
                this.state = DecoderState.RemainingLength
                continue
            }
            // [MQTT-2.2.3]: 7 bits per byte, least significant first, top bit = more.
            this.remainingLength += (byte & 0x7f) << (7 * this.remainingLengthBytes++)
            if (byte & 0x80) {
                if (this.remainingLengthBytes >= 4)
                    return this.die(ProtocolError.MalformedRemainingLength, "continuation bit set in the 4th byte")
                continue
            }
            const type = this.packetType
            const length = this.remainingLength
            const expected = (this.mqtt5 ? FIXED_LENGTHS_5 : FIXED_LENGTHS).charCodeAt(type) - 48
            if (expected >= 0 && length !== expected)
                return this.die(
                    ProtocolError.UnexpectedRemainingLength,
                    `${PACKET_NAMES[type]} needs remaining length ${expected}, got ${length}`
                )
            const packetBytes = 1 + this.remainingLengthBytes + length
            this.bodyFilled = 0
            if (packetBytes <= this.maxPacketBytes) {
                this.state = DecoderState.Body
                this.body = Buffer.alloc(length)
            } else if (type === PacketType.Publish) {
                // A message too large for us is skipped, not a reason to close: closing would make
                // the broker send it again on every reconnect. Only its packet id is kept, to
                // acknowledge it.
                this.state = DecoderState.Skip
                this.skipTopicBytes = 0
                this.skipPacketId = 0
            } else
                return this.die(
                    ProtocolError.PacketTooLarge,
                    `${PACKET_NAMES[type]} of ${packetBytes} bytes, limit ${this.maxPacketBytes}`
                )
        }
    }

    /**
     * The fast path for what a publishing client receives most: when the next packet is a whole,
     * valid PUBACK within the chunk, consumes it and returns its packet id, without a body buffer,
     * a state machine or a packet object. Otherwise returns 0 and consumes nothing: next() then
     * decodes whatever comes (a PUBACK split between chunks, or with id 0, included).
     */
    nextPuback(): number {
        const chunk = this.chunk
        const at = this.offset
        if (this.state || !chunk || at + 4 > chunk.length || chunk[at] !== PUBACK_FIRST_BYTE || chunk[at + 1] !== 2)
            return 0
        const packetId = chunk[at + 2] * 256 + chunk[at + 3]
        if (packetId) this.consume(at + 4)
        return packetId
    }

    /**
     * Makes a dead (or busy) decoder usable again, forgetting all pushed bytes and
     * any partly read packet. Use it for a new connection.
     */
    reset() {
        this.chunk = null
        this.state = DecoderState.FixedHeader
        this.body = null
    }

    /** Reading goes on at `offset` of the chunk; the chunk is dropped once read. */
    private consume(offset: number) {
        this.offset = offset
        if (offset >= this.chunk.length) this.chunk = null
    }

    private die(error: ProtocolError, message: string): DecodeFailure {
        this.reset()
        this.state = DecoderState.Dead
        return { error, message }
    }

    private completePacket(): DecodeResult {
        const body = this.body
        const skipping = this.state === DecoderState.Skip
        this.state = DecoderState.FixedHeader
        this.body = null
        if (skipping)
            return this.skippedPublish(
                `a message of ${1 + this.remainingLengthBytes + this.remainingLength} bytes`,
                this.skipPacketId
            )
        const topicBytes = body.length >= 2 ? body[0] * 256 + body[1] : 0
        if (this.packetType === PacketType.Publish && topicBytes > this.maxTopicBytes) {
            // Validating a topic costs VM steps per byte: a long one would stop the program.
            const packetId = body.length >= topicBytes + 4 ? body[topicBytes + 2] * 256 + body[topicBytes + 3] : 0
            return this.skippedPublish(`a topic of ${topicBytes} bytes`, packetId)
        }
        const result = this.decodeBody(this.packetType, this.headerFlags, body, this.mqtt5)
        return result.error ? this.die(result.error, result.message) : result
    }

    /** The PUBLISH just read, without its topic and payload: `what` went over a limit. */
    private skippedPublish(what: string, packetId: number): DecodeResult {
        const packet = publishPacket(this.headerFlags)
        if (packet.qos) {
            if (!packetId) return this.die(ProtocolError.PacketIdZero, "skipped PUBLISH: packet id is 0")
            packet.packetId = packetId
        }
        packet.skipped = what
        return { packet }
    }
}

/**
 * Per packet type 0..15, in 3.1.1 and in MQTT 5, what follows the fixed fields (the topic of a
 * PUBLISH, the flags of a CONNACK), as the character "0" plus: 1 a packet id, 2 a reason code (a
 * return code in 3.1.1; in MQTT 5 it may be left out, and then so are the properties), 4 properties,
 * 8 a list of reason codes to the end. "x": a packet only clients send; "-": never decoded here.
 */
const LAYOUTS = "-x201111x9x1x0x-"

/** The return codes of 3.1.1 [MQTT-3.2.2.3], [MQTT-3.9.3-2], as Mqtt5Codec.reasonCodes lists reason codes. */
const RETURN_CODES = "0x020x00 0x020x01 0x020x02 0x020x03 0x020x04 0x020x05 0x090x00 0x090x01 0x090x02 0x090x80"
const LAYOUTS_5 = "-x643333x=x=x022"

/** The failure of a packet of type `type`: `error`, and a message naming the packet and `detail`. */
function failure(type: number, error: number, detail: string): DecodeFailure {
    return { error, message: PACKET_NAMES[type] + ": " + detail }
}

/**
 * Decodes the complete body of a packet whose fixed header was checked: a packet a server sends
 * (one only clients send is a protocol error), in 3.1.1 or, given the MQTT 5 codec, in MQTT 5.
 * Failures name the packet and what is wrong with it.
 */
export function decodeServerPacketBody(type: number, flags: number, body: Buffer, mqtt5?: Mqtt5Codec): DecodeResult {
    const layout = (mqtt5 ? LAYOUTS_5 : LAYOUTS).charCodeAt(type) - 48
    const length = body.length
    let packet: any = { type }
    /** Where the next field starts. */
    let at = 0
    if (layout > 15) return failure(type, ProtocolError.ClientOnlyPacket, "a packet only clients send")
    if (type === PacketType.Publish) {
        packet = publishPacket(flags)
        if (length < 2) return failure(type, ProtocolError.PacketTruncated, "no room for length of topic")
        const topicBytes = body[0] * 256 + body[1]
        at = 2 + topicBytes
        if (at > length)
            return failure(
                type,
                ProtocolError.FieldOverrunsPacket,
                `topic claims ${topicBytes} bytes, ${length - 2} left`
            )
        const error = checkUtf8(body, 2, at, true)
        // In MQTT 5 a topic alias may stand for the topic: checked once the properties are read.
        if (error && (topicBytes || !mqtt5))
            return failure(
                type,
                error,
                error === ProtocolError.InvalidUtf8
                    ? "topic is not UTF-8"
                    : error === ProtocolError.NullCharacter
                      ? "topic contains U+0000"
                      : topicBytes
                        ? "topic contains a wildcard"
                        : "topic is empty"
            )
        packet.topic = body.slice(2, at).toString()
    } else if (type === PacketType.Connack) {
        const acknowledgeFlags = body[0]
        if (acknowledgeFlags > 1)
            return failure(type, ProtocolError.ConnackReservedFlags, "flags " + hexByte(acknowledgeFlags))
        packet.sessionPresent = acknowledgeFlags === 1
        at = 1
        // A broker that speaks only 3.1.1 answers an MQTT 5 CONNECT with its own CONNACK, return
        // code 1 [MQTT-3.1.2-2]: read as 3.1.1, so that MQTT 5's session falls back on that answer.
        if (length === 2 && body[1] === 1) mqtt5 = null
    }
    if (type === PacketType.Publish ? packet.qos : layout & 1) {
        if (at + 2 > length) return failure(type, ProtocolError.PacketTruncated, "no room for packet id")
        const packetId = body[at] * 256 + body[at + 1]
        if (!packetId) return failure(type, ProtocolError.PacketIdZero, "packet id is 0")
        packet.packetId = packetId
        at += 2
    }
    /** The reason codes (return codes in 3.1.1): one here, or a list ending the packet. */
    let codesAt = at
    if (layout & 2 && at < length) at++
    let codesEnd = at
    if (mqtt5 && (at < length || layout & 4)) {
        at = mqtt5.readProperties(body, at, type, packet)
        if (at < 0) return failure(type, -at, mqtt5.detail)
    }
    if (type === PacketType.Publish) packet.payload = body.slice(at, length)
    else if (layout & 8) {
        codesAt = at
        codesEnd = length
    } else if (at < length)
        return failure(type, ProtocolError.TrailingBytes, `${length - at} bytes after the last field`)
    const codes: number[] = []
    for (let i = codesAt; i < codesEnd; i++) {
        const code = body[i]
        if ((mqtt5 ? mqtt5.reasonCodes : RETURN_CODES).indexOf(hexByte(type) + hexByte(code)) < 0)
            return failure(
                type,
                mqtt5
                    ? ProtocolError.InvalidReasonCode
                    : type === PacketType.Connack
                      ? ProtocolError.InvalidConnackReturnCode
                      : ProtocolError.InvalidSubackReturnCode,
                `${mqtt5 ? "reason" : "return"} code ${code} (${hexByte(code)})`
            )
        codes.push(code)
    }
    const code = codes[0]
    if (layout & 8) {
        if (!codes.length) return failure(type, ProtocolError.EmptyPayload, "no return code")
        if (type === PacketType.Suback) packet.returnCodes = codes
        else packet.reasonCodes = codes
    } else if (type === PacketType.Connack) {
        if (code && packet.sessionPresent)
            return failure(type, ProtocolError.SessionPresentWithRefusal, "return code " + code)
        packet.returnCode = code
    } else if (code) packet.reasonCode = code
    return { packet }
}
