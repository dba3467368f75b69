// The wall clock: time payloads, the offset, re-anchoring, boundaries on the UTC grid, and
// readings stored in uptime converted to UTC without overlap or hole.
import { describe, test } from "node:test"
import assert from "node:assert/strict"
import {
    FLOOR_TOLERANCE_S,
    KEPT_BOOT_OFFSETS,
    MAX_TIME_MESSAGE_STEP_MS,
    nextBoundaryMs,
    offsetOfBoot,
    parseTimePayload,
    recordInUtc,
    TIME_COMMAND,
    WallClock,
    withBootOffset,
} from "../../src/clock"
import { energyRecord, FLAG_CLOCK_NOT_SET, FLAG_GAP } from "../../src/storage/records"
import { readingMessage, energyLabel } from "../../src/reading"
import { gapRecord, initialState, lastKnown } from "../../src/node-state"

/** UTC seconds of an uptime in ms, as the node times the end of a reading (whole seconds). */
function utcSecondsOf(c: WallClock, uptimeMs: number) {
    return Math.round(uptimeMs / 1000) + c.offsetS
}

/** 2026-11-22T09:00:00.000Z */
const NINE_AM = Date.UTC(2026, 10, 22, 9, 0, 0)

describe("time payloads", () => {
    test("utc_ms in an object or a bare number; anything else is named", () => {
        assert.deepEqual(parseTimePayload(`{"utc_ms":${NINE_AM}}`), { utcMs: NINE_AM, error: "" })
        assert.deepEqual(parseTimePayload(`${NINE_AM}`), { utcMs: NINE_AM, error: "" })
        assert.match(parseTimePayload("noon").error, /not JSON/)
        assert.match(parseTimePayload(`{"utc":${NINE_AM}}`).error, /utc_ms/)
        assert.match(parseTimePayload(`{"utc_ms":${NINE_AM + 0.5}}`).error, /whole number/)
        assert.match(parseTimePayload(`{"utc_ms":1700}`).error, /between 2020 and 2100/, "seconds instead of ms")
        assert.match(parseTimePayload(`{"utc_ms":"${NINE_AM}"}`).error, /whole number/)
    })
})

describe("wall clock", () => {
    test("the first time sets an integer offset; uptime converts to UTC within half a second", () => {
        const c = new WallClock()
        assert.equal(c.isSet(), false)
        // 12.4 s after boot the source says 09:00:00.000.
        assert.equal(c.apply(12_400, NINE_AM, "time topic", false), true)
        assert.equal(c.isSet(), true)
        assert.equal(c.offsetS, Math.round((NINE_AM - 12_400) / 1000))
        assert.equal(c.bootOffsetS, c.offsetS)
        assert.match(c.lastChange, /set from time topic/)
        // 60 s later in uptime is 09:01:00 within 0.5 s.
        assert.ok(Math.abs(utcSecondsOf(c, 72_400) * 1000 - (NINE_AM + 60_000)) <= 500)
        assert.equal((utcSecondsOf(c, 72_000) - c.offsetS) * 1000, 72_000)
    })

    test("small differences are ignored, 600 ms or more re-anchors; late messages do not drag the clock back", () => {
        const c = new WallClock()
        c.apply(10_000, NINE_AM, "time topic", false)
        const first = c.offsetS
        assert.equal(c.apply(20_000, NINE_AM + 10_400, "time topic", false), false, "400 ms of jitter")
        assert.equal(c.apply(30_000, NINE_AM + 25_000, "time topic", true), false, "a stale retained copy")
        // A message processed 900 ms late: the best recent sample still says the clock is right.
        assert.equal(c.apply(40_900, NINE_AM + 30_000, "time topic", false), false, "a late message")
        assert.equal(c.offsetS, first)
        assert.equal(c.apply(50_000, NINE_AM + 42_000, "time command", false), true, "2 s off: re-anchor")
        assert.equal(c.offsetS, first + 2)
        assert.equal(c.bootOffsetS, first, "readings stored before the time keep the first offset")
        assert.match(c.lastChange, /re-anchored by 2000 ms/)
        assert.equal(50_000 + c.offsetS * 1000, (first + 2) * 1000 + 50_000)
    })

    test("a first time that arrived late is corrected by the next prompt one", () => {
        const c = new WallClock()
        c.apply(10_800, NINE_AM, "time topic", true) // processed 800 ms after it was sent
        assert.equal(c.apply(12_000, NINE_AM + 2_000, "time topic", false), true)
        assert.equal(utcSecondsOf(c, 12_000) * 1000, NINE_AM + 2_000)
    })

    test("a retained copy sets a clock that is not set yet", () => {
        const c = new WallClock()
        assert.equal(c.apply(5_000, NINE_AM, "time topic", true), true)
        assert.match(c.lastChange, /retained copy/)
    })

    test("once set, a time message more than 5 minutes away is refused, the clock untouched", () => {
        const c = new WallClock()
        c.apply(10_000, NINE_AM, "time topic", false)
        const offset = c.offsetS
        const tenYears = 10 * 365 * 86400_000
        assert.equal(c.apply(20_000, NINE_AM + 10_000 + tenYears, "time topic", false), false)
        assert.match(c.refusal, /^time from time topic is 315360000 s from the clock, more than 300 s: refused/)
        assert.equal(MAX_TIME_MESSAGE_STEP_MS, 300_000, "the refusal's text names the limit")
        assert.equal(c.apply(30_000, NINE_AM + 20_000 - 301_000, "time topic", false), false, "5 min 1 s back")
        assert.equal(c.offsetS, offset, "the clock did not move")
        assert.equal(c.changes, 0)
        // Within the bound it re-anchors, and a step of a minute or more counts as a change.
        assert.equal(c.apply(40_000, NINE_AM + 30_000 + 120_000, "time topic", false), true)
        assert.equal(c.offsetS, offset + 120)
        assert.equal(c.refusal, "")
        assert.equal(c.changes, 1)
    })

    test("before it is set, a time message before the newest reading in flash is refused; the time command is not", () => {
        const c = new WallClock()
        const lastEndS = NINE_AM / 1000
        c.floorS = lastEndS
        const hourBack = NINE_AM - 3600_000
        assert.equal(c.apply(5_000, hourBack, "time topic", true), false, "a stale retained copy")
        assert.equal(
            c.refusal,
            `time from time topic is 3600 s before the end of the last reading in flash: refused (the time command sets the clock)`
        )
        assert.equal(c.apply(6_000, hourBack, "time topic", false), false, "a live one too")
        assert.equal(c.isSet(), false)
        // Within the tolerance (rounding, a previous clock re-anchored late) it sets the clock.
        assert.equal(c.apply(7_000, NINE_AM - FLOOR_TOLERANCE_S * 1000, "time topic", true), true)
        const d = new WallClock()
        d.floorS = lastEndS
        assert.equal(d.step(8_000, hourBack, TIME_COMMAND), "", "an operator's act sets it anyway")
        assert.equal(8_000 + d.offsetS * 1000, hourBack)
        const e = new WallClock()
        e.floorS = lastEndS
        assert.equal(e.apply(9_000, NINE_AM + 86400_000, "time topic", true), true, "a later time is taken")
    })

    test("the time command steps the clock either way, up to 30 days; a first time sets it", () => {
        const c = new WallClock()
        assert.equal(c.step(10_000, NINE_AM, "time command"), "")
        assert.equal(10_000 + c.offsetS * 1000, NINE_AM)
        assert.equal(c.changes, 0, "setting an unset clock is not a step")
        assert.equal(c.step(20_000, NINE_AM + 10_000 - 3600_000, "time command"), "", "an hour back")
        assert.equal(20_000 + c.offsetS * 1000, NINE_AM + 10_000 - 3600_000)
        assert.match(c.lastChange, /^clock stepped by -3600000 ms \(time command\)/)
        assert.equal(c.changes, 1)
        assert.equal(c.bootOffsetS * 1000, NINE_AM - 10_000, "readings stored before the first time keep its offset")
        const before = c.offsetS
        assert.match(c.step(30_000, NINE_AM + 40 * 86400_000, "time command"), /more than 30 days/)
        assert.equal(c.offsetS, before)
    })
})

describe("reading boundaries", () => {
    test("without a clock: whole seconds of uptime, one interval apart", () => {
        const c = new WallClock()
        assert.equal(nextBoundaryMs(3_000, 60_000, c), 63_000)
        assert.equal(nextBoundaryMs(3_999, 60_000, c), 63_000)
        assert.equal(nextBoundaryMs(3_000, 1_000, c), 4_000)
    })

    test("with a clock: on the UTC grid of the interval (15 minutes: the quarter hours)", () => {
        const c = new WallClock()
        c.apply(100_000, NINE_AM + 7 * 60_000 + 30_000, "t", false) // 09:07:30 at uptime 100 s
        const next = nextBoundaryMs(100_000, 15 * 60_000, c)
        assert.equal(utcSecondsOf(c, next) * 1000, NINE_AM + 15 * 60_000, "09:15:00")
        const after = nextBoundaryMs(next, 15 * 60_000, c)
        assert.equal(utcSecondsOf(c, after) * 1000, NINE_AM + 30 * 60_000, "09:30:00")
        // 7 s does not divide a day: no grid, one interval after the last boundary.
        assert.equal(nextBoundaryMs(100_000, 7_000, c), 107_000)
    })
})

describe("readings in UTC", () => {
    test("a reading stored in uptime converts with its boot's offset; the stored copy is untouched", () => {
        const r = energyRecord(0, 5, 3, 60_000, 120_000, 10, 20)
        const offsetS = Math.round(NINE_AM / 1000) - 60
        const u = recordInUtc(r, offsetS)
        assert.equal(u.flags & FLAG_CLOCK_NOT_SET, 0)
        assert.equal(u.startS, 60 + offsetS)
        assert.equal(u.durationS, 60)
        assert.equal(r.flags & FLAG_CLOCK_NOT_SET, FLAG_CLOCK_NOT_SET)
        assert.equal(recordInUtc(r, 0), r, "no offset: published in uptime")
        const body = JSON.parse(readingMessage([u], [energyLabel("main")]).payload)
        assert.equal(body.time, "utc_ms")
        assert.equal(body.readings[0].start, NINE_AM)
        assert.equal(body.readings[0].end, NINE_AM + 60_000)
    })

    test("readings before and after the time arrived join without overlap or hole", () => {
        const c = new WallClock()
        const before = energyRecord(0, 1, 1, 0, 60_000, 1, 1) // uptime 0..60 s
        c.apply(75_300, NINE_AM, "t", false)
        // The node's reading loop: the next reading starts at the previous end, converted once.
        const after = energyRecord(0, 2, 1, 60_000, 120_000, 1, 2)
        after.flags &= ~FLAG_CLOCK_NOT_SET
        after.startS = before.startS + before.durationS + c.bootOffsetS
        after.durationS = utcSecondsOf(c, 120_000) - after.startS
        const b = recordInUtc(before, c.bootOffsetS)
        assert.equal(b.startS + b.durationS, after.startS)
        const body = JSON.parse(readingMessage([b, after], [energyLabel("main")]).payload)
        assert.equal(body.readings.length, 2, "one message: the same time base")
        assert.equal(body.readings[0].end, body.readings[1].start)
        // 60 s of uptime after the time arrived at 75.3 s is 09:00:44.7; published within 0.5 s.
        assert.ok(Math.abs(body.readings[1].end - (NINE_AM + 44_700)) <= 500)
    })

    test("the state keeps the offsets of the last boots, newest last", () => {
        let offsets = withBootOffset([], 1, 1000)
        for (let boot = 2; boot <= 6; boot++) offsets = withBootOffset(offsets, boot, 1000 * boot)
        assert.equal(offsets.length, KEPT_BOOT_OFFSETS)
        assert.deepEqual(
            offsets.map(o => o.boot),
            [3, 4, 5, 6]
        )
        assert.equal(offsetOfBoot(offsets, 5), 5000)
        assert.equal(offsetOfBoot(offsets, 1), 0, "too old: its readings stay in uptime")
        assert.deepEqual(
            withBootOffset(offsets, 4, 7).map(o => o.boot),
            [3, 5, 6, 4]
        )
    })

    test("a gap after a boot that knew the time starts in UTC", () => {
        const prev = {
            ...initialState(),
            boot: 4,
            seq: 90,
            markSeq: 80,
            markEndS: 1_763_802_000,
            markUtc: true,
            clean: false,
        }
        const gap = gapRecord(prev, lastKnown(prev, null), 0, 91)!
        assert.equal(gap.flags & FLAG_GAP, FLAG_GAP)
        assert.equal(gap.flags & FLAG_CLOCK_NOT_SET, 0)
        assert.equal(JSON.parse(readingMessage([gap], [energyLabel("m")]).payload).readings[0].start, 1_763_802_000_000)
    })
})
