import { describe, test } from "node:test"
import assert from "node:assert/strict"
import mqttPacket from "mqtt-packet"

import {
    ClientPacketDecoder,
    DecodeResult,
    MAX_TOPIC_BYTES,
    ProtocolError,
    protocolErrorText,
} from "../../src/mqtt/decoder"
import { Packet, PacketType } from "../../src/mqtt/packets"
import { MALFORMED_FIXTURES } from "./malformed-fixtures"
import { fromMqttPacket, PACKET_FIXTURES, toMqttPacket } from "./packet-fixtures"
import { encodePacket, PacketDecoder } from "../fixtures/mqtt-codec"
import { makeRandom, oneByteChunks, packetsOf, splitAt } from "../fixtures/decoding"

const LARGE_LIMIT = 4 * 1024 * 1024

function referenceBytes(packet: Packet): Buffer {
    return mqttPacket.generate(toMqttPacket(packet), { protocolVersion: 4 })
}

/**
 * Pushes each chunk and drains the decoder after each, the way a connection
 * would. Stops at the first error.
 */
function decodeChunks(chunks: Buffer[], maxPacketBytes = LARGE_LIMIT): DecodeResult[] {
    const decoder = new PacketDecoder(maxPacketBytes)
    const results: DecodeResult[] = []
    for (const chunk of chunks) {
        decoder.push(chunk)
        for (;;) {
            const result = decoder.next()
            if (result === null) break
            results.push(result)
            if (result.error) return results
        }
        assert.equal(decoder.pendingInputBytes(), 0)
    }
    return results
}

describe("decodes what mqtt-packet generates", () => {
    for (const fixture of PACKET_FIXTURES) {
        describe(fixture.name, () => {
            const bytes = referenceBytes(fixture.packet)
            test("fed whole", () => {
                assert.deepEqual(packetsOf(decodeChunks([bytes])), [fixture.packet])
            })
            test("fed one byte at a time", () => {
                assert.deepEqual(packetsOf(decodeChunks(oneByteChunks(bytes))), [fixture.packet])
            })
            test("split at random points", () => {
                const random = makeRandom(bytes.length)
                for (let round = 0; round < 20; round++) {
                    const cuts: number[] = []
                    const cutCount = 1 + Math.floor(random() * 6)
                    for (let i = 0; i < cutCount; i++) cuts.push(Math.floor(random() * bytes.length))
                    assert.deepEqual(packetsOf(decodeChunks(splitAt(bytes, cuts))), [fixture.packet], `cuts ${cuts}`)
                }
            })
            test("split at every single point", { skip: bytes.length > 400 }, () => {
                for (let cut = 1; cut < bytes.length; cut++) {
                    assert.deepEqual(packetsOf(decodeChunks(splitAt(bytes, [cut]))), [fixture.packet], `cut ${cut}`)
                }
            })
            test("round trip through our encoder", () => {
                assert.deepEqual(packetsOf(decodeChunks([encodePacket(fixture.packet)])), [fixture.packet])
            })
        })
    }
})

describe("several packets in one chunk", () => {
    const small = PACKET_FIXTURES.filter(f => !f.nodeOnly)
    test("all small fixtures coalesced into one chunk", () => {
        const bytes = Buffer.concat(small.map(f => referenceBytes(f.packet)))
        assert.deepEqual(
            packetsOf(decodeChunks([bytes])),
            small.map(f => f.packet)
        )
    })
    test("all fixtures coalesced, then split at random points", () => {
        const all = PACKET_FIXTURES
        const bytes = Buffer.concat(all.map(f => referenceBytes(f.packet)))
        const random = makeRandom(42)
        for (let round = 0; round < 5; round++) {
            const cuts: number[] = []
            for (let i = 0; i < 200; i++) cuts.push(Math.floor(random() * bytes.length))
            assert.deepEqual(
                packetsOf(decodeChunks(splitAt(bytes, cuts))),
                all.map(f => f.packet)
            )
        }
    })
    test("small fixtures coalesced and fed one byte at a time", () => {
        const bytes = Buffer.concat(small.map(f => referenceBytes(f.packet)))
        assert.deepEqual(
            packetsOf(decodeChunks(oneByteChunks(bytes))),
            small.map(f => f.packet)
        )
    })
    test("pushing several chunks before draining", () => {
        const decoder = new PacketDecoder(LARGE_LIMIT)
        for (const fixture of small) decoder.push(referenceBytes(fixture.packet))
        const decoded: Packet[] = []
        for (;;) {
            const result = decoder.next()
            if (result === null) break
            decoded.push(result.packet)
        }
        assert.deepEqual(
            decoded,
            small.map(f => f.packet)
        )
        assert.equal(decoder.pendingInputBytes(), 0)
        assert.equal(decoder.bufferedBytes(), 0)
    })
    test("next() returns one packet per call", () => {
        const decoder = new PacketDecoder(100)
        decoder.push(Buffer.from([0xc0, 0x00, 0xd0, 0x00, 0xe0, 0x00]))
        assert.equal(decoder.pendingInputBytes(), 6)
        assert.deepEqual(decoder.next(), { packet: { type: 12 } })
        assert.equal(decoder.pendingInputBytes(), 4)
        assert.deepEqual(decoder.next(), { packet: { type: 13 } })
        assert.deepEqual(decoder.next(), { packet: { type: 14 } })
        assert.equal(decoder.next(), null)
    })
})

describe("nextPuback, the client's fast path", () => {
    /** Drains the way MqttClient does: nextPuback() first, next() when it says 0. */
    function decodeWithFastPath(chunks: Buffer[]) {
        const decoder = new PacketDecoder(LARGE_LIMIT)
        const packets: Packet[] = []
        let fast = 0
        for (const chunk of chunks) {
            decoder.push(chunk)
            for (;;) {
                const packetId = decoder.nextPuback()
                if (packetId) {
                    fast++
                    packets.push({ type: PacketType.Puback, packetId })
                    continue
                }
                const result = decoder.next()
                if (result === null) break
                if (result.error) assert.fail(`unexpected error: ${result.message}`)
                packets.push(result.packet)
            }
        }
        return { packets, fast }
    }
    const pubacks = [1, 2, 300, 65535].map(id => ({ type: PacketType.Puback, packetId: id }) as Packet)
    const stream = [...pubacks.slice(0, 2), ...PACKET_FIXTURES.map(f => f.packet), ...pubacks.slice(2)]
    const bytes = Buffer.concat(stream.map(referenceBytes))

    test("a stream of PUBACKs and every other fixture decodes as next() alone decodes it", () => {
        const { packets, fast } = decodeWithFastPath([bytes])
        assert.deepEqual(packets, stream)
        assert.ok(fast >= pubacks.length, `${fast} PUBACKs took the fast path`)
    })
    test("split at random points: the same packets, PUBACKs cut in two go through next()", () => {
        const random = makeRandom(7)
        for (let round = 0; round < 20; round++) {
            const cuts: number[] = []
            for (let i = 0; i < 100; i++) cuts.push(Math.floor(random() * bytes.length))
            assert.deepEqual(decodeWithFastPath(splitAt(bytes, cuts)).packets, stream)
        }
    })
    test("one byte at a time: nextPuback never consumes a partial PUBACK", () => {
        const decoder = new PacketDecoder(LARGE_LIMIT)
        const bytes = oneByteChunks(referenceBytes(pubacks[2]))
        for (let i = 0; i < 3; i++) {
            decoder.push(bytes[i])
            assert.equal(decoder.nextPuback(), 0)
            assert.equal(decoder.pendingInputBytes(), i + 1, "nothing consumed")
        }
        // Bytes pushed before the previous chunk was drained join it: the whole PUBACK is there.
        decoder.push(bytes[3])
        assert.equal(decoder.nextPuback(), 300)
        assert.equal(decoder.pendingInputBytes(), 0)
        // Drained after each byte, the PUBACK goes through next().
        for (const chunk of bytes) {
            decoder.push(chunk)
            assert.equal(decoder.nextPuback(), 0)
            const result = decoder.next()
            if (chunk !== bytes[3]) assert.equal(result, null)
            else assert.deepEqual(packetsOf([result!]), [pubacks[2]])
        }
    })
    test("a PUBACK with packet id 0 is left to next(), which names the error", () => {
        const decoder = new PacketDecoder(LARGE_LIMIT)
        decoder.push(Buffer.from([0x40, 0x02, 0x00, 0x00]))
        assert.equal(decoder.nextPuback(), 0)
        const result = decoder.next()
        assert.equal(result?.error, ProtocolError.PacketIdZero)
    })
    test("a PUBACK with wrong flags or length is left to next()", () => {
        for (const raw of [
            [0x41, 0x02, 0x00, 0x01],
            [0x40, 0x03, 0x00, 0x01, 0x00],
        ]) {
            const decoder = new PacketDecoder(LARGE_LIMIT)
            decoder.push(Buffer.from(raw))
            assert.equal(decoder.nextPuback(), 0)
            assert.ok(decoder.next()?.error)
        }
    })
})

describe("error text table", () => {
    test("every ProtocolError has its own text", () => {
        const texts = new Set<string>()
        for (const value of Object.values(ProtocolError)) {
            if (typeof value !== "number") continue
            const text = protocolErrorText(value)
            assert.doesNotMatch(text, /unknown protocol error/)
            assert.ok(!texts.has(text), `duplicate text ${text}`)
            texts.add(text)
        }
        assert.match(protocolErrorText(999 as ProtocolError), /unknown/)
    })
})

describe("malformed input yields the exact ProtocolError", () => {
    const raw = (hex: string) => Buffer.from(hex.replace(/\s+/g, ""), "hex")
    for (const { name, bytes, error: expected, detail } of MALFORMED_FIXTURES) {
        test(name, () => {
            const limit = 100
            for (const chunks of [[bytes], oneByteChunks(bytes)]) {
                const results = decodeChunks(chunks, limit)
                assert.equal(results.length, 1, `results ${JSON.stringify(results)}`)
                const result = results[0]
                assert.equal(result.packet, undefined)
                assert.equal(
                    result.error,
                    expected,
                    `got ${ProtocolError[result.error]} (${result.message}), wanted ${ProtocolError[expected]}`
                )
                assert.equal(typeof result.message, "string")
                assert.ok(result.message.length > 0)
                if (detail) assert.match(result.message, detail)
            }
        })
    }

    test("the client's decoder refuses every packet only clients send, naming it", () => {
        const clientOnly = [
            PacketType.Connect,
            PacketType.Subscribe,
            PacketType.Unsubscribe,
            PacketType.Pingreq,
            PacketType.Disconnect,
        ]
        for (const fixture of PACKET_FIXTURES.filter(f => !f.nodeOnly)) {
            const decoder = new ClientPacketDecoder(4096, MAX_TOPIC_BYTES)
            decoder.push(referenceBytes(fixture.packet))
            const result = decoder.next()!
            if (!clientOnly.includes(fixture.packet.type)) {
                assert.deepEqual(result, { packet: fixture.packet }, fixture.name)
                continue
            }
            assert.equal(result.error, ProtocolError.ClientOnlyPacket, fixture.name)
            assert.match(
                result.message!,
                /^(CONNECT|SUBSCRIBE|UNSUBSCRIBE|PINGREQ|DISCONNECT): a packet only clients send$/
            )
            assert.equal(decoder.next(), null, "dead")
        }
    })

    test("a valid packet before the bad one is still returned", () => {
        const good = encodePacket({ type: PacketType.Pingresp })
        const results = decodeChunks([Buffer.concat([good, raw("f0 00"), good])])
        assert.deepEqual(
            results.map(r => r.error ?? r.packet),
            [{ type: PacketType.Pingresp }, ProtocolError.ReservedPacketType]
        )
    })

    test("a packet of exactly maxPacketBytes is accepted, one byte more is not", () => {
        const packet = {
            type: PacketType.Publish,
            topic: "t",
            payload: Buffer.alloc(95),
            qos: 0,
            dup: false,
            retain: false,
        } as Packet
        const bytes = encodePacket(packet)
        assert.equal(bytes.length, 100)
        assert.deepEqual(packetsOf(decodeChunks([bytes], 100)), [packet])
        const results = decodeChunks([bytes], 99)
        assert.equal((results[0].packet as any).skipped, "a message of 100 bytes", "skipped, not buffered")
    })
})

describe("decoder lifecycle", () => {
    test("a dead decoder drops input until reset()", () => {
        const decoder = new PacketDecoder(100)
        const ping = encodePacket({ type: PacketType.Pingreq })
        decoder.push(Buffer.from([0x00, 0x00]))
        decoder.push(ping)
        const failure = decoder.next()
        assert.equal(failure.error, ProtocolError.ReservedPacketType)
        assert.equal(decoder.pendingInputBytes(), 0)
        assert.equal(decoder.next(), null)
        decoder.push(ping)
        assert.equal(decoder.pendingInputBytes(), 0)
        assert.equal(decoder.next(), null)
        decoder.reset()
        decoder.push(ping)
        assert.deepEqual(decoder.next(), {
            packet: { type: PacketType.Pingreq },
        })
        assert.equal(decoder.next(), null)
    })

    test("reset() drops a partly read packet", () => {
        const decoder = new PacketDecoder(100)
        decoder.push(Buffer.from([0x30, 0x10, 0x00]))
        assert.equal(decoder.next(), null)
        assert.equal(decoder.bufferedBytes(), 16)
        decoder.reset()
        assert.equal(decoder.bufferedBytes(), 0)
        decoder.push(Buffer.from([0xd0, 0x00]))
        assert.deepEqual(decoder.next(), {
            packet: { type: PacketType.Pingresp },
        })
    })

    test("empty and missing chunks are ignored", () => {
        const decoder = new PacketDecoder(100)
        decoder.push(Buffer.alloc(0))
        decoder.push(null as unknown as Buffer)
        assert.equal(decoder.next(), null)
        decoder.push(Buffer.from([0xd0]))
        assert.equal(decoder.next(), null)
        decoder.push(Buffer.alloc(0))
        decoder.push(Buffer.from([0x00]))
        assert.deepEqual(decoder.next(), {
            packet: { type: PacketType.Pingresp },
        })
    })

    test("limits below 2 are clamped so PINGRESP still fits", () => {
        const decoder = new PacketDecoder(0)
        assert.equal(decoder.maxPacketBytes, 2)
        decoder.push(Buffer.from([0xd0, 0x00, 0x90, 0x01]))
        assert.deepEqual(decoder.next(), {
            packet: { type: PacketType.Pingresp },
        })
        assert.equal(decoder.next().error, ProtocolError.PacketTooLarge)
    })

    test("decoded payloads do not alias the pushed chunk", () => {
        const decoder = new PacketDecoder(100)
        const chunk = encodePacket({
            type: PacketType.Publish,
            topic: "t",
            payload: Buffer.from("abc"),
            qos: 0,
            dup: false,
            retain: false,
        })
        decoder.push(chunk)
        const result = decoder.next()
        chunk.fill(0)
        assert.equal(result.packet.type, PacketType.Publish)
        assert.equal((result.packet as any).payload.toString(), "abc")
    })
})

describe("memory stays bounded", () => {
    test("a huge announced length is refused before buffering", () => {
        const decoder = new PacketDecoder(1024 * 1024)
        decoder.push(Buffer.from([0x90, 0xff, 0xff, 0xff, 0x7f]))
        assert.equal(decoder.next().error, ProtocolError.PacketTooLarge)
        assert.equal(decoder.bufferedBytes(), 0)
    })

    test("a PUBLISH over the limit is skipped in any split, never buffered, and only its packet id kept", () => {
        const limit = 4096
        const big = {
            type: PacketType.Publish,
            topic: "meters/n/cmd/" + "x".repeat(300),
            payload: Buffer.alloc(60000, 0x5b),
            qos: 1,
            dup: false,
            retain: true,
            packetId: 0x1234,
        } as Packet
        const next = { type: PacketType.Pingresp } as Packet
        const bytes = Buffer.concat([encodePacket(big), encodePacket(next)])
        for (const step of [1, 2, 3, 7, 301, 302, 303, 304, 305, 1400, 65536]) {
            const decoder = new PacketDecoder(limit)
            const results: DecodeResult[] = []
            for (let offset = 0; offset < bytes.length; offset += step) {
                decoder.push(bytes.subarray(offset, offset + step))
                for (let r = decoder.next(); r; r = decoder.next()) results.push(r)
                assert.equal(decoder.bufferedBytes(), 0, `step ${step}: nothing of it is buffered`)
            }
            assert.deepEqual(
                results,
                [
                    {
                        packet: {
                            type: PacketType.Publish,
                            topic: "",
                            payload: Buffer.alloc(0),
                            qos: 1,
                            dup: false,
                            retain: true,
                            packetId: 0x1234,
                            skipped: `a message of ${bytes.length - 2} bytes`,
                        },
                    },
                    { packet: next },
                ],
                `step ${step}`
            )
        }
    })

    test("the client's decoder skips a PUBLISH whose topic is over its limit, keeping the packet id", () => {
        const long = encodePacket({
            type: PacketType.Publish,
            topic: "meters/n/cmd/" + "n".repeat(2048),
            payload: Buffer.from("{}"),
            qos: 2,
            dup: false,
            retain: false,
            packetId: 77,
        } as Packet)
        const decoder = new ClientPacketDecoder(4096, MAX_TOPIC_BYTES)
        decoder.push(long)
        const r = decoder.next()
        assert.equal((r.packet as any).skipped, `a topic of ${13 + 2048} bytes`)
        assert.equal((r.packet as any).packetId, 77)
        assert.equal((r.packet as any).qos, 2)
        const generic = new PacketDecoder(4096)
        generic.push(long)
        assert.equal((generic.next().packet as any).topic.length, 13 + 2048, "a broker's decoder takes any topic")
    })

    test("an oversized QoS 0 PUBLISH carries no packet id; an oversized QoS 1 one with id 0 is a protocol error", () => {
        const publish = (qos: number, packetId?: number) =>
            encodePacket({
                type: PacketType.Publish,
                topic: "t",
                payload: Buffer.alloc(200),
                qos,
                dup: false,
                retain: false,
                packetId,
            } as Packet)
        let decoder = new PacketDecoder(100)
        decoder.push(publish(0))
        const r = decoder.next()
        assert.equal((r.packet as any).skipped, "a message of 206 bytes")
        assert.equal((r.packet as any).packetId, undefined)
        decoder = new PacketDecoder(100)
        const zero = publish(1, 1)
        // The packet id follows 32 cd 01 (QoS 1, remaining length 205), 00 01 and "t".
        zero[6] = 0
        zero[7] = 0
        decoder.push(zero)
        assert.equal(decoder.next().error, ProtocolError.PacketIdZero)
    })

    test("a large packet trickled in holds only its preallocated body", () => {
        const limit = 70000
        const packet = {
            type: PacketType.Publish,
            topic: "big",
            payload: Buffer.alloc(65000, 7),
            qos: 1,
            dup: false,
            retain: false,
            packetId: 9,
        } as Packet
        const bytes = encodePacket(packet)
        const decoder = new PacketDecoder(limit)
        let decoded: DecodeResult = null
        for (let offset = 0; offset < bytes.length; offset += 1000) {
            decoder.push(bytes.subarray(offset, offset + 1000))
            const result = decoder.next()
            assert.ok(decoder.bufferedBytes() <= limit)
            assert.equal(decoder.pendingInputBytes(), 0)
            if (result) decoded = result
        }
        assert.deepEqual(decoded, { packet })
        assert.equal(decoder.bufferedBytes(), 0)
    })
})

describe("fuzz", () => {
    const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : 20261122
    const inputCount = process.env.FUZZ_INPUTS ? Number(process.env.FUZZ_INPUTS) : 200000
    const errorValues = new Set(Object.values(ProtocolError).filter(v => typeof v === "number"))
    const validEncodings = PACKET_FIXTURES.filter(f => !f.nodeOnly).map(f => encodePacket(f.packet))
    const CLIENT_ONLY_TYPES: number[] = [
        PacketType.Connect,
        PacketType.Subscribe,
        PacketType.Unsubscribe,
        PacketType.Pingreq,
        PacketType.Disconnect,
    ]
    const validFirstBytes = [
        0x10, 0x20, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x3a, 0x3b, 0x3c, 0x3d, 0x40, 0x50, 0x62, 0x70, 0x82, 0x90,
        0xa2, 0xb0, 0xc0, 0xd0, 0xe0,
    ]

    function mqttPacketParse(bytes: Buffer): Packet[] {
        const parser = mqttPacket.parser({ protocolVersion: 4 })
        const packets: Packet[] = []
        let failed = false
        parser.on("packet", (p: any) => {
            if (!failed) packets.push(fromMqttPacket(p))
        })
        parser.on("error", () => (failed = true))
        parser.parse(bytes)
        return packets
    }

    test(`${inputCount} random and mutated inputs never throw, results are packets or named errors (seed ${seed})`, () => {
        console.log(`fuzz seed ${seed}, ${inputCount} inputs (FUZZ_SEED / FUZZ_INPUTS to change)`)
        const started = process.hrtime.bigint()
        const random = makeRandom(seed)
        const below = (n: number) => Math.floor(random() * n)
        const counts = { packets: 0, errors: 0, differential: 0, clientOnly: 0 }
        const errorsSeen = new Set<number>()

        for (let input = 0; input < inputCount; input++) {
            const kind = below(10)
            let bytes: Buffer
            let mustDecodeAll = false
            if (kind < 3) {
                // Random bytes, usually behind a plausible first byte.
                bytes = Buffer.alloc(below(48))
                for (let i = 0; i < bytes.length; i++) bytes[i] = below(256)
                if (bytes.length > 0 && below(10) < 7) bytes[0] = validFirstBytes[below(validFirstBytes.length)]
                if (bytes.length > 1 && below(2) === 0) bytes[1] = below(bytes.length)
            } else {
                const parts: Buffer[] = []
                const partCount = 1 + below(3)
                for (let i = 0; i < partCount; i++) parts.push(validEncodings[below(validEncodings.length)])
                bytes = Buffer.from(Buffer.concat(parts))
                if (kind === 9) {
                    mustDecodeAll = true
                } else {
                    const mutationCount = 1 + below(3)
                    for (let m = 0; m < mutationCount; m++) {
                        const position = below(bytes.length + 1)
                        switch (below(6)) {
                            case 0: // flip one bit
                                if (position < bytes.length) bytes[position] ^= 1 << below(8)
                                break
                            case 1: // overwrite a byte
                                if (position < bytes.length) bytes[position] = below(256)
                                break
                            case 2: // insert a byte
                                bytes = Buffer.concat([
                                    bytes.subarray(0, position),
                                    Buffer.from([below(256)]),
                                    bytes.subarray(position),
                                ])
                                break
                            case 3: // delete a byte
                                bytes = Buffer.concat([bytes.subarray(0, position), bytes.subarray(position + 1)])
                                break
                            case 4: // truncate
                                bytes = bytes.subarray(0, position)
                                break
                            default: // corrupt the remaining length
                                if (bytes.length > 1) bytes[1] = below(256)
                        }
                    }
                }
            }

            const limit = mustDecodeAll ? 4096 : [8, 32, 128, 4096][below(4)]
            const cuts: number[] = []
            const cutCount = below(4)
            for (let i = 0; i < cutCount; i++) cuts.push(below(bytes.length + 1))
            const chunks = splitAt(bytes, cuts)

            const decoder = new PacketDecoder(limit)
            const decoded: Packet[] = []
            let failed: DecodeResult = null
            let nextCalls = 0
            try {
                for (const chunk of chunks) {
                    decoder.push(chunk)
                    for (;;) {
                        const result = decoder.next()
                        nextCalls++
                        // Each packet consumes at least 2 bytes, so this bounds the loop.
                        assert.ok(nextCalls <= bytes.length + chunks.length + 1)
                        assert.ok(decoder.bufferedBytes() <= limit)
                        if (result === null) break
                        if (result.error) {
                            assert.equal(result.packet, undefined)
                            assert.ok(errorValues.has(result.error))
                            assert.equal(typeof result.message, "string")
                            assert.ok(result.message.length > 0)
                            failed = result
                            errorsSeen.add(result.error)
                        } else {
                            decoded.push(result.packet)
                        }
                    }
                    assert.equal(decoder.pendingInputBytes(), 0)
                    assert.ok(decoder.bufferedBytes() <= limit)
                }
            } catch (error) {
                throw new Error(`seed ${seed} input ${input} (${bytes.toString("hex")}): ${error}`)
            }

            // The firmware's decoder reads the same bytes the same way up to a packet only clients
            // send, which it refuses: it accepts nothing the decoder of every type refuses.
            const client = new ClientPacketDecoder(decoder.maxPacketBytes, 65535)
            const clientResults: DecodeResult[] = []
            for (const chunk of chunks) {
                client.push(chunk)
                for (let r = client.next(); r; r = client.next()) clientResults.push(r)
            }
            const full: DecodeResult[] = [...decoded.map(packet => ({ packet })), ...(failed ? [failed] : [])]
            const where = `seed ${seed} input ${input} (${bytes.toString("hex")})`
            const refused = clientResults.findIndex(r => r.error === ProtocolError.ClientOnlyPacket)
            if (refused >= 0) {
                assert.equal(refused, clientResults.length - 1, where)
                const f = full[refused]
                assert.ok(
                    f.packet
                        ? CLIENT_ONLY_TYPES.includes(f.packet.type)
                        : /^(CONNECT|SUBSCRIBE|UNSUBSCRIBE):/.test(f.message),
                    where
                )
                counts.clientOnly++
            }
            assert.deepEqual(
                clientResults.slice(0, refused >= 0 ? refused : undefined),
                full.slice(0, refused >= 0 ? refused : undefined),
                where
            )
            if (refused < 0) assert.equal(clientResults.length, full.length, where)

            counts.packets += decoded.length
            if (failed) counts.errors++

            // Every decoded packet is valid: it survives our encoder and decodes
            // back to itself. (A CONNECT with an empty client id and a persistent
            // session is valid on the wire but one our encoder refuses to send.)
            for (const packet of decoded) {
                const p = packet as any
                if (p.type === PacketType.Connect && p.clientId === "" && !p.cleanSession) continue
                // An oversized PUBLISH decodes to a summary (no topic, no payload): checked below.
                if (p.skipped) {
                    assert.ok(p.topic === "" && p.payload.length === 0)
                    continue
                }
                const again = decodeChunks([encodePacket(packet)], 1 << 20)
                assert.deepEqual(again, [{ packet }], `seed ${seed} input ${input}`)
            }
            if (mustDecodeAll) {
                assert.equal(failed, null)
                assert.equal(decoded.length > 0, true)
            }
            // Whatever we accept, mqtt-packet accepts the same way.
            if (decoded.length > 0 && limit === 4096 && !decoded.some(p => (p as any).skipped)) {
                counts.differential++
                const reference = mqttPacketParse(bytes)
                assert.deepEqual(
                    reference.slice(0, decoded.length),
                    decoded,
                    `seed ${seed} input ${input} (${bytes.toString("hex")})`
                )
            }
        }
        const seconds = Number(process.hrtime.bigint() - started) / 1e9
        console.log(
            `fuzz: ${inputCount} inputs in ${seconds.toFixed(1)} s, ${counts.packets} packets decoded, ${counts.errors} inputs ended in an error, ${counts.differential} compared with mqtt-packet, ${counts.clientOnly} refused by the client's decoder as packets only clients send, ${errorsSeen.size} distinct errors`
        )
        assert.ok(errorsSeen.size >= 20, `only ${errorsSeen.size} errors seen`)
    })
})
