// Reading records and the durable queue in the DeviceScript VM: the byte encoding must match
// Node's exactly (the VM's bit operations are 32-bit and its numbers behave differently above
// 2^31), and the queue must work on the real Settings store, whose flash starts empty in test mode.
import { describe, test, expect } from "@devicescript/test"
import * as ds from "@devicescript/core"
import {
    BlockReader,
    BlockWriter,
    decodeRecord,
    encodeRecord,
    energyRecord,
    FLAG_CLOCK_NOT_SET,
    FLAG_ESTIMATED,
    FLAG_MERGED,
    FLAG_NON_ADDITIVE,
    mergeInto,
    newRecord,
    ReadingRecord,
} from "../../src/storage/records"
import { BLOCK_BYTES, BUDGET_FOR_8K_STORE_BYTES, DurableQueue, metaCostBytes } from "../../src/storage/durable-queue"
import { entryCostBytes } from "../fixtures/fake-kv"
import { CountingStore, liveBytes, queueStats } from "../fixtures/queue-stats"
import { SettingsKeyValueStore } from "../../src/storage/settings-kv"
import { SimulatedEnergyMeter } from "../../src/meters/simulated"

function slotsBudget(slots: number) {
    return slots * entryCostBytes(BLOCK_BYTES) + metaCostBytes(slots)
}

async function pause() {
    await ds.sleep(0)
}

function hexOf(b: Buffer) {
    return b.toString("hex")
}

/** One-minute readings of the simulated meter, seq from 1. */
class MinuteReadings {
    private meter = new SimulatedEnergyMeter(1, 800, 123456789)
    private next = 0
    readonly startTotalMilliWh = 123456789
    take(): ReadingRecord {
        const i = this.next++
        const r = this.meter.read(i * 60000, (i + 1) * 60000)
        return energyRecord(0, i + 1, 4, i * 60000, (i + 1) * 60000, r.deltaMilliWh, this.meter.totalMilliWh)
    }
    totalMilliWh() {
        return this.meter.totalMilliWh
    }
}

interface Walk {
    records: number
    first: ReadingRecord
    last: ReadingRecord
    sumMilliWh: number
    worstS: number
}

/**
 * Reads the whole queue a slice at a time (the heap holds a few dozen records, not thousands),
 * checking that seq, time and total continue from each record to the next.
 */
async function walk(q: DurableQueue): Promise<Walk> {
    const w: Walk = { records: 0, first: null, last: null, sumMilliWh: 0, worstS: 0 }
    for (let from = 0; from < q.size(); from += 40) {
        const slice = await q.peek(40, from)
        for (const r of slice) {
            const p = w.last
            if (p) {
                expect(r.firstSeq).toBe(p.seq + 1)
                expect(r.startS).toBe(p.startS + p.durationS)
                expect(r.totalMilliWh - r.deltaMilliWh).toBe(p.totalMilliWh)
            } else w.first = r
            w.last = r
            w.records++
            w.sumMilliWh += r.deltaMilliWh
            if (r.durationS > w.worstS) w.worstS = r.durationS
        }
    }
    return w
}

describe("records in the VM", () => {
    test("the full layout matches Node byte for byte above 2^31", () => {
        const r = newRecord()
        r.meter = 200
        r.flags = FLAG_CLOCK_NOT_SET | FLAG_ESTIMATED | FLAG_MERGED
        r.firstSeq = 4000000000
        r.seq = 4000000123
        r.boot = 65000
        r.startS = 3000000000
        r.durationS = 16000000
        r.deltaMilliWh = -2000000000
        r.totalMilliWh = 250000000000123
        const bytes = encodeRecord(r)
        expect(hexOf(bytes)).toBe("1ac87b286beee8fd005ed0b20024f4006cca887ba031a95fe37b")
        const back = decodeRecord(bytes)
        expect(back.firstSeq).toBe(4000000000)
        expect(back.seq).toBe(4000000123)
        expect(back.startS).toBe(3000000000)
        expect(back.deltaMilliWh).toBe(-2000000000)
        expect(back.totalMilliWh).toBe(250000000000123)

        const level = newRecord()
        level.flags = FLAG_NON_ADDITIVE
        level.seq = level.firstSeq = 3000000000
        level.minMilli = -2147483647
        level.meanMilli = -1
        level.maxMilli = 2147483647
        level.durationS = 60
        level.startS = 2147483648
        expect(hexOf(encodeRecord(level))).toBe("0100005ed0b20000000000803c000001000080ffffffffffffff7f")
        expect(decodeRecord(encodeRecord(level)).minMilli).toBe(-2147483647)
    })

    test("a block of differences matches Node byte for byte and reads back", () => {
        const w = new BlockWriter(224, 3000000001)
        let total = 281474976000000
        const deltas = [5000, -300000, 70000000, 0, 123, 2147483642]
        for (let i = 0; i < deltas.length; i++) {
            total += deltas[i]
            w.tryAppend(energyRecord(1, 2147483640 + i, 9, i * 60000 + 499, (i + 1) * 60000 + 499, deltas[i], total))
        }
        const m = energyRecord(1, 2147483646, 9, 360499, 420499, 1, total + 1)
        mergeInto(m, energyRecord(1, 2147483647, 9, 420499, 480499, 2, total + 3))
        w.tryAppend(m)
        expect(w.count).toBe(7)
        expect(hexOf(w.bytes())).toBe(
            "b1015ed0b2011001f8ffff7f0900000000003c000088130000883bf5ffffff9ebb4a808b8b8601feebc18501ec03fcfbffff1f1d127801edffffff0f"
        )
        const reader = new BlockReader(w.bytes())
        expect(reader.serial).toBe(3000000001)
        let n = 0
        let last: ReadingRecord = null
        for (let r = reader.next(); r; r = reader.next()) {
            n++
            last = r
        }
        expect(reader.error).toBe("")
        expect(n).toBe(7)
        expect(last.firstSeq).toBe(2147483646)
        expect(last.seq).toBe(2147483647)
        expect(last.totalMilliWh).toBe(total + 3)
    })
})

describe("durable queue on the Settings store", () => {
    const readings = new MinuteReadings()

    test("append, flush, peek, remove, reopen", async () => {
        const filling = new CountingStore(new SettingsKeyValueStore())
        const q = new DurableQueue(filling, BUDGET_FOR_8K_STORE_BYTES, { pause })
        expect(await q.open()).toBe("")
        expect(q.size()).toBe(0)
        for (let i = 0; i < 250; i++) {
            expect(q.append(readings.take())).toBe("")
            // The VM stops a fiber that runs too long without yielding, as the node's loop would.
            if (i % 20 === 19) await ds.sleep(0)
        }
        expect(await q.flush()).toBe("")
        const head = await q.peek(5)
        expect(head.length).toBe(5)
        expect(head[0].seq).toBe(1)
        expect(head[4].seq).toBe(5)
        q.remove(100)
        expect(await q.flush()).toBe("")

        const reopening = new CountingStore(new SettingsKeyValueStore())
        const again = new DurableQueue(reopening, BUDGET_FOR_8K_STORE_BYTES, { pause })
        expect(await again.open()).toBe("")
        expect(again.size()).toBe(150)
        const w = await walk(again)
        expect(w.records).toBe(150)
        expect(w.first.seq).toBe(101)
        expect(w.last.seq).toBe(250)
        console.log("    " + reopening.writes + " writes to reopen; " + filling.writes + " to fill")
    })

    test("a day without a broker in a small budget: merged, nothing lost, every write verified", async () => {
        // Six slots under their own keys, so merging starts after about 500 readings.
        const budgetBytes = slotsBudget(6)
        const store = new CountingStore(new SettingsKeyValueStore())
        const q = new DurableQueue(store, budgetBytes, { keyPrefix: "r.", pause })
        expect(q.slots).toBe(6)
        expect(await q.open()).toBe("")
        const day = new MinuteReadings()
        const startMs = ds.millis()
        for (let i = 0; i < 1440; i++) {
            expect(q.append(day.take())).toBe("")
            // flush() yields (it waits for flash), and so lets the VM count afresh.
            if (i % 10 === 9) expect(await q.flush()).toBe("")
        }
        expect(await q.flush()).toBe("")
        const s = queueStats(q)
        expect(s.droppedReadings).toBe(0)
        expect(s.merges > 0).toBe(true)
        const live = await liveBytes(q, store)
        expect(live <= budgetBytes).toBe(true)
        const again = new DurableQueue(store, budgetBytes, { keyPrefix: "r.", pause })
        expect(await again.open()).toBe("")
        const w = await walk(again)
        expect(w.first.firstSeq).toBe(1)
        expect(w.last.seq).toBe(1440)
        expect(w.sumMilliWh).toBe(day.totalMilliWh() - day.startTotalMilliWh)
        // Built in steps: the compiler fails on one long chain of + inside console.log.
        let line = "    " + w.records + " records for 1,440 readings in " + s.slots + " slots"
        line += ", worst " + w.worstS + " s, " + s.merges + " merge steps"
        line += ", " + store.writes + " writes (" + store.bytesWritten + " log bytes)"
        line += ", live " + live + " B, " + (ds.millis() - startMs) + " ms"
        console.log(line)
    })
})
