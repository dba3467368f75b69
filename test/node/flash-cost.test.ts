// Flash wear at the default configuration, on the model of the Settings store: the firmware's
// queue code, the node's state value and the uplink's write policy over simulated days. The
// benchmark (`npm run bench -- --only flash`) runs the same model for 30 days and prints it.
import { describe, test } from "node:test"
import assert from "node:assert/strict"
import { flashCost } from "../bench/flash-cost"

const DEFAULTS = { othersBytes: 2048, queueBytes: 4608, flushS: 600, readingS: 60, days: 5 }

describe("flash wear at the default configuration (5 simulated days)", () => {
    for (const online of [true, false])
        test(`8 KB store (RP2040, simulator), ${online ? "online" : "a broker outage from the start"}: ${online ? 12 : 20}+ years of 100k erase cycles, nothing dropped`, async () => {
            const r = await flashCost({ name: "rp2040", storeBytes: 8192, online, ...DEFAULTS })
            assert.equal(r.droppedWrites, 0, "a write the store did not keep")
            assert.equal(r.droppedReadings, 0)
            // Online, the acknowledgement mark written after each reading (56 log bytes) is most of
            // the wear: 13 years where the queue alone took 58. It is what makes a power cut's gap
            // start at the last reading acknowledged, and a total never go back.
            assert.ok(
                r.lifetimeYears >= (online ? 12 : 20),
                `${r.lifetimeYears.toFixed(1)} years (${r.compactionsPerDay.toFixed(2)} compactions a day)`
            )
            // Online, a reading is acknowledged long before the next flush: no queue writes for it,
            // only the mark (56 log bytes).
            if (online)
                assert.ok(r.bytesPerReading < 60, `${r.bytesPerReading.toFixed(1)} bytes written per reading online`)
        })
})
