// `npm run bench`: benchmarks, each against a baseline measured in the same run on the same broker.
// Prints absolute figures and ratios, with the machine and versions.
//
//   publish: N QoS 1 publishes through meternode's client, each acknowledged, against N
//            fire-and-forget publishes (QoS 1, whose PUBACKs it ignores, and QoS 0) through
//            DeviceScript's built-in @devicescript/net client.
// Options: --count N, --payload BYTES, --window N, --rounds N, --json FILE, --vm-costs.
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
        rounds: { type: "string", default: "3" },
        "vm-costs": { type: "boolean", default: false },
        json: { type: "string" },
    },
    strict: true,
})
const count = Number(values.count)
const payloadBytes = Number(values.payload)
const window = Number(values.window)
const rounds = Number(values.rounds)

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
    const median = (xs: number[]) => {
        const sorted = [...xs].sort((a, b) => a - b)
        return sorted[Math.floor(sorted.length / 2)]
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
    if (values.json)
        writeFileSync(values.json, JSON.stringify({ versions: versions(broker), count, payloadBytes, window, rounds, series }, null, 2))
} finally {
    await counter.stop()
    await broker.dispose()
}
