// The MQTT 5 codec against mqtt-packet (protocolVersion 5), both directions: the checked codec of
// test/fixtures/mqtt-codec.ts, the firmware's encoder and the firmware's decoder, all handed
// MQTT5 (src/mqtt/mqtt5.ts) as their protocol version. The 3.1.1 tests are codec.test.ts and
// decoder.test.ts.
import { describe, test } from "node:test"
import assert from "node:assert/strict"
import mqttPacket from "mqtt-packet"

import { encodeClientPacket, encodePublishInto } from "../../src/mqtt/codec"
import { ClientPacketDecoder, DecodeResult, hexByte, PACKET_NAMES, ProtocolError } from "../../src/mqtt/decoder"
import { MQTT5, PROPERTY_TABLE } from "../../src/mqtt/mqtt5"
import { Packet, PacketType, PublishPacket } from "../../src/mqtt/packets"
import { checkClientPacket, checkPacket, encodePacket, PacketDecoder } from "../fixtures/mqtt-codec"
import { MALFORMED_FIXTURES_5 } from "./malformed-fixtures-5"
import { fromMqttPacket, toMqttPacket } from "./packet-fixtures"
import { CLIENT_ONLY_TYPES_5, PACKET_FIXTURES_5, SERVER_ONLY_TYPES } from "./packet-fixtures-5"
import { makeRandom, oneByteChunks, packetsOf, splitAt } from "../fixtures/decoding"

const LIMIT = 4 * 1024 * 1024

function referenceBytes(packet: Packet): Buffer {
    return mqttPacket.generate(toMqttPacket(packet, 5), { protocolVersion: 5 })
}

/** mqtt-packet's parse of `bytes` (protocolVersion 5), as our packets; stops at its first error. */
function parseWithMqttPacket(bytes: Buffer): { packets: Packet[]; error: Error | null } {
    const parser = mqttPacket.parser({ protocolVersion: 5 })
    const packets: Packet[] = []
    let error: Error | null = null
    parser.on("packet", (p: any) => {
        if (!error) packets.push(fromMqttPacket(p, 5))
    })
    parser.on("error", (e: Error) => (error = error ?? e))
    parser.parse(bytes)
    return { packets, error }
}

/** Feeds the chunks to `decoder`, draining after each; stops at the first error. */
function drain(decoder: ClientPacketDecoder, chunks: Buffer[]): DecodeResult[] {
    const results: DecodeResult[] = []
    for (const chunk of chunks) {
        decoder.push(chunk)
        for (let r = decoder.next(); r; r = decoder.next()) {
            results.push(r)
            if (r.error) return results
        }
    }
    return results
}

const decodeAll = (chunks: Buffer[], limit = LIMIT) => drain(new PacketDecoder(limit, MQTT5), chunks)
const decodeAsClient = (chunks: Buffer[], limit = LIMIT) => drain(new ClientPacketDecoder(limit, 65535, MQTT5), chunks)

/** Whether the node may send `packet`: what the firmware's encoder writes. */
function nodeSends(packet: Packet): boolean {
    const type = packet.type
    if (SERVER_ONLY_TYPES.includes(type) || type === PacketType.Auth || type === PacketType.Unsubscribe) return false
    return !(packet.type === PacketType.Publish && (packet as PublishPacket).properties?.subscriptionIdentifiers)
}

/** The remaining length of the packet at the start of `bytes`, and where its body starts. */
function header(bytes: Buffer, at = 0): { length: number; bodyAt: number } {
    let length = 0
    let i = at + 1
    for (let shift = 0; ; shift += 7) {
        const byte = bytes[i++]
        length += (byte & 0x7f) * 2 ** shift
        if (byte < 0x80) return { length, bodyAt: i }
    }
}

describe("MQTT 5: encodePacket matches mqtt-packet byte for byte", () => {
    for (const fixture of PACKET_FIXTURES_5)
        test(fixture.name, () => {
            const ours = encodePacket(fixture.packet, MQTT5)
            const reference = referenceBytes(fixture.packet)
            assert.ok(
                ours.equals(reference),
                `ours ${ours.toString("hex").slice(0, 120)} vs reference ${reference.toString("hex").slice(0, 120)}`
            )
        })
})

describe("MQTT 5: mqtt-packet parses what we encode", () => {
    for (const fixture of PACKET_FIXTURES_5)
        test(fixture.name, () => {
            const { packets, error } = parseWithMqttPacket(encodePacket(fixture.packet, MQTT5))
            assert.equal(error, null)
            assert.deepEqual(packets, [fixture.packet])
        })
})

describe("MQTT 5: the firmware's encoder writes what the node sends", () => {
    for (const fixture of PACKET_FIXTURES_5.filter(f => nodeSends(f.packet)))
        test(fixture.name, () => {
            const packet = fixture.packet
            checkClientPacket(packet, MQTT5)
            const reference = referenceBytes(packet)
            if (packet.type !== PacketType.Publish) {
                assert.ok(encodeClientPacket(packet, MQTT5).equals(reference))
                return
            }
            // Into a segment of the caller's, after 3 bytes already there, as the client encodes.
            const room = Buffer.alloc(3 + reference.length + 2, 0xaa)
            assert.equal(encodePublishInto(packet, room, 3, MQTT5), 3 + reference.length)
            assert.ok(room.subarray(3, 3 + reference.length).equals(reference))
            assert.equal(encodePublishInto(packet, Buffer.alloc(reference.length + 2), 3, MQTT5), -reference.length)
        })
})

describe("MQTT 5: decodes what mqtt-packet generates", () => {
    for (const fixture of PACKET_FIXTURES_5)
        describe(fixture.name, () => {
            const bytes = referenceBytes(fixture.packet)
            const expected = [fixture.packet]
            test("whole, one byte at a time, and split at random points", () => {
                assert.deepEqual(packetsOf(decodeAll([bytes])), expected)
                assert.deepEqual(packetsOf(decodeAll(oneByteChunks(bytes))), expected)
                const random = makeRandom(bytes.length)
                for (let round = 0; round < 20; round++) {
                    const cuts = Array.from({ length: 1 + Math.floor(random() * 6) }, () =>
                        Math.floor(random() * bytes.length)
                    )
                    assert.deepEqual(packetsOf(decodeAll(splitAt(bytes, cuts))), expected, `cuts ${cuts}`)
                }
            })
            test("split at every single point", { skip: bytes.length > 400 }, () => {
                for (let cut = 1; cut < bytes.length; cut++)
                    assert.deepEqual(packetsOf(decodeAll(splitAt(bytes, [cut]))), expected, `cut ${cut}`)
            })
            test("the firmware's decoder: the same packet, or one only clients send refused", () => {
                const results = decodeAsClient([bytes])
                if (!CLIENT_ONLY_TYPES_5.includes(fixture.packet.type)) {
                    assert.deepEqual(packetsOf(results), expected)
                    assert.deepEqual(packetsOf(decodeAsClient(oneByteChunks(bytes))), expected)
                    return
                }
                assert.equal(results.length, 1)
                assert.equal(results[0].error, ProtocolError.ClientOnlyPacket)
                assert.match(results[0].message, new RegExp(`^${PACKET_NAMES[fixture.packet.type]}: `))
            })
        })

    test("every fixture coalesced in one stream, split at random points", () => {
        const small = PACKET_FIXTURES_5.filter(f => !f.nodeOnly)
        const bytes = Buffer.concat(PACKET_FIXTURES_5.map(f => referenceBytes(f.packet)))
        const random = makeRandom(5)
        for (let round = 0; round < 5; round++) {
            const cuts = Array.from({ length: 300 }, () => Math.floor(random() * bytes.length))
            assert.deepEqual(
                packetsOf(decodeAll(splitAt(bytes, cuts))),
                PACKET_FIXTURES_5.map(f => f.packet)
            )
        }
        const fromServer = small.filter(f => !CLIENT_ONLY_TYPES_5.includes(f.packet.type))
        const serverBytes = Buffer.concat(fromServer.map(f => referenceBytes(f.packet)))
        assert.deepEqual(
            packetsOf(decodeAsClient(oneByteChunks(serverBytes))),
            fromServer.map(f => f.packet)
        )
    })

    test("a 3.1.1 decoder refuses MQTT 5's additions", () => {
        const v4 = (hex: string) => drain(new ClientPacketDecoder(LIMIT, 65535), [Buffer.from(hex, "hex")])[0]
        assert.equal(v4("f000").error, ProtocolError.ReservedPacketType)
        assert.equal(v4("4003000110").error, ProtocolError.UnexpectedRemainingLength)
        assert.equal(v4("e0020000").error, ProtocolError.UnexpectedRemainingLength)
        assert.equal(v4("e000").error, ProtocolError.ClientOnlyPacket)
        assert.equal(v5Decode("e000").packet.type, PacketType.Disconnect)
    })

    test("an MQTT 5 decoder reads a 3.1.1 broker's refusal of the protocol level, and no other 3.1.1 CONNACK", () => {
        // What a broker that speaks only 3.1.1 answers to an MQTT 5 CONNECT [MQTT-3.1.2-2].
        assert.deepEqual(v5Decode("20020001").packet, {
            type: PacketType.Connack,
            sessionPresent: false,
            returnCode: 1,
        })
        assert.equal(v5Decode("20020000").error, ProtocolError.PacketTruncated)
        assert.equal(v5Decode("20020005").error, ProtocolError.PacketTruncated)
    })
})

function v5Decode(hex: string): DecodeResult {
    return decodeAsClient([Buffer.from(hex, "hex")])[0]
}

describe("MQTT 5: the fixture table's coverage", () => {
    test("every property, in every packet that may carry it", () => {
        const seen = new Set<string>()
        const note = (properties: any, kind: number) => {
            for (const name of Object.keys(properties ?? {})) seen.add(`${name} in ${kind}`)
        }
        for (const { packet } of PACKET_FIXTURES_5) {
            note((packet as any).properties, packet.type)
            if (packet.type === PacketType.Connect) note(packet.will?.properties, 0)
        }
        const missing: string[] = []
        let pairs = 0
        for (const line of PROPERTY_TABLE.split("\n").filter(Boolean)) {
            const name = line.split(":")[1]
            for (const digit of line.slice(5, line.indexOf(":"))) {
                pairs++
                const kind = parseInt(digit, 16)
                if (!seen.has(`${name} in ${kind}`)) missing.push(`${name} in ${kind ? PACKET_NAMES[kind] : "a will"}`)
            }
        }
        assert.deepEqual(missing, [])
        assert.equal(pairs, 64, "property-packet pairs in the table")
    })

    test("every reason code of every packet", () => {
        const seen = new Set<string>()
        for (const { packet } of PACKET_FIXTURES_5) {
            const p = packet as any
            const codes: number[] =
                p.type === PacketType.Connack
                    ? [p.returnCode]
                    : p.type === PacketType.Suback
                      ? p.returnCodes
                      : p.type === PacketType.Unsuback
                        ? p.reasonCodes
                        : [p.reasonCode ?? 0]
            for (const code of codes) seen.add(hexByte(p.type) + hexByte(code))
        }
        const missing = MQTT5.reasonCodes
            .split(/\s+/)
            .filter(Boolean)
            .filter(pair => !seen.has(pair))
        assert.deepEqual(missing, [])
    })

    test("remaining lengths and property lengths at the boundaries of their encodings", () => {
        const remaining = new Set<number>()
        const properties = new Set<number>()
        for (const { packet } of PACKET_FIXTURES_5) {
            const bytes = encodePacket(packet, MQTT5)
            const { length, bodyAt } = header(bytes)
            remaining.add(length)
            // A PUBACK's property length follows its packet id and reason code.
            if (packet.type === PacketType.Puback && length > 3) properties.add(header(bytes, bodyAt + 2).length)
        }
        for (const n of [127, 128, 16383, 16384]) {
            assert.ok(remaining.has(n), `remaining length ${n}`)
            assert.ok(properties.has(n), `property length ${n}`)
        }
    })
})

describe("MQTT 5: malformed input yields the exact ProtocolError", () => {
    for (const { name, bytes, error, server, detail } of MALFORMED_FIXTURES_5)
        test(name, () => {
            for (const chunks of [[bytes], oneByteChunks(bytes)]) {
                const results = decodeAll(chunks, 1000)
                assert.equal(results.length, 1, JSON.stringify(results))
                const result = results[0]
                assert.equal(
                    result.error,
                    error,
                    `got ${ProtocolError[result.error]} (${result.message}), wanted ${ProtocolError[error]}`
                )
                if (detail) assert.match(result.message, detail)
                // The firmware's decoder: the same failure for what a server may send.
                // What only clients send it refuses as such, unless its fixed header is wrong already.
                const client = decodeAsClient(chunks, 1000)
                if (server || client[0].error !== ProtocolError.ClientOnlyPacket) assert.deepEqual(client, results)
            }
        })

    test("every MQTT 5 error is among the fixtures", () => {
        const errors = new Set(MALFORMED_FIXTURES_5.map(f => f.error))
        for (const e of [
            ProtocolError.UnknownProperty,
            ProtocolError.PropertyNotAllowed,
            ProtocolError.DuplicateProperty,
            ProtocolError.InvalidPropertyValue,
            ProtocolError.PropertyLengthOverrun,
            ProtocolError.InvalidReasonCode,
            ProtocolError.MalformedVariableByteInteger,
        ])
            assert.ok(errors.has(e), ProtocolError[e])
    })
})

describe("MQTT 5: checkPacket refuses what the spec forbids", () => {
    const publish = (fields: any): Packet => ({
        type: PacketType.Publish,
        topic: "a/b",
        payload: Buffer.from("x"),
        qos: 1,
        dup: false,
        retain: false,
        packetId: 1,
        ...fields,
    })
    const withProperties = (type: PacketType, properties: any): Packet => {
        switch (type) {
            case PacketType.Publish:
                return publish({ properties })
            case PacketType.Connack:
                return { type, sessionPresent: false, returnCode: 0, properties }
            default:
                return { type, packetId: 1, properties } as Packet
        }
    }
    const subscribe = (s: any, properties?: any): Packet => ({
        type: PacketType.Subscribe,
        packetId: 1,
        subscriptions: [{ topic: "a", qos: 0, ...s }],
        properties,
    })
    const cases: [string, any, RegExp][] = [
        ["an unknown property", withProperties(PacketType.Publish, { color: "red" }), /color: no such property/],
        [
            "a property not allowed in the packet",
            withProperties(PacketType.Publish, { receiveMaximum: 5 }),
            /receiveMaximum: not allowed in PUBLISH/,
        ],
        [
            "a will property in CONNECT",
            { type: 1, clientId: "c", keepaliveS: 1, cleanSession: true, properties: { willDelayInterval: 1 } },
            /not allowed in CONNECT/,
        ],
        ["a byte of 2", withProperties(PacketType.Publish, { payloadFormatIndicator: 2 }), /must be 0 or 1/],
        [
            "a boolean for a byte",
            withProperties(PacketType.Publish, { payloadFormatIndicator: true }),
            /must be 0 or 1/,
        ],
        ["topic alias 0", withProperties(PacketType.Publish, { topicAlias: 0 }), /1\.\.65535, got 0/],
        ["topic alias 65536", withProperties(PacketType.Publish, { topicAlias: 65536 }), /got 65536/],
        ["maximum packet size 0", withProperties(PacketType.Connack, { maximumPacketSize: 0 }), /1\.\.4294967295/],
        [
            "session expiry 2^32",
            withProperties(PacketType.Connack, { sessionExpiryInterval: 2 ** 32 }),
            /0\.\.4294967295/,
        ],
        ["a subscription identifier 0", subscribe({}, { subscriptionIdentifiers: [0] }), /1\.\.268435455, got 0/],
        [
            "two subscription identifiers in SUBSCRIBE",
            subscribe({}, { subscriptionIdentifiers: [1, 2] }),
            /one subscription identifier at most/,
        ],
        ["a subscription identifier not in an array", subscribe({}, { subscriptionIdentifiers: 1 }), /non-empty array/],
        [
            "a response topic with a wildcard",
            withProperties(PacketType.Publish, { responseTopic: "a/+" }),
            /\[MQTT-3\.3\.2-2\]/,
        ],
        ["a string with U+0000", withProperties(PacketType.Puback, { reasonString: "a\u0000" }), /\[MQTT-1\.5\.3-2\]/],
        ["binary data as a string", withProperties(PacketType.Publish, { correlationData: "x" }), /must be a Buffer/],
        [
            "a user property that is not a pair",
            withProperties(PacketType.Puback, { userProperties: [["a"]] }),
            /\[name, value\] pair/,
        ],
        [
            "PUBACK reason code 0x92",
            { type: PacketType.Puback, packetId: 1, reasonCode: 0x92 },
            /\[MQTT-2\.4\] PUBACK may not carry reason code 146/,
        ],
        ["CONNACK reason code 1", { type: PacketType.Connack, sessionPresent: false, returnCode: 1 }, /\[MQTT-2\.4\]/],
        [
            "CONNACK session present with a refusal",
            { type: PacketType.Connack, sessionPresent: true, returnCode: 0x80 },
            /session present/,
        ],
        [
            "UNSUBACK without reason codes",
            { type: PacketType.Unsuback, packetId: 1, reasonCodes: [] },
            /at least one reason code/,
        ],
        ["SUBACK code 0x10", { type: PacketType.Suback, packetId: 1, returnCodes: [0x10] }, /\[MQTT-2\.4\]/],
        ["DISCONNECT reason code 0x8c", { type: PacketType.Disconnect, reasonCode: 0x8c }, /\[MQTT-2\.4\]/],
        ["AUTH reason code 1", { type: PacketType.Auth, reasonCode: 1 }, /\[MQTT-2\.4\]/],
        ["an empty topic without a topic alias", publish({ topic: "" }), /\[MQTT-4\.7\.3-1\]/],
        ["No Local on a shared subscription", subscribe({ topic: "$share/g/a", noLocal: true }), /\[MQTT-3\.8\.3-4\]/],
        ["retain handling 3", subscribe({ retainHandling: 3 }), /retain handling must be 0, 1 or 2/],
        [
            "authentication data without a method",
            {
                type: 1,
                clientId: "c",
                keepaliveS: 1,
                cleanSession: true,
                properties: { authenticationData: Buffer.from("x") },
            },
            /authentication data needs an authentication method/,
        ],
    ]
    for (const [name, packet, expected] of cases)
        test(name, () => {
            assert.throws(() => encodePacket(packet, MQTT5), expected)
        })

    const mqtt311: [string, any, RegExp][] = [
        ["properties", withProperties(PacketType.Puback, { reasonString: "x" }), /MQTT 3\.1\.1 has no properties/],
        [
            "a reason code",
            { type: PacketType.Puback, packetId: 1, reasonCode: 0x10 },
            /MQTT 3\.1\.1 has no reason codes/,
        ],
        ["UNSUBACK reason codes", { type: PacketType.Unsuback, packetId: 1, reasonCodes: [0] }, /no reason codes/],
        ["subscription options", subscribe({ noLocal: true }), /no subscription options/],
        [
            "will properties",
            {
                type: 1,
                clientId: "c",
                keepaliveS: 1,
                cleanSession: true,
                will: {
                    topic: "w",
                    payload: Buffer.alloc(0),
                    qos: 0,
                    retain: false,
                    properties: { willDelayInterval: 1 },
                },
            },
            /no properties/,
        ],
        ["AUTH", { type: PacketType.Auth }, /unknown packet type 15/],
    ]
    for (const [name, packet, expected] of mqtt311)
        test(`3.1.1 refuses ${name}`, () => {
            assert.throws(() => encodePacket(packet), expected)
        })

    test("what only servers send, and what the node never sends", () => {
        assert.throws(
            () => checkClientPacket(withProperties(PacketType.Publish, { subscriptionIdentifiers: [1] }), MQTT5),
            /\[MQTT-3\.3\.4-6\]/
        )
        assert.throws(() => checkClientPacket({ type: PacketType.Auth }, MQTT5), /never sends AUTH/)
        assert.throws(() => checkClientPacket({ type: PacketType.Pingresp }, MQTT5), /does not send PINGRESP/)
        checkPacket(withProperties(PacketType.Publish, { subscriptionIdentifiers: [1] }), MQTT5)
        checkPacket(publish({ topic: "", properties: { topicAlias: 3 } }), MQTT5)
    })
})

describe("MQTT 5: fuzz", () => {
    const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : 20261203
    const inputCount = process.env.FUZZ5_INPUTS ? Number(process.env.FUZZ5_INPUTS) : 100000
    const errorValues = new Set(Object.values(ProtocolError).filter(v => typeof v === "number"))
    const validEncodings = PACKET_FIXTURES_5.filter(f => !f.nodeOnly).map(f => encodePacket(f.packet, MQTT5))

    /**
     * Where mqtt-packet 9 parses a packet differently from the spec, so no comparison is made:
     * it reads an AUTH's reason code even when the remaining length is 0 (the spec lets an AUTH
     * of reason 0 without properties leave both out), and it drops a user property with an empty
     * value when the same name comes again (it tests the value, not the name, for presence).
     */
    function mqttPacketDeviates(packet: Packet, bytes: Buffer): boolean {
        if (packet.type === PacketType.Auth && bytes.length === 2) return true
        const pairs: [string, string][] = (packet as any).properties?.userProperties ?? []
        return pairs.some(([name, value], i) => value === "" && pairs.slice(i + 1).some(([other]) => other === name))
    }

    test(`${inputCount} random and mutated inputs: a packet or a named error, never a throw; the firmware's decoder agrees (seed ${seed})`, () => {
        console.log(`MQTT 5 fuzz seed ${seed}, ${inputCount} inputs (FUZZ_SEED / FUZZ5_INPUTS to change)`)
        const started = process.hrtime.bigint()
        const random = makeRandom(seed)
        const below = (n: number) => Math.floor(random() * n)
        const counts = { packets: 0, errors: 0, compared: 0, deviations: 0, clientOnly: 0 }
        const errorsSeen = new Set<number>()

        for (let input = 0; input < inputCount; input++) {
            const kind = below(10)
            let bytes: Buffer
            if (kind < 2) {
                // Random bytes, usually behind a plausible first byte and remaining length.
                bytes = Buffer.alloc(below(48))
                for (let i = 0; i < bytes.length; i++) bytes[i] = below(256)
                if (bytes.length > 0 && below(10) < 8)
                    bytes[0] = [0x20, 0x32, 0x40, 0x62, 0x90, 0xb0, 0xe0, 0xf0][below(8)]
                if (bytes.length > 1 && below(2) === 0) bytes[1] = bytes.length - 2
            } else {
                const parts: Buffer[] = []
                const partCount = 1 + below(3)
                for (let i = 0; i < partCount; i++) parts.push(validEncodings[below(validEncodings.length)])
                bytes = Buffer.from(Buffer.concat(parts))
                if (kind > 2) {
                    const mutationCount = 1 + below(3)
                    for (let m = 0; m < mutationCount; m++) {
                        const position = below(bytes.length + 1)
                        switch (below(6)) {
                            case 0:
                                if (position < bytes.length) bytes[position] ^= 1 << below(8)
                                break
                            case 1:
                                if (position < bytes.length) bytes[position] = below(256)
                                break
                            case 2:
                                bytes = Buffer.concat([
                                    bytes.subarray(0, position),
                                    Buffer.from([below(256)]),
                                    bytes.subarray(position),
                                ])
                                break
                            case 3:
                                bytes = Buffer.concat([bytes.subarray(0, position), bytes.subarray(position + 1)])
                                break
                            case 4:
                                bytes = bytes.subarray(0, position)
                                break
                            default:
                                // A property identifier, length or reason code is often a byte after the header's.
                                if (bytes.length > 4) bytes[2 + below(Math.min(8, bytes.length - 2))] = below(256)
                        }
                    }
                }
            }
            const limit = kind === 2 ? 4096 : [16, 64, 4096][below(3)]
            const cuts = Array.from({ length: below(4) }, () => below(bytes.length + 1))
            const chunks = splitAt(bytes, cuts)
            const where = `seed ${seed} input ${input} (${bytes.toString("hex")})`

            const decoder = new PacketDecoder(limit, MQTT5)
            const decoded: Packet[] = []
            let failed: DecodeResult = null
            try {
                let calls = 0
                for (const chunk of chunks) {
                    decoder.push(chunk)
                    for (;;) {
                        const result = decoder.next()
                        assert.ok(++calls <= bytes.length + chunks.length + 1)
                        assert.ok(decoder.bufferedBytes() <= limit)
                        if (result === null) break
                        if (result.error) {
                            assert.equal(result.packet, undefined)
                            assert.ok(errorValues.has(result.error))
                            assert.ok(typeof result.message === "string" && result.message.length > 0)
                            failed = result
                            errorsSeen.add(result.error)
                        } else decoded.push(result.packet)
                    }
                    assert.equal(decoder.pendingInputBytes(), 0)
                }
            } catch (error) {
                throw new Error(`${where}: ${error}`)
            }
            if (kind === 2) assert.equal(failed, null, `${where}: ${failed?.message}`)

            // The firmware's decoder reads the same bytes the same way, up to a packet only clients
            // send, which it refuses.
            const client = new ClientPacketDecoder(decoder.maxPacketBytes, 65535, MQTT5)
            const clientResults: DecodeResult[] = []
            try {
                for (const chunk of chunks) {
                    client.push(chunk)
                    for (let r = client.next(); r; r = client.next()) clientResults.push(r)
                }
            } catch (error) {
                throw new Error(`${where}: the firmware's decoder threw ${error}`)
            }
            const full: DecodeResult[] = [...decoded.map(packet => ({ packet })), ...(failed ? [failed] : [])]
            const refused = clientResults.findIndex(r => r.error === ProtocolError.ClientOnlyPacket)
            if (refused >= 0) {
                assert.equal(refused, clientResults.length - 1, where)
                const f = full[refused]
                assert.ok(
                    f.packet
                        ? CLIENT_ONLY_TYPES_5.includes(f.packet.type)
                        : /^(CONNECT|SUBSCRIBE|UNSUBSCRIBE|PINGREQ):/.test(f.message),
                    where
                )
                counts.clientOnly++
            }
            const upTo = refused >= 0 ? refused : undefined
            assert.deepEqual(clientResults.slice(0, upTo), full.slice(0, upTo), where)
            if (refused < 0) assert.equal(clientResults.length, full.length, where)

            counts.packets += decoded.length
            if (failed) counts.errors++

            // Every decoded packet is valid: it passes the checked encoder and decodes back to itself;
            // and mqtt-packet reads its bytes the same way.
            let at = 0
            for (const packet of decoded) {
                const { length, bodyAt } = header(bytes, at)
                const own = bytes.subarray(at, bodyAt + length)
                at = bodyAt + length
                const p = packet as any
                if (p.skipped) {
                    assert.ok(p.topic === "" && p.payload.length === 0, where)
                    continue
                }
                if (p.type === PacketType.Connect && p.clientId === "" && !p.cleanSession) continue
                // A 3.1.1 broker's refusal of MQTT 5, read as 3.1.1 (decodeServerPacketBody).
                if (p.type === PacketType.Connack && p.returnCode === 1 && !p.properties) {
                    assert.deepEqual([...own], [0x20, 2, 0, 1], where)
                    continue
                }
                assert.deepEqual(decodeAll([encodePacket(packet, MQTT5)]), [{ packet }], where)
                if (mqttPacketDeviates(packet, own)) {
                    counts.deviations++
                    continue
                }
                const reference = parseWithMqttPacket(own)
                assert.equal(reference.error, null, `${where}: mqtt-packet: ${reference.error}`)
                assert.deepEqual(reference.packets, [packet], where)
                counts.compared++
            }
        }
        const seconds = Number(process.hrtime.bigint() - started) / 1e9
        console.log(
            `MQTT 5 fuzz: ${inputCount} inputs in ${seconds.toFixed(1)} s, ${counts.packets} packets decoded, ${counts.errors} inputs ended in an error, ${counts.compared} packets compared with mqtt-packet (${counts.deviations} left out where it deviates), ${counts.clientOnly} refused by the firmware's decoder as packets only clients send, ${errorsSeen.size} distinct errors`
        )
        for (const e of [
            ProtocolError.UnknownProperty,
            ProtocolError.PropertyNotAllowed,
            ProtocolError.DuplicateProperty,
            ProtocolError.InvalidPropertyValue,
            ProtocolError.PropertyLengthOverrun,
            ProtocolError.InvalidReasonCode,
        ])
            assert.ok(errorsSeen.has(e), `the fuzz reached ${ProtocolError[e]}`)
    })
})
