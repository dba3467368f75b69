// `npm test`: every suite, then one summary line `N passed, N failed` (`, N skipped` when some were).
//   format: `prettier --check` over the tracked .ts files, counted as one test
//   node:   Node tests of the pure core and the host tooling (test/node, node:test)
//   collector: Node tests of the reference collector (test/collector, node:test; its PostgreSQL
//           server variant is skipped where PostgreSQL is not installed)
//   ds:     DeviceScript tests in the simulator (test/ds, @devicescript/test)
//   e2e:    firmware in the simulator against a real broker (test/e2e, node:test), one process
//           per file, two files at a time, each in a network namespace of its own
// `npm test -- --quick` runs format, node and ds only (the inner loop).
// `npm test -- node ds` runs only the named suites; `npm test -- test/e2e/tls.test.ts` only that
// end-to-end file. `--jobs N` sets how many end-to-end files run at once (default 2; 1 = one at a
// time, in this network namespace, with the output live).
import { ChildProcess, spawn, spawnSync } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { basename, join, relative, resolve } from "node:path"
import { parseArgs } from "node:util"
import { defaultBrokerKind, findMosquitto } from "./lib/broker"
import { compile, PROJECT_ROOT, Simulator } from "./lib/simulator"

const SUITES = ["format", "node", "collector", "ds", "e2e"] as const
type Suite = (typeof SUITES)[number]
const QUICK: Suite[] = ["format", "node", "ds"]

/**
 * Expected duration of each end-to-end file in seconds (measured with two files at a time on a
 * 2-core machine), so the longest start first and both lanes end close together. A file not
 * listed counts as DEFAULT_E2E_S; the durations measured by the last run on this machine
 * (E2E_DURATIONS_FILE) take precedence.
 */
const E2E_EXPECTED_S: Record<string, number> = {
    "store-forward.test.ts": 435,
    "client-faults.test.ts": 320,
    "time-collector.test.ts": 270,
    "meters.test.ts": 190,
    "data-path.test.ts": 100,
    "stop-start.test.ts": 50,
    "tls.test.ts": 45,
    "composition.test.ts": 25,
    "hostile.test.ts": 80,
    "acl.test.ts": 45,
    "jitter.test.ts": 90,
    "clock-step.test.ts": 40,
    "fleet-page.test.ts": 60,
    "power-cuts.test.ts": 150,
}
const DEFAULT_E2E_S = 120
const E2E_DURATIONS_FILE = join(PROJECT_ROOT, ".devicescript", "e2e-durations.json")

const { values: options, positionals } = parseArgs({
    options: {
        quick: { type: "boolean", default: false },
        jobs: { type: "string" },
    },
    allowPositionals: true,
    strict: true,
})

const e2eFilesAsked: string[] = []
const suitesAsked: Suite[] = []
for (const p of positionals) {
    if ((SUITES as readonly string[]).includes(p)) suitesAsked.push(p as Suite)
    else if (
        p.endsWith(".test.ts") &&
        existsSync(resolve(p)) &&
        relative(PROJECT_ROOT, resolve(p)).startsWith("test/e2e/")
    )
        e2eFilesAsked.push(relative(PROJECT_ROOT, resolve(p)))
    else {
        console.error(`npm test: unknown suite or end-to-end file ${p} (suites: ${SUITES.join(", ")})`)
        process.exit(2)
    }
}
if (e2eFilesAsked.length && !suitesAsked.includes("e2e")) suitesAsked.push("e2e")
const suites: Suite[] = options.quick
    ? QUICK.filter(s => !suitesAsked.length || suitesAsked.includes(s))
    : suitesAsked.length
      ? SUITES.filter(s => suitesAsked.includes(s))
      : [...SUITES]
const jobs = Math.max(1, Number(options.jobs ?? process.env.E2E_JOBS ?? 2) || 1)

interface Counts {
    passed: number
    failed: number
    skipped: number
}
const zero = (): Counts => ({ passed: 0, failed: 0, skipped: 0 })
const total = zero()
const summary: string[] = []

function listTests(dir: string) {
    try {
        return readdirSync(join(PROJECT_ROOT, dir))
            .filter(f => f.endsWith(".test.ts"))
            .sort()
            .map(f => join(dir, f))
    } catch {
        return []
    }
}

/** 9.3 s, 4 min 05 s. */
function duration(ms: number) {
    const s = ms / 1000
    if (s < 60) return `${s.toFixed(1)} s`
    const whole = Math.round(s)
    return `${Math.floor(whole / 60)} min ${String(whole % 60).padStart(2, "0")} s`
}

function describeCounts(c: Counts) {
    return `${c.passed} passed, ${c.failed} failed${c.skipped ? `, ${c.skipped} skipped` : ""}`
}

/** Counts of a node:test TAP report (its closing `# pass N` ... lines). */
function tapCounts(tapFile: string, exitCode: number, name: string, log: (line: string) => void): Counts {
    let text = ""
    try {
        text = readFileSync(tapFile, "utf-8")
    } catch {}
    const count = (key: string) => Number(text.match(new RegExp(`^# ${key} (\\d+)$`, "m"))?.[1] ?? 0)
    const counts = {
        passed: count("pass"),
        failed: count("fail") + count("cancelled"),
        skipped: count("skipped") + count("todo"),
    }
    if (exitCode !== 0 && counts.failed === 0) {
        log(`[${name}] node --test exited with ${exitCode} without a failed test: counted as one failure`)
        counts.failed = 1
    }
    return counts
}

function nodeTestArgs(tapFile: string, extra: string[], files: string[]) {
    return [
        "--import",
        "tsx",
        "--test",
        "--test-reporter=spec",
        "--test-reporter-destination=stdout",
        "--test-reporter=tap",
        `--test-reporter-destination=${tapFile}`,
        ...extra,
        ...files,
    ]
}

/** Runs node:test over files, printing the spec report and counting from a TAP report. */
async function runNodeTests(name: string, files: string[], extra: string[]): Promise<Counts> {
    if (!files.length) return zero()
    const dir = mkdtempSync(join(tmpdir(), "meternode-tap-"))
    const tap = join(dir, "report.tap")
    try {
        const code = await new Promise<number>(resolve => {
            const child = spawn(process.execPath, nodeTestArgs(tap, extra, files), {
                cwd: PROJECT_ROOT,
                stdio: ["ignore", "inherit", "inherit"],
            })
            child.on("exit", c => resolve(c ?? 1))
        })
        return tapCounts(tap, code, name, console.log)
    } finally {
        rmSync(dir, { recursive: true, force: true })
    }
}

/**
 * `prettier --check` over the tracked .ts files and the collector's page (plain HTML, CSS and
 * JavaScript); the files .prettierignore leaves out stay out.
 */
async function runFormatCheck(): Promise<Counts> {
    const listed = spawnSync("git", ["ls-files", "-z", "--", "*.ts", "collector/web/*"], {
        cwd: PROJECT_ROOT,
        encoding: "utf-8",
    })
    // Outside a git checkout, prettier finds the files itself.
    const files =
        listed.status === 0
            ? listed.stdout.split("\0").filter(f => f && existsSync(join(PROJECT_ROOT, f)))
            : ["**/*.ts"]
    const prettier = join(PROJECT_ROOT, "node_modules", "prettier", "bin", "prettier.cjs")
    const code = await new Promise<number>(resolve => {
        const child = spawn(process.execPath, [prettier, "--check", ...files], {
            cwd: PROJECT_ROOT,
            stdio: ["ignore", "inherit", "inherit"],
        })
        child.on("error", () => resolve(1))
        child.on("exit", c => resolve(c ?? 1))
    })
    if (code === 0) {
        console.log(`[format] ${files.length} files formatted as .prettierrc says`)
        return { passed: 1, failed: 0, skipped: 0 }
    }
    console.log(`[format] prettier --check failed: run npx prettier --write on the files named above`)
    return { passed: 0, failed: 1, skipped: 0 }
}

/** Compiles each DeviceScript test file and runs it in the simulator's test mode. */
async function runDeviceScriptTests(files: string[]): Promise<Counts> {
    const counts = zero()
    const runDir = mkdtempSync(join(tmpdir(), "meternode-ds-"))
    try {
        for (const file of files) {
            const startedAt = Date.now()
            console.log(`\n[ds] ${file}`)
            const bytecode = join(runDir, "test.devs")
            try {
                await compile(join(PROJECT_ROOT, file), bytecode)
            } catch (e) {
                console.log(String((e as Error).message))
                counts.failed++
                continue
            }
            const sim = new Simulator({
                bytecode,
                runDir,
                mode: "test",
                testTimeoutMs: 120_000,
                onLine: line => console.log(`  ${line}`),
            })
            await sim.start()
            const exit = await sim.waitForExit(180_000).catch(async e => {
                await sim.kill()
                console.log(`[ds] ${file}: ${(e as Error).message}`)
                return { code: 1, signal: null as NodeJS.Signals }
            })
            const summary = [...sim.lines]
                .reverse()
                .map(l => l.match(/^tests: (\d+), pass: (\d+), error: (\d+)/))
                .find(m => m)
            if (summary) {
                counts.passed += Number(summary[2])
                counts.failed += Number(summary[3])
                if (exit.code !== 0 && Number(summary[3]) === 0) counts.failed++
            } else {
                console.log(`[ds] ${file}: no test summary (exit ${exit.code ?? exit.signal}): counted as one failure`)
                counts.failed++
            }
            console.log(`[ds] ${file}: ${duration(Date.now() - startedAt)}`)
        }
    } finally {
        rmSync(runDir, { recursive: true, force: true })
    }
    return counts
}

// ---- end-to-end: one process per file, `jobs` at a time, each in a network namespace ----

/**
 * How to give each end-to-end file a network namespace of its own, with its loopback brought up
 * by `ip`: `unshare -n` as root, else `unshare -r -n` (a user namespace, where unprivileged ones
 * are allowed). The simulator's stub Jacdac bus listens on a fixed port (127.0.0.1:8082), so two
 * files can only run at once on loopbacks of their own.
 */
function namespaceCommand(): { unshare: string[] } | { problem: string } {
    if (process.platform !== "linux") return { problem: "network namespaces need Linux" }
    const tries = process.getuid?.() === 0 ? [["-n"]] : [["-n"], ["-r", "-n"]]
    let problem = ""
    for (const flags of tries) {
        const r = spawnSync("unshare", [...flags, "--", "sh", "-c", "ip link set lo up"], { encoding: "utf-8" })
        if (r.error) return { problem: `unshare: ${r.error.message}` }
        if (r.status === 0) return { unshare: ["unshare", ...flags] }
        problem = (r.stderr || r.stdout || `exit ${r.status ?? r.signal}`).trim().split("\n")[0]
    }
    return { problem: process.getuid?.() === 0 ? problem : `not root, and ${problem}` }
}

function loadMeasuredDurations(): Record<string, number> {
    try {
        return JSON.parse(readFileSync(E2E_DURATIONS_FILE, "utf-8"))
    } catch {
        return {}
    }
}

function expectedSeconds(file: string, measured: Record<string, number>) {
    const name = basename(file)
    return measured[name] ?? E2E_EXPECTED_S[name] ?? DEFAULT_E2E_S
}

interface E2eRun {
    file: string
    counts: Counts
    ms: number
}

/** Children of running e2e files: each leads a process group (its broker, simulators...). */
const runningGroups = new Set<ChildProcess>()

function killGroup(child: ChildProcess, signal: NodeJS.Signals) {
    if (!child.pid) return
    try {
        process.kill(-child.pid, signal)
    } catch {}
}

let interrupted = false
for (const signal of ["SIGINT", "SIGTERM"] as const)
    process.on(signal, () => {
        if (interrupted) process.exit(130)
        interrupted = true
        console.log(`\nnpm test: ${signal}: stopping the running end-to-end files`)
        for (const c of runningGroups) killGroup(c, "SIGTERM")
        setTimeout(() => {
            for (const c of runningGroups) killGroup(c, "SIGKILL")
            process.exit(130)
        }, 5000).unref()
        if (!runningGroups.size) process.exit(130)
    })

/**
 * Runs one end-to-end file in a process of its own, in a network namespace of its own when
 * `unshare` says how. `live`: its output goes straight through; otherwise it is held and printed
 * whole when the file ends, so files running at once do not interleave.
 */
async function runE2eFile(file: string, unshare: string[] | undefined, live: boolean): Promise<E2eRun> {
    const dir = mkdtempSync(join(tmpdir(), "meternode-tap-"))
    const tap = join(dir, "report.tap")
    const args = nodeTestArgs(tap, ["--test-timeout=1500000"], [file])
    const [command, ...commandArgs] = unshare
        ? [...unshare, "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', process.execPath, ...args]
        : [process.execPath, ...args]
    const held: Buffer[] = []
    const startedAt = Date.now()
    const code = await new Promise<number>(resolve => {
        const child = spawn(command, commandArgs, {
            cwd: PROJECT_ROOT,
            stdio: ["ignore", "pipe", "pipe"],
            // A process group of its own: whatever the file started can be stopped with it.
            detached: true,
        })
        runningGroups.add(child)
        const onData = (d: Buffer) => (live ? process.stdout.write(d) : held.push(d))
        child.stdout!.on("data", onData)
        child.stderr!.on("data", onData)
        child.on("error", e => held.push(Buffer.from(`[e2e] ${file}: ${e.message}\n`)))
        // Anything of the file's still running once it ended (it should have stopped all it
        // started) goes with it, and with it any copy of its output pipes.
        child.on("exit", () => killGroup(child, "SIGKILL"))
        child.on("close", c => {
            runningGroups.delete(child)
            resolve(c ?? 1)
        })
    })
    const ms = Date.now() - startedAt
    const out: string[] = []
    const counts = tapCounts(tap, code, `e2e ${file}`, l => out.push(l))
    rmSync(dir, { recursive: true, force: true })
    if (!live) process.stdout.write(`\n[e2e] ${file} (${duration(ms)}):\n${Buffer.concat(held).toString()}`)
    for (const l of out) console.log(l)
    console.log(`[e2e] ${file}: ${describeCounts(counts)} in ${duration(ms)}`)
    return { file, counts, ms }
}

async function runEndToEnd(files: string[]): Promise<{ counts: Counts; runs: E2eRun[]; mode: string }> {
    const counts = zero()
    if (!files.length) return { counts, runs: [], mode: "no files" }
    let lanes = Math.min(jobs, files.length)
    let mode = "one file at a time"
    let unshare: string[] | undefined
    if (lanes > 1) {
        const ns = namespaceCommand()
        if ("problem" in ns) {
            console.log(
                `[e2e] one file at a time, not ${lanes}: no network namespace per file (${ns.problem}); ` +
                    "the stub Jacdac bus's fixed port allows one file per network namespace"
            )
            lanes = 1
        } else {
            unshare = ns.unshare
            mode = `${lanes} files at a time, each in a network namespace of its own (${unshare.join(" ")})`
        }
    }
    const measured = loadMeasuredDurations()
    // Longest first: the lanes then end close together.
    const queue = [...files].sort((a, b) => expectedSeconds(b, measured) - expectedSeconds(a, measured))
    console.log(
        `[e2e] ${mode}; order: ${queue.map(f => `${basename(f)} (~${Math.round(expectedSeconds(f, measured))} s)`).join(", ")}`
    )
    const runs: E2eRun[] = []
    const lane = async (n: number) => {
        for (let file = queue.shift(); file && !interrupted; file = queue.shift()) {
            console.log(`[e2e] started ${file}${lanes > 1 ? ` (lane ${n})` : ""}`)
            runs.push(await runE2eFile(file, unshare, lanes === 1))
        }
    }
    await Promise.all(Array.from({ length: lanes }, (_, i) => lane(i + 1)))
    for (const r of runs) {
        counts.passed += r.counts.passed
        counts.failed += r.counts.failed
        counts.skipped += r.counts.skipped
        if (!r.counts.failed) measured[basename(r.file)] = Math.round(r.ms / 1000)
    }
    try {
        mkdirSync(join(PROJECT_ROOT, ".devicescript"), { recursive: true })
        writeFileSync(E2E_DURATIONS_FILE, JSON.stringify(measured, null, 4) + "\n")
    } catch {}
    return { counts, runs, mode }
}

// ---- main ----

function add(name: string, c: Counts, ms: number, detail = "") {
    total.passed += c.passed
    total.failed += c.failed
    total.skipped += c.skipped
    summary.push(`${name}: ${describeCounts(c)} in ${duration(ms)}${detail}`)
}

const kind = defaultBrokerKind()
console.log(
    `Broker for end-to-end tests: ${kind}${kind === "mosquitto" ? ` (${findMosquitto()})` : " (embedded Node broker: Mosquitto is not installed)"}`
)
console.log(`Suites: ${suites.join(", ")}${options.quick ? " (--quick)" : ""}`)

const runStartedAt = Date.now()
const e2eLines: string[] = []
for (const suite of suites) {
    if (interrupted) break
    console.log(`\n=== ${suite} ===`)
    const startedAt = Date.now()
    if (suite === "format") add("format", await runFormatCheck(), Date.now() - startedAt)
    // Two test files at once: the node suite is CPU-bound and the runner's default is one per core minus one.
    if (suite === "node")
        add(
            "node",
            await runNodeTests("node", listTests("test/node"), ["--test-concurrency=2"]),
            Date.now() - startedAt
        )
    if (suite === "collector")
        add("collector", await runNodeTests("collector", listTests("test/collector"), []), Date.now() - startedAt)
    if (suite === "ds") add("ds", await runDeviceScriptTests(listTests("test/ds")), Date.now() - startedAt)
    if (suite === "e2e") {
        const files = e2eFilesAsked.length ? e2eFilesAsked : listTests("test/e2e")
        const { counts, runs, mode } = await runEndToEnd(files)
        add("e2e", counts, Date.now() - startedAt, ` (${mode})`)
        for (const r of runs) e2eLines.push(`  ${r.file}: ${describeCounts(r.counts)} in ${duration(r.ms)}`)
    }
}

console.log(`\n${summary.join("\n")}`)
if (e2eLines.length) console.log(e2eLines.join("\n"))
console.log(`broker: ${kind}`)
console.log(`total time: ${duration(Date.now() - runStartedAt)}`)
console.log(describeCounts(total))
process.exit(total.failed || interrupted ? 1 : 0)
