// Power cuts while online, offline and in the middle of a drain, on Mosquitto and on aedes: the firmware in
// the simulator is SIGKILLed at random moments (a seeded sequence, so a failure can be replayed)
// and started again on the same flash. What a subscriber receives must stay truthful:
// - no meter's total ever goes back, in the order the readings were received;
// - each cut is a gap that starts at or after the last reading the node knew acknowledged;
// - nothing acknowledged comes again (a gap included), and nothing is lost outside a gap.
import { test, TestContext } from "node:test"
import assert from "node:assert/strict"
import { Broker, BrokerKind, findMosquitto } from "../../devs/lib/broker"
import { FaultProxy } from "../../devs/lib/fault-proxy"
import { sleep } from "../../devs/lib/process"
import { moments, NodeUnderTest, readingSeqs, Recorder, until } from "./helpers"

const SUFFIX = "/main/reading"
/**
 * Online: the node delivering as it reads. Offline: the link refused, the readings written to
 * flash. Mid-drain: the next boot, once the link is back, delivering the last boot's readings.
 */
const KINDS = ["online", "online", "offline", "mid-drain", "online"] as const

function lastMatch(lines: string[], pattern: RegExp) {
    let found = -1
    for (const line of lines) {
        const m = line.match(pattern)
        if (m) found = Number(m[1])
    }
    return found
}

/** The last seq the node wrote down as acknowledged by the broker (-1: none this boot). */
const lastAcked = (lines: string[]) => lastMatch(lines, /^flash: acknowledged up to seq (\d+)/)
const bootOf = (lines: string[]) => lastMatch(lines, /^node: boot (\d+), next seq/)
/** The first seq this boot hands out. */
const firstSeqOf = (lines: string[]) => lastMatch(lines, /^node: boot \d+, next seq (\d+)/)

interface Cut {
    lines: string[]
    boot: number
    acked: number
    taken: number[]
    atMs: number
    /** Until when the link was up: the cut, or the moment the link went away before it (offline). */
    linkUpUntilMs: number
    kind: (typeof KINDS)[number]
}

async function powerCuts(t: TestContext, kind: BrokerKind, seed: number) {
    const nodeId = `e2e-cuts-${kind}`
    const broker = new Broker({ kind, persistence: true })
    t.after(() => broker.dispose())
    await broker.start()
    const proxy = new FaultProxy({ targetPort: broker.port })
    t.after(() => proxy.stop())
    await proxy.start()
    const recorder = new Recorder(broker.url, `meters/${nodeId}/#`, { persistentSession: true })
    t.after(() => recorder.stop())
    await recorder.start()
    const node = new NodeUnderTest({
        MQTT_URL: proxy.url,
        NODE_ID: nodeId,
        SIM_SEED: 5,
        KEEPALIVE_S: 10,
        READ_MS: 1000,
        FLUSH_S: 2,
    })
    t.after(() => node.dispose())
    await node.build()
    let sim = await node.start(true)
    const when = moments(seed, 1500, 6000)
    const cuts: Cut[] = []
    for (const cutKind of KINDS) {
        const s = sim
        let linkUpUntilMs = 0
        const received = () => recorder.readings(SUFFIX).length
        if (cutKind === "mid-drain") {
            // This boot started with the link refused and the last boot's readings in flash: once
            // the link is back and the first of them arrives, the cut comes in the middle of the drain.
            await sleep(2000)
            const before = received()
            proxy.refuse(false)
            await until("the drain to begin", () => received() > before, 90_000)
            await sleep((when.next().value as number) % 300)
        } else {
            await until(
                "a reading of this boot received",
                () => firstSeqOf(s.lines) > 0 && recorder.readings(SUFFIX).some(r => r.seq >= firstSeqOf(s.lines)),
                90_000
            )
            if (cutKind === "offline") {
                // The link goes away; the readings taken meanwhile are written to flash (FLUSH_S).
                linkUpUntilMs = Date.now()
                proxy.refuse(true)
                proxy.cutAll()
                const from = s.lines.length
                await until(
                    "a flush while offline",
                    () => s.lines.slice(from).some(l => /^flash: safe up to/.test(l)),
                    30_000
                )
            }
            await sleep(when.next().value as number)
        }
        const lines = [...sim.lines]
        const atMs = Date.now()
        await node.kill()
        cuts.push({
            lines,
            boot: bootOf(lines),
            acked: lastAcked(lines),
            taken: readingSeqs(lines),
            atMs,
            linkUpUntilMs: linkUpUntilMs || atMs,
            kind: cutKind,
        })
        sim = await node.start(false)
    }
    const last = sim
    const describe = () =>
        `gaps of boots ${[...new Set(recorder.gaps(SUFFIX).map(g => g.boot))].join(",")}, cuts of boots ${cuts.map(c => c.boot).join(",")}, ` +
        `last boot ${bootOf(last.lines)}: ${recorder.readings(SUFFIX).filter(x => x.boot === bootOf(last.lines)).length} readings; ` +
        `its console: ${last.lines.slice(-15).join(" | ")}`
    const story = () =>
        describe() +
        cuts.map(c => `\n# boot ${c.boot}: ${c.lines.filter(l => /^(flash|node|mqtt):/.test(l)).join(" | ")}`).join("")
    try {
        await recorder.waitFor(
            "every cut's gap and 3 readings of the last boot",
            r => {
                const gapBoots = new Set(r.gaps(SUFFIX).map(g => g.boot))
                const lastBoot = bootOf(last.lines)
                return (
                    cuts.every(c => gapBoots.has(c.boot)) &&
                    r.readings(SUFFIX).filter(x => x.boot === lastBoot).length >= 3
                )
            },
            120_000
        )
    } catch (e) {
        throw new Error(`${(e as Error).message}: ${story()}`)
    }
    const crashes = last.lines.filter(l => /PANIC|OutOfMemory|InfiniteLoop|Unhandled/.test(l))
    assert.deepEqual(crashes, [], "no crash in the last boot")

    const elements = recorder.messages
        .filter(m => m.topic.endsWith(SUFFIX))
        .flatMap(m => (JSON.parse(m.payload).readings as any[]).map(e => ({ ...e, atMs: m.atMs })))
    // Totals in the order received (first deliveries), readings and gaps alike.
    const firsts = new Map<number, any>()
    for (const e of elements) if (!firsts.has(e.seq)) firsts.set(e.seq, e)
    let highest = -Infinity
    let highestSeq = 0
    for (const e of firsts.values()) {
        assert.ok(
            e.total >= highest,
            `${e.gap ? "gap" : "reading"} seq ${e.seq} has total ${e.total}, below ${highest} of seq ${highestSeq}`
        )
        highest = e.total
        highestSeq = e.seq
    }
    const gaps = [...firsts.values()].filter(e => e.gap)
    const report: string[] = []
    for (const c of cuts) {
        const gap = gaps.find(g => g.boot === c.boot)
        assert.ok(gap, `boot ${c.boot} is reported as a gap`)
        assert.ok(
            gap.after_seq >= c.acked,
            `the gap of boot ${c.boot} starts after seq ${gap.after_seq}, below seq ${c.acked} acknowledged before the cut`
        )
        // The same from the subscriber's side: what it had a second before the cut, the node had
        // seen acknowledged.
        const received = elements.filter(e => e.atMs < c.linkUpUntilMs - 1000).map(e => e.seq)
        const receivedBefore = Math.max(...received)
        assert.ok(
            gap.after_seq >= receivedBefore,
            `the gap of boot ${c.boot} starts after seq ${gap.after_seq}, below seq ${receivedBefore} received a second before the cut`
        )
        // Nothing lost outside a gap: every reading taken was received or is inside this cut's gap.
        const lost = c.taken.filter(seq => !firsts.has(seq))
        for (const seq of lost)
            assert.ok(seq > gap.after_seq && seq < gap.seq, `seq ${seq} of boot ${c.boot} lost outside its gap`)
        // Nothing the node knew acknowledged is sent again by a later boot.
        // Known acknowledged: written down by the node, or received by the subscriber a second
        // before the cut while the link was up (the node has its PUBACK by then; a link cut can
        // lose a PUBACK, and then the reading rightly comes again).
        const again = elements.filter(e => {
            const first = firsts.get(e.seq).atMs
            return e.atMs > c.atMs && first < c.atMs && (e.seq <= c.acked || first < c.linkUpUntilMs - 1000)
        })
        assert.deepEqual(
            again.map(e => e.seq),
            [],
            `delivered again after boot ${c.boot} knew them acknowledged (up to seq ${c.acked})`
        )
        report.push(
            `boot ${c.boot} (${c.kind}): ${c.taken.length} taken, acknowledged up to ${c.acked}, ${lost.length} lost, gap after ${gap.after_seq}`
        )
    }
    const gapSeqs = elements.filter(e => e.gap).map(e => e.seq)
    console.log(
        `# ${kind}: ${report.join("; ")}; ${firsts.size} readings and gaps received, ` +
            `${elements.length - firsts.size} again (${gapSeqs.length - new Set(gapSeqs).size} of them gaps)`
    )
}

for (const [kind, seed] of [
    ["mosquitto", 20261203],
    ["aedes", 20261204],
] as const)
    test(
        `power cuts online, offline and mid-drain (${kind}): totals never go back, each gap starts at the last acknowledged reading, nothing acknowledged comes again`,
        { skip: kind === "mosquitto" && !findMosquitto() ? "Mosquitto is not installed" : false },
        t => powerCuts(t, kind, seed)
    )
