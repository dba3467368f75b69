// `npm run faults`: the fault campaign. Each scenario is a real fault against the firmware in the
// simulator and a real broker, with the fault-injecting TCP proxy (devs/lib/fault-proxy.ts)
// between them, on Mosquitto and on aedes (an independent implementation in Node). For each it
// prints what the broker delivered to a persistent QoS 1 subscriber against what the node took:
//
//   taken        readings the node took (its console: "reading: seq N")
//   delivered    distinct readings the subscriber got (a merged reading counts for every seq it covers)
//   dup          deliveries of a seq already delivered (QoS 1 allows them; consumers deduplicate)
//   reord        first deliveries whose seq is below one delivered before
//   lost         taken and never delivered
//   unexpl       lost and not inside a gap the node reported (or, where readings may be dropped
//                for lack of room, beyond the drops the status reported): a failure
//   energy       the largest difference, in mWh, between the sum of the deltas and the change of
//                the total over a run of readings without a gap: must be 0
//   recover      seconds from the end of the fault to the first new reading delivered
//   status       whether the retained status told the truth: "lost" after the node vanished, and
//                online with the current boot at the end
//   restarts     restarts of the program the node did not ask for (power cuts excluded): must be 0
//
// Exits non-zero on any unexplained loss, energy difference or untruthful status.
// Options: --only a,b  --brokers mosquitto,aedes  --soak-min N (0: no soak)  --soak-brokers a,b (default:
// the first broker)  --seed N  --json FILE  --write-results (write the output into docs/results.md;
// --readme is an alias)  --crash-s N (the collector-crash run's length, default 600)
import mqtt from "mqtt"
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { cpus, tmpdir } from "node:os"
import { join } from "node:path"
import { parseArgs } from "node:util"
import { Broker, BrokerKind, findMosquitto } from "./lib/broker"
import { FaultProxy } from "./lib/fault-proxy"
import { HostileBroker } from "./lib/hostile-broker"
import { sleep } from "./lib/process"
import { npmCommand, print, writeResultsSection } from "./lib/report"
import { buildEntry, Simulator } from "./lib/simulator"
import { NodeUnderTest, Recorder } from "../test/e2e/helpers"
import { crashRun } from "../test/collector/crash-run"

const { values } = parseArgs({
    options: {
        only: { type: "string" },
        brokers: { type: "string", default: findMosquitto() ? "mosquitto,aedes" : "aedes" },
        "soak-min": { type: "string", default: "30" },
        seed: { type: "string", default: "1" },
        json: { type: "string" },
        "soak-brokers": { type: "string" },
        // collector-crash: how long the fleet publishes while the collector is killed (seconds).
        "crash-s": { type: "string", default: "600" },
        "write-results": { type: "boolean", default: false },
        readme: { type: "boolean", default: false },
    },
    strict: true,
})

const READ_MS = 1000
const KEEPALIVE_S = 5
const FLUSH_S = 5
/** After the fault, how long everything taken may take to arrive. */
const SETTLE_TIMEOUT_MS = 90_000

let seed = Number(values.seed) || 1
/** Park-Miller: the same seed gives the same fault times. */
function random() {
    seed = (seed * 48271) % 2147483647
    return (seed - 1) / 2147483646
}

interface Rig {
    broker: Broker
    proxy: FaultProxy
    recorder: Recorder
    node: NodeUnderTest
    nodeId: string
    /** Console lines of every simulator run of this scenario. */
    lines: string[]
    /** When the (last) fault ended, ms. */
    faultEndMs: number
    /** Drops the node may make for lack of room (the scenario fills the queue). */
    dropsAllowed: boolean
    /** The scenario makes the node vanish: the will must be seen. */
    expectWill: boolean
    /** The status must name the fault: some status's `error` matches. */
    expectError?: RegExp
    notes: string[]
}

interface Scenario {
    name: string
    what: string
    persistence?: boolean
    settings?: Record<string, string | number>
    /** Brokers it applies to (default all). */
    brokers?: BrokerKind[]
    /** Runs before the node's first start, on its flash (which is then kept). */
    prepare?(rig: Rig): Promise<void>
    run(rig: Rig): Promise<void>
}

/** Starts (or restarts after a kill) the node, keeping every console line. */
async function startNode(rig: Rig, clearFlash: boolean) {
    const sim = await rig.node.start(clearFlash)
    const original = sim.options.onLine
    sim.options.onLine = line => {
        rig.lines.push(line)
        original?.(line)
    }
    return sim
}

function deliveredCount(rig: Rig) {
    return rig.recorder.readings().length
}

async function waitDeliveries(rig: Rig, n: number, timeoutMs = 30_000) {
    await rig.recorder.waitFor(`${n} readings`, r => r.readings().length >= n, timeoutMs)
}

/** A second client takes the node's client id for a while, as a misconfigured twin would. */
async function takeOver(brokerUrl: string, clientId: string, holdMs: number) {
    const twin = mqtt.connect(brokerUrl, { clientId, clean: false, reconnectPeriod: 0 })
    await new Promise<void>((resolve, reject) => {
        twin.once("connect", () => resolve())
        twin.once("error", reject)
    })
    await sleep(holdMs)
    await new Promise<void>(r => twin.end(true, {}, () => r()))
}

/**
 * Fills the Settings store of the node's flash with other values, leaving `leaveBytes` of its
 * log: a program of its own writes them in a simulator of its own, and its flash becomes the node's.
 */
async function fillStore(node: NodeUnderTest, leaveBytes: number) {
    const fillDir = mkdtempSync(join(tmpdir(), "meternode-fill-"))
    try {
        const bytecode = await buildEntry(
            "test/faults/fill-store",
            "fillStore",
            { leaveBytes },
            fillDir,
            "faults-fill-store"
        )
        const sim = await new Simulator({ bytecode, runDir: fillDir, mode: "device", clearFlash: true }).start()
        try {
            await sim.waitForLine(/^FILLED/, 60_000)
        } finally {
            await sim.kill()
        }
        const target = join(node.runDir, ".devicescript", "flash")
        mkdirSync(target, { recursive: true })
        copyFileSync(sim.flashFile, join(target, "sim.bin"))
    } finally {
        rmSync(fillDir, { recursive: true, force: true })
    }
}

/** The broker unreachable for `ms`: open connections cut, new ones closed at accept. */
async function refuseFor(rig: Rig, ms: number) {
    rig.proxy.refuse(true)
    rig.proxy.cutAll()
    await sleep(ms)
    rig.proxy.refuse(false)
    rig.faultEndMs = Date.now()
}

const SCENARIOS: Scenario[] = [
    {
        name: "broker-restart-persistent",
        what: "broker stopped for 5 s and restarted, persistence on",
        persistence: true,
        brokers: ["mosquitto"],
        async run(rig) {
            await rig.broker.restart(5000)
            rig.faultEndMs = Date.now()
        },
    },
    {
        name: "broker-restart-clean",
        what: "broker stopped for 5 s and restarted without persistence (sessions lost)",
        async run(rig) {
            await rig.broker.restart(5000)
            rig.faultEndMs = Date.now()
        },
    },
    {
        name: "reset-mid-packet",
        what: "connection reset in the middle of a PUBLISH, three times",
        async run(rig) {
            for (let i = 0; i < 3; i++) {
                await rig.proxy.cutMidPacket(chunk => (chunk[0] & 0xf0) === 0x30)
                await sleep(3000)
            }
            rig.faultEndMs = Date.now()
        },
    },
    {
        name: "black-hole",
        what: "the link silently stops forwarding for 20 s (half-open)",
        async run(rig) {
            rig.expectWill = true
            rig.proxy.blackhole(true)
            await sleep(20_000)
            rig.proxy.blackhole(false)
            rig.faultEndMs = Date.now()
        },
    },
    {
        name: "slow-broker",
        what: "every byte from the broker delayed by 3 s for 20 s (PUBACKs late)",
        async run(rig) {
            rig.proxy.delayBrokerToClient(3000)
            await sleep(20_000)
            rig.proxy.delayBrokerToClient(0)
            rig.faultEndMs = Date.now()
        },
    },
    {
        name: "refused",
        what: "connections refused (closed at accept) for 20 s",
        async run(rig) {
            await refuseFor(rig, 20_000)
        },
    },
    {
        name: "connack-refused",
        what: "every CONNECT answered with CONNACK 5 (not authorized) for 20 s",
        async run(rig) {
            rig.expectWill = true
            rig.expectError = /refused the connection: not authorized/
            rig.proxy.refuseWithConnack(5)
            rig.proxy.cutAll()
            await sleep(20_000)
            rig.proxy.refuseWithConnack(null)
            rig.faultEndMs = Date.now()
        },
    },
    {
        name: "take-over",
        what: "a second client connects with the node's client id for 5 s",
        async run(rig) {
            await takeOver(rig.broker.url, `meternode-${rig.nodeId}`, 5000)
            rig.faultEndMs = Date.now()
        },
    },
    {
        name: "power-cut",
        what: "the simulator killed (SIGKILL) at 3 random moments, restarted 2 s later",
        async run(rig) {
            rig.expectWill = true
            for (let i = 0; i < 3; i++) {
                await sleep(2000 + random() * 8000)
                await rig.node.kill()
                await sleep(2000)
                await startNode(rig, false)
            }
            rig.faultEndMs = Date.now()
        },
    },
    {
        name: "flash-full",
        what: "a 900-byte queue through a 3-minute outage (readings merged, drops reported)",
        settings: { QUEUE_BYTES: 900 },
        async run(rig) {
            rig.dropsAllowed = true
            await refuseFor(rig, 180_000)
        },
    },
    {
        name: "store-full",
        what: "the Settings store filled by other values to 350 bytes free, then a 2-minute outage",
        async prepare(rig) {
            await fillStore(rig.node, 350)
        },
        async run(rig) {
            rig.expectError = /did not persist/
            await refuseFor(rig, 120_000)
        },
    },
    {
        name: "hostile-broker",
        what: "a broker sending malformed, truncated, oversized and random packets (10,000+)",
        async run(rig) {
            const hostile = await new HostileBroker(250, random).start()
            const real = rig.proxy.options.targetPort
            rig.proxy.options.targetPort = hostile.port
            rig.proxy.cutAll()
            const deadline = Date.now() + 180_000
            while (hostile.packetsSent < 10_000 && Date.now() < deadline) await sleep(500)
            rig.proxy.options.targetPort = real
            rig.proxy.cutAll()
            await hostile.stop()
            rig.notes.push(`${hostile.packetsSent} malformed packets over ${hostile.connections} connections`)
            if (hostile.packetsSent < 10_000) rig.notes.push("FAILED: fewer than 10,000 packets sent")
            rig.faultEndMs = Date.now()
        },
    },
]

interface Result {
    scenario: string
    broker: string
    taken: number
    delivered: number
    dup: number
    reord: number
    lost: number
    unexplained: number
    energyDiffMilli: number
    recoverS: number | null
    statusTruthful: boolean
    restartsUnasked: number
    notes: string[]
}

/** Seqs a gap says may be missing: after_seq+1 up to the gap's own seq. */
/** The row of a scenario that could not run to its end: every figure 0, the failure noted. */
function failedResult(scenario: string, broker: string, error: unknown, notes: string[] = []): Result {
    return {
        scenario,
        broker,
        taken: 0,
        delivered: 0,
        dup: 0,
        reord: 0,
        lost: 0,
        unexplained: 0,
        energyDiffMilli: 0,
        recoverS: null,
        statusTruthful: false,
        restartsUnasked: 0,
        notes: [...notes, `FAILED: ${(error as Error).message.split("\n")[0]}`],
    }
}

function gapRanges(rig: Rig) {
    return rig.recorder.gaps().map(g => [g.after_seq + 1, g.seq] as [number, number])
}

function analyse(rig: Rig, scenario: string, brokerKind: string): Result {
    const taken = new Set<number>()
    for (const line of rig.lines) {
        const m = line.match(/^reading: seq (\d+)\b/)
        if (m) taken.add(Number(m[1]))
    }
    const seen = new Map<number, number>()
    let reord = 0
    let maxSeq = 0
    const readings = rig.recorder.readings()
    for (const r of readings) {
        const first = r.first_seq ?? r.seq
        const firstTime = !seen.has(r.seq)
        for (let s = first; s <= r.seq; s++) seen.set(s, (seen.get(s) ?? 0) + 1)
        if (firstTime) {
            if (r.seq < maxSeq) reord++
            maxSeq = Math.max(maxSeq, r.seq)
        }
    }
    let dup = 0
    for (const r of readings) if ((seen.get(r.seq) ?? 0) > 1) dup++
    // dup counts deliveries beyond the first: each seq delivered k times counts k-1.
    dup = [...seen.values()].reduce((n, k) => n + k - 1, 0)
    const ranges = gapRanges(rig)
    const lostSeqs = [...taken].filter(s => !seen.has(s))
    const inGap = (s: number) => ranges.some(([a, b]) => s >= a && s <= b)
    let unexplained = lostSeqs.filter(s => !inGap(s)).length
    const statuses = rig.recorder.messages.filter(m => m.topic.endsWith("/status")).map(m => JSON.parse(m.payload))
    const merged = Math.max(0, ...statuses.filter(s => s.state === "online").map(s => s.merged ?? 0))
    if (merged) rig.notes.push(`${merged} readings merged into longer intervals to make room`)
    if (rig.dropsAllowed && unexplained) {
        const dropped = Math.max(0, ...statuses.filter(s => s.state === "online").map(s => s.dropped ?? 0))
        if (unexplained <= dropped) {
            rig.notes.push(
                `${unexplained} readings dropped for lack of room, reported in the status (dropped ${dropped})`
            )
            unexplained = 0
        }
    }
    // Energy: over runs of one boot without a gap between them, sorted by seq.
    let energyDiffMilli = 0
    const firsts = new Map<number, any>()
    for (const r of readings) if (!firsts.has(r.seq)) firsts.set(r.seq, r)
    const sorted = [...firsts.values()].sort((a, b) => a.seq - b.seq)
    let run: any[] = []
    const closeRun = () => {
        if (run.length > 1) {
            const sum = run.reduce((s, r) => s + Math.round(r.delta * 1000), 0)
            const change =
                Math.round(run[run.length - 1].total * 1000) -
                (Math.round(run[0].total * 1000) - Math.round(run[0].delta * 1000))
            energyDiffMilli = Math.max(energyDiffMilli, Math.abs(sum - change))
        }
        run = []
    }
    for (const r of sorted) {
        const prev = run[run.length - 1]
        if (prev && (prev.boot !== r.boot || (r.first_seq ?? r.seq) !== prev.seq + 1 || inGap(r.seq))) closeRun()
        run.push(r)
    }
    closeRun()
    const after = readings.filter(r => r.atMs > rig.faultEndMs)
    const recoverS = after.length ? (after[0].atMs - rig.faultEndMs) / 1000 : null
    // Status: the will when the node vanished; online with the newest boot at the end.
    const boots = readings.map(r => r.boot)
    const lastBoot = Math.max(0, ...boots)
    const last = statuses[statuses.length - 1]
    let statusTruthful = !!last && last.state === "online" && last.boot === lastBoot
    if (rig.expectWill && !statuses.some(s => s.state === "offline" && s.reason === "lost")) statusTruthful = false
    if (rig.expectError) {
        const named = statuses.find(s => rig.expectError!.test(s.error ?? ""))
        if (named) rig.notes.push(`status error: ${named.error}`)
        else statusTruthful = false
    }
    const boots1 = rig.lines.filter(l => /^node: boot \d+, next seq/.test(l)).length
    const kills = scenario === "power-cut" ? 3 : 0
    return {
        scenario,
        broker: brokerKind,
        taken: taken.size,
        delivered: [...taken].filter(s => seen.has(s)).length,
        dup,
        reord,
        lost: lostSeqs.length,
        unexplained,
        energyDiffMilli,
        recoverS,
        statusTruthful,
        restartsUnasked: Math.max(0, boots1 - 1 - kills),
        notes: rig.notes,
    }
}

async function runScenario(s: Scenario, kind: BrokerKind): Promise<Result> {
    const nodeId = `faults-${s.name}`.slice(0, 32)
    const broker = await new Broker({ kind, persistence: !!s.persistence }).start()
    const proxy = await new FaultProxy({ targetPort: broker.port }).start()
    const recorder = await new Recorder(broker.url, `meters/${nodeId}/#`, { persistentSession: true }).start()
    const node = new NodeUnderTest({
        MQTT_URL: proxy.url,
        NODE_ID: nodeId,
        READ_MS,
        KEEPALIVE_S,
        FLUSH_S,
        TIME_TOPIC: "-",
        HA_PREFIX: "-",
        ...s.settings,
    })
    const rig: Rig = {
        broker,
        proxy,
        recorder,
        node,
        nodeId,
        lines: [],
        faultEndMs: 0,
        dropsAllowed: false,
        expectWill: false,
        notes: [],
    }
    try {
        await node.build()
        if (s.prepare) await s.prepare(rig)
        await startNode(rig, !s.prepare)
        await waitDeliveries(rig, 5)
        await s.run(rig)
        // Readings go on for a while after the fault: then everything taken must arrive.
        await sleep(10_000)
        const deadline = Date.now() + SETTLE_TIMEOUT_MS
        for (;;) {
            const taken = new Set(
                rig.lines
                    .map(l => l.match(/^reading: seq (\d+)\b/)?.[1])
                    .filter(Boolean)
                    .map(Number)
            )
            const got = new Set<number>()
            for (const r of recorder.readings()) for (let q = r.first_seq ?? r.seq; q <= r.seq; q++) got.add(q)
            const gaps = recorder.gaps().map(g => [g.after_seq + 1, g.seq])
            const missing = [...taken].filter(q => !got.has(q) && !gaps.some(([a, b]) => q >= a && q <= b))
            if (!missing.length || Date.now() > deadline) break
            await sleep(1000)
        }
        // Recorder's persistent session: a broker restart without persistence may have lost
        // queued messages for it too; the recorder reconnects by itself.
        return analyse(rig, s.name, broker.describe().split(" ")[0])
    } finally {
        await node.dispose()
        await recorder.stop().catch(() => {})
        await proxy.stop()
        await broker.dispose()
    }
}

/**
 * The soak: one node, the faults above drawn at random (broker restart, reset, black hole, slow
 * broker, refusal, take-over), one every 30 to 90 s, for `minutes`, at one reading a second.
 */
async function soak(kind: BrokerKind, minutes: number): Promise<Result> {
    const picks = SCENARIOS.filter(s =>
        ["broker-restart-clean", "reset-mid-packet", "black-hole", "slow-broker", "refused", "take-over"].includes(
            s.name
        )
    )
    const s: Scenario = {
        name: "soak",
        what: `random faults for ${minutes} minutes`,
        async run(rig) {
            const end = Date.now() + minutes * 60_000
            const counts = new Map<string, number>()
            while (Date.now() < end) {
                await sleep(30_000 + random() * 60_000)
                const pick = picks[Math.floor(random() * picks.length)]
                counts.set(pick.name, (counts.get(pick.name) ?? 0) + 1)
                await pick.run(rig)
            }
            rig.expectWill = counts.has("black-hole")
            rig.notes.push([...counts].map(([k, v]) => `${k} x${v}`).join(", "))
            rig.faultEndMs = Date.now()
        },
    }
    return await runScenario(s, kind)
}

function row(r: Result) {
    const cells = [
        r.scenario.padEnd(26),
        r.broker.padEnd(9),
        String(r.taken).padStart(6),
        String(r.delivered).padStart(9),
        String(r.dup).padStart(4),
        String(r.reord).padStart(5),
        String(r.lost).padStart(5),
        String(r.unexplained).padStart(6),
        String(r.energyDiffMilli).padStart(6),
        (r.recoverS === null ? "-" : r.recoverS.toFixed(1)).padStart(7),
        (r.statusTruthful ? "true" : "FALSE").padStart(6),
        String(r.restartsUnasked).padStart(8),
    ]
    return cells.join(" ") + (r.notes.length ? "  " + r.notes.join("; ") : "")
}

const only = values.only ? values.only.split(",") : null
const knownScenarios = [...SCENARIOS.map(s => s.name), "soak", "collector-crash"]
const unknown = (only ?? []).filter(n => !knownScenarios.includes(n))
if (unknown.length) {
    console.error(`npm run faults: unknown scenario ${unknown.join(", ")} (known: ${knownScenarios.join(", ")})`)
    process.exit(2)
}
const brokers = values.brokers!.split(",") as BrokerKind[]
const soakMin = Number(values["soak-min"])
// The soak takes its full length on each broker it runs on: by default the first one only.
const soakBrokers = (values["soak-brokers"] ?? brokers[0]).split(",")
print(
    `meternode faults: ${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, Node ${process.version}; reading every ${READ_MS / 1000} s, keepalive ${KEEPALIVE_S} s, FLUSH_S ${FLUSH_S}, seed ${values.seed}`
)
print(
    [
        "scenario".padEnd(26),
        "broker".padEnd(9),
        " taken",
        "delivered",
        " dup",
        "reord",
        " lost",
        "unexpl",
        "energy",
        "recover",
        "status",
        "restarts",
    ].join(" ")
)
const results: Result[] = []
let failed = false
for (const kind of brokers) {
    for (const s of SCENARIOS) {
        if (only && !only.includes(s.name)) continue
        if (s.brokers && !s.brokers.includes(kind)) continue
        let r: Result
        try {
            r = await runScenario(s, kind)
        } catch (e) {
            r = failedResult(s.name, kind, e)
        }
        results.push(r)
        print(row(r))
    }
    if (soakMin > 0 && (!only || only.includes("soak")) && soakBrokers.includes(kind)) {
        const r = await soak(kind, soakMin).catch(e => failedResult("soak", kind, e))
        if (r.restartsUnasked) r.notes.push(`FAILED: ${r.restartsUnasked} restarts the node did not ask for`)
        results.push(r)
        print(row(r))
    }
}
// The collector's side (test/collector/crash-run.ts): 10 simulated nodes at a reading a second,
// the collector SIGKILLed at 5 moments drawn from the seed and restarted, the broker (Mosquitto,
// persistence on) restarted once; every reading the fleet took must be stored once, energy exact.
// The columns: taken by the fleet, delivered = stored with their content, dup = rows beyond one per
// reading, lost, energy; recover = seconds from the fleet's last publish to the last row stored.
if (findMosquitto() && (!only || only.includes("collector-crash")))
    for (const database of ["PGlite", "PostgreSQL"] as const) {
        const notes: string[] = []
        let r: Result
        try {
            const c = await crashRun({
                database,
                nodes: 10,
                seconds: Number(values["crash-s"]),
                kills: 5,
                seed: Number(values.seed) || 1,
                log: line => console.log(`  collector-crash ${database}: ${line}`),
            })
            notes.push(
                database,
                `SIGKILL at ${c.killsAtS.map(t => t.toFixed(0)).join(", ")} s, broker restart at ${c.brokerRestartAtS.toFixed(0)} s`,
                ...c.notes
            )
            if (c.wrong) notes.push(`FAILED: ${c.wrong} rows differ from what the fleet took`)
            r = {
                scenario: "collector-crash",
                broker: "mosquitto",
                taken: c.taken,
                delivered: c.stored,
                dup: c.doubled,
                reord: 0,
                lost: c.lost,
                unexplained: c.lost,
                energyDiffMilli: c.energyDiffMilli,
                recoverS: c.catchUpS,
                statusTruthful: true,
                restartsUnasked: 0,
                notes,
            }
            if (c.doubled) notes.push(`FAILED: ${c.doubled} readings stored twice`)
        } catch (e) {
            r = failedResult("collector-crash", "mosquitto", e, [database])
        }
        results.push(r)
        print(row(r))
    }
for (const r of results)
    if (
        r.unexplained ||
        r.energyDiffMilli ||
        !r.statusTruthful ||
        r.restartsUnasked ||
        r.notes.some(n => n.startsWith("FAILED"))
    )
        failed = true
if (values.json) writeFileSync(values.json, JSON.stringify(results, null, 2))
print(
    failed
        ? "faults: FAILED (see the rows above)"
        : "faults: every scenario passed: no unexplained loss, energy exact, status truthful"
)
// The collector's crash runs alone have their own block in docs/results.md.
const block = only?.every(n => n === "collector-crash") ? "collector-faults" : "faults"
if (values["write-results"] || values.readme) writeResultsSection(block, npmCommand("faults"))
process.exit(failed ? 1 : 0)
