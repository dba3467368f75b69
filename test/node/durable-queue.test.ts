// Reading records and the durable queue against the fake Settings store: encoding, FIFO order,
// reopening, crashes at every write, the byte budget, and the capacity figures the product
// needs (printed).
import { describe, test } from "node:test"
import assert from "node:assert/strict"
import { FakeSettingsStore } from "../fixtures/fake-kv"
import { CountingStore, liveBytes, queueStats } from "../fixtures/queue-stats"
import { KeyValueStore } from "../../src/storage/kv"
import {
    BLOCK_HEADER_BYTES,
    BlockReader,
    BlockWriter,
    canMerge,
    copyRecord,
    decodeRecord,
    encodeRecord,
    energyRecord,
    FLAG_CLOCK_NOT_SET,
    FLAG_ESTIMATED,
    FLAG_GAP,
    FLAG_MERGED,
    FLAG_NON_ADDITIVE,
    MAX_DURATION_S,
    MAX_INT32,
    MAX_UINT48,
    mergeInto,
    newRecord,
    ReadingRecord,
    recordError,
} from "../../src/storage/records"
import {
    BLOCK_BYTES,
    BUDGET_FOR_8K_STORE_BYTES,
    DurableQueue,
    MIN_SLOTS,
    slotsForBudget,
} from "../../src/storage/durable-queue"
import { parseConfig, settingSpecs } from "../../src/config"
import { SimulatedEnergyMeter } from "../../src/meters/simulated"

const MINUTE_MS = 60000
const READINGS_PER_DAY = 1440

/** One meter read once a minute from boot, as the node does, seq from 1. */
class MinuteReadings {
    private meter: SimulatedEnergyMeter
    private next = 0
    readonly startTotalMilliWh: number
    constructor(
        readonly meterIndex = 0,
        meanW = 800,
        seed = 1,
        readonly jitterMs = 0
    ) {
        this.meter = new SimulatedEnergyMeter(seed, meanW, 123456789)
        this.startTotalMilliWh = this.meter.totalMilliWh
    }
    private boundaryMs(i: number) {
        return i * MINUTE_MS + (this.jitterMs ? (i * 7919) % this.jitterMs : 0)
    }
    take(): ReadingRecord {
        const i = this.next++
        const startMs = this.boundaryMs(i)
        const endMs = this.boundaryMs(i + 1)
        const r = this.meter.read(startMs, endMs)
        return energyRecord(this.meterIndex, i + 1, 7, startMs, endMs, r.deltaMilliWh, this.meter.totalMilliWh)
    }
    get totalMilliWh() {
        return this.meter.totalMilliWh
    }
}

async function readAll(q: DurableQueue) {
    return await q.peek(q.size())
}

function seqsOf(records: ReadingRecord[]) {
    return records.map(r => (r.firstSeq === r.seq ? `${r.seq}` : `${r.firstSeq}-${r.seq}`))
}

/** Records of one meter follow each other without a gap: seq, time and total all continue. */
function assertContinuous(records: ReadingRecord[], what: string) {
    for (let i = 1; i < records.length; i++) {
        const a = records[i - 1]
        const b = records[i]
        assert.equal(b.firstSeq, a.seq + 1, `${what}: seq ${a.seq} then ${b.firstSeq}`)
        assert.equal(b.startS, a.startS + a.durationS, `${what}: time gap before seq ${b.firstSeq}`)
        const message = `${what}: total does not continue at seq ${b.firstSeq}`
        assert.equal(b.totalMilliWh - b.deltaMilliWh, a.totalMilliWh, message)
    }
}

function sumDeltas(records: ReadingRecord[]) {
    let sum = 0
    for (const r of records) sum += r.deltaMilliWh
    return sum
}

describe("reading records", () => {
    test("the full layout round-trips the extremes of every field", () => {
        const r = newRecord()
        r.meter = 255
        r.flags = FLAG_CLOCK_NOT_SET | FLAG_ESTIMATED | FLAG_GAP | FLAG_MERGED
        r.firstSeq = 4294967295 - 1000
        r.seq = 4294967295
        r.boot = 65535
        r.startS = 4294967295
        r.durationS = MAX_DURATION_S
        r.deltaMilliWh = -MAX_INT32
        r.totalMilliWh = MAX_UINT48
        assert.equal(recordError(r), "")
        const bytes = encodeRecord(r)
        assert.equal(bytes.length, 25 + 2)
        assert.deepEqual(decodeRecord(bytes), r)

        const level = newRecord()
        level.flags = FLAG_NON_ADDITIVE
        level.seq = level.firstSeq = 1
        level.minMilli = -MAX_INT32
        level.meanMilli = 0
        level.maxMilli = MAX_INT32
        assert.equal(encodeRecord(level).length, 27)
        assert.deepEqual(decodeRecord(encodeRecord(level)), level)
        assert.equal(decodeRecord(Buffer.from([1, 2, 3])), null)
    })

    test("fields out of range are refused", () => {
        const r = energyRecord(0, 1, 1, 0, 60000, 10, 10)
        assert.equal(recordError(r), "")
        assert.match(recordError({ ...r, meter: 256 }), /meter/)
        assert.match(recordError({ ...r, totalMilliWh: MAX_UINT48 + 1 }), /total/)
        assert.match(recordError({ ...r, deltaMilliWh: 2 ** 31 }), /delta/)
        assert.match(recordError({ ...r, deltaMilliWh: 0.5 }), /delta/)
        assert.match(recordError({ ...r, firstSeq: 2 }), /firstSeq/)
        assert.match(recordError({ ...r, boot: 70000 }), /boot/)
    })

    test("a block stores one-minute energy readings in about 2.3 bytes each and reads them back", () => {
        const readings = new MinuteReadings()
        const w = new BlockWriter(BLOCK_BYTES, 42)
        const written: ReadingRecord[] = []
        for (;;) {
            const r = readings.take()
            if (!w.tryAppend(r)) break
            written.push(r)
        }
        const reader = new BlockReader(w.bytes())
        assert.equal(reader.serial, 42)
        const back: ReadingRecord[] = []
        for (let r = reader.next(); r; r = reader.next()) back.push(copyRecord(r))
        assert.equal(reader.error, "")
        assert.deepEqual(back, written)
        const perRecord = (w.length - BLOCK_HEADER_BYTES - 26) / (written.length - 1)
        console.log(
            `  block: ${written.length} one-minute readings in ${w.length} bytes, ` +
                `${perRecord.toFixed(2)} bytes each after the first`
        )
        assert.ok(written.length >= 85, `${written.length} records per block`)
    })

    test("interleaved meters, level readings, a new boot and merged records round-trip", () => {
        const w = new BlockWriter(BLOCK_BYTES, 1)
        const a = new MinuteReadings(0, 800, 1)
        const b = new MinuteReadings(3, 2000, 2)
        const written: ReadingRecord[] = []
        const add = (r: ReadingRecord) => {
            assert.ok(w.tryAppend(r))
            written.push(copyRecord(r))
        }
        for (let i = 0; i < 10; i++) {
            add(a.take())
            add(b.take())
        }
        for (let i = 0; i < 5; i++) {
            const level = newRecord()
            level.meter = 9
            level.flags = FLAG_NON_ADDITIVE | FLAG_CLOCK_NOT_SET
            level.seq = level.firstSeq = 100 + i
            level.startS = 1000 + 60 * i
            level.durationS = 60
            level.minMilli = -5000 + i
            level.meanMilli = 1200 - 3 * i
            level.maxMilli = 7000 + 11 * i
            add(level)
        }
        const merged = a.take()
        mergeInto(merged, a.take())
        add(merged)
        const rebooted = energyRecord(0, 2000, 8, 0, 60000, 5, a.totalMilliWh + 5)
        add(rebooted)
        const back: ReadingRecord[] = []
        const reader = new BlockReader(w.bytes())
        for (let r = reader.next(); r; r = reader.next()) back.push(copyRecord(r))
        assert.equal(reader.error, "")
        assert.deepEqual(back, written)
    })

    test("a damaged block stops the reader with an error instead of throwing", () => {
        const w = new BlockWriter(BLOCK_BYTES, 1)
        const readings = new MinuteReadings()
        for (let i = 0; i < 20; i++) w.tryAppend(readings.take())
        const bytes = w.bytes()
        const cut = new BlockReader(bytes.subarray(0, 20))
        while (cut.next());
        assert.notEqual(cut.error, "")
        const garbage = Buffer.from(bytes)
        garbage[BLOCK_HEADER_BYTES] = 0x03 // a record that changes the meter before any record of it
        const bad = new BlockReader(garbage)
        while (bad.next());
        assert.notEqual(bad.error, "")
        assert.equal(new BlockReader(Buffer.from([0xb1])).error, "not a block")
    })

    test("merging sums deltas exactly, keeps the last total and weights the mean by time", () => {
        const readings = new MinuteReadings()
        const first = readings.take()
        const second = readings.take()
        assert.ok(canMerge(first, second, 300))
        const merged = copyRecord(first)
        mergeInto(merged, second)
        assert.equal(merged.deltaMilliWh, first.deltaMilliWh + second.deltaMilliWh)
        assert.equal(merged.totalMilliWh, second.totalMilliWh)
        assert.equal(merged.firstSeq, 1)
        assert.equal(merged.seq, 2)
        assert.equal(merged.durationS, 120)
        assert.ok(merged.flags & FLAG_MERGED)

        const level = { ...newRecord(), flags: FLAG_NON_ADDITIVE }
        const x = { ...level, seq: 1, firstSeq: 1, durationS: 60, minMilli: 1, meanMilli: 10, maxMilli: 20 }
        const y = {
            ...level,
            seq: 2,
            firstSeq: 2,
            startS: 60,
            durationS: 180,
            minMilli: 5,
            meanMilli: 30,
            maxMilli: 25,
        }
        assert.ok(canMerge(x, y, 300))
        mergeInto(x, y)
        assert.deepEqual([x.minMilli, x.meanMilli, x.maxMilli, x.durationS], [1, 25, 25, 240])
    })

    test("merging refuses what would lose information or misalign intervals", () => {
        const readings = new MinuteReadings()
        const a = readings.take()
        const b = readings.take()
        assert.equal(canMerge(a, b, 60), false, "longer than the level")
        assert.equal(canMerge(a, { ...b, boot: 8 }, 300), false, "another boot")
        assert.equal(canMerge(a, { ...b, meter: 1 }, 300), false, "another meter")
        assert.equal(canMerge(a, { ...b, firstSeq: 3, seq: 3 }, 300), false, "a missing reading")
        assert.equal(canMerge(a, { ...b, totalMilliWh: b.totalMilliWh + 1 }, 300), false, "total does not continue")
        assert.equal(canMerge(a, { ...b, flags: b.flags | FLAG_GAP }, 300), false, "gap before")
        // Minutes 4-5 and 5-6 lie in different 5-minute slots of the clock.
        readings.take()
        readings.take()
        const fifth = readings.take()
        const sixth = readings.take()
        assert.equal(fifth.startS, 240)
        assert.equal(canMerge(fifth, sixth, 300), false)
        assert.ok(canMerge(a, b, 300))
        assert.equal(canMerge(a, b, 0), false, "level 0 never merges")
    })
})

/** Throws "power cut" at the write numbered `cutAt` (from 1), before or after the write lands. */
class PowerCutStore implements KeyValueStore {
    writes = 0
    constructor(
        private inner: KeyValueStore,
        private cutAt: number,
        private afterWrite: boolean
    ) {}
    async get(key: string) {
        return await this.inner.get(key)
    }
    async set(key: string, value: Buffer) {
        this.writes++
        if (this.writes === this.cutAt && !this.afterWrite) throw new Error("power cut")
        await this.inner.set(key, value)
        if (this.writes === this.cutAt) throw new Error("power cut")
    }
}

describe("durable queue", () => {
    test("every budget the configuration accepts pays for the fewest slots the queue works with", () => {
        // The queue does not check its budget itself: these are the only budgets it is given.
        const queueBytes = settingSpecs().find(spec => spec.key === "QUEUE_BYTES")
        assert.equal(slotsForBudget(queueBytes.min), MIN_SLOTS)
        assert.ok(slotsForBudget(queueBytes.min - 1) < MIN_SLOTS)
        assert.equal(parseConfig({ HISTORY_BYTES: 799 }).config.historyBytes, 0)
        assert.equal(slotsForBudget(800), MIN_SLOTS)
    })

    test("first in, first out, across blocks and meters", async () => {
        const store = new FakeSettingsStore()
        const q = new DurableQueue(store, BUDGET_FOR_8K_STORE_BYTES)
        assert.equal(await q.open(), "")
        const a = new MinuteReadings(0)
        const b = new MinuteReadings(1, 300, 5)
        const expected: ReadingRecord[] = []
        for (let i = 0; i < 400; i++) {
            const r = i % 3 ? a.take() : b.take()
            assert.equal(q.append(r), "")
            expected.push(r)
            if (i % 7 === 6) assert.equal(await q.flush(), "")
        }
        assert.equal(q.size(), 400)
        const got: ReadingRecord[] = []
        while (q.size()) {
            const batch = await q.peek(16)
            got.push(...batch)
            q.remove(batch.length)
            if (got.length % 64 === 0) assert.equal(await q.flush(), "")
        }
        assert.deepEqual(got, expected)
        assert.equal(await q.flush(), "")
        assert.equal(store.droppedWrites, 0)
    })

    test("a reopened queue holds exactly the flushed records and the flushed removals", async () => {
        const store = new FakeSettingsStore()
        const readings = new MinuteReadings()
        const q = new DurableQueue(store, BUDGET_FOR_8K_STORE_BYTES)
        await q.open()
        const flushed: ReadingRecord[] = []
        for (let i = 0; i < 250; i++) {
            const r = readings.take()
            q.append(r)
            flushed.push(r)
        }
        assert.equal(await q.flush(), "")
        for (let i = 0; i < 5; i++) q.append(readings.take()) // staged only: lost in a power cut

        const again = new DurableQueue(store, BUDGET_FOR_8K_STORE_BYTES)
        assert.equal(await again.open(), "")
        assert.deepEqual(await readAll(again), flushed)

        again.remove(100)
        assert.equal(await again.flush(), "")
        again.remove(10) // not flushed: these come back after a reboot (a duplicate publish, which QoS 1 allows)
        const third = new DurableQueue(store, BUDGET_FOR_8K_STORE_BYTES)
        assert.equal(await third.open(), "")
        assert.deepEqual(await readAll(third), flushed.slice(100))

        // Appends continue in the last block after reopening.
        const more = readings.take()
        third.append(more)
        assert.equal(await third.flush(), "")
        const fourth = new DurableQueue(store, BUDGET_FOR_8K_STORE_BYTES)
        await fourth.open()
        assert.deepEqual(await readAll(fourth), [...flushed.slice(100), more])
    })

    test("a power cut at any write leaves a consistent queue with every flushed record", async () => {
        // A queue near full, so the steps below append blocks, merge and remove.
        const base = new FakeSettingsStore()
        const baseReadings = new MinuteReadings()
        {
            const q = new DurableQueue(base, BUDGET_FOR_8K_STORE_BYTES)
            await q.open()
            for (let i = 0; i < 1500; i++) {
                q.append(baseReadings.take())
                if (i % 10 === 9) assert.equal(await q.flush(), "")
            }
            assert.equal(await q.flush(), "")
        }

        /** Runs the steps against a copy of `base`; the queue's state at the cut, as the node knows it. */
        async function run(cutAt: number, afterWrite: boolean) {
            const inner = base.clone()
            const store = new PowerCutStore(inner, cutAt, afterWrite)
            const readings = new MinuteReadings()
            for (let i = 0; i < 1500; i++) readings.take()
            const q = new DurableQueue(store, BUDGET_FOR_8K_STORE_BYTES)
            await q.open()
            let confirmedFirstSeq = 1 // removals a flush confirmed
            let removedFirstSeq = 1 // removals asked for
            let confirmedLastSeq = 1500 // appends a flush confirmed
            let appendedLastSeq = 1500
            let cut = false
            try {
                for (let step = 0; step < 60; step++) {
                    for (let i = 0; i < 10; i++) {
                        q.append(readings.take())
                        appendedLastSeq++
                    }
                    if (step % 3 === 2) {
                        const head = await q.peek(25)
                        q.remove(head.length)
                        removedFirstSeq = head[head.length - 1].seq + 1
                    }
                    assert.equal(await q.flush(), "")
                    confirmedLastSeq = appendedLastSeq
                    confirmedFirstSeq = removedFirstSeq
                }
            } catch (e) {
                assert.equal((e as Error).message, "power cut")
                cut = true
            }
            const merges = queueStats(q).merges
            return {
                inner,
                cut,
                writes: store.writes,
                confirmedFirstSeq,
                removedFirstSeq,
                confirmedLastSeq,
                appendedLastSeq,
                merges,
            }
        }

        const full = await run(0, false)
        assert.equal(full.cut, false)
        assert.ok(full.merges > 0, "the steps merge blocks")
        let checked = 0
        for (let cutAt = 1; cutAt <= full.writes; cutAt++)
            for (const afterWrite of [false, true]) {
                const r = await run(cutAt, afterWrite)
                assert.ok(r.cut)
                const q = new DurableQueue(r.inner, BUDGET_FOR_8K_STORE_BYTES)
                const what = `cut at write ${cutAt}${afterWrite ? " after it landed" : ""}`
                assert.equal(await q.open(), "", what)
                const records = await readAll(q)
                assertContinuous(records, what)
                const first = records[0].firstSeq
                const last = records[records.length - 1].seq
                assert.ok(first >= r.confirmedFirstSeq && first <= r.removedFirstSeq, `${what}: starts at ${first}`)
                assert.ok(last >= r.confirmedLastSeq && last <= r.appendedLastSeq, `${what}: ends at ${last}`)
                // And the queue goes on working.
                q.append(energyRecord(0, last + 1, 7, 0, 60000, 1, records[records.length - 1].totalMilliWh + 1))
                assert.equal(await q.flush(), "", what)
                checked++
            }
        console.log(
            `  power cut at each of ${full.writes} writes, before and after the write landed: ` +
                `${checked} reopened queues consistent`
        )
    })

    test("missing or unreadable blocks are reported as a gap; an unreadable meta as lost", async () => {
        const store = new FakeSettingsStore()
        const readings = new MinuteReadings()
        const q = new DurableQueue(store, BUDGET_FOR_8K_STORE_BYTES)
        await q.open()
        for (let i = 0; i < 400; i++) q.append(readings.take())
        assert.equal(await q.flush(), "")
        const before = await readAll(q)
        await store.set("q.b01", Buffer.from([0xb1, 0, 0, 1, 2, 3]))
        const damaged = new DurableQueue(store, BUDGET_FOR_8K_STORE_BYTES)
        const report = await damaged.open()
        assert.match(report, /lost: 1 before q\.b02/)
        const after = await readAll(damaged)
        assert.ok(after.length < before.length && after.length > 0)
        assert.deepEqual(after[0], before[0])
        assert.deepEqual(after[after.length - 1], before[before.length - 1])

        await store.set("q.meta", Buffer.from("nonsense"))
        const lost = new DurableQueue(store, BUDGET_FOR_8K_STORE_BYTES)
        assert.match(await lost.open(), /q\.meta unreadable/)
        assert.equal(lost.size(), 0)
        // It starts over in the same keys.
        lost.append(readings.take())
        assert.equal(await lost.flush(), "")
    })

    test("while the broker keeps up, nothing is written", async () => {
        const store = new FakeSettingsStore()
        const readings = new MinuteReadings()
        const q = new DurableQueue(store, BUDGET_FOR_8K_STORE_BYTES)
        await q.open()
        for (let i = 0; i < 500; i++) {
            q.append(readings.take())
            const out = await q.peek(1)
            q.remove(out.length)
            assert.equal(await q.flush(), "")
        }
        assert.equal(store.bytesWritten, 0)
    })

    test("staged blocks beyond the RAM limit are dropped and counted; bad records are refused", async () => {
        const store = new FakeSettingsStore()
        const readings = new MinuteReadings()
        const q = new DurableQueue(store, BUDGET_FOR_8K_STORE_BYTES)
        await q.open()
        let report = ""
        for (let i = 0; i < 400; i++) report = q.append(readings.take()) || report
        assert.match(report, /dropped \d+ readings/)
        assert.ok(queueStats(q).droppedReadings > 0)
        assert.equal(q.size() + queueStats(q).droppedReadings, 400)
        assert.match(q.append({ ...readings.take(), meter: -1 }), /refused/)
    })

    test("a store filled by others makes flush report an error, not throw, and keep the records", async () => {
        const store = new FakeSettingsStore(8192, 2048)
        const readings = new MinuteReadings()
        const q = new DurableQueue(store, BUDGET_FOR_8K_STORE_BYTES)
        await q.open()
        for (let i = 0; i < 100; i++) q.append(readings.take())
        assert.equal(await q.flush(), "")
        store.reservedBytes = 8000
        for (let i = 0; i < 100; i++) q.append(readings.take())
        assert.match(await q.flush(), /did not persist/)
        assert.equal(q.size(), 200)
        store.reservedBytes = 2048
        assert.equal(await q.flush(), "")
        const again = new DurableQueue(store, BUDGET_FOR_8K_STORE_BYTES)
        await again.open()
        assert.equal(again.size(), 200)
    })

    test("the budget holds: the queue's keys stay within it and no write of ours is dropped", async () => {
        const store = new FakeSettingsStore(8192, 2048)
        const readings = new MinuteReadings(0, 3000, 7)
        const q = new DurableQueue(store, BUDGET_FOR_8K_STORE_BYTES)
        await q.open()
        let maxLive = 0
        for (let i = 0; i < 5 * READINGS_PER_DAY; i++) {
            q.append(readings.take())
            if (i % 5 === 4) {
                assert.equal(await q.flush(), "")
                maxLive = Math.max(maxLive, await liveBytes(q, store))
                assert.ok(store.liveBytes() <= store.reservedBytes + BUDGET_FOR_8K_STORE_BYTES)
            }
        }
        assert.ok(maxLive <= BUDGET_FOR_8K_STORE_BYTES, `${maxLive}`)
        assert.equal(store.droppedWrites, 0)
        assert.equal(queueStats(q).droppedReadings, 0)
    })

    test("merging keeps each meter's readings, in order, with exact totals, when meters interleave", async () => {
        const store = new FakeSettingsStore()
        const meters = [new MinuteReadings(0, 800, 1), new MinuteReadings(1, 150, 2), new MinuteReadings(2, 4000, 3)]
        const q = new DurableQueue(store, BUDGET_FOR_8K_STORE_BYTES)
        await q.open()
        for (let i = 0; i < 2 * READINGS_PER_DAY; i++) {
            for (const m of meters) q.append(m.take())
            if (i % 5 === 4) assert.equal(await q.flush(), "")
        }
        assert.ok(queueStats(q).merges > 0)
        assert.equal(queueStats(q).droppedReadings, 0)
        const all = await readAll(q)
        for (let m = 0; m < meters.length; m++) {
            const mine = all.filter(r => r.meter === m)
            assertContinuous(mine, `meter ${m}`)
            assert.equal(mine[0].firstSeq, 1)
            assert.equal(mine[mine.length - 1].seq, 2 * READINGS_PER_DAY)
            assert.equal(sumDeltas(mine), meters[m].totalMilliWh - meters[m].startTotalMilliWh)
        }
    })
})

describe("records out for delivery (pinned)", () => {
    test("merging and dropping never touch them, so remove(n) after the PUBACK removes exactly what was sent", async () => {
        const store = new FakeSettingsStore(8192, 2048)
        const readings = new MinuteReadings()
        const q = new DurableQueue(store, BUDGET_FOR_8K_STORE_BYTES)
        await q.open()
        // Published just before the link went down: 30 readings in 3 messages of 10, unacknowledged.
        for (let i = 0; i < 30; i++) q.append(readings.take())
        assert.equal(await q.flush(), "")
        const sent = await q.peek(30)
        // Three days without a broker: far more than fits, so merging runs many times.
        for (let i = 0; i < 3 * READINGS_PER_DAY; i++) {
            q.append(readings.take())
            if (i % 10 === 9) assert.equal(await q.flush(30), "")
        }
        assert.ok(queueStats(q).merges > 0, "the outage made the queue merge")
        assert.deepEqual(await q.peek(30), sent, "the records out for delivery are unchanged")
        // The broker is back and acknowledges the three messages: exactly those 30 go.
        q.remove(30)
        assert.equal(await q.flush(), "")
        const rest = await readAll(q)
        assert.equal(rest[0].firstSeq, 31, "the next record starts right after what was acknowledged")
        assertContinuous(rest, "after the pinned head")
        assert.equal(sumDeltas(sent) + sumDeltas(rest), readings.totalMilliWh - readings.startTotalMilliWh)
    })

    test("with everything pinned and no room, flush reports an error and keeps every record", async () => {
        const store = new FakeSettingsStore(8192, 2048)
        const readings = new MinuteReadings()
        const q = new DurableQueue(store, 3 * 256 + 64)
        await q.open()
        const all: ReadingRecord[] = []
        let error = ""
        for (let i = 0; i < 400 && !error; i++) {
            const r = readings.take()
            all.push(r)
            q.append(r)
            if (i % 10 === 9) error = await q.flush(q.size())
        }
        assert.match(error, /no room/)
        assert.equal(queueStats(q).droppedReadings, 0)
        assert.deepEqual(await readAll(q), all)
    })
})

describe("capacity in an 8 KB store with 2 KB used by others (one meter, one reading a minute)", () => {
    const slots = slotsForBudget(BUDGET_FOR_8K_STORE_BYTES)

    test("24 hours of readings fit at full resolution", async () => {
        const store = new FakeSettingsStore(8192, 2048)
        const readings = new MinuteReadings()
        const q = new DurableQueue(store, BUDGET_FOR_8K_STORE_BYTES)
        await q.open()
        const written: ReadingRecord[] = []
        for (let i = 0; i < READINGS_PER_DAY; i++) {
            const r = readings.take()
            written.push(r)
            q.append(r)
            if (i % 5 === 4) assert.equal(await q.flush(), "")
        }
        const s = queueStats(q)
        assert.equal(s.merges, 0)
        assert.equal(s.droppedReadings, 0)
        const reopened = new DurableQueue(store, BUDGET_FOR_8K_STORE_BYTES)
        await reopened.open()
        assert.deepEqual(await readAll(reopened), written)
        console.log(
            `  budget ${BUDGET_FOR_8K_STORE_BYTES} B: ${slots} slots of ${BLOCK_BYTES} B (${slots - 1} for records, one free for merges)\n` +
                `  1,440 one-minute readings: ${s.blocks} blocks, ${(s.records / s.blocks).toFixed(0)} records per block, ` +
                `${(s.dataBytes / s.records).toFixed(2)} bytes per record; live ${await liveBytes(q, store)} B of the budget\n` +
                `  flushing every 5 min: ${(store.bytesWritten / READINGS_PER_DAY).toFixed(1)} log bytes written per reading, ` +
                `${store.compactions} compactions`
        )
    })

    test("30 days without a broker: no energy lost, nothing coarser than 1 hour", async () => {
        const store = new FakeSettingsStore(8192, 2048)
        const readings = new MinuteReadings()
        const q = new DurableQueue(store, BUDGET_FOR_8K_STORE_BYTES)
        await q.open()
        const days = 30
        for (let i = 0; i < days * READINGS_PER_DAY; i++) {
            q.append(readings.take())
            if (i % 5 === 4) assert.equal(await q.flush(), "")
        }
        const all = await readAll(q)
        const s = queueStats(q)
        assertContinuous(all, "30 days")
        assert.equal(all[0].firstSeq, 1)
        assert.equal(all[all.length - 1].seq, days * READINGS_PER_DAY)
        const energyErrorMilliWh = readings.totalMilliWh - readings.startTotalMilliWh - sumDeltas(all)
        assert.equal(energyErrorMilliWh, 0)
        let worstS = 0
        for (const r of all) worstS = Math.max(worstS, r.durationS)
        assert.ok(worstS <= 3600, `worst interval ${worstS} s`)
        assert.equal(s.droppedReadings, 0)
        assert.equal(store.droppedWrites, 0)
        const byDuration = new Map<number, number>()
        for (const r of all) byDuration.set(r.durationS, (byDuration.get(r.durationS) ?? 0) + 1)
        const common = [...byDuration.entries()]
            .sort((x, y) => y[1] - x[1])
            .slice(0, 5)
            .map(([d, n]) => `${n} x ${d / 60} min`)
            .join(", ")
        console.log(
            `  43,200 readings: ${all.length} records left (${common}), worst ${worstS / 60} min, energy error ${energyErrorMilliWh} mWh\n` +
                `  ${s.merges} merge steps, ${(store.bytesWritten / (days * READINGS_PER_DAY)).toFixed(1)} log bytes written per reading, ` +
                `${(store.compactions / days).toFixed(1)} compactions per day`
        )
    })

    test("one-minute readings with jittered boundaries still merge to whole hours", async () => {
        const store = new FakeSettingsStore(8192, 2048)
        const readings = new MinuteReadings(0, 800, 1, 900)
        const q = new DurableQueue(store, BUDGET_FOR_8K_STORE_BYTES)
        await q.open()
        for (let i = 0; i < 12 * READINGS_PER_DAY; i++) {
            q.append(readings.take())
            if (i % 5 === 4) assert.equal(await q.flush(), "")
        }
        const all = await readAll(q)
        assertContinuous(all, "jittered")
        assert.equal(sumDeltas(all), readings.totalMilliWh - readings.startTotalMilliWh)
        let worstS = 0
        for (const r of all) worstS = Math.max(worstS, r.durationS)
        assert.ok(worstS <= 3600 + 72, `worst interval ${worstS} s`)
    })

    test("flash written and compactions per day, by flush interval, while the broker is away", async () => {
        const lines: string[] = []
        for (const everyMinutes of [1, 5, 15, 60]) {
            const store = new FakeSettingsStore(8192, 2048)
            const readings = new MinuteReadings()
            const counted = new CountingStore(store)
            const q = new DurableQueue(counted, BUDGET_FOR_8K_STORE_BYTES)
            await q.open()
            const days = 3
            for (let i = 0; i < days * READINGS_PER_DAY; i++) {
                q.append(readings.take())
                if (i % everyMinutes === everyMinutes - 1) assert.equal(await q.flush(), "")
            }
            lines.push(
                `  flush every ${everyMinutes} min: ${(counted.bytesWritten / (days * READINGS_PER_DAY)).toFixed(1)} log bytes per reading, ` +
                    `${(counted.writes / days).toFixed(0)} writes and ${(store.compactions / days).toFixed(1)} compactions per day`
            )
        }
        console.log(lines.join("\n"))
    })
})
