// The node's persistent state, one small value in flash, and what a boot learns from it: the
// boot count, the sequence-number reservation, the meters' totals, and the "mark": the last reading
// the previous boot knew to be safe (in the flash queue or acknowledged by the broker). A boot
// that did not end with a planned stop left everything after its mark unaccounted for; the next
// boot says so with a gap record instead of skipping it silently.
//
// Pure core: imports nothing from @devicescript.
import { FLAG_CLOCK_NOT_SET, FLAG_GAP, newRecord, ReadingRecord } from "./storage/records"
import { BootOffset, KEPT_BOOT_OFFSETS } from "./clock"

/** Settings key of the state. */
export const STATE_KEY = "mn_state"

export interface NodeState {
    boot: number
    /** Every seq up to this one may have been used. */
    seq: number
    /** Each meter's total (thousandths of its unit) at the mark, by slot. */
    totals: number[]
    /** The last seq known safe, and the end of its interval: seconds since boot `boot`, or Unix seconds when markUtc. */
    markSeq: number
    markEndS: number
    markUtc: boolean
    /** UTC offsets (utcS - uptimeS) of recent boots that learned the time, oldest first. */
    offsets: BootOffset[]
    /** This boot ended with a planned stop: everything it took is accounted for. */
    clean: boolean
}

export function initialState(): NodeState {
    return { boot: 0, seq: 0, totals: [], markSeq: 0, markEndS: 0, markUtc: false, offsets: [], clean: true }
}

function isWholeNumber(v: any) {
    return typeof v === "number" && !isNaN(v) && Math.floor(v) === v && v >= 0
}

/** The state in its flash form: short keys keep it far below the store's value limit. */
export function stateToJson(s: NodeState): any {
    const k: number[] = []
    for (const o of s.offsets) {
        k.push(o.boot)
        k.push(o.offsetS)
    }
    return {
        b: s.boot,
        s: s.seq,
        t: s.totals,
        ms: s.markSeq,
        me: s.markEndS,
        mu: s.markUtc ? 1 : 0,
        k,
        c: s.clean ? 1 : 0,
    }
}

/** The offsets of a state read from flash: pairs of boot and offset; anything else is dropped. */
function offsetsFromJson(k: any): BootOffset[] {
    const out: BootOffset[] = []
    if (!Array.isArray(k)) return out
    for (let i = 0; i + 1 < k.length && out.length < KEPT_BOOT_OFFSETS; i += 2)
        if (isWholeNumber(k[i]) && isWholeNumber(k[i + 1]) && k[i + 1] > 0) out.push({ boot: k[i], offsetS: k[i + 1] })
    return out
}

/** Totals by slot; a single number is the one meter of a state written before several meters existed. */
function totalsFromJson(t: any): number[] {
    if (isWholeNumber(t)) return [t]
    if (!Array.isArray(t)) return null
    const out: number[] = []
    for (const x of t) {
        if (!isWholeNumber(x)) return null
        out.push(x)
    }
    return out
}

/** A meter's total in `totals`, 0 when it has none yet. */
export function totalOf(totals: number[], slot: number) {
    return slot < totals.length && totals[slot] ? totals[slot] : 0
}

/** `totals` with the total of `slot` set: a new array, padded with zeros. */
export function withTotal(totals: number[], slot: number, total: number) {
    const out = totals.slice(0)
    while (out.length <= slot) out.push(0)
    out[slot] = total
    return out
}

/** `totals` with the total of `slot` raised to `total` when that is higher (a new array then). */
export function withHigherTotal(totals: number[], slot: number, total: number) {
    return total > totalOf(totals, slot) ? withTotal(totals, slot, total) : totals
}

/** The state read from flash, or null when it is missing or damaged. */
export function stateFromJson(v: any): NodeState {
    if (!v || typeof v !== "object") return null
    if (!isWholeNumber(v.b) || !isWholeNumber(v.s)) return null
    if (!isWholeNumber(v.ms) || !isWholeNumber(v.me)) return null
    const totals = totalsFromJson(v.t)
    if (!totals) return null
    return {
        boot: v.b,
        seq: v.s,
        totals,
        markSeq: v.ms,
        markEndS: v.me,
        markUtc: v.mu === 1,
        offsets: offsetsFromJson(v.k),
        clean: v.c === 1,
    }
}

/** Settings key of the acknowledgement mark. */
export const ACK_KEY = "mn_ack"

/**
 * What the broker has acknowledged, written after each acknowledgement as a value of its own
 * (the state is three times its size, and flash wears by the bytes written): the last seq
 * acknowledged, the end of its interval (as markEndS), and each meter's ceiling, a total that no
 * reading published so far exceeds. After a power cut, the next boot reports a gap only after that
 * seq, and each meter resumes at its ceiling: a total never goes back in what subscribers got.
 * The shape of LastKnown, its totals being the ceilings.
 */
export type AckMark = LastKnown

export function ackMarkToJson(m: AckMark): number[] {
    const out = [m.boot, m.seq, m.endS, m.endUtc ? 1 : 0]
    for (const c of m.totals) out.push(c)
    return out
}

/** The mark read from flash, or null when it is missing or damaged. */
export function ackMarkFromJson(v: any): AckMark {
    if (!Array.isArray(v) || v.length < 4) return null
    for (const x of v) if (!isWholeNumber(x)) return null
    return { boot: v[0], seq: v[1], endS: v[2], endUtc: v[3] === 1, totals: v.slice(4) }
}

/** Where the previous boot's accounted-for readings end: its mark, or a later record still queued. */
export interface LastKnown {
    boot: number
    seq: number
    endS: number
    /** endS is Unix seconds, not seconds since boot `boot`. */
    endUtc: boolean
    /** Each meter's total, by slot. */
    totals: number[]
}

/**
 * `newestQueued` is the newest record in the queue; `newestByMeter` the newest of each meter
 * (by slot, null where none), default newestQueued for its own meter. A meter's total is the
 * larger of the mark's and its newest queued record's: records older than the mark hold smaller ones.
 */
export function lastKnown(
    prev: NodeState,
    newestQueued: ReadingRecord,
    newestByMeter?: ReadingRecord[],
    acked?: AckMark
): LastKnown {
    const k: LastKnown = {
        boot: prev.boot,
        seq: prev.markSeq,
        endS: prev.markEndS,
        endUtc: prev.markUtc,
        totals: prev.totals.slice(0),
    }
    const byMeter = newestByMeter || [newestQueued]
    for (const r of byMeter) if (r) k.totals = withHigherTotal(k.totals, r.meter, r.totalMilliWh)
    if (newestQueued && newestQueued.seq > k.seq) {
        k.seq = newestQueued.seq
        if (newestQueued.boot === prev.boot) {
            k.endS = newestQueued.startS + newestQueued.durationS
            k.endUtc = !(newestQueued.flags & FLAG_CLOCK_NOT_SET)
        }
    }
    // After a planned stop the state has every total exact, and no reading is lost.
    if (acked && !prev.clean) {
        for (let slot = 0; slot < acked.totals.length; ++slot)
            k.totals = withHigherTotal(k.totals, slot, acked.totals[slot])
        if (acked.seq > k.seq) {
            k.seq = acked.seq
            k.endS = acked.endS
            // A mark of an older boot (a gap record): the previous boot had accounted for nothing after it.
            k.endUtc = acked.boot === prev.boot && acked.endUtc
            if (acked.boot !== prev.boot) k.endS = 0
        }
    }
    return k
}

/**
 * The gap record a boot appends when the previous boot did not stop as planned: from the end of
 * the last reading known safe to the end of that boot (the node has no clock to say when that
 * was), covering every seq after it. Its start is in UTC when the last safe reading's end was. It carries its own seq `gapSeq` (from this boot's
 * reservation) so consumers deduplicate it like any reading. Null when nothing is missing.
 */
export function gapRecord(prev: NodeState, known: LastKnown, meter: number, gapSeq: number): ReadingRecord {
    if (prev.clean || prev.boot === 0) return null
    const r = newRecord()
    r.meter = meter
    r.flags = known.endUtc ? FLAG_GAP : FLAG_GAP | FLAG_CLOCK_NOT_SET
    r.boot = known.boot
    r.startS = known.endS
    r.durationS = 0
    r.firstSeq = known.seq + 1
    r.seq = gapSeq
    r.deltaMilliWh = 0
    r.totalMilliWh = totalOf(known.totals, meter)
    return r
}
