// The S0 pulse filter: its truth table (shared with the DeviceScript test), and a long random
// run of bouncing pulses counted exactly.
import { describe, test } from "node:test"
import assert from "node:assert/strict"
import { PulseFilter } from "../../src/meters/pulse-filter"
import { PULSE_OPTIONS, PULSE_TABLE } from "../fixtures/pulse-table"

describe("S0 pulse filter", () => {
    for (const c of PULSE_TABLE)
        test(c.name, () => {
            const f = new PulseFilter(PULSE_OPTIONS)
            for (const [ms, edge] of c.edges) edge === "v" ? f.onFall(ms) : f.onRise(ms)
            if (c.pollMs >= 0) f.poll(c.pollMs)
            assert.deepEqual({ pulses: f.count, glitches: f.glitches }, { pulses: c.pulses, glitches: c.glitches })
        })

    test("10,000 pulses at 20 Hz with bounce on every edge and glitches between them are counted exactly", () => {
        // 20 Hz: 50 ms a pulse, 30 ms low and 20 ms high, with the filter set for it (15 ms / 12 ms).
        const f = new PulseFilter({ minPulseMs: 15, minGapMs: 12 })
        let seed = 7
        const random = () => (seed = (seed * 48271) % 2147483647) / 2147483647
        let t = 0
        for (let i = 0; i < 10_000; i++) {
            // Up to 3 bounces of 1-2 ms at the fall and at the rise.
            const bounces = Math.floor(random() * 4)
            for (let b = 0; b < bounces; b++) {
                f.onFall(t)
                f.onRise(t + 1)
                t += 2
            }
            f.onFall(t)
            t += 30 - 2 * bounces
            f.onRise(t)
            for (let b = 0; b < bounces; b++) {
                f.onFall(t + 1)
                f.onRise(t + 2)
                t += 2
            }
            t += 20 - 2 * bounces
        }
        assert.equal(f.count, 10_000)
    })
})
