// `npm run bench`: benchmarks, each against a baseline measured in the same run on the same broker.
// Prints absolute figures and ratios, with the machine and versions.
//
//   publish: N QoS 1 publishes through meternode's client, each acknowledged, against N QoS 0
//            (fire-and-forget) publishes through DeviceScript's built-in @devicescript/net client.
import mqtt from "mqtt"
import { execFileSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { cpus, tmpdir } from "node:os"
import { join } from "node:path"
import { parseArgs } from "node:util"
import { Broker, findMosquitto } from "./lib/broker"
import { buildEntry, PROJECT_ROOT, Simulator } from "./lib/simulator"
import { sleep } from "./lib/process"

const { values } = parseArgs({
    options: {
        count: { type: "string", default: "10000" },
        payload: { type: "string", default: "100" },
        window: { type: "string", default: "64" },
        "vm-costs": { type: "boolean", default: false },
        json: { type: "string" },
    },
    strict: true,
})
const count = Number(values.count)
const payloadBytes = Number(values.payload)
const window = Number(values.window)

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
            const m = await Promise.race([
                sim.waitForLine(/^BENCH \w+ (.*)$/, 180_000),
                sim.waitForLine(CRASH_PATTERN, 180_000).then(m => m),
            ])
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

const broker = await new Broker({ persistence: false }).start()
const counter = await startCounter(broker.url)
try {
    console.log(`meternode benchmarks: ${versions(broker)}`)
    console.log(`broker: ${broker.describe()}`)
    console.log(`\npublish: ${count} messages of ${payloadBytes} bytes`)

    const baselines = []
    for (const qos of [1, 0]) {
        const r = await runProgram("test/bench/publish-builtin", "benchBuiltin", { qos }, broker)
        await sleep(1000)
        baselines.push({ qos, ...r, received: counter.counts.get(`bench/builtin${qos}`) ?? 0, rate: rate(r.line.accepted, r.line.ms) })
    }
    const ours = await runProgram("test/bench/publish-ours", "benchOurs", {}, broker)
    await sleep(1000)
    const oursReceived = counter.counts.get("bench/ours") ?? 0
    const oursRate = rate(ours.line.acked, ours.line.ms)

    const row = (name: string, done: string, msgPerS: number, received: number, crashed: string) =>
        console.log(`  ${name.padEnd(52)} ${done.padEnd(28)} ${msgPerS.toFixed(0).padStart(6)} msg/s  broker got ${String(received).padEnd(6)} ${crashed ? "CRASH: " + crashed : "no crash"}`)
    for (const b of baselines)
        row(
            `built-in client, QoS ${b.qos}, fire-and-forget`,
            b.crashed ? "-" : `${b.line.accepted} written in ${(b.line.ms / 1000).toFixed(2)} s`,
            b.rate,
            b.received,
            b.crashed
        )
    row(
        `meternode client, QoS 1, window ${window}, acknowledged`,
        ours.crashed ? "-" : `${ours.line.acked} acked in ${(ours.line.ms / 1000).toFixed(2)} s`,
        oursRate,
        oursReceived,
        ours.crashed
    )
    for (const b of baselines)
        console.log(`  ratio, meternode acknowledged QoS 1 / built-in QoS ${b.qos} fire-and-forget: ${b.rate ? (oursRate / b.rate).toFixed(2) + " x" : "baseline crashed"}`)
    const failed = !!ours.crashed || ours.line.acked !== count || oursReceived < count
    if (failed) console.log("  FAILED: meternode did not get every publish acknowledged and delivered")

    if (values.json)
        writeFileSync(
            values.json,
            JSON.stringify({ versions: versions(broker), count, payloadBytes, window, baselines, ours, oursReceived }, null, 2)
        )
} finally {
    await counter.stop()
    await broker.dispose()
}
