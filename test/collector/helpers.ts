// What the collector's tests share: readings built by the firmware's own payload code, a
// PostgreSQL server of their own (initdb into a temporary directory, on a free port, stopped by its
// PID), the two databases to run each test against, and the collector as a child process.
import { spawn, spawnSync, type ChildProcess } from "node:child_process"
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import pg from "pg"
import type { Broker } from "../../devs/lib/broker"
import { freePort, sleep, trackChild } from "../../devs/lib/process"
import { PGlite } from "@electric-sql/pglite"
import { openDatabase, MEMORY, PGLITE_PARSERS, pgliteDatabase, type Database } from "../../collector/db"
import { migrate } from "../../collector/migrate"
import { energyLabel, readingMessage } from "../../src/reading"
import {
    FLAG_CLOCK_NOT_SET,
    FLAG_ESTIMATED,
    FLAG_GAP,
    FLAG_MERGED,
    newRecord,
    type ReadingRecord,
} from "../../src/storage/records"
import type { MeterLabel } from "../../src/meters/meter-spec"

export const ROOT = join(import.meta.dirname, "..", "..")

/** 2025-11-22 09:00:00 UTC, whole seconds: where the generated readings start. */
export const T0_S = 1763802000

export interface RecordSpec {
    seq: number
    firstSeq?: number
    boot?: number
    startS: number
    durationS?: number
    deltaMilli?: number
    totalMilli: number
    meter?: number
    /** A boot that never had the time: startS counts seconds since boot. */
    uptime?: boolean
    estimated?: boolean
    /** A gap element: readings after firstSeq - 1 may be missing. */
    gap?: boolean
}

export function record(s: RecordSpec): ReadingRecord {
    const r = newRecord()
    r.meter = s.meter ?? 0
    r.seq = s.seq
    r.firstSeq = s.firstSeq ?? s.seq
    r.boot = s.boot ?? 1
    r.startS = s.startS
    r.durationS = s.gap ? 0 : (s.durationS ?? 60)
    r.deltaMilliWh = s.gap ? 0 : (s.deltaMilli ?? 0)
    r.totalMilliWh = s.totalMilli
    r.flags =
        (s.uptime ? FLAG_CLOCK_NOT_SET : 0) |
        (s.estimated ? FLAG_ESTIMATED : 0) |
        (s.gap ? FLAG_GAP : 0) |
        (r.firstSeq !== r.seq && !s.gap ? FLAG_MERGED : 0)
    return r
}

import { random } from "../../collector/random"

export { random }

/** `count` one-minute energy readings from seq `firstSeq`, contiguous, with their totals. */
export function energyRecords(count: number, options: { firstSeq?: number; startS?: number; seed?: number } = {}) {
    const rnd = random(options.seed ?? 1)
    const out: ReadingRecord[] = []
    let total = 1_000_000
    for (let i = 0; i < count; i++) {
        const delta = 1000 + Math.floor(rnd() * 20_000)
        total += delta
        out.push(
            record({
                seq: (options.firstSeq ?? 1) + i,
                startS: (options.startS ?? T0_S) + 60 * i,
                deltaMilli: delta,
                totalMilli: total,
            })
        )
    }
    return out
}

/** The messages a node publishes for these records: the firmware's readingMessage, up to 12 per message. */
export function payloads(records: ReadingRecord[], meters: MeterLabel[] = [energyLabel("main")], perMessage = 12) {
    const out: string[] = []
    for (let i = 0; i < records.length;) {
        const m = readingMessage(records.slice(i, i + perMessage), meters)
        out.push(m.payload)
        i += m.count
    }
    return out
}

/**
 * Sends the signal, waits up to graceMs for the exit, then SIGKILLs; by PID. Its timer does not
 * keep the test process alive once the child is gone.
 */
export async function stopChild(child: ChildProcess | undefined, signal: NodeJS.Signals, graceMs = 5000) {
    if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise<void>(resolve => child.once("exit", () => resolve()))
    child.kill(signal)
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<boolean>(resolve => (timer = setTimeout(() => resolve(true), graceMs)))
    if (await Promise.race([exited.then(() => false), late])) {
        child.kill("SIGKILL")
        await exited
    }
    clearTimeout(timer)
}

/**
 * Stops a broker of devs/lib/broker.ts (SIGTERM to its PID, then its dispose()) without leaving
 * its stop's grace timer to hold the test process for seconds after the last test.
 */
export async function disposeBroker(broker: Broker | undefined) {
    const pid = broker?.pid
    if (pid) {
        try {
            process.kill(pid, "SIGTERM")
            const deadline = Date.now() + 5000
            while (Date.now() < deadline) {
                process.kill(pid, 0)
                await sleep(20)
            }
        } catch {}
    }
    await broker?.dispose()
}

// ---- PostgreSQL of the test's own ----

function postgresBin(): string | undefined {
    const candidates: string[] = []
    if (process.env.PG_BIN) candidates.push(process.env.PG_BIN)
    const base = "/usr/lib/postgresql"
    if (existsSync(base))
        for (const v of readdirSync(base).sort((a, b) => Number(b) - Number(a))) candidates.push(join(base, v, "bin"))
    for (const dir of (process.env.PATH || "").split(":")) if (dir) candidates.push(dir)
    return candidates.find(d => existsSync(join(d, "postgres")) && existsSync(join(d, "initdb")))
}

/** Why the PostgreSQL variant cannot run here, or undefined when it can. */
export function postgresMissing() {
    return postgresBin()
        ? undefined
        : "PostgreSQL's binaries (initdb, postgres) are not installed: apt-get install postgresql, or set PG_BIN"
}

/** postgres refuses to run as root: as root, the server runs as the `postgres` user (or nobody). */
function serverUser(): { uid: number; gid: number } | undefined {
    if (process.getuid?.() !== 0) return undefined
    for (const name of ["postgres", "nobody"]) {
        const uid = spawnSync("id", ["-u", name], { encoding: "utf-8" })
        const gid = spawnSync("id", ["-g", name], { encoding: "utf-8" })
        if (uid.status === 0 && gid.status === 0) return { uid: Number(uid.stdout), gid: Number(gid.stdout) }
    }
    throw new Error("running as root, and neither a postgres nor a nobody user to run PostgreSQL as")
}

export class PostgresServer {
    port = 0
    private child?: ChildProcess
    private readonly dir = mkdtempSync(join(tmpdir(), "meternode-pg-"))
    private admin?: pg.Pool
    private databases = 0

    /** initdb, then the server on 127.0.0.1 and a free port, its socket in the temporary directory. */
    async start(options: { fsync?: boolean } = {}) {
        const bin = postgresBin()
        if (!bin) throw new Error(postgresMissing())
        const user = serverUser()
        if (user) chownSync(this.dir, user.uid, user.gid)
        const data = join(this.dir, "data")
        const init = spawnSync(
            join(bin, "initdb"),
            ["-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C"],
            { encoding: "utf-8", ...(user ?? {}) }
        )
        if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr || init.error}`)
        this.port = await freePort()
        this.args = ["-D", data, "-p", String(this.port), "-k", this.dir, "-c", "listen_addresses=127.0.0.1"]
        // Tests do not need the data to survive a power cut: fsync off unless asked (measurements).
        if (!options.fsync) this.args.push("-c", "fsync=off", "-c", "synchronous_commit=off")
        await this.launch()
        this.admin = new pg.Pool({ connectionString: this.url("postgres"), max: 1 })
        this.admin.on("error", () => {})
        return this
    }

    private args: string[] = []

    private async launch() {
        const child = spawn(join(postgresBin()!, "postgres"), this.args, {
            stdio: ["ignore", "ignore", "pipe"],
            ...(serverUser() ?? {}),
        })
        this.child = trackChild(child)
        let log = ""
        child.stderr!.on("data", d => (log += d.toString()))
        const deadline = Date.now() + 30_000
        for (;;) {
            if (child.exitCode !== null) throw new Error(`postgres exited: ${log}`)
            const client = new pg.Client({ connectionString: this.url("postgres") })
            try {
                await client.connect()
                await client.end()
                return
            } catch {
                await client.end().catch(() => {})
                if (Date.now() > deadline) throw new Error(`postgres did not start: ${log}`)
                await sleep(100)
            }
        }
    }

    /** An outage: the server stops (fast shutdown, its clients cut off) and starts again after downMs. */
    async restart(downMs: number) {
        await stopChild(this.child, "SIGINT", 10_000)
        await sleep(downMs)
        await this.launch()
    }

    url(database: string) {
        return `postgres://postgres@127.0.0.1:${this.port}/${database}`
    }

    /** A new, empty database; its URL. */
    async createDatabase(prefix = "t") {
        const name = `${prefix}_${++this.databases}`
        await this.admin!.query(`CREATE DATABASE ${name}`)
        return this.url(name)
    }

    async stop() {
        await this.admin?.end().catch(() => {})
        // SIGINT: PostgreSQL's fast shutdown.
        await stopChild(this.child, "SIGINT", 10_000)
        rmSync(this.dir, { recursive: true, force: true })
    }
}

// ---- The two databases every test runs against ----

export interface Variant {
    name: string
    /** Why it is skipped here, if it is. */
    skip?: string
    /** Opens a new, empty database (its schema migrated). */
    open(): Promise<Database>
    /** The options of the collector's command line for a new, empty database. */
    collectorArgs(): Promise<string[]>
    /** The PostgreSQL server, for the PostgreSQL variant. */
    server?: () => Promise<PostgresServer>
    dispose(): Promise<void>
}

export function variants(): Variant[] {
    const temp: string[] = []
    let template: Blob | undefined
    let server: PostgresServer | undefined
    const ensureServer = async () => (server ??= await new PostgresServer().start())
    return [
        {
            name: "PGlite",
            // initdb takes seconds in WebAssembly: one database is created and migrated, the
            // others are loaded from its copy.
            async open() {
                if (!template) {
                    const first = await openDatabase({ dataDir: MEMORY })
                    template = await first.pglite!.dumpDataDir("none")
                    return first
                }
                const db = pgliteDatabase(
                    await PGlite.create({ loadDataDir: template, parsers: PGLITE_PARSERS }),
                    MEMORY
                )
                await migrate(db)
                return db
            },
            async collectorArgs() {
                const dir = mkdtempSync(join(tmpdir(), "meternode-collector-db-"))
                temp.push(dir)
                return ["--data-dir", dir]
            },
            async dispose() {
                for (const d of temp) rmSync(d, { recursive: true, force: true })
            },
        },
        {
            name: "PostgreSQL",
            skip: postgresMissing(),
            open: async () => openDatabase({ url: await (await ensureServer()).createDatabase() }),
            collectorArgs: async () => ["--db", await (await ensureServer()).createDatabase()],
            server: ensureServer,
            dispose: async () => server?.stop(),
        },
    ]
}

// ---- The fleet simulator and the collector as child processes ----

/** `collector/fleet.ts` (npm run fleet) started with the arguments: its output, kept, and its exit. */
export function startFleet(args: string[]) {
    const child = trackChild(
        spawn(process.execPath, ["--import", "tsx", join(ROOT, "collector", "fleet.ts"), ...args], {
            cwd: ROOT,
            stdio: ["ignore", "pipe", "pipe"],
        })
    )
    const fleet = {
        child,
        output: "",
        /** How it ended: its exit code, or the signal that ended it. */
        exited: new Promise<number | NodeJS.Signals | null>(resolve =>
            child.once("exit", (code, signal) => resolve(code ?? signal))
        ),
    }
    child.stdout!.on("data", d => (fleet.output += d))
    child.stderr!.on("data", d => (fleet.output += d))
    return fleet
}

export class CollectorProcess {
    child?: ChildProcess
    output = ""
    httpPort = 0

    constructor(readonly args: string[]) {}

    /** Starts `collector/cli.ts` with the arguments; resolves once it collects (subscribed). */
    async start(timeoutMs = 60_000) {
        this.output = ""
        const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "collector", "cli.ts"), ...this.args], {
            cwd: ROOT,
            stdio: ["ignore", "pipe", "pipe"],
        })
        this.child = trackChild(child)
        child.stdout!.on("data", d => (this.output += d.toString()))
        child.stderr!.on("data", d => (this.output += d.toString()))
        const deadline = Date.now() + timeoutMs
        while (!/^collecting into/m.test(this.output)) {
            if (child.exitCode !== null) throw new Error(`the collector exited (${child.exitCode}):\n${this.output}`)
            if (Date.now() > deadline) throw new Error(`the collector did not start:\n${this.output}`)
            await sleep(50)
        }
        const port = this.output.match(/HTTP API on http:\/\/[\d.]+:(\d+)/)
        if (port) this.httpPort = Number(port[1])
        return this
    }

    get pid() {
        return this.child?.pid
    }

    /** SIGKILL: the collector dies wherever it is, nothing flushed, nothing acknowledged further. */
    async kill() {
        await stopChild(this.child, "SIGKILL")
    }

    /** SIGTERM: the collector stops as planned and closes its database. */
    async stop() {
        await stopChild(this.child, "SIGTERM", 15_000)
    }

    async get(path: string) {
        // A dead collector answers "fetch failed"; say that it died, and what it printed last.
        const c = this.child
        if (c && (c.exitCode !== null || c.signalCode !== null))
            throw new Error(
                `the collector exited (${c.exitCode ?? c.signalCode}); its last output:\n${this.output.slice(-2000)}`
            )
        const res = await fetch(`http://127.0.0.1:${this.httpPort}${path}`)
        return { status: res.status, body: await res.text() }
    }

    async json(path: string) {
        const r = await this.get(path)
        if (r.status !== 200) throw new Error(`${path}: ${r.status} ${r.body}`)
        return JSON.parse(r.body)
    }
}

export async function waitFor<T>(
    what: string,
    probe: () => Promise<T | undefined | false>,
    timeoutMs = 30_000,
    intervalMs = 100
) {
    const deadline = Date.now() + timeoutMs
    let last: unknown
    for (;;) {
        try {
            const v = await probe()
            if (v) return v
        } catch (e) {
            last = e
        }
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ""}`)
        await sleep(intervalMs)
    }
}

export function readText(path: string) {
    return readFileSync(path, "utf-8")
}
