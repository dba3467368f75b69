// Wall-clock time for a board that has none. DeviceScript has no Date and no SNTP: UTC arrives
// over MQTT (the time topic or the `time` command) and becomes an offset from the uptime clock.
// Readings are timed to the whole second: utcS = uptimeS + offsetS with an integer offset, so
// every reading of a boot converts with one constant and consecutive intervals stay contiguous.
//
// Pure core: imports nothing from @devicescript.
import { FLAG_CLOCK_NOT_SET, copyRecord, ReadingRecord } from "./storage/records"

/** Time messages before 2020 or from 2100 on are rejected as a broken source. */
export const MIN_UTC_MS = 1577836800000
export const MAX_UTC_MS = 4102444800000
/**
 * The running clock is re-anchored when the best recent estimate is this far from it: an offset
 * rounded to the second is within 500 ms, so this keeps the published times within about 600 ms
 * while a drifting crystal moves by whole seconds a few times a day at most.
 */
export const RESYNC_THRESHOLD_MS = 600
/**
 * Live time messages the estimate looks back over. A message can only arrive late (network, a
 * busy VM), never early, so the largest utc - uptime of recent messages is the best estimate,
 * as NTP keeps the sample with the least delay.
 */
export const ESTIMATE_SAMPLES = 5
/**
 * Once the clock is set, a time message further than this from it is refused: a time source does
 * not jump, a forged or broken one does. Only the `time` command (an operator's act) steps it.
 */
export const MAX_TIME_MESSAGE_STEP_MS = 300000
/**
 * Before the clock is set, a time message that puts the present more than this before the end of
 * the newest reading the node knows of (its floor, from flash) is refused: time did not go back
 * while the node was off, a forged or stale source did. The margin covers the rounding of the
 * offsets (half a second each) and a previous clock re-anchored late (RESYNC_THRESHOLD_MS).
 */
export const FLOOR_TOLERANCE_S = 5
/** The source name of the `time` command, the one time not held to the floor. */
export const TIME_COMMAND = "time command"
/** The largest step the `time` command makes: a reading must still span the step (records.ts). */
export const MAX_TIME_COMMAND_STEP_MS = 30 * 86400000
/** Boots whose offsets the state keeps: records of older boots still queued publish in uptime. */
export const KEPT_BOOT_OFFSETS = 4

export interface TimeValue {
    utcMs: number
    /** Why the payload is not a time, or "". */
    error: string
}

/** Reads a time payload: `{"utc_ms": 1763800000000}` or a bare number of Unix milliseconds. */
export function parseTimePayload(text: string): TimeValue {
    let v: any = null
    try {
        v = JSON.parse(text)
    } catch (e) {
        return { utcMs: 0, error: "time payload is not JSON" }
    }
    return timeFromJson(v)
}

/** The `utc_ms` of a parsed message (or the number itself), checked. */
export function timeFromJson(v: any): TimeValue {
    const ms = v !== null && typeof v === "object" ? v.utc_ms : v
    let error = ""
    if (typeof ms !== "number" || isNaN(ms) || Math.floor(ms) !== ms)
        error = "time must be a whole number of Unix milliseconds in utc_ms"
    else if (ms < MIN_UTC_MS || ms >= MAX_UTC_MS) error = "time " + ms + " ms is not between 2020 and 2100"
    return { utcMs: error ? 0 : ms, error }
}

/** One boot's offset, for converting that boot's readings. */
export interface BootOffset {
    boot: number
    offsetS: number
}

/**
 * The clock of the running boot. `offsetS` is 0 while the time is unknown (a real offset is about
 * 1.7e9 s). `bootOffsetS` is the first offset learned: readings stored in uptime seconds before
 * the time arrived convert with it, whatever re-anchoring happened since, so they join the first
 * reading stored in UTC without overlap or hole.
 */
export class WallClock {
    offsetS = 0
    bootOffsetS = 0
    /** Where the time came from, for the status message. */
    source = ""
    /** Set by `apply` and `step` when they changed the clock: what happened, for the log. */
    lastChange = ""
    /** Set by `apply` when it refused a time message: why, for the status. */
    refusal = ""
    /** How often the clock was stepped (or re-anchored by a minute or more): a reading that spans one is flagged. */
    changes = 0
    /**
     * UTC seconds at which the newest reading known from earlier boots ends (0: none known). A
     * time message may not set the clock before it; the `time` command may (an operator's act:
     * the way out when a forged time once stamped readings in the future).
     */
    floorS = 0
    /** Recent live samples of utc - uptime, ms. */
    private samples: number[] = []

    isSet() {
        return this.offsetS !== 0
    }

    /**
     * A time message: `utcMs` was the time when the message left its source, `nowMs` is the uptime
     * on receipt. A retained copy is as old as its source's publishing period: it sets a clock that
     * is unset and is ignored otherwise. Live messages refine the estimate (see ESTIMATE_SAMPLES)
     * and re-anchor the clock when it is RESYNC_THRESHOLD_MS off. Returns true when the offset changed.
     */
    apply(nowMs: number, utcMs: number, source: string, retained: boolean): boolean {
        this.lastChange = ""
        this.refusal = ""
        const sampleMs = utcMs - nowMs
        if (this.isSet()) {
            if (retained) return false
            const offMs = sampleMs - this.offsetS * 1000
            if (Math.abs(offMs) > MAX_TIME_MESSAGE_STEP_MS) {
                // 300 s is MAX_TIME_MESSAGE_STEP_MS: a substitution would cost code.
                this.refusal = `time from ${source} is ${Math.round(offMs / 1000)} s from the clock, more than 300 s: refused (the time command steps the clock)`
                return false
            }
            const samples = this.samples
            samples.push(sampleMs)
            // One sample is added at a time.
            if (samples.length > ESTIMATE_SAMPLES) samples.shift()
            let estimateMs = sampleMs
            for (const x of samples) if (x > estimateMs) estimateMs = x
            const driftMs = estimateMs - this.offsetS * 1000
            if (Math.abs(driftMs) < RESYNC_THRESHOLD_MS) return false
            this.offsetS = Math.round(estimateMs / 1000)
            this.samples = [estimateMs]
            this.source = source
            // A drifting crystal's second or two is not news; a minute is.
            if (Math.abs(driftMs) >= 60000) this.changes++
            this.lastChange = `clock re-anchored by ${Math.round(driftMs)} ms (${source})`
            return true
        }
        const behindS = this.floorS - Math.floor(utcMs / 1000)
        if (this.floorS && behindS > FLOOR_TOLERANCE_S && source !== TIME_COMMAND) {
            this.refusal = `time from ${source} is ${behindS} s before the end of the last reading in flash: refused (the time command sets the clock)`
            return false
        }
        this.offsetS = Math.round(sampleMs / 1000)
        this.bootOffsetS = this.offsetS
        this.samples = retained ? [] : [sampleMs]
        this.source = source
        this.lastChange = "clock set from " + source + (retained ? " (retained copy)" : "")
        return true
    }

    /**
     * The `time` command: sets the clock to `utcMs` whatever it said, forward or back, by at most
     * MAX_TIME_COMMAND_STEP_MS once set. Returns "" or why the step is refused.
     */
    step(nowMs: number, utcMs: number, source: string): string {
        const sampleMs = utcMs - nowMs
        if (!this.isSet()) {
            this.apply(nowMs, utcMs, source, false)
            return ""
        }
        const stepMs = sampleMs - this.offsetS * 1000
        if (Math.abs(stepMs) > MAX_TIME_COMMAND_STEP_MS)
            return `a step of ${Math.round(stepMs / 1000)} s is more than 30 days: restart the node instead`
        this.offsetS = Math.round(sampleMs / 1000)
        this.samples = [sampleMs]
        this.source = source
        this.changes++
        this.lastChange = `clock stepped by ${Math.round(stepMs)} ms (${source})`
        return ""
    }
}

/** The offset recorded for `boot`, or 0. */
export function offsetOfBoot(offsets: BootOffset[], boot: number) {
    for (const o of offsets) if (o.boot === boot) return o.offsetS
    return 0
}

/** `offsets` with `boot`'s offset set, newest last, at most KEPT_BOOT_OFFSETS boots. */
export function withBootOffset(offsets: BootOffset[], boot: number, offsetS: number): BootOffset[] {
    const out: BootOffset[] = []
    // The pairs are never changed once made: the new list shares them.
    for (const o of offsets) if (o.boot !== boot) out.push(o)
    out.push({ boot, offsetS })
    while (out.length > KEPT_BOOT_OFFSETS) out.shift()
    return out
}

/**
 * `r` in UTC when its boot's offset is known (a copy: queued records may be shared), else `r`.
 * A reading stored in uptime seconds keeps its interval; only the time base changes.
 */
export function recordInUtc(r: ReadingRecord, offsetS: number): ReadingRecord {
    if (!(r.flags & FLAG_CLOCK_NOT_SET) || !offsetS) return r
    const c = copyRecord(r)
    c.flags = r.flags & ~FLAG_CLOCK_NOT_SET
    c.startS = r.startS + offsetS
    return c
}

/**
 * The next reading boundary after uptime `nowMs`, in uptime ms. Boundaries fall on whole
 * seconds; with the clock set and an interval that divides a day, on multiples of the interval
 * in UTC (every 15 minutes: on the quarter hour), so readings of many nodes line up.
 */
export function nextBoundaryMs(nowMs: number, intervalMs: number, clock: WallClock): number {
    const intervalS = Math.max(1, Math.round(intervalMs / 1000))
    if (clock.isSet() && 86400 % intervalS === 0) {
        const nowUtcS = Math.floor(nowMs / 1000) + clock.offsetS
        const nextUtcS = (Math.floor(nowUtcS / intervalS) + 1) * intervalS
        return (nextUtcS - clock.offsetS) * 1000
    }
    return (Math.floor(nowMs / 1000) + intervalS) * 1000
}
