// What the collector reads before the database: topics, bounds on size and nesting, headers and
// element types. The firmware's own messages all pass; each kind of bad input gets its reason.
import { describe, test } from "node:test"
import assert from "node:assert/strict"
import { MAX_DEPTH, MAX_PAYLOAD_BYTES, nestingDepth, parseMessage, parseTopic } from "../../collector/payload"
import { energyLabel } from "../../src/reading"
import { energyRecords, payloads, record, T0_S } from "./helpers"

const parse = (topic: string, body: unknown) =>
    parseMessage(topic, Buffer.from(typeof body === "string" ? body : JSON.stringify(body)), "meters")
const reason = (topic: string, body: unknown) => {
    const p = parse(topic, body)
    return p.kind === "rejected" ? p.reason : p.kind === "readings" && p.refused.length ? p.refused[0].reason : "ok"
}
const head = { meter: "main", quantity: "energy", unit: "Wh", time: "utc_ms" }
const good = { seq: 1, boot: 1, start: 1000, end: 61000, delta: 1.5, total: 10 }

describe("collector payload checks", () => {
    test("the firmware's messages (readings, merged, gaps, estimated, uptime, levels) are read whole", () => {
        const records = [
            ...energyRecords(20),
            record({ seq: 30, firstSeq: 21, startS: T0_S + 1200, durationS: 600, deltaMilli: 5000, totalMilli: 2e6 }),
            record({ seq: 31, startS: T0_S + 1800, totalMilli: 2e6, gap: true, firstSeq: 31 }),
            record({ seq: 32, startS: 5, deltaMilli: 1, totalMilli: 2e6 + 1, uptime: true, estimated: true }),
        ]
        let elements = 0
        for (const p of payloads(records)) {
            const parsed = parse("meters/n1/main/reading", p)
            assert.equal(parsed.kind, "readings", p)
            if (parsed.kind !== "readings") continue
            assert.deepEqual(parsed.refused, [])
            elements += parsed.elements.length
        }
        assert.equal(elements, records.length)
        const merged = parse("meters/n1/main/reading", payloads(records.slice(20, 21))[0])
        assert.ok(merged.kind === "readings" && merged.elements[0].firstSeq === 21 && merged.elements[0].seq === 30)
        const level = parse("meters/n1/t/reading", {
            meter: "t",
            quantity: "temperature",
            unit: "°C",
            time: "utc_ms",
            readings: [{ seq: 1, boot: 1, start: 0, end: 60000, min: 1, mean: 2, max: 3 }],
        })
        assert.ok(level.kind === "readings" && level.elements[0].mean === 2)
        assert.equal(reason("meters/n1/main/replay", { ...head, replay: true, readings: [good] }), "ok")
        assert.ok(parse("meters/n1/main/replay", { ...head, readings: [good] }).kind === "readings")
    })

    test("topics: ours are read, others refused", () => {
        assert.deepEqual(parseTopic("meters/n1/main/reading", "meters"), { kind: "reading", node: "n1", meter: "main" })
        assert.deepEqual(parseTopic("meters/n1/status", "meters"), { kind: "status", node: "n1" })
        assert.deepEqual(parseTopic("site/a/n1/main/replay", "site/a"), { kind: "replay", node: "n1", meter: "main" })
        for (const t of [
            "other/n1/main/reading",
            "meters/n1/cmd/reading",
            "meters/n1/main/reading/extra",
            "meters/n1/reply/x",
            "meters//main/reading",
            "meters/n1/bad meter/reading",
            "meters/n1/main/history",
        ])
            assert.equal(reason(t, { ...head, readings: [good] }), "bad_topic", t)
    })

    test("size is bounded before parsing, nesting before JSON.parse", () => {
        const big = JSON.stringify({ ...head, readings: [good], pad: "x".repeat(MAX_PAYLOAD_BYTES) })
        assert.equal(reason("meters/n1/main/reading", big), "too_large")
        const deep = "[".repeat(30_000) + "]".repeat(30_000)
        assert.equal(nestingDepth(deep), MAX_DEPTH + 1, "the scan stops past the limit")
        assert.equal(reason("meters/n1/main/reading", deep), "too_deep")
        assert.equal(
            reason("meters/n1/main/reading", { ...head, readings: [{ ...good, x: [[[[[[[1]]]]]]] }] }),
            "too_deep"
        )
        // Brackets inside strings do not count; escaped quotes do not end a string.
        assert.equal(nestingDepth(JSON.stringify({ a: '[[[[[[[[[[[[["\\' })), 1)
        assert.equal(reason("meters/n1/main/reading", { ...head, readings: [good], note: "[".repeat(50) }), "ok")
    })

    test("malformed JSON, wrong headers and wrong types are refused with their reason", () => {
        const t = "meters/n1/main/reading"
        assert.equal(reason(t, "{not json"), "not_json")
        assert.equal(reason(t, ""), "not_json")
        assert.equal(reason(t, Buffer.from([0xff, 0xfe, 0x00]).toString("latin1")), "not_json")
        assert.equal(reason(t, "[1,2]"), "bad_header")
        assert.equal(reason(t, { ...head, meter: "other", readings: [good] }), "meter_mismatch")
        assert.equal(reason(t, { ...head, time: "local", readings: [good] }), "bad_header")
        assert.equal(reason(t, { ...head, quantity: 5, readings: [good] }), "bad_header")
        assert.equal(reason(t, { ...head, readings: [] }), "bad_header")
        assert.equal(reason(t, { ...head, readings: "x" }), "bad_header")
        assert.equal(reason(t, { ...head, replay: "yes", readings: [good] }), "bad_header")
        assert.equal(reason(t, { ...head, readings: [{ ...good, seq: "1" }] }), "bad_element")
        assert.equal(reason(t, { ...head, readings: [{ ...good, seq: 1.5 }] }), "bad_element")
        assert.equal(reason(t, { ...head, readings: [{ ...good, delta: "3" }] }), "bad_element")
        assert.equal(reason(t, { ...head, readings: [{ ...good, start: 1e300 }] }), "bad_element")
        assert.equal(reason(t, { ...head, readings: [{ ...good, estimated: 1 }] }), "bad_element")
        assert.equal(reason(t, { ...head, readings: [[1]] }), "bad_element")
        assert.equal(
            reason(t, { ...head, readings: [{ seq: 1, boot: 1, start: 0, end: 5, min: 1, mean: 1, max: 1 }] }),
            "bad_element",
            "a level for energy"
        )
        assert.equal(reason("meters/n1/status", "[]"), "bad_status")
        assert.equal(reason("meters/n1/status", { state: 1 }), "bad_status")
        // One bad element does not refuse its neighbours.
        const mixed = parse(t, { ...head, readings: [good, { ...good, seq: "x" }, { ...good, seq: 2 }] })
        assert.ok(mixed.kind === "readings")
        assert.deepEqual(
            mixed.elements.map(e => e.seq),
            [1, 2]
        )
        assert.equal(mixed.refused.length, 1)
    })

    test("contract breaks pass the type checks: the database's constraints judge them", () => {
        const t = "meters/n1/main/reading"
        for (const e of [
            { ...good, end: good.start },
            { ...good, delta: -1 },
            { ...good, total: -1 },
            { ...good, seq: 0 },
            { ...good, first_seq: 5 },
        ])
            assert.equal(reason(t, { ...head, readings: [e] }), "ok", JSON.stringify(e))
        assert.ok(energyLabel("main").quantity === "energy")
    })
})
