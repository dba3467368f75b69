// A new user's first minutes, as the README tells them: `npm start`, Ctrl-C, `npm start` again.
// A stop by Ctrl-C (or SIGTERM) is planned: the next start reports no gap, the meter's total
// continues from its last value, and nothing published before is published again. Killing the
// simulator is a power cut, and the next start reports it as a gap.
import { test } from "node:test"
import assert from "node:assert/strict"
import { spawn, ChildProcess } from "node:child_process"
import { rmSync } from "node:fs"
import { join } from "node:path"
import { PROJECT_ROOT } from "../../devs/lib/simulator"
import { stopProcess } from "../../devs/lib/process"

const NODE_ID = `e2e-stop-${process.pid}`
/** A line the runner prints for each message the broker delivered: time, topic, QoS, retain, payload. */
const DELIVERED_LINE = /^\d\d:\d\d:\d\d\.\d{3} (\S+) {2}qos=\d retain=\d {2}(.*)$/

interface ReadingElement {
    seq: number
    boot: number
    start: number
    end?: number
    delta?: number
    total: number
    gap?: boolean
    after_seq?: number
}

/** One `npm start` (the runner itself, as npm runs it), with what it printed. */
class StartRun {
    readonly lines: string[] = []
    readonly child: ChildProcess
    readonly exited: Promise<number | null>
    private waiters: (() => void)[] = []

    constructor(extraArgs: string[]) {
        const args = ["--import", "tsx", "devs/start.ts", "--node", NODE_ID, "--set", "READ_MS=1000", ...extraArgs]
        this.child = spawn(process.execPath, args, { cwd: PROJECT_ROOT, stdio: ["ignore", "pipe", "pipe"] })
        let partial = ""
        const onData = (d: Buffer) => {
            const parts = (partial + d.toString()).split("\n")
            partial = parts.pop() ?? ""
            this.lines.push(...parts)
            for (const w of this.waiters.splice(0)) w()
        }
        this.child.stdout!.on("data", onData)
        this.child.stderr!.on("data", onData)
        this.exited = new Promise(resolve => this.child.once("exit", code => resolve(code)))
    }

    /** Readings the broker delivered, element by element, in order. */
    readings(): ReadingElement[] {
        const out: ReadingElement[] = []
        for (const line of this.lines) {
            const m = line.match(DELIVERED_LINE)
            if (m && m[1] === `meters/${NODE_ID}/main/reading`) out.push(...JSON.parse(m[2]).readings)
        }
        return out
    }

    statuses(): any[] {
        return this.lines
            .map(l => l.match(DELIVERED_LINE))
            .filter(m => m && m[1] === `meters/${NODE_ID}/status`)
            .map(m => JSON.parse(m![2]))
    }

    /** Waits, event by event, until `done` holds for what was printed so far. */
    async waitFor(what: string, done: () => boolean, timeoutMs: number) {
        const deadline = Date.now() + timeoutMs
        while (!done()) {
            const left = deadline - Date.now()
            if (left <= 0) throw new Error(`npm start: no ${what} within ${timeoutMs} ms:\n${this.lines.join("\n")}`)
            await new Promise<void>(resolve => {
                const timer = setTimeout(resolve, left)
                this.waiters.push(() => (clearTimeout(timer), resolve()))
            })
        }
    }

    simulatorPid() {
        const m = this.lines.map(l => l.match(/^\[runner\] simulator pid (\d+)/)).find(x => x)
        return m ? Number(m[1]) : 0
    }

    async exitCode(timeoutMs: number) {
        const timer = new Promise<"timeout">(r => setTimeout(() => r("timeout"), timeoutMs).unref())
        const code = await Promise.race([this.exited, timer])
        if (code === "timeout") {
            await stopProcess(this.child, "SIGKILL")
            throw new Error(`npm start still running ${timeoutMs} ms after the stop:\n${this.lines.join("\n")}`)
        }
        return code
    }
}

/** Readings of boot `boot`, gaps left out. */
function measured(run: StartRun, boot?: number) {
    return run.readings().filter(r => !r.gap && (boot === undefined || r.boot === boot))
}

test("npm start, Ctrl-C, npm start: no gap, the total continues, nothing is published twice; kill -9 is a power cut", async () => {
    const runDir = join(PROJECT_ROOT, "run", NODE_ID)
    const runs: StartRun[] = []
    try {
        // First start, from empty flash.
        const first = new StartRun(["--clear-flash"])
        runs.push(first)
        await first.waitFor("4 readings", () => measured(first).length >= 4, 120_000)
        first.child.kill("SIGINT")
        assert.equal(await first.exitCode(30_000), 0)
        assert.ok(first.lines.includes("[runner] the node stopped as planned: its queue and state are in flash"))
        const offline = first.statuses().at(-1)
        assert.deepEqual({ state: offline.state, reason: offline.reason }, { state: "offline", reason: "shutdown" })
        const before = measured(first)
        const last = before.at(-1)!
        const firstBoot = last.boot

        // Second start: the same flash, the same firmware.
        const second = new StartRun([])
        runs.push(second)
        await second.waitFor("3 readings", () => measured(second, firstBoot + 1).length >= 3, 60_000)
        assert.ok(second.lines.includes("[runner] firmware unchanged since the last build: not building"))
        const after = second.readings()
        assert.deepEqual(
            after.filter(r => r.gap),
            [],
            "a planned stop is no power cut: no gap, and no earlier gap again"
        )
        assert.ok(
            after.every(r => r.boot === firstBoot + 1),
            `every reading is of the new boot: ${JSON.stringify(after)}`
        )
        assert.ok(after[0].seq > last.seq, `seq continues above ${last.seq}: ${after[0].seq}`)
        const firstAfter = after[0]
        assert.equal(
            Math.round((firstAfter.total - firstAfter.delta!) * 1000),
            Math.round(last.total * 1000),
            `the total continues from ${last.total}`
        )
        for (const status of second.statuses().filter(s => s.state === "online")) assert.equal(status.error, "")

        // A power cut: the simulator is killed; the runner notices and stops.
        const simulatorPid = second.simulatorPid()
        assert.ok(simulatorPid > 0)
        await second.waitFor("a reading after the boot's first ones", () => measured(second).length >= 4, 30_000)
        process.kill(simulatorPid, "SIGKILL")
        assert.equal(await second.exitCode(30_000), 1)

        // Third start: the cut boot is reported as a gap.
        const third = new StartRun([])
        runs.push(third)
        await third.waitFor("a gap", () => third.readings().some(r => r.gap), 60_000)
        const gap = third.readings().find(r => r.gap)!
        assert.equal(gap.boot, firstBoot + 1, "the gap belongs to the boot that lost its power")
        third.child.kill("SIGTERM")
        assert.equal(await third.exitCode(30_000), 0)
    } finally {
        for (const run of runs) await stopProcess(run.child, "SIGKILL")
        rmSync(runDir, { recursive: true, force: true })
    }
})
