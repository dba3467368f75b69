// Recent history for the replay command: what a range returns, what a small budget keeps (merged,
// energy exact), and which requests are refused.
import { describe, test } from "node:test"
import assert from "node:assert/strict"
import { History, inRange, replayRangeError } from "../../src/history"
import { energyRecord, FLAG_CLOCK_NOT_SET, ReadingRecord } from "../../src/storage/records"
import { SimulatedEnergyMeter } from "../../src/meters/simulated"

const NINE_AM_S = Date.UTC(2026, 10, 22, 9, 0, 0) / 1000
const platform = {
    sleep: (ms: number) => new Promise<void>(r => setTimeout(r, ms)),
    spawn: (fn: () => Promise<void>): void => void setImmediate(() => void fn()),
}

/** `count` one-minute readings of boot 1, taken in UTC from 09:00 (the clock was set at boot). */
function utcReadings(count: number) {
    const meter = new SimulatedEnergyMeter(3, 800, 0)
    const out: ReadingRecord[] = []
    for (let i = 0; i < count; i++) {
        const r = meter.read(i * 60_000, (i + 1) * 60_000)
        const rec = energyRecord(0, i + 1, 1, 0, 60_000, r.deltaMilliWh, meter.totalMilliWh)
        rec.flags &= ~FLAG_CLOCK_NOT_SET
        rec.startS = NINE_AM_S + i * 60
        out.push(rec)
    }
    return out
}

async function settle(h: History) {
    // add() hands readings to a fiber of its own; let it finish.
    for (let i = 0; i < 2000 && h.size() > 0 && (h as any).pending.length; i++) await new Promise(r => setImmediate(r))
    await new Promise(r => setTimeout(r, 20))
}

async function replayAll(h: History, fromMs: number, toMs: number, offset = (_boot: number) => 0) {
    const got: ReadingRecord[] = []
    const result = await h.replay({ fromMs, toMs }, offset, async records => {
        assert.ok(records.length <= 12, "one message's worth at a time")
        got.push(...records)
    })
    return { got, result }
}

describe("history for replay", () => {
    test("a range returns exactly the readings that overlap it, oldest first", async () => {
        const h = new History(2048, platform)
        assert.equal(await h.open(), "")
        const readings = utcReadings(120)
        for (const r of readings) h.add(r)
        await settle(h)
        // 09:30 to 10:00: readings 31..60 (09:30-09:31 ... 09:59-10:00).
        const { got, result } = await replayAll(h, (NINE_AM_S + 1800) * 1000, (NINE_AM_S + 3600) * 1000)
        assert.deepEqual(
            got.map(r => r.seq),
            Array.from({ length: 30 }, (_, i) => 31 + i)
        )
        assert.equal(result.sent, 30)
        assert.deepEqual(
            got.map(r => r.deltaMilliWh),
            readings.slice(30, 60).map(r => r.deltaMilliWh)
        )
        // A range inside one reading returns that reading.
        const inside = await replayAll(h, (NINE_AM_S + 90) * 1000, (NINE_AM_S + 100) * 1000)
        assert.deepEqual(
            inside.got.map(r => r.seq),
            [2]
        )
        // A range before everything returns nothing.
        assert.equal((await replayAll(h, 0, NINE_AM_S * 1000)).got.length, 0)
    })

    test("a day of one-minute readings in a small budget: coarser when old, energy exact", async () => {
        const h = new History(1100, platform)
        assert.equal(await h.open(), "")
        const readings = utcReadings(1440)
        for (const r of readings) h.add(r)
        await settle(h)
        const { got } = await replayAll(h, NINE_AM_S * 1000, (NINE_AM_S + 86_400) * 1000)
        const energy = got.reduce((s, r) => s + r.deltaMilliWh, 0)
        const newest = got[got.length - 1]
        // What is kept is contiguous to the newest reading, and adds up to the meter's change over it.
        for (let i = 1; i < got.length; i++) assert.equal(got[i].startS, got[i - 1].startS + got[i - 1].durationS)
        assert.equal(newest.seq, 1440)
        assert.equal(energy, newest.totalMilliWh - (got[0].totalMilliWh - got[0].deltaMilliWh))
        assert.ok(got.length < 1440, `${got.length} records for the day`)
        console.log(
            `  1,440 readings in a 1,100-byte history: ${got.length} records from seq ${got[0].firstSeq}, ` +
                `longest ${Math.max(...got.map(r => r.durationS))} s, ${h["queue"].droppedReadings} dropped`
        )
    })

    test("readings of a boot without a known offset are counted, not placed in a range", async () => {
        const h = new History(2048, platform)
        await h.open()
        h.add(energyRecord(0, 1, 4, 0, 60_000, 10, 10)) // uptime, boot 4
        h.add(energyRecord(0, 2, 5, 0, 60_000, 10, 20)) // uptime, boot 5: offset known
        await settle(h)
        const { got, result } = await replayAll(h, NINE_AM_S * 1000, (NINE_AM_S + 60) * 1000, boot =>
            boot === 5 ? NINE_AM_S : 0
        )
        assert.deepEqual(
            got.map(r => r.seq),
            [2]
        )
        assert.equal(got[0].flags & FLAG_CLOCK_NOT_SET, 0)
        assert.equal(result.untimed, 1)
    })

    test("requests: from and to in whole ms, from before to; overlap at the edges", () => {
        assert.equal(replayRangeError({ from: 1, to: 2 }), "")
        assert.match(replayRangeError({ from: 1 }), /from and to/)
        assert.match(replayRangeError({ from: "a", to: 2 }), /from and to/)
        assert.match(replayRangeError({ from: 5, to: 5 }), /before/)
        assert.match(replayRangeError(null), /from and to/)
        const r = utcReadings(1)[0] // 09:00:00-09:01:00
        const ms = NINE_AM_S * 1000
        assert.equal(inRange(r, { fromMs: ms + 60_000, toMs: ms + 120_000 }), false, "ends where the range starts")
        assert.equal(inRange(r, { fromMs: ms - 60_000, toMs: ms }), false, "starts where the range ends")
        assert.equal(inRange(r, { fromMs: ms + 59_000, toMs: ms + 61_000 }), true)
    })
})
