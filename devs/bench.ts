// `npm run bench`: benchmarks, each against a baseline measured in the same run on the same broker.
// Prints absolute figures and ratios, with the machine and versions.
//
//   publish: N QoS 1 publishes through meternode's client, each acknowledged, against N
//            fire-and-forget publishes (QoS 1, whose PUBACKs it ignores, and QoS 0) through
//            DeviceScript's built-in @devicescript/net client.
//   drain:   the firmware with 1,440 one-minute readings in its flash queue (a day without a
//            broker) and a reading every second: the time from CONNACK until the whole backlog
//            is acknowledged and delivered, against the built-in client sending 1,440
//            single-reading messages from RAM, fire and forget.
//   flash:   bytes written to the Settings store per reading, compactions per day and the flash
//            lifetime, online and offline, at the default configuration (the firmware's queue
//            code on the model of the store, over simulated days: test/bench/flash-cost.ts).
// Options: --only publish,drain,flash, --count N, --payload BYTES, --window N, --rounds N,
//          --json FILE, --vm-costs.
import mqtt from "mqtt"
import { execFileSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { cpus, tmpdir } from "node:os"
import { join } from "node:path"
import { parseArgs } from "node:util"
import { Broker, findMosquitto } from "./lib/broker"
import { buildEntry, buildFirmware, PROJECT_ROOT, Simulator } from "./lib/simulator"
import { flashCost, FlashScenario } from "../test/bench/flash-cost"
import { sleep } from "./lib/process"

const { values } = parseArgs({
    options: {
        count: { type: "string", default: "10000" },
        payload: { type: "string", default: "100" },
        window: { type: "string", default: "64" },
        rounds: { type: "string", default: "3" },
        "vm-costs": { type: "boolean", default: false },
        only: { type: "string", default: "publish,drain,flash" },
        json: { type: "string" },
    },
    strict: true,
})
const count = Number(values.count)
const payloadBytes = Number(values.payload)
const window = Number(values.window)
const rounds = Number(values.rounds)
const scenarios = values.only!.split(",")

function versions(broker: Broker) {
    const cli = JSON.parse(readFileSync(join(PROJECT_ROOT, "node_modules/@devicescript/cli/package.json"), "utf-8")).version
    let brokerVersion: string = broker.kind
    if (broker.kind === "mosquitto") {
        try {
            const out = execFileSync(findMosquitto()!, ["-h"], { encoding: "utf-8" }).toString()
            brokerVersion = out.match(/mosquitto version [\d.]+/)?.[0] ?? "mosquitto"
        } catch (e) {
            brokerVersion = String((e as { stdout?: string }).stdout ?? "").match(/mosquitto version [\d.]+/)?.[0] ?? "mosquitto"
        }
    } else brokerVersion = "aedes " + JSON.parse(readFileSync(join(PROJECT_ROOT, "node_modules/aedes/package.json"), "utf-8")).version
    return `${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, Node ${process.version}, DeviceScript ${cli}, ${brokerVersion}`
}

/** Counts what the broker delivers per topic, at QoS 0 so the counter is never the bottleneck. */
async function startCounter(url: string) {
    const counts = new Map<string, number>()
    const client = mqtt.connect(url, { clientId: `bench-counter-${process.pid}` })
    client.on("message", topic => counts.set(topic, (counts.get(topic) ?? 0) + 1))
    await new Promise<void>(resolve => client.once("connect", () => client.subscribe("bench/#", { qos: 0 }, () => resolve())))
    return { counts, stop: () => new Promise<void>(r => client.end(true, {}, () => r())) }
}

interface RunResult {
    line: Record<string, number>
    /** The first console line that says the VM failed (out of memory, op limit, exception), or "". */
    crashed: string
}

const CRASH_PATTERN = /out of memory|OutOfMemory|InfiniteLoop|Unhandled exception|panic|RESTART/i

/** Builds and runs one benchmark program; returns the numbers of its BENCH line, or the crash. */
async function runProgram(module: string, fn: string, extra: Record<string, number>, broker: Broker): Promise<RunResult> {
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
    const sim = new Simulator({ bytecode, runDir, mode: "device", onLine: l => l.startsWith("COST") && console.log(l) })
    await sim.start()
    await sim.waitForLine(/^COST done/, 120_000).finally(() => sim.kill())
    rmSync(runDir, { recursive: true, force: true })
    process.exit(0)
}

async function publishBench() {
    console.log(`\npublish: ${count} messages of ${payloadBytes} bytes`)

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
        { name: `meternode client, QoS 1, window ${window}, acknowledged`, rates: [], received: [], crashed: "", done: [] },
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
                console.log(
                    `  round ${round + 1}: ${r.line.chunks} chunks received for ${r.line.packets} packets, ${r.line.sends} sends of ${r.line.bytes} bytes`
                )
        }
    }
    console.log(`  ${rounds} rounds; msg/s per round, then the median`)
    for (const s of series)
        console.log(
            `  ${s.name.padEnd(52)} ${s.rates.map(r => r.toFixed(0).padStart(6)).join(" ")}  median ${median(s.rates).toFixed(0).padStart(6)} msg/s  broker got ${s.received.join("/")}  ${s.crashed ? "CRASH: " + s.crashed : "no crash"}`
        )
    const ours = series[2]
    for (const b of series.slice(0, 2))
        console.log(`  ratio, meternode acknowledged QoS 1 / ${b.name}: ${(median(ours.rates) / median(b.rates)).toFixed(2)} x`)
    const failed = !!ours.crashed || ours.received.some(n => n < count) || ours.done.some(n => Number(n) !== count)
    if (failed) {
        console.log("  FAILED: meternode did not get every publish acknowledged and delivered")
        process.exitCode = 1
    }
    return { count, payloadBytes, window, rounds, series }
}

const BACKLOG = 1440

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

/** One run of the firmware with BACKLOG readings queued before it connects. */
async function drainRound(): Promise<DrainRound> {
    const runDir = mkdtempSync(join(tmpdir(), "meternode-bench-"))
    const nodeId = "bench-drain"
    const arrivals: { atMs: number; seqs: number[]; boots: number[]; bytes: number }[] = []
    const sub = mqtt.connect(broker.url, { clientId: `bench-drain-${process.pid}`, clean: true })
    await new Promise<void>(resolve => sub.once("connect", () => sub.subscribe(`meters/${nodeId}/+/reading`, { qos: 1 }, () => resolve())))
    sub.on("message", (_topic, payload) => {
        const body = JSON.parse(payload.toString())
        arrivals.push({ atMs: Date.now(), seqs: body.readings.map((e: any) => e.seq), boots: body.readings.map((e: any) => e.boot), bytes: payload.length })
    })
    let connackMs = 0
    try {
        const bytecode = await buildFirmware(
            { MQTT_URL: broker.url, NODE_ID: nodeId, READ_MS: 1000, SIM_BACKLOG: BACKLOG, KEEPALIVE_S: 30 },
            runDir,
            "bench-drain"
        )
        const sim = new Simulator({
            bytecode,
            runDir,
            mode: "device",
            clearFlash: true,
            onLine: line => {
                if (!connackMs && line.startsWith("mqtt: connected")) connackMs = Date.now()
            },
        })
        await sim.start()
        try {
            const crashed = sim.waitForLine(CRASH_PATTERN, 180_000).then(m => m[0])
            crashed.catch(() => {})
            const deadline = Date.now() + 180_000
            const has = (seq: number) => arrivals.some(a => a.seqs.includes(seq))
            while (!has(BACKLOG) && Date.now() < deadline) {
                const line = sim.lines.find(l => CRASH_PATTERN.test(l))
                if (line) return { drainMs: 0, messages: 0, largestBytes: 0, liveDuring: 0, liveAfter: 0, crashed: line }
                await sleep(20)
            }
            const doneAt = arrivals.find(a => a.seqs.includes(BACKLOG))?.atMs ?? 0
            // Live readings keep coming after the drain.
            await sleep(3000)
            const seen = new Set(arrivals.flatMap(a => a.seqs))
            for (let seq = 1; seq <= BACKLOG; seq++) if (!seen.has(seq)) throw new Error(`drain: seq ${seq} never delivered`)
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

async function drainBench() {
    console.log(`\ndrain: ${BACKLOG} one-minute readings queued in flash, a new reading every second`)
    const ours: DrainRound[] = []
    const baseline: number[] = []
    for (let round = 0; round < rounds; round++) {
        const r = await drainRound()
        ours.push(r)
        if (r.crashed) console.log(`  round ${round + 1}: CRASH: ${r.crashed}`)
        else
            console.log(
                `  round ${round + 1}: backlog delivered ${(r.drainMs / 1000).toFixed(2)} s after CONNACK in ${r.messages} messages (largest ${r.largestBytes} bytes); ` +
                    `${r.liveDuring} new readings delivered meanwhile, ${r.liveAfter} in the 3 s after`
            )
        // A reading element is about 85 bytes; one per message, as a client without batching sends them.
        const b = await runProgram("test/bench/publish-builtin", "benchBuiltin", { qos: 1, count: BACKLOG, payloadBytes: 85 }, broker)
        baseline.push(b.crashed ? 0 : rate(b.line.accepted, b.line.ms))
    }
    const oursRate = median(ours.map(r => (r.crashed ? 0 : rate(BACKLOG, r.drainMs))))
    const drainS = median(ours.map(r => (r.crashed ? Infinity : r.drainMs))) / 1000
    console.log(`  meternode, from flash, acknowledged:                    median ${drainS.toFixed(2)} s = ${oursRate.toFixed(0)} readings/s (goal: under 10 s)`)
    console.log(`  built-in client, from RAM, QoS 1 fire-and-forget, 1 per message: median ${median(baseline).toFixed(0)} readings/s`)
    console.log(`  ratio, meternode drain / built-in: ${(oursRate / median(baseline)).toFixed(2)} x`)
    if (ours.some(r => r.crashed) || !(drainS < 10)) {
        console.log("  FAILED: the backlog did not drain in under 10 s without a crash")
        process.exitCode = 1
    }
    return { backlog: BACKLOG, rounds: ours, baselineRates: baseline, drainS, readingsPerS: oursRate }
}

async function flashBench() {
    console.log(`\nflash: one reading a minute, default FLUSH_S 600 and QUEUE_BYTES 4608, 2 KB of the store used by others, 30 days`)
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
            console.log(
                `  ${board.name.padEnd(32)} ${online ? "online " : "offline"}: ${r.bytesPerReading.toFixed(1).padStart(5)} bytes written per reading, ` +
                    `${r.writesPerDay.toFixed(0).padStart(4)} writes and ${r.compactionsPerDay.toFixed(2).padStart(5)} compactions per day: ` +
                    `${r.lifetimeYears.toFixed(0)} years to ${ERASE_CYCLES_TEXT} erase cycles` +
                    (r.droppedWrites || r.droppedReadings ? `; DROPPED ${r.droppedWrites} writes, ${r.droppedReadings} readings` : "")
            )
            if (r.lifetimeYears < 20 || r.droppedWrites || r.droppedReadings) process.exitCode = 1
        }
    console.log("  offline = a 30-day outage: the queue is full after a day and merges from then on (the worst case)")
    return results
}
const ERASE_CYCLES_TEXT = "100,000"
const broker = await new Broker({ persistence: false }).start()
const counter = await startCounter(broker.url)
try {
    console.log(`meternode benchmarks: ${versions(broker)}`)
    console.log(`broker: ${broker.describe()}`)
    const report: Record<string, unknown> = { versions: versions(broker) }
    if (scenarios.includes("publish")) report.publish = await publishBench()
    if (scenarios.includes("drain")) report.drain = await drainBench()
    if (scenarios.includes("flash")) report.flash = await flashBench()
    if (values.json)
        writeFileSync(values.json, JSON.stringify(report, null, 2))
} finally {
    await counter.stop()
    await broker.dispose()
}
