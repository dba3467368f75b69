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
import { moments, NodeUnderTest, Recorder, until } from "./helpers"
import { bootOf, checkPowerCuts, Cut, CutKind, cutOf, firstSeqOf } from "./power-cut-checks"

const SUFFIX = "/main/reading"
const KINDS: CutKind[] = ["online", "online", "offline", "mid-drain", "online"]

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
        cuts.push(cutOf(lines, atMs, linkUpUntilMs, cutKind))
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

    const checked = checkPowerCuts(recorder.messages, cuts, SUFFIX)
    assert.deepEqual(
        checked.failures,
        [],
        "totals never go back, gaps start at the last acknowledged reading, nothing acknowledged comes again"
    )
    console.log(
        `# ${kind}: ${checked.report.join("; ")}; ${checked.received} readings and gaps received, ` +
            `${checked.again} again (${checked.gapsAgain} of them gaps)`
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
