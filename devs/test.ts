// `npm test`: every suite, then one summary line `N passed, N failed`.
//   node: Node tests of the pure core and the host tooling (test/node, node:test)
//   ds:   DeviceScript tests in the simulator (test/ds, @devicescript/test)
//   e2e:  firmware in the simulator against a real broker (test/e2e, node:test, one at a time)
// `npm test -- node ds` runs only the named suites.
import { spawn } from "node:child_process"
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, relative } from "node:path"
import { defaultBrokerKind, findMosquitto } from "./lib/broker"
import { compile, PROJECT_ROOT, Simulator } from "./lib/simulator"

const SUITES = ["node", "ds", "e2e"] as const
type Suite = (typeof SUITES)[number]
const wanted = process.argv.slice(2).filter(a => !a.startsWith("-"))
for (const w of wanted)
    if (!SUITES.includes(w as Suite)) {
        console.error(`npm test: unknown suite ${w} (known: ${SUITES.join(", ")})`)
        process.exit(2)
    }
const suites = (wanted.length ? wanted : SUITES) as Suite[]

interface Counts {
    passed: number
    failed: number
    skipped: number
}
const total: Counts = { passed: 0, failed: 0, skipped: 0 }
const perSuite: string[] = []

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

/** Runs node:test over files, printing the spec report and counting from a TAP report. */
async function runNodeTests(name: string, files: string[], extra: string[]): Promise<Counts> {
    if (!files.length) return { passed: 0, failed: 0, skipped: 0 }
    const dir = mkdtempSync(join(tmpdir(), "meternode-tap-"))
    const tap = join(dir, "report.tap")
    const args = [
        "--import",
        "tsx",
        "--test",
        "--test-reporter=spec",
        "--test-reporter-destination=stdout",
        "--test-reporter=tap",
        `--test-reporter-destination=${tap}`,
        ...extra,
        ...files,
    ]
    const code = await new Promise<number>(resolve => {
        const child = spawn(process.execPath, args, { cwd: PROJECT_ROOT, stdio: ["ignore", "inherit", "inherit"] })
        child.on("exit", c => resolve(c ?? 1))
    })
    let text = ""
    try {
        text = readFileSync(tap, "utf-8")
    } catch {}
    rmSync(dir, { recursive: true, force: true })
    const count = (key: string) => Number(text.match(new RegExp(`^# ${key} (\\d+)$`, "m"))?.[1] ?? 0)
    const counts = {
        passed: count("pass"),
        failed: count("fail") + count("cancelled"),
        skipped: count("skipped") + count("todo"),
    }
    if (code !== 0 && counts.failed === 0) {
        console.log(`[${name}] node --test exited with ${code} without a failed test: counted as one failure`)
        counts.failed = 1
    }
    return counts
}

/** Compiles each DeviceScript test file and runs it in the simulator's test mode. */
async function runDeviceScriptTests(files: string[]): Promise<Counts> {
    const counts = { passed: 0, failed: 0, skipped: 0 }
    const runDir = mkdtempSync(join(tmpdir(), "meternode-ds-"))
    try {
        for (const file of files) {
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
        }
    } finally {
        rmSync(runDir, { recursive: true, force: true })
    }
    return counts
}

function add(name: string, c: Counts) {
    total.passed += c.passed
    total.failed += c.failed
    total.skipped += c.skipped
    perSuite.push(`${name}: ${c.passed} passed, ${c.failed} failed${c.skipped ? `, ${c.skipped} skipped` : ""}`)
}

const kind = defaultBrokerKind()
console.log(
    `Broker for end-to-end tests: ${kind}${kind === "mosquitto" ? ` (${findMosquitto()})` : " (embedded Node broker: Mosquitto is not installed)"}`
)

for (const suite of suites) {
    console.log(`\n=== ${suite} ===`)
    if (suite === "node") add("node", await runNodeTests("node", listTests("test/node"), []))
    if (suite === "ds") add("ds", await runDeviceScriptTests(listTests("test/ds")))
    if (suite === "e2e")
        add("e2e", await runNodeTests("e2e", listTests("test/e2e"), ["--test-concurrency=1", "--test-timeout=1500000"]))
}

console.log(`\n${perSuite.join("\n")}`)
console.log(`broker: ${kind}`)
console.log(`${total.passed} passed, ${total.failed} failed${total.skipped ? `, ${total.skipped} skipped` : ""}`)
process.exit(total.failed ? 1 : 0)
