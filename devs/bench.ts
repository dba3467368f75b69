// `npm run bench`: benchmarks, each against a baseline measured in the same run on the same broker.
// Prints absolute figures and ratios, with the machine and versions.
//
//   publish: N QoS 1 publishes through meternode's client, each acknowledged, against N
//            fire-and-forget publishes (QoS 1, whose PUBACKs it ignores, and QoS 0) through
//            DeviceScript's built-in @devicescript/net client.
//   drain:   the firmware with 1,440 and 10,080 one-minute readings in its flash queue (a day
//            and a week without a broker) and a reading every second: the time from CONNACK until
//            the whole backlog is acknowledged and delivered, against the built-in client sending
//            as many single-reading messages from RAM, fire and forget.
//   online:  a reading a second while online: latency from the reading to its delivery at a
//            subscriber (p50, p99) and wire bytes per reading (both directions, through a proxy
//            that counts them), against the built-in client publishing each reading as it is taken;
//            with Mosquitto, also the node speaking MQTT 5 (topic aliases).
//   image:   the firmware image and its code section, against a minimal program that uses the
//            built-in client.
//   heap:    the largest ballast held out of the 64 KB heap with which a workload still runs: its
//            peak heap use is at most 64 KB minus that. The node draining a day's backlog, the node
//            online, each also speaking MQTT 5, and the baseline: the built-in client publishing the
//            same readings.
//   flash:   bytes written to the Settings store per reading, compactions per day and the flash
//            lifetime, online and offline, at the default configuration (the firmware's queue
//            code on the model of the store, over simulated days: test/bench/flash-cost.ts).
// Options: --only publish,drain,online,image,heap,flash, --count N, --payload BYTES, --window N, --rounds N,
//          --drain-rounds N (default 10 of each backlog), --heap-workloads drain,online,builtin,full-drain,
//          full-online,mqtt5-drain,mqtt5-online (all but full-online by default), --heap-probe KB
//          (one probe instead of the search; BENCH_HEAP_DEBUG=1 prints the simulator's console),
//          --json FILE, --vm-costs, --write-results (write the output into docs/results.md;
//          --readme is an alias).
import mqtt from "mqtt"
import { execFileSync } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { cpus, tmpdir } from "node:os"
import { join, relative } from "node:path"
import { parseArgs } from "node:util"
import { Broker, findMosquitto } from "./lib/broker"
import { buildEntry, buildFirmware, compile, devsSync, PROJECT_ROOT, Simulator } from "./lib/simulator"
import { composedEntrySource, composition } from "./lib/compose"
import { FaultProxy } from "./lib/fault-proxy"
import { flashCost, FlashScenario } from "../test/bench/flash-cost"
import { ingestBench, rangeBench } from "../test/bench/ingest"
import { sleep } from "./lib/process"
import { npmCommand, print, writeResultsSection } from "./lib/report"

const { values } = parseArgs({
    options: {
        count: { type: "string", default: "10000" },
        payload: { type: "string", default: "100" },
        window: { type: "string", default: "128" },
        rounds: { type: "string", default: "3" },
        // The drain is the node's riskiest moment (a crash there reboots into the same drain):
        // it runs more rounds than the others, a day's and a week's backlog each.
        "drain-rounds": { type: "string", default: "10" },
        "heap-workloads": { type: "string", default: "drain,online,builtin,full-drain,mqtt5-drain,mqtt5-online" },
        // One probe at this ballast (KB) instead of the search: whether the workload runs with it.
        "heap-probe": { type: "string" },
        "vm-costs": { type: "boolean", default: false },
        only: { type: "string", default: "publish,drain,online,image,heap,flash" },
        // The collector's benchmarks (test/bench/ingest.ts) run when named: --only ingest,range.
        "ingest-readings": { type: "string", default: "60000" },
        json: { type: "string" },
        "write-results": { type: "boolean", default: false },
        readme: { type: "boolean", default: false },
    },
    strict: true,
})
const count = Number(values.count)
const payloadBytes = Number(values.payload)
const window = Number(values.window)
const rounds = Number(values.rounds)
const drainRounds = Number(values["drain-rounds"])
const scenarios = values.only!.split(",")

function versions(broker: Broker) {
    const cli = JSON.parse(
        readFileSync(join(PROJECT_ROOT, "node_modules/@devicescript/cli/package.json"), "utf-8")
    ).version
    let brokerVersion: string = broker.kind
    if (broker.kind === "mosquitto") {
        try {
            const out = execFileSync(findMosquitto()!, ["-h"], { encoding: "utf-8" }).toString()
            brokerVersion = out.match(/mosquitto version [\d.]+/)?.[0] ?? "mosquitto"
        } catch (e) {
            brokerVersion =
                String((e as { stdout?: string }).stdout ?? "").match(/mosquitto version [\d.]+/)?.[0] ?? "mosquitto"
        }
    } else
        brokerVersion =
            "aedes " + JSON.parse(readFileSync(join(PROJECT_ROOT, "node_modules/aedes/package.json"), "utf-8")).version
    return `${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, Node ${process.version}, DeviceScript ${cli}, ${brokerVersion}`
}

/** Counts what the broker delivers per topic, at QoS 0 so the counter is never the bottleneck. */
async function startCounter(url: string) {
    const counts = new Map<string, number>()
    const client = mqtt.connect(url, { clientId: `bench-counter-${process.pid}` })
    client.on("message", topic => counts.set(topic, (counts.get(topic) ?? 0) + 1))
    await new Promise<void>(resolve =>
        client.once("connect", () => client.subscribe("bench/#", { qos: 0 }, () => resolve()))
    )
    return { counts, stop: () => new Promise<void>(r => client.end(true, {}, () => r())) }
}

interface RunResult {
    line: Record<string, number>
    /** The first console line that says the VM failed (out of memory, op limit, exception), or "". */
    crashed: string
}

const CRASH_PATTERN = /out of memory|OutOfMemory|InfiniteLoop|Unhandled exception|panic|RESTART/i

/** Builds and runs one benchmark program; returns the numbers of its BENCH line, or the crash. */
async function runProgram(
    module: string,
    fn: string,
    extra: Record<string, number>,
    broker: Broker
): Promise<RunResult> {
    const runDir = mkdtempSync(join(tmpdir(), "meternode-bench-"))
    try {
        const bytecode = await buildEntry(
            module,
            fn,
            { host: "127.0.0.1", port: broker.port, count, payloadBytes, window, ...extra },
            runDir,
            `bench-${fn}`
        )
        const sim = new Simulator({ bytecode, runDir, mode: "device", clearFlash: true })
        await sim.start()
        try {
            const finished = sim.waitForLine(/^BENCH \w+ (.*)$/, 180_000)
            const crashed = sim.waitForLine(CRASH_PATTERN, 180_000)
            // Whichever loses the race must not surface later as an unhandled rejection.
            finished.catch(() => {})
            crashed.catch(() => {})
            const m = await Promise.race([finished, crashed])
            if (!m[0].startsWith("BENCH")) return { line: {}, crashed: m[0] }
            const line: Record<string, number> = {}
            for (const pair of m[1].split(" ")) {
                const [k, v] = pair.split("=")
                line[k] = Number(v)
            }
            return { line, crashed: "" }
        } finally {
            await sim.kill()
        }
    } finally {
        rmSync(runDir, { recursive: true, force: true })
    }
}

function median(xs: number[]) {
    const sorted = [...xs].sort((a, b) => a - b)
    return sorted[Math.floor(sorted.length / 2)]
}

function rate(n: number, ms: number) {
    return ms > 0 ? (n * 1000) / ms : 0
}

if (values["vm-costs"]) {
    const runDir = mkdtempSync(join(tmpdir(), "meternode-bench-"))
    const bytecode = await buildEntry("test/bench/vm-costs", "vmCosts", {}, runDir, "bench-vm-costs")
    const sim = new Simulator({ bytecode, runDir, mode: "device", onLine: l => l.startsWith("COST") && print(l) })
    await sim.start()
    await sim.waitForLine(/^COST done/, 120_000).finally(() => sim.kill())
    rmSync(runDir, { recursive: true, force: true })
    process.exit(0)
}

async function publishBench() {
    print(`\npublish: ${count} messages of ${payloadBytes} bytes`)

    // Rounds alternate the three programs so that a change in the machine's load hits all of them;
    // each figure is the median over the rounds, and the ratios are ratios of medians.
    interface Series {
        name: string
        rates: number[]
        received: number[]
        crashed: string
        done: string[]
    }
    const series: Series[] = [
        { name: "built-in client, QoS 1, fire-and-forget", rates: [], received: [], crashed: "", done: [] },
        { name: "built-in client, QoS 0, fire-and-forget", rates: [], received: [], crashed: "", done: [] },
        {
            name: `meternode client, QoS 1, window ${window}, acknowledged`,
            rates: [],
            received: [],
            crashed: "",
            done: [],
        },
    ]
    const topics = ["bench/builtin1", "bench/builtin0", "bench/ours"]
    for (let round = 0; round < rounds; round++) {
        for (let i = 0; i < 3; i++) {
            const before = counter.counts.get(topics[i]) ?? 0
            const r =
                i < 2
                    ? await runProgram("test/bench/publish-builtin", "benchBuiltin", { qos: 1 - i }, broker)
                    : await runProgram("test/bench/publish-ours", "benchOurs", {}, broker)
            await sleep(500)
            const s = series[i]
            const n = i < 2 ? r.line.accepted : r.line.acked
            s.crashed ||= r.crashed
            s.rates.push(rate(n, r.line.ms))
            s.received.push((counter.counts.get(topics[i]) ?? 0) - before)
            s.done.push(`${n}`)
            if (i === 2)
                print(
                    `  round ${round + 1}: ${r.line.chunks} chunks received for ${r.line.packets} packets, ${r.line.sends} sends of ${r.line.bytes} bytes`
                )
        }
    }
    print(`  ${rounds} rounds; msg/s per round, then the median`)
    for (const s of series)
        print(
            `  ${s.name.padEnd(52)} ${s.rates.map(r => r.toFixed(0).padStart(6)).join(" ")}  median ${median(s.rates).toFixed(0).padStart(6)} msg/s  broker got ${s.received.join("/")}  ${s.crashed ? "CRASH: " + s.crashed : "no crash"}`
        )
    const ours = series[2]
    for (const b of series.slice(0, 2))
        print(
            `  ratio, meternode acknowledged QoS 1 / ${b.name}: ${(median(ours.rates) / median(b.rates)).toFixed(2)} x`
        )
    const failed = !!ours.crashed || ours.received.some(n => n < count) || ours.done.some(n => Number(n) !== count)
    if (failed) {
        print("  FAILED: meternode did not get every publish acknowledged and delivered")
        process.exitCode = 1
    }
    return { count, payloadBytes, window, rounds, series }
}

const BACKLOGS = [1440, 10080]

interface DrainRound {
    /** From CONNACK to the last backlog reading at the subscriber. */
    drainMs: number
    messages: number
    largestBytes: number
    /** New readings (taken each second) delivered while the backlog drained, and after it. */
    liveDuring: number
    liveAfter: number
    crashed: string
}

/** The firmware of the drain benchmark, with BACKLOG readings to queue at boot, built once for every round. */
async function drainFirmware(BACKLOG: number, buildDir: string) {
    return await buildFirmware(
        // No time topic: a node that has one but no time yet holds its readings up to 3 s
        // after connecting, so that they go out in UTC; that wait is not the drain's.
        {
            MQTT_URL: broker.url,
            NODE_ID: DRAIN_NODE_ID,
            READ_MS: 1000,
            SIM_BACKLOG: BACKLOG,
            KEEPALIVE_S: 30,
            TIME_TOPIC: "-",
        },
        buildDir,
        `bench-drain-${process.pid}`
    )
}

const DRAIN_NODE_ID = "bench-drain"

/** One run of the firmware with BACKLOG readings queued before it connects. */
async function drainRound(BACKLOG: number, bytecode: string): Promise<DrainRound> {
    const runDir = mkdtempSync(join(tmpdir(), "meternode-bench-"))
    const nodeId = DRAIN_NODE_ID
    const arrivals: { atMs: number; seqs: number[]; boots: number[]; bytes: number }[] = []
    const sub = mqtt.connect(broker.url, { clientId: `bench-drain-${process.pid}`, clean: true })
    await new Promise<void>(resolve =>
        sub.once("connect", () => sub.subscribe(`meters/${nodeId}/+/reading`, { qos: 1 }, () => resolve()))
    )
    sub.on("message", (_topic, payload) => {
        const body = JSON.parse(payload.toString())
        // A merged reading stands for every seq from first_seq to seq.
        const seqs: number[] = []
        for (const e of body.readings) for (let q = e.first_seq ?? e.seq; q <= e.seq; q++) seqs.push(q)
        arrivals.push({ atMs: Date.now(), seqs, boots: body.readings.map((e: any) => e.boot), bytes: payload.length })
    })
    let connackMs = 0
    try {
        const sim = new Simulator({
            bytecode,
            runDir,
            mode: "device",
            clearFlash: true,
            onLine: line => {
                if (process.env.BENCH_DRAIN_DEBUG) console.log(`    [drain] ${line}`)
                if (!connackMs && line.startsWith("mqtt: connected")) connackMs = Date.now()
            },
        })
        await sim.start()
        try {
            const crashed = sim.waitForLine(CRASH_PATTERN, 600_000).then(m => m[0])
            crashed.catch(() => {})
            // Queueing a week of readings at boot takes a while: the drain is timed from CONNACK.
            const deadline = Date.now() + 600_000
            const has = (seq: number) => arrivals.some(a => a.seqs.includes(seq))
            while (!has(BACKLOG) && Date.now() < deadline) {
                const line = sim.lines.find(l => CRASH_PATTERN.test(l))
                if (line)
                    return { drainMs: 0, messages: 0, largestBytes: 0, liveDuring: 0, liveAfter: 0, crashed: line }
                await sleep(20)
            }
            const doneAt = arrivals.find(a => a.seqs.includes(BACKLOG))?.atMs ?? 0
            // Live readings keep coming after the drain.
            await sleep(3000)
            const seen = new Set(arrivals.flatMap(a => a.seqs))
            for (let seq = 1; seq <= BACKLOG; seq++)
                if (!seen.has(seq)) throw new Error(`drain: seq ${seq} never delivered`)
            const live = (a: (typeof arrivals)[number]) => a.seqs.filter(seq => seq > BACKLOG).length
            return {
                drainMs: doneAt - connackMs,
                messages: arrivals.filter(a => a.atMs <= doneAt).length,
                largestBytes: Math.max(...arrivals.map(a => a.bytes)),
                liveDuring: arrivals.filter(a => a.atMs <= doneAt).reduce((n, a) => n + live(a), 0),
                liveAfter: arrivals.filter(a => a.atMs > doneAt).reduce((n, a) => n + live(a), 0),
                crashed: "",
            }
        } finally {
            await sim.kill()
        }
    } finally {
        await new Promise<void>(r => sub.end(true, {}, () => r()))
        rmSync(runDir, { recursive: true, force: true })
    }
}

async function drainBench(BACKLOG: number) {
    print(`\ndrain: ${BACKLOG} one-minute readings queued in flash, a new reading every second`)
    const ours: DrainRound[] = []
    const baseline: number[] = []
    const buildDir = mkdtempSync(join(tmpdir(), "meternode-bench-"))
    try {
        const bytecode = await drainFirmware(BACKLOG, buildDir)
        for (let round = 0; round < Math.max(drainRounds, rounds); round++) {
            if (round < drainRounds) {
                const r = await drainRound(BACKLOG, bytecode)
                ours.push(r)
                if (r.crashed) print(`  round ${round + 1}: CRASH: ${r.crashed}`)
                else
                    print(
                        `  round ${round + 1}: backlog delivered ${(r.drainMs / 1000).toFixed(2)} s after CONNACK in ${r.messages} messages (largest ${r.largestBytes} bytes); ` +
                            `${r.liveDuring} new readings delivered meanwhile, ${r.liveAfter} in the 3 s after`
                    )
            }
            // The baseline has no crash to look for: --rounds of it are enough for its median.
            if (round >= rounds) continue
            // A reading element is about 85 bytes; one per message, as a client without batching sends them.
            const b = await runProgram(
                "test/bench/publish-builtin",
                "benchBuiltin",
                { qos: 1, count: BACKLOG, payloadBytes: 85 },
                broker
            )
            baseline.push(b.crashed ? 0 : rate(b.line.accepted, b.line.ms))
        }
    } finally {
        rmSync(buildDir, { recursive: true, force: true })
    }
    const oursRate = median(ours.map(r => (r.crashed ? 0 : rate(BACKLOG, r.drainMs))))
    const drainS = median(ours.map(r => (r.crashed ? Infinity : r.drainMs))) / 1000
    const crashes = ours.filter(r => r.crashed).length
    print(
        `  meternode, from flash, acknowledged:                    median ${drainS.toFixed(2)} s = ${oursRate.toFixed(0)} readings/s (goal: under 10 s); ${ours.length - crashes} of ${ours.length} rounds without a crash`
    )
    print(
        `  built-in client, from RAM, QoS 1 fire-and-forget, 1 per message: median ${median(baseline).toFixed(0)} readings/s`
    )
    print(`  ratio, meternode drain / built-in: ${(oursRate / median(baseline)).toFixed(2)} x`)
    if (ours.some(r => r.crashed) || !(drainS < 10)) {
        print("  FAILED: the backlog did not drain in under 10 s without a crash")
        process.exitCode = 1
    }
    return { backlog: BACKLOG, rounds: ours, baselineRates: baseline, drainS, readingsPerS: oursRate }
}

async function flashBench() {
    print(
        `\nflash: one reading a minute, default FLUSH_S 600 and QUEUE_BYTES 4608, 2 KB of the store used by others, 30 days`
    )
    const results = []
    for (const board of [
        { name: "RP2040 / simulator (8 KB store)", storeBytes: 8192 },
        { name: "ESP32 (16 KB store)", storeBytes: 16384 },
    ])
        for (const online of [true, false]) {
            const scenario: FlashScenario = {
                name: board.name,
                storeBytes: board.storeBytes,
                othersBytes: 2048,
                queueBytes: 4608,
                flushS: 600,
                readingS: 60,
                online,
                days: 30,
            }
            const r = await flashCost(scenario)
            results.push(r)
            print(
                `  ${board.name.padEnd(32)} ${online ? "online " : "offline"}: ${r.bytesPerReading.toFixed(1).padStart(5)} bytes written per reading, ` +
                    `${r.writesPerDay.toFixed(0).padStart(4)} writes and ${r.compactionsPerDay.toFixed(2).padStart(5)} compactions per day: ` +
                    `${r.lifetimeYears.toFixed(0)} years to ${ERASE_CYCLES_TEXT} erase cycles` +
                    (r.droppedWrites || r.droppedReadings
                        ? `; DROPPED ${r.droppedWrites} writes, ${r.droppedReadings} readings`
                        : "")
            )
            if (r.lifetimeYears < FLASH_LIFETIME_GOAL_YEARS || r.droppedWrites || r.droppedReadings) {
                print(
                    `  FAILED: ${board.name} ${online ? "online" : "offline"}: ` +
                        (r.droppedWrites || r.droppedReadings
                            ? "writes or readings dropped"
                            : `${r.lifetimeYears.toFixed(0)} years, under the goal of ${FLASH_LIFETIME_GOAL_YEARS}`)
                )
                process.exitCode = 1
            }
        }
    print("  offline = a 30-day outage: the queue is full after a day and merges from then on (the worst case)")
    return results
}
const ERASE_CYCLES_TEXT = "100,000"
/**
 * Years a node's flash must last at the default configuration, online and offline: as long as the
 * meter it is wired to stays installed. The 8 KB store online falls short (13 years: the mark
 * written at each acknowledgement, docs/delivery.md#totals-after-a-power-cut).
 */
const FLASH_LIFETIME_GOAL_YEARS = 20

function percentile(xs: number[], p: number) {
    const sorted = [...xs].sort((a, b) => a - b)
    return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]
}

interface OnlineRun {
    latencies: number[]
    bytesPerReading: number
    readings: number
}

/**
 * Runs `start` (a simulator publishing a reading a second through `proxy`) and times each reading
 * from its console line to its arrival at a subscriber. Wire bytes are counted between the 10th
 * and the last reading, so the connection's setup is left out.
 */
async function onlineRun(
    topic: string,
    linePattern: RegExp,
    start: (proxy: FaultProxy) => Promise<Simulator>,
    n: number
): Promise<OnlineRun> {
    const proxy = await new FaultProxy({ targetPort: broker.port }).start()
    const taken = new Map<number, number>()
    const arrived = new Map<number, number>()
    const bytesAt = new Map<number, number>()
    const sub = mqtt.connect(broker.url, { clientId: `bench-online-${process.pid}-${Date.now()}`, clean: true })
    await new Promise<void>(resolve => sub.once("connect", () => sub.subscribe(topic, { qos: 1 }, () => resolve())))
    sub.on("message", (_t, payload) => {
        const now = Date.now()
        for (const e of JSON.parse(payload.toString()).readings) {
            if (!arrived.has(e.seq)) arrived.set(e.seq, now)
            bytesAt.set(arrived.size, proxy.bytesClientToBroker + proxy.bytesBrokerToClient)
        }
    })
    const sim = await start(proxy)
    sim.options.onLine = line => {
        const m = line.match(linePattern)
        if (m) taken.set(Number(m[1]), Date.now())
    }
    try {
        const deadline = Date.now() + n * 1000 + 60_000
        while (arrived.size < n && Date.now() < deadline) await sleep(200)
        const latencies = [...taken].filter(([seq]) => arrived.has(seq)).map(([seq, at]) => arrived.get(seq)! - at)
        const last = Math.min(arrived.size, n)
        const bytes = (bytesAt.get(last) ?? 0) - (bytesAt.get(10) ?? 0)
        return { latencies, bytesPerReading: bytes / Math.max(1, last - 10), readings: arrived.size }
    } finally {
        await sim.kill()
        await new Promise<void>(r => sub.end(true, {}, () => r()))
        await proxy.stop()
    }
}

async function onlineBench() {
    const n = 60
    print(`\nonline: ${n} readings, one a second, through a byte-counting proxy`)
    const runDir = mkdtempSync(join(tmpdir(), "meternode-bench-"))
    try {
        const node = (extra: Record<string, string>) =>
            onlineRun(
                "meters/bench-online/+/reading",
                /^reading: seq (\d+)\b/,
                async proxy => {
                    const bytecode = await buildFirmware(
                        {
                            MQTT_URL: proxy.url,
                            NODE_ID: "bench-online",
                            READ_MS: 1000,
                            KEEPALIVE_S: 30,
                            TIME_TOPIC: "-",
                            HA_PREFIX: "-",
                            ...extra,
                        },
                        runDir,
                        "bench-online"
                    )
                    return await new Simulator({ bytecode, runDir, mode: "device", clearFlash: true }).start()
                },
                n
            )
        const ours = await node({})
        // MQTT 5 where the broker speaks it (Mosquitto; aedes does not): topic aliases.
        const v5 = broker.kind === "mosquitto" ? await node({ MQTT_VERSION: "5" }) : null
        const builtin = await onlineRun(
            "meters/bench-builtin/+/reading",
            /^PUB (\d+)$/,
            async proxy => {
                const bytecode = await buildEntry(
                    "test/bench/online-builtin",
                    "onlineBuiltin",
                    { host: "127.0.0.1", port: proxy.port, count: n + 5, intervalMs: 1000 },
                    runDir,
                    "bench-online-builtin"
                )
                return await new Simulator({ bytecode, runDir, mode: "device", clearFlash: true }).start()
            },
            n
        )
        const line = (name: string, r: OnlineRun) =>
            print(
                `  ${name.padEnd(44)} latency p50 ${percentile(r.latencies, 50).toFixed(0).padStart(4)} ms, p99 ${percentile(r.latencies, 99).toFixed(0).padStart(4)} ms; ` +
                    `${r.bytesPerReading.toFixed(0).padStart(4)} wire bytes per reading (${r.readings} readings)`
            )
        line("meternode, QoS 1, acknowledged:", ours)
        if (v5) line("meternode, MQTT 5 (topic aliases):", v5)
        line("built-in client, QoS 1, fire-and-forget:", builtin)
        print(
            `  ratio, meternode / built-in: latency p50 ${(percentile(ours.latencies, 50) / percentile(builtin.latencies, 50)).toFixed(2)} x, wire bytes ${(ours.bytesPerReading / builtin.bytesPerReading).toFixed(2)} x`
        )
        const summary = ({ latencies, ...rest }: OnlineRun) => ({
            ...rest,
            p50: percentile(latencies, 50),
            p99: percentile(latencies, 99),
        })
        if (v5)
            print(
                `  ratio, MQTT 5 / MQTT 3.1.1: wire bytes ${(v5.bytesPerReading / ours.bytesPerReading).toFixed(2)} x, latency p50 ${(percentile(v5.latencies, 50) / percentile(ours.latencies, 50)).toFixed(2)} x`
            )
        return { ours: summary(ours), mqtt5: v5 ? summary(v5) : null, builtin: summary(builtin) }
    } finally {
        rmSync(runDir, { recursive: true, force: true })
    }
}

/** Image and code-section sizes of a compiled entry point, from the compiler's size report. */
async function imageSize(entry: string) {
    const runDir = mkdtempSync(join(tmpdir(), "meternode-bench-"))
    try {
        devsSync(["build", entry, "--stats"])
        const sizes = readFileSync(join(PROJECT_ROOT, ".devicescript", "bin", "bytecode-sizes.md"), "utf-8")
        const total = Number(sizes.match(/^(\d+) \| TOTAL/m)?.[1] ?? NaN)
        const code = Number(sizes.match(/^(\d+) \| Function TOTAL/m)?.[1] ?? NaN)
        return { total, code }
    } finally {
        rmSync(runDir, { recursive: true, force: true })
    }
}

async function imageBench() {
    print("\nimage: bytes of the program image (the runtime is flashed separately)")
    const ours = await imageSize("src/main.ts")
    // The compiler writes the size report only with --stats: build the baseline the same way.
    const baselineEntry = join(PROJECT_ROOT, ".devicescript", "gen", "bench-image-builtin", "main.ts")
    mkdirSync(join(PROJECT_ROOT, ".devicescript", "gen", "bench-image-builtin"), { recursive: true })
    writeFileSync(
        baselineEntry,
        `import { onlineBuiltin } from "../../../test/bench/online-builtin"\nawait onlineBuiltin({ host: "127.0.0.1", port: 1883, count: 1, intervalMs: 1000 })\n`
    )
    const builtin = await imageSize(".devicescript/gen/bench-image-builtin/main.ts")
    const bytes = (n: number) => n.toLocaleString("en-US") + " bytes"
    print(
        `  meternode firmware:                       image ${bytes(ours.total)} (${((100 * ours.total) / (110 * 1024)).toFixed(0)} % of the Pico W's 112,640), code section ${bytes(ours.code)} of the VM's 65,536`
    )
    print(
        `  a minimal program on the built-in client: image ${bytes(builtin.total)}, code section ${bytes(builtin.code)}`
    )
    print(`  ratio, meternode / minimal built-in: ${(ours.total / builtin.total).toFixed(1)} x`)
    return { ours, builtin }
}

type HeapWorkload = "drain" | "online" | "builtin" | "full-drain" | "full-online" | "mqtt5-drain" | "mqtt5-online"

const HEAP_WORKLOADS: Record<HeapWorkload, string> = {
    drain: "meternode, worst-case drain: a day's backlog (1,440 readings), live readings, a command, discovery",
    online: "meternode, online: 20 readings, one a second, discovery",
    builtin: "built-in client, online: 20 readings, one a second",
    "full-drain": "meternode, every driver (src/main.ts), the same worst-case drain",
    "full-online": "meternode, every driver (src/main.ts), online",
    "mqtt5-drain": "meternode speaking MQTT 5 (MQTT_VERSION=5), the same worst-case drain",
    "mqtt5-online": "meternode speaking MQTT 5 (MQTT_VERSION=5), online",
}

/**
 * The simulator's default composed image (a simulated meter, Home Assistant discovery on: what
 * `npm start` and a board built for those settings run), holding `ballastKb` before it boots.
 */
async function ballastedFirmware(settings: Record<string, string | number>, ballastKb: number, runDir: string) {
    // Per process: the entry is written, then compiled under the build lock, and another
    // benchmark run must not overwrite it in between.
    const name = `bench-heap-${process.pid}`
    const genDir = join(PROJECT_ROOT, ".devicescript", "gen", name)
    mkdirSync(genDir, { recursive: true })
    const ballast = relative(genDir, join(PROJECT_ROOT, "test/bench/ballast")).replace(/\\/g, "/")
    const source = composedEntrySource(composition(settings), genDir, PROJECT_ROOT, settings).replace(
        /^await startBuiltNode/m,
        `holdBallast(${ballastKb * 1024})\nawait startBuiltNode`
    )
    const entry = join(genDir, "main.ts")
    writeFileSync(entry, `import { holdBallast } from "${ballast}"\n` + source)
    const out = join(runDir, "firmware.devs")
    await compile(entry, out)
    return out
}

/** Live readings the node must deliver after its backlog for a heap probe to pass. */
const HEAP_LIVE_READINGS = 20

/**
 * One heap probe: true when the workload runs to its end with `ballastKb` of the heap held. A
 * drain passes when the whole backlog and the live readings after it arrived, the reply to a
 * `status` command published while the backlog drains came back, and so did discovery.
 */
async function heapProbe(ballastKb: number, workload: HeapWorkload) {
    const runDir = mkdtempSync(join(tmpdir(), "meternode-bench-"))
    const nodeId = workload === "builtin" ? "bench-builtin" : "bench-heap"
    const draining = workload.endsWith("drain")
    const backlog = draining ? 1440 : 0
    const seen = new Set<number>()
    let replied = false
    let discovered = false
    const sub = mqtt.connect(broker.url, { clientId: `bench-heap-${process.pid}-${Date.now()}`, clean: true })
    await new Promise<void>(resolve =>
        sub.once("connect", () =>
            sub.subscribe(
                [`meters/${nodeId}/+/reading`, `meters/${nodeId}/reply/+`, "homeassistant/#"],
                { qos: 1 },
                () => resolve()
            )
        )
    )
    sub.on("message", (topic, payload, packet) => {
        // Configs retained by an earlier probe arrive flagged retained; this node's arrive live.
        if (topic.startsWith("homeassistant/")) discovered ||= !packet.retain
        else if (topic.includes("/reply/")) replied = true
        else
            for (const e of JSON.parse(payload.toString()).readings)
                for (let q = e.first_seq ?? e.seq; q <= e.seq; q++) seen.add(q)
    })
    try {
        const settings = {
            MQTT_URL: broker.url,
            NODE_ID: nodeId,
            READ_MS: 1000,
            SIM_BACKLOG: backlog,
            KEEPALIVE_S: 30,
            TIME_TOPIC: "-",
            ...(workload.startsWith("mqtt5-") ? { MQTT_VERSION: "5" } : {}),
        }
        const bytecode =
            workload === "builtin"
                ? await buildEntry(
                      "test/bench/heap-ballast",
                      "ballastBuiltin",
                      {
                          ballastBytes: ballastKb * 1024,
                          online: {
                              host: "127.0.0.1",
                              port: broker.port,
                              count: HEAP_LIVE_READINGS + 5,
                              intervalMs: 1000,
                          },
                      },
                      runDir,
                      "bench-heap-builtin"
                  )
                : workload.startsWith("full-")
                  ? await buildEntry(
                        "test/bench/heap-ballast",
                        "ballastNode",
                        { ballastBytes: ballastKb * 1024, settings },
                        runDir,
                        "bench-heap-full"
                    )
                  : await ballastedFirmware(settings, ballastKb, runDir)
        // The command goes out while the backlog drains: its reply is one more message in flight.
        const command = () =>
            setTimeout(() => sub.publish(`meters/${nodeId}/cmd/status`, '{"id":"heap"}', { qos: 1 }), 150)
        const sim = await new Simulator({
            bytecode,
            runDir,
            mode: "device",
            clearFlash: true,
            onLine: line => {
                if (process.env.BENCH_HEAP_DEBUG) console.log(`    [${ballastKb} KB] ${line}`)
                if (draining && line.startsWith("mqtt: connected")) command()
            },
        }).start()
        try {
            const deadline = Date.now() + 120_000
            const done = () =>
                seen.has(backlog + HEAP_LIVE_READINGS) &&
                (!draining || replied) &&
                (workload === "builtin" || discovered)
            while (Date.now() < deadline) {
                if (sim.lines.some(l => CRASH_PATTERN.test(l)) || sim.exit) return false
                if (done()) {
                    for (let seq = 1; seq <= backlog; seq++)
                        if (!seen.has(seq)) throw new Error(`heap: seq ${seq} never delivered`)
                    return true
                }
                await sleep(200)
            }
            return false
        } finally {
            await sim.kill()
        }
    } finally {
        await new Promise<void>(r => sub.end(true, {}, () => r()))
        rmSync(runDir, { recursive: true, force: true })
    }
}

/** Binary search to 2 KB for the largest ballast the workload runs with: its peak is at most 64 KB minus that. */
async function heapSearch(workload: HeapWorkload) {
    if (values["heap-probe"] !== undefined) {
        const kb = Number(values["heap-probe"])
        const good = await heapProbe(kb, workload)
        print(`  ${HEAP_WORKLOADS[workload]}: ballast ${kb} KB ${good ? "ran" : "out"}`)
        return { workload, ballastKb: good ? kb : 0, failedKb: good ? 64 : kb, peakKb: [64 - kb, 64 - kb] }
    }
    if (!(await heapProbe(0, workload))) {
        print(`  ${HEAP_WORKLOADS[workload]}: FAILED even without ballast`)
        process.exitCode = 1
        return { workload, ballastKb: 0, failedKb: 0, peakKb: [64, 64] }
    }
    let ok = 0
    let failed = 64
    const tried: string[] = []
    while (failed - ok > 2) {
        const mid = Math.floor((ok + failed) / 2)
        const good = await heapProbe(mid, workload)
        tried.push(`${mid} KB ${good ? "ran" : "out"}`)
        if (good) ok = mid
        else failed = mid
    }
    print(`  ${HEAP_WORKLOADS[workload].padEnd(100)} peak ${64 - failed}-${64 - ok} KB  (ballast ${tried.join(", ")})`)
    return { workload, ballastKb: ok, failedKb: failed, peakKb: [64 - failed, 64 - ok] }
}

/** The targets: the worst-case drain and the node online, in the simulator's default image. */
const HEAP_TARGET_KB: Partial<Record<HeapWorkload, number>> = { drain: 44, online: 24 }

async function heapBench() {
    print(
        "\nheap: peak use of the 64 KB heap, from the largest ballast held out of it with which the workload still runs"
    )
    print("  the simulator's default composed image (a simulated meter, Home Assistant discovery) unless named")
    const workloads = values["heap-workloads"]!.split(",") as HeapWorkload[]
    const results: Record<string, Awaited<ReturnType<typeof heapSearch>>> = {}
    for (const w of workloads) {
        if (!HEAP_WORKLOADS[w]) throw new Error(`heap: unknown workload ${w}`)
        try {
            results[w] = await heapSearch(w)
        } catch (e) {
            // The ballast is code too: an image at the VM's limit has no room for it.
            if (!/verification error: -1051/.test(String(e))) throw e
            print(
                `  ${HEAP_WORKLOADS[w]}: not measured: with the ballast's code, the image is over the VM's 64 KB code section`
            )
        }
    }
    const mid = (r: { peakKb: number[] }) => (r.peakKb[0] + r.peakKb[1]) / 2
    const builtin = results.builtin
    for (const w of ["online", "drain", "full-online", "full-drain"] as HeapWorkload[])
        if (results[w] && builtin)
            print(`  ratio, ${w} / built-in online (peak, midpoints): ${(mid(results[w]) / mid(builtin)).toFixed(2)} x`)
    if (builtin) print("  the built-in client has no queue, so the drain has no baseline of its own")
    for (const w of ["online", "drain"])
        if (results[w] && results["mqtt5-" + w])
            print(
                `  ratio, ${w}, MQTT 5 / MQTT 3.1.1 (peak, midpoints): ${(mid(results["mqtt5-" + w]) / mid(results[w])).toFixed(2)} x`
            )
    for (const [w, target] of Object.entries(HEAP_TARGET_KB))
        if (results[w] && results[w].peakKb[1] > target!) {
            print(`  FAILED: ${w} peaks above ${target} KB`)
            process.exitCode = 1
        }
    return results
}
const broker = await new Broker({ persistence: false }).start()
const counter = await startCounter(broker.url)
try {
    print(`meternode benchmarks: ${versions(broker)}`)
    print(`broker: ${broker.describe()}`)
    const report: Record<string, unknown> = { versions: versions(broker) }
    if (scenarios.includes("publish")) report.publish = await publishBench()
    if (scenarios.includes("drain")) report.drain = [await drainBench(BACKLOGS[0]), await drainBench(BACKLOGS[1])]
    if (scenarios.includes("online")) report.online = await onlineBench()
    if (scenarios.includes("image")) report.image = await imageBench()
    if (scenarios.includes("heap")) report.heap = await heapBench()
    if (scenarios.includes("flash")) report.flash = await flashBench()
    if (scenarios.includes("ingest"))
        report.ingest = await ingestBench(broker, { readings: Number(values["ingest-readings"]) })
    if (scenarios.includes("range")) report.range = await rangeBench(broker)
    if (values.json) writeFileSync(values.json, JSON.stringify(report, null, 2))
    // The collector's benchmarks alone have their own block in docs/results.md.
    const block = scenarios.every(s => s === "ingest" || s === "range") ? "collector-bench" : "bench"
    if (values["write-results"] || values.readme) writeResultsSection(block, npmCommand("bench"))
} finally {
    await counter.stop()
    await broker.dispose()
}
