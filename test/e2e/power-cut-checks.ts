// What a subscriber must see across power cuts, checked over everything it received: used by
// test/e2e/power-cuts.test.ts and by the fault campaign's power-cuts scenario (devs/faults.ts).
// - no meter's total ever goes back, in the order the readings were received;
// - each cut is a gap that starts at or after the last reading the node knew acknowledged;
// - nothing acknowledged comes again (a gap included), and nothing is lost outside a gap.
import { readingSeqs } from "./helpers"
import type { Received } from "./helpers"

/**
 * Online: the node delivering as it reads. Offline: the link refused, the readings written to
 * flash. Mid-drain: the next boot, once the link is back, delivering the last boot's readings.
 */
export type CutKind = "online" | "offline" | "mid-drain"

function lastMatch(lines: string[], pattern: RegExp) {
    let found = -1
    for (const line of lines) {
        const m = line.match(pattern)
        if (m) found = Number(m[1])
    }
    return found
}

/** The last seq the node wrote down as acknowledged by the broker (-1: none this boot). */
export const lastAcked = (lines: string[]) => lastMatch(lines, /^flash: acknowledged up to seq (\d+)/)
export const bootOf = (lines: string[]) => lastMatch(lines, /^node: boot (\d+), next seq/)
/** The first seq this boot hands out. */
export const firstSeqOf = (lines: string[]) => lastMatch(lines, /^node: boot \d+, next seq (\d+)/)
/** The records the boot found queued in flash at its start. */
export const queuedAtBoot = (lines: string[]) => lastMatch(lines, /^node: boot \d+, next seq \d+, queued (\d+)/)

export interface Cut {
    lines: string[]
    boot: number
    acked: number
    taken: number[]
    atMs: number
    /** Until when the link was up: the cut, or the moment the link went away before it (offline). */
    linkUpUntilMs: number
    kind: CutKind
}

/** The cut of the boot whose console is `lines`, at `atMs`. */
export function cutOf(lines: string[], atMs: number, linkUpUntilMs: number, kind: CutKind): Cut {
    return {
        lines: [...lines],
        boot: bootOf(lines),
        acked: lastAcked(lines),
        taken: readingSeqs(lines),
        atMs,
        linkUpUntilMs: linkUpUntilMs || atMs,
        kind,
    }
}

/** Every reading and gap element received on topics ending in `suffix`, with its message's arrival time. */
export function receivedElements(messages: Received[], suffix: string) {
    return messages
        .filter(m => m.topic.endsWith(suffix))
        .flatMap(m => (JSON.parse(m.payload).readings as any[]).map(e => ({ ...e, topic: m.topic, atMs: m.atMs })))
}

export interface CutsChecked {
    /** What broke a rule, one line each; empty when every cut was truthful. */
    failures: string[]
    /** One line per cut: taken, acknowledged, lost, where its gap starts. */
    report: string[]
    /** Distinct readings and gaps received. */
    received: number
    /** Deliveries beyond the first (QoS 1 allows them), and of those the gaps. */
    again: number
    gapsAgain: number
}

/** The rules above, over the messages of one meter's topic (`suffix`) and the cuts made. */
export function checkPowerCuts(messages: Received[], cuts: Cut[], suffix: string): CutsChecked {
    const failures: string[] = []
    const elements = receivedElements(messages, suffix)
    // Totals in the order received (first deliveries), readings and gaps alike.
    const firsts = new Map<number, any>()
    for (const e of elements) if (!firsts.has(e.seq)) firsts.set(e.seq, e)
    let highest = -Infinity
    let highestSeq = 0
    for (const e of firsts.values()) {
        if (e.total < highest)
            failures.push(
                `${e.gap ? "gap" : "reading"} seq ${e.seq} has total ${e.total}, below ${highest} of seq ${highestSeq}`
            )
        else {
            highest = e.total
            highestSeq = e.seq
        }
    }
    const gaps = [...firsts.values()].filter(e => e.gap)
    const report: string[] = []
    for (const c of cuts) {
        const gap = gaps.find(g => g.boot === c.boot)
        if (!gap) {
            failures.push(`boot ${c.boot} is not reported as a gap`)
            continue
        }
        if (gap.after_seq < c.acked)
            failures.push(
                `the gap of boot ${c.boot} starts after seq ${gap.after_seq}, below seq ${c.acked} acknowledged before the cut`
            )
        // The same from the subscriber's side: what it had a second before the cut, the node had
        // seen acknowledged.
        const received = elements.filter(e => e.atMs < c.linkUpUntilMs - 1000).map(e => e.seq)
        const receivedBefore = Math.max(...received)
        if (gap.after_seq < receivedBefore)
            failures.push(
                `the gap of boot ${c.boot} starts after seq ${gap.after_seq}, below seq ${receivedBefore} received a second before the cut`
            )
        // Nothing lost outside a gap: every reading taken was received or is inside this cut's gap.
        const lost = c.taken.filter(seq => !firsts.has(seq))
        for (const seq of lost)
            if (!(seq > gap.after_seq && seq < gap.seq))
                failures.push(`seq ${seq} of boot ${c.boot} lost outside its gap`)
        // Nothing the node knew acknowledged is sent again by a later boot.
        // Known acknowledged: written down by the node, or received by the subscriber a second
        // before the cut while the link was up (the node has its PUBACK by then; a link cut can
        // lose a PUBACK, and then the reading rightly comes again).
        const again = elements.filter(e => {
            const first = firsts.get(e.seq).atMs
            return e.atMs > c.atMs && first < c.atMs && (e.seq <= c.acked || first < c.linkUpUntilMs - 1000)
        })
        if (again.length)
            failures.push(
                `delivered again after boot ${c.boot} knew them acknowledged (up to seq ${c.acked}): ${again.map(e => `${e.gap ? "gap " : ""}${e.seq}`).join(" ")}`
            )
        report.push(
            `boot ${c.boot} (${c.kind}): ${c.taken.length} taken, acknowledged up to ${c.acked}, ${lost.length} lost, gap after ${gap.after_seq}`
        )
    }
    const gapSeqs = elements.filter(e => e.gap).map(e => e.seq)
    return {
        failures,
        report,
        received: firsts.size,
        again: elements.length - firsts.size,
        gapsAgain: gapSeqs.length - new Set(gapSeqs).size,
    }
}
