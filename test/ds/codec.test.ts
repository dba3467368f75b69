// The codec, decoder and topic rules inside the DeviceScript VM, against fixtures
// generated from mqtt-packet (test/fixtures/gen-fixtures.ts), MQTT 3.1.1 and a few of MQTT 5. Run with:
//     node node_modules/.bin/devs --no-colors run test/ds/codec.test.ts --test --test-self-exit -T 60000

import * as ds from "@devicescript/core"
import { describe, test, expect } from "@devicescript/test"
import {
    ClientPacketDecoder,
    DecodeFailure,
    DecodeResult,
    ProtocolError,
    protocolErrorText,
} from "../../src/mqtt/decoder"
import { MQTT5 } from "../../src/mqtt/mqtt5"
import {
    AckPacket,
    ConnackPacket,
    ConnectPacket,
    Packet,
    PacketType,
    PublishPacket,
    SubackPacket,
    SubscribePacket,
    UnsubscribePacket,
} from "../../src/mqtt/packets"
import { topicMatches, validateTopicFilter, validateTopicName } from "../../src/mqtt/topics"
import { encodePacket, encodeRemainingLength, MAX_REMAINING_LENGTH, PacketDecoder } from "../fixtures/mqtt-codec"
import { MALFORMED_WIRE_FIXTURES, WIRE_FIXTURES } from "../fixtures/mqtt-packets"
import { MALFORMED_WIRE_FIXTURES_5, WIRE_FIXTURES_5 } from "../fixtures/mqtt-packets-5"

const LIMIT = 1024
/** Yield to the scheduler this often so the VM does not stop a long loop. */
const ITERATIONS_PER_YIELD = 25
const HIGHEST_PROTOCOL_ERROR = ProtocolError.MalformedVariableByteInteger

function hex(bytes: Buffer): string {
    return bytes === null || bytes === undefined ? "none" : bytes.toString("hex")
}

/** One line naming every field of a packet, so packets compare as strings. */
function describePacket(packet: Packet): string {
    switch (packet.type) {
        case PacketType.Connect: {
            const p = packet as ConnectPacket
            let text = `CONNECT id=${p.clientId} keepalive=${p.keepaliveS} clean=${p.cleanSession}`
            if (p.will) text += ` will=${p.will.topic}/${hex(p.will.payload)}/${p.will.qos}/${p.will.retain}`
            if (p.username !== undefined && p.username !== null) text += ` user=${p.username}`
            if (p.password !== undefined && p.password !== null) text += ` password=${hex(p.password)}`
            return text
        }
        case PacketType.Connack: {
            const p = packet as ConnackPacket
            return `CONNACK present=${p.sessionPresent} code=${p.returnCode}`
        }
        case PacketType.Publish: {
            const p = packet as PublishPacket
            let text = `PUBLISH ${p.topic} qos=${p.qos} dup=${p.dup} retain=${p.retain} payload=${hex(p.payload)}`
            if (p.packetId !== undefined && p.packetId !== null) text += ` id=${p.packetId}`
            return text
        }
        case PacketType.Subscribe: {
            const p = packet as SubscribePacket
            let text = `SUBSCRIBE id=${p.packetId}`
            for (const s of p.subscriptions) text += ` ${s.topic}:${s.qos}`
            return text
        }
        case PacketType.Suback: {
            const p = packet as SubackPacket
            return `SUBACK id=${p.packetId} codes=${p.returnCodes.join(",")}`
        }
        case PacketType.Unsubscribe: {
            const p = packet as UnsubscribePacket
            return `UNSUBSCRIBE id=${p.packetId} ${p.topics.join(" ")}`
        }
        case PacketType.Puback:
        case PacketType.Pubrec:
        case PacketType.Pubrel:
        case PacketType.Pubcomp:
        case PacketType.Unsuback:
            return `ACK type=${packet.type} id=${(packet as AckPacket).packetId}`
        default:
            return `EMPTY type=${packet.type}`
    }
}

function describeResult(result: DecodeResult): string {
    if (result === null) return "null"
    if (result.error) {
        const failure = result as DecodeFailure
        return `error ${failure.error}: ${failure.message}`
    }
    return describePacket(result.packet)
}

/** Pushes the chunks until the decoder has a result: its first one, or null. */
function firstResult(decoder: PacketDecoder, chunks: Buffer[]): DecodeResult {
    for (const chunk of chunks) {
        decoder.push(chunk)
        const result = decoder.next()
        if (result !== null) return result
    }
    return null
}

/** Feeds the chunks, draining after each; returns every result described. */
function decodeChunks(chunks: Buffer[], limit: number): string[] {
    const decoder = new PacketDecoder(limit)
    const results: string[] = []
    for (const chunk of chunks) {
        decoder.push(chunk)
        for (;;) {
            const result = decoder.next()
            if (result === null) break
            results.push(describeResult(result))
            if (result.error) return results
        }
    }
    return results
}

function oneByteChunks(bytes: Buffer): Buffer[] {
    const chunks: Buffer[] = []
    for (let i = 0; i < bytes.length; i++) chunks.push(bytes.slice(i, i + 1))
    return chunks
}

function joinBuffers(parts: Buffer[]): Buffer {
    let length = 0
    for (const part of parts) length += part.length
    const joined = Buffer.alloc(length)
    let offset = 0
    for (const part of parts) {
        joined.set(part, offset)
        offset += part.length
    }
    return joined
}

/** xorshift32: small, deterministic, int32 arithmetic only. */
class Random {
    private state: number
    constructor(seed: number) {
        this.state = seed | 0 || 1
    }
    below(n: number): number {
        let x = this.state
        x ^= x << 13
        x ^= x >>> 17
        x ^= x << 5
        this.state = x | 0
        // Not (x >>> 0) % n: in the DeviceScript VM that % yields negative values
        // for x >>> 0 above 2^31.
        return (x & 0x7fffffff) % n
    }
}

describe("encodePacket matches mqtt-packet byte for byte", () => {
    test("every fixture", async () => {
        let count = 0
        for (const fixture of WIRE_FIXTURES) {
            const ours = encodePacket(fixture.packet).toString("hex")
            if (ours !== fixture.hex) console.log(`${fixture.name}: ${ours} != ${fixture.hex}`)
            expect(ours).toBe(fixture.hex)
            if (++count % ITERATIONS_PER_YIELD === 0) await ds.sleep(0)
        }
        console.log(`${count} fixtures encoded`)
    })
})

describe("decoder reads what mqtt-packet generates", () => {
    test("whole, one byte at a time, split in two, round trip", async () => {
        let count = 0
        for (const fixture of WIRE_FIXTURES) {
            const bytes = Buffer.from(fixture.hex, "hex")
            const expected = describePacket(fixture.packet)
            const ways: Buffer[][] = [
                [bytes],
                oneByteChunks(bytes),
                [bytes.slice(0, 1), bytes.slice(1)],
                [bytes.slice(0, bytes.length >> 1), bytes.slice(bytes.length >> 1)],
                [encodePacket(fixture.packet)],
            ]
            for (const chunks of ways) {
                const results = decodeChunks(chunks, LIMIT)
                if (results.length !== 1 || results[0] !== expected)
                    console.log(`${fixture.name}: ${results.join(" | ")}`)
                expect(results.length).toBe(1)
                expect(results[0]).toBe(expected)
                await ds.sleep(0)
            }
            count++
        }
        console.log(`${count} fixtures decoded 5 ways`)
    })

    test("all fixtures coalesced in one chunk", async () => {
        const parts: Buffer[] = []
        for (const fixture of WIRE_FIXTURES) parts.push(Buffer.from(fixture.hex, "hex"))
        const decoder = new PacketDecoder(LIMIT)
        decoder.push(joinBuffers(parts))
        for (let i = 0; i < WIRE_FIXTURES.length; i++) {
            const result = decoder.next()
            expect(describeResult(result)).toBe(describePacket(WIRE_FIXTURES[i].packet))
            if (i % ITERATIONS_PER_YIELD === 0) await ds.sleep(0)
        }
        expect(decoder.next()).toBe(null)
        expect(decoder.pendingInputBytes()).toBe(0)
        expect(decoder.bufferedBytes()).toBe(0)
    })
})

describe("malformed input yields the exact ProtocolError", () => {
    test("every malformed fixture, whole and one byte at a time", async () => {
        let count = 0
        for (const fixture of MALFORMED_WIRE_FIXTURES) {
            const bytes = Buffer.from(fixture.hex, "hex")
            for (const chunks of [[bytes], oneByteChunks(bytes)]) {
                const decoder = new PacketDecoder(100)
                const result = firstResult(decoder, chunks)
                const got = result === null ? 0 : result.error
                if (got !== fixture.error)
                    console.log(`${fixture.name}: wanted ${fixture.error}, got ${describeResult(result)}`)
                expect(got).toBe(fixture.error)
                expect(decoder.next()).toBe(null)
            }
            if (++count % 10 === 0) await ds.sleep(0)
        }
        console.log(`${count} malformed inputs rejected`)
    })

    test("every error has a text", () => {
        for (let e = 1; e <= HIGHEST_PROTOCOL_ERROR; e++) {
            const text = protocolErrorText(e)
            expect(text.indexOf("unknown") < 0).toBe(true)
        }
    })
})

/** The fields of a packet (and of a will or subscription) in this order: decoding and a fixture's literal order them differently. */
const PACKET_KEYS = [
    "type",
    "clientId",
    "keepaliveS",
    "cleanSession",
    "sessionPresent",
    "returnCode",
    "topic",
    "payload",
    "qos",
    "dup",
    "retain",
    "packetId",
    "noLocal",
    "retainAsPublished",
    "retainHandling",
    "reasonCode",
    "reasonCodes",
    "returnCodes",
    "subscriptions",
    "topics",
    "will",
    "username",
    "password",
    "properties",
]

/**
 * Any value as one line: packets by PACKET_KEYS, properties in their own order (the order they are
 * written in, so the same on both sides), Buffers in hex.
 */
function describeValue(value: any): string {
    if (value === undefined || value === null) return "none"
    if (typeof value !== "object") return "" + value
    let text = ""
    if (Array.isArray(value)) {
        for (const v of value) text += describeValue(v) + ","
        return "[" + text + "]"
    }
    if (typeof value.length === "number") return hex(value)
    const packetLike = value.type !== undefined || value.topic !== undefined
    for (const key of packetLike ? PACKET_KEYS : Object.keys(value))
        if (value[key] !== undefined) text += key + "=" + describeValue(value[key]) + ";"
    return "{" + text + "}"
}

function describeResult5(result: DecodeResult): string {
    if (result === null) return "null"
    if (result.error) return `error ${(result as DecodeFailure).error}: ${(result as DecodeFailure).message}`
    return describeValue(result.packet)
}

describe("MQTT 5 in the VM", () => {
    test("encodePacket matches mqtt-packet byte for byte", async () => {
        for (const fixture of WIRE_FIXTURES_5) {
            const ours = encodePacket(fixture.packet, MQTT5).toString("hex")
            if (ours !== fixture.hex) console.log(`${fixture.name}: ${ours} != ${fixture.hex}`)
            expect(ours).toBe(fixture.hex)
            await ds.sleep(0)
        }
        console.log(`${WIRE_FIXTURES_5.length} MQTT 5 fixtures encoded`)
    })

    test("both decoders read what mqtt-packet generates, whole and one byte at a time", async () => {
        let count = 0
        for (const fixture of WIRE_FIXTURES_5) {
            const bytes = Buffer.from(fixture.hex, "hex")
            const expected = describeValue(fixture.packet)
            const type = fixture.packet.type
            const clientOnly =
                type === PacketType.Connect ||
                type === PacketType.Subscribe ||
                type === PacketType.Unsubscribe ||
                type === PacketType.Pingreq
            for (const chunks of [[bytes], oneByteChunks(bytes)]) {
                const decoders = [new PacketDecoder(LIMIT, MQTT5), new ClientPacketDecoder(LIMIT, 65535, MQTT5)]
                for (let d = 0; d < decoders.length; d++) {
                    const decoder = decoders[d]
                    let result: DecodeResult = null
                    for (const chunk of chunks) {
                        decoder.push(chunk)
                        const r = decoder.next()
                        if (r !== null) result = r
                    }
                    const got = describeResult5(result)
                    if (d === 1 && clientOnly) {
                        expect(result.error).toBe(ProtocolError.ClientOnlyPacket)
                        continue
                    }
                    if (got !== expected) console.log(`${fixture.name}: ${got} != ${expected}`)
                    expect(got).toBe(expected)
                }
                await ds.sleep(0)
            }
            count++
        }
        console.log(`${count} MQTT 5 fixtures decoded`)
    })

    test("every malformed MQTT 5 input yields its ProtocolError", async () => {
        for (const fixture of MALFORMED_WIRE_FIXTURES_5) {
            const bytes = Buffer.from(fixture.hex, "hex")
            for (const chunks of [[bytes], oneByteChunks(bytes)]) {
                const decoder = new PacketDecoder(1000, MQTT5)
                const result = firstResult(decoder, chunks)
                const got = result === null ? 0 : result.error
                if (got !== fixture.error)
                    console.log(`${fixture.name}: wanted ${fixture.error}, got ${describeResult5(result)}`)
                expect(got).toBe(fixture.error)
            }
            await ds.sleep(0)
        }
        console.log(`${MALFORMED_WIRE_FIXTURES_5.length} malformed MQTT 5 inputs rejected`)
    })
})

describe("remaining length", () => {
    test("encodings at each size boundary", () => {
        const cases: number[] = [0, 127, 128, 16383, 16384, 2097151, 2097152, MAX_REMAINING_LENGTH]
        const expected = ["00", "7f", "8001", "ff7f", "808001", "ffff7f", "80808001", "ffffff7f"]
        for (let i = 0; i < cases.length; i++) expect(encodeRemainingLength(cases[i]).toString("hex")).toBe(expected[i])
        expect(() => encodeRemainingLength(MAX_REMAINING_LENGTH + 1)).toThrow()
        expect(() => encodeRemainingLength(-1)).toThrow()
    })

    test("large announced lengths are refused before buffering", () => {
        const lengths = [16384, 2097151, 2097152, MAX_REMAINING_LENGTH]
        for (const length of lengths) {
            const header = joinBuffers([Buffer.from([0x90]), encodeRemainingLength(length), Buffer.from("0001", "hex")])
            const decoder = new PacketDecoder(4096)
            decoder.push(header)
            const result = decoder.next()
            expect(result.error).toBe(ProtocolError.PacketTooLarge)
            expect(decoder.bufferedBytes()).toBe(0)
        }
    })

    test("a PUBLISH of remaining length 4000 decodes in pieces", async () => {
        // Larger packets do not fit: the VM heap is 64 KB and a packet exists
        // here four times (payload, encoding, decoder body, decoded payload).
        const payload = Buffer.alloc(4000 - 5)
        for (let i = 0; i < payload.length; i += 97) payload[i] = i & 0xff
        const packet: PublishPacket = {
            type: PacketType.Publish,
            topic: "a/b",
            payload: payload,
            qos: 0,
            dup: false,
            retain: false,
        }
        const bytes = encodePacket(packet)
        expect(bytes.length).toBe(1 + 2 + 4000)
        expect(bytes.slice(0, 3).toString("hex")).toBe("30a01f")
        const decoder = new PacketDecoder(5000)
        let decoded: DecodeResult = null
        for (let offset = 0; offset < bytes.length; offset += 1500) {
            decoder.push(bytes.slice(offset, offset + 1500))
            const result = decoder.next()
            if (result !== null) decoded = result
            expect(decoder.bufferedBytes() <= 5000).toBe(true)
            await ds.sleep(0)
        }
        expect(decoded !== null && !decoded.error).toBe(true)
        const got = decoded.packet as PublishPacket
        expect(got.topic).toBe("a/b")
        expect(got.payload.length).toBe(payload.length)
        let same = true
        for (let i = 0; i < payload.length; i += 97) if (got.payload[i] !== payload[i]) same = false
        expect(same).toBe(true)
    })
})

describe("encodePacket rejects invalid packets", () => {
    test("bad topic, packet id, qos", () => {
        const publish = (topic: string, qos: number, packetId: number) =>
            encodePacket({
                type: PacketType.Publish,
                topic: topic,
                payload: Buffer.alloc(0),
                qos: qos,
                dup: false,
                retain: false,
                packetId: packetId,
            })
        expect(() => publish("a/+", 1, 1)).toThrow()
        expect(() => publish("", 1, 1)).toThrow()
        expect(() => publish("a", 1, 0)).toThrow()
        expect(() => publish("a", 1, 65536)).toThrow()
        expect(() => publish("a", 3, 1)).toThrow()
        expect(publish("a", 1, 65535).toString("hex")).toBe("3205000161ffff")
        let message = ""
        try {
            publish("a/#", 1, 1)
        } catch (error) {
            message = (error as Error).message
        }
        expect(message.indexOf("[MQTT-3.3.2-2]") >= 0).toBe(true)
    })
})

describe("topics", () => {
    test("validation and matching", () => {
        expect(validateTopicName("meter/1")).toBe(null)
        expect(validateTopicName("zähler/€") === null).toBe(true)
        expect(validateTopicName("a/+") !== null).toBe(true)
        expect(validateTopicName("") !== null).toBe(true)
        expect(validateTopicFilter("a/+/#")).toBe(null)
        expect(validateTopicFilter("a/#/b") !== null).toBe(true)
        expect(validateTopicFilter("a+") !== null).toBe(true)
        expect(topicMatches("sport/#", "sport")).toBe(true)
        expect(topicMatches("sport/+", "sport/")).toBe(true)
        expect(topicMatches("+/+", "/finance")).toBe(true)
        expect(topicMatches("+", "/finance")).toBe(false)
        expect(topicMatches("#", "$SYS/x")).toBe(false)
        expect(topicMatches("$SYS/#", "$SYS/x")).toBe(true)
        expect(topicMatches("zähler/+", "zähler/€")).toBe(true)
        expect(topicMatches("a/b", "a/bc")).toBe(false)
    })
})

describe("fuzz sample", () => {
    test("2000 mutated and random inputs never throw", async () => {
        const seed = 20261122
        console.log(`fuzz seed ${seed}`)
        const random = new Random(seed)
        const encodings: Buffer[] = []
        for (const fixture of WIRE_FIXTURES) encodings.push(Buffer.from(fixture.hex, "hex"))
        let packets = 0
        let errors = 0
        const inputs = 2000
        for (let input = 0; input < inputs; input++) {
            let bytes: Buffer
            if (random.below(4) === 0) {
                bytes = Buffer.alloc(random.below(40))
                for (let i = 0; i < bytes.length; i++) bytes[i] = random.below(256)
            } else {
                const first = encodings[random.below(encodings.length)]
                const second = encodings[random.below(encodings.length)]
                bytes = joinBuffers([first, second])
                const mutations = 1 + random.below(3)
                for (let m = 0; m < mutations; m++) {
                    const position = random.below(bytes.length)
                    if (random.below(2) === 0) bytes[position] = bytes[position] ^ (1 << random.below(8))
                    else bytes[position] = random.below(256)
                }
                if (random.below(4) === 0) bytes = bytes.slice(0, random.below(bytes.length + 1))
            }
            const cut = random.below(bytes.length + 1)
            const chunks = [bytes.slice(0, cut), bytes.slice(cut)]
            const decoder = new PacketDecoder(random.below(2) ? 64 : LIMIT)
            let calls = 0
            try {
                for (const chunk of chunks) {
                    decoder.push(chunk)
                    for (;;) {
                        const result = decoder.next()
                        calls++
                        if (calls > bytes.length + 3) throw new Error("next() did not stop")
                        if (decoder.bufferedBytes() > decoder.maxPacketBytes)
                            throw new Error("buffered more than the limit")
                        if (result === null) break
                        if (result.error) {
                            const failure = result as DecodeFailure
                            if (
                                failure.error < 1 ||
                                failure.error > HIGHEST_PROTOCOL_ERROR ||
                                failure.message.length === 0
                            )
                                throw new Error(`bad failure ${failure.error}`)
                            errors++
                        } else {
                            const packet = result.packet
                            const connect = packet as ConnectPacket
                            // Valid on the wire, refused by our encoder on purpose.
                            const emptyIdPersistent =
                                packet.type === PacketType.Connect && connect.clientId === "" && !connect.cleanSession
                            // A PUBLISH over the limit is a summary (no topic): nothing to encode.
                            const skipped = packet.type === PacketType.Publish && !!(packet as PublishPacket).skipped
                            if (!emptyIdPersistent && !skipped) encodePacket(packet)
                            packets++
                        }
                    }
                    if (decoder.pendingInputBytes() !== 0) throw new Error("input left after draining")
                }
            } catch (error) {
                console.log(`seed ${seed} input ${input} ${hex(bytes)}: ${(error as Error).message}`)
                expect(true).toBe(false)
            }
            if (input % ITERATIONS_PER_YIELD === 0) await ds.sleep(0)
        }
        console.log(`fuzz: ${inputs} inputs, ${packets} packets decoded, ${errors} errors`)
        expect(packets > 0 && errors > 0).toBe(true)
    })
})
