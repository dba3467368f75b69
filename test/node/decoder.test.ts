import { describe, test } from "node:test"
import assert from "node:assert/strict"
import mqttPacket from "mqtt-packet"

import { encodePacket } from "../../src/mqtt/codec"
import {
    DecodeResult,
    PacketDecoder,
    ProtocolError,
    protocolErrorText,
} from "../../src/mqtt/decoder"
import { Packet } from "../../src/mqtt/packets"
import { PACKET_FIXTURES, toMqttPacket } from "./packet-fixtures"

const LARGE_LIMIT = 4 * 1024 * 1024

function referenceBytes(packet: Packet): Buffer {
    return mqttPacket.generate(toMqttPacket(packet), { protocolVersion: 4 })
}

/**
 * Pushes each chunk and drains the decoder after each, the way a connection
 * would. Stops at the first error.
 */
function decodeChunks(
    chunks: Buffer[],
    maxPacketBytes = LARGE_LIMIT
): DecodeResult[] {
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

function packetsOf(results: DecodeResult[]): Packet[] {
    return results.map(result => {
        if (result.error) assert.fail(`unexpected error: ${result.message}`)
        return result.packet
    })
}

/** Deterministic PRNG (mulberry32) so failures reproduce from the printed seed. */
export function makeRandom(seed: number): () => number {
    let state = seed >>> 0
    return () => {
        state = (state + 0x6d2b79f5) >>> 0
        let t = state
        t = Math.imul(t ^ (t >>> 15), t | 1)
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296
    }
}

function splitAt(bytes: Buffer, cuts: number[]): Buffer[] {
    const sorted = [...new Set(cuts)].sort((a, b) => a - b)
    const chunks: Buffer[] = []
    let start = 0
    for (const cut of sorted) {
        if (cut <= start || cut >= bytes.length) continue
        chunks.push(bytes.subarray(start, cut))
        start = cut
    }
    chunks.push(bytes.subarray(start))
    return chunks
}

function oneByteChunks(bytes: Buffer): Buffer[] {
    const chunks: Buffer[] = []
    for (let i = 0; i < bytes.length; i++) chunks.push(bytes.subarray(i, i + 1))
    return chunks
}

describe("decodes what mqtt-packet generates", () => {
    for (const fixture of PACKET_FIXTURES) {
        describe(fixture.name, () => {
            const bytes = referenceBytes(fixture.packet)
            test("fed whole", () => {
                assert.deepEqual(packetsOf(decodeChunks([bytes])), [
                    fixture.packet,
                ])
            })
            test("fed one byte at a time", { skip: bytes.length > 20000 }, () => {
                assert.deepEqual(packetsOf(decodeChunks(oneByteChunks(bytes))), [
                    fixture.packet,
                ])
            })
            test("split at random points", () => {
                const random = makeRandom(bytes.length)
                for (let round = 0; round < 20; round++) {
                    const cuts: number[] = []
                    const cutCount = 1 + Math.floor(random() * 6)
                    for (let i = 0; i < cutCount; i++)
                        cuts.push(Math.floor(random() * bytes.length))
                    assert.deepEqual(
                        packetsOf(decodeChunks(splitAt(bytes, cuts))),
                        [fixture.packet],
                        `cuts ${cuts}`
                    )
                }
            })
            test("split at every single point", { skip: bytes.length > 400 }, () => {
                for (let cut = 1; cut < bytes.length; cut++) {
                    assert.deepEqual(
                        packetsOf(decodeChunks(splitAt(bytes, [cut]))),
                        [fixture.packet],
                        `cut ${cut}`
                    )
                }
            })
            test("round trip through our encoder", () => {
                assert.deepEqual(
                    packetsOf(decodeChunks([encodePacket(fixture.packet)])),
                    [fixture.packet]
                )
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
            for (let i = 0; i < 200; i++)
                cuts.push(Math.floor(random() * bytes.length))
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
        for (const fixture of small)
            decoder.push(referenceBytes(fixture.packet))
        const decoded: Packet[] = []
        for (;;) {
            const result = decoder.next()
            if (result === null) break
            decoded.push(result.packet)
        }
        assert.deepEqual(decoded, small.map(f => f.packet))
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
