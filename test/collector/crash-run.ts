// Exactly once through crashes, end to end: the fleet simulator (collector/fleet.ts, the firmware's
// payloads) publishes at a reading a second per node while the collector, a child process, is
// SIGKILLed at random moments (seeded) and restarted, and the broker (Mosquitto, persistence on) is
// restarted once. Then every reading the fleet's own log says it took must be in the database
// exactly once, with the delta and total it was taken with, and per node the sum of the deltas must
// equal the change of the total. The fault campaign runs it for 10 minutes (`npm run faults --
// --only collector-crash`), the collector's tests for a minute.
import type { ChildProcess } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Broker } from "../../devs/lib/broker"
import { sleep } from "../../devs/lib/process"
import { openDatabase } from "../../collector/db"
import { random } from "../../collector/random"
import { CollectorProcess, PostgresServer, startFleet, stopChild, waitFor } from "./helpers"

export interface CrashRunOptions {
    database: "PGlite" | "PostgreSQL"
    /** Simulated nodes, each publishing a reading a second. */
    nodes: number
    seconds: number
    kills: number
    seed: number
    log?: (line: string) => void
}

export interface CrashRunResult {
    database: string
    /** Readings the fleet took (its log). */
    taken: number
    /** Of those, stored with the content they were taken with. */
    stored: number
    lost: number
    /** Rows beyond one per reading taken, or whose content differs from what was taken. */
    doubled: number
    wrong: number
    /** Largest |sum of deltas - change of total| over the nodes, mWh. */
    energyDiffMilli: number
    /** When the collector was killed and the broker restarted, seconds into the run. */
    killsAtS: number[]
    brokerRestartAtS: number
    /** Seconds from the fleet's last publish until the database held every reading. */
    catchUpS: number
    /** Duplicates the collector absorbed in its last run (deliveries again after the kills). */
    notes: string[]
}

/** The fault times: `kills` SIGKILLs and one broker restart, at least 8 s apart, in the middle 80 % of the run. */
export function faultTimes(seconds: number, kills: number, seed: number) {
    const rnd = random(seed)
    for (;;) {
        const times = Array.from({ length: kills + 1 }, () => seconds * (0.1 + 0.8 * rnd()))
        const sorted = [...times].sort((a, b) => a - b)
        if (sorted.every((t, i) => i === 0 || t - sorted[i - 1] >= 8))
            return { killsAtS: times.slice(0, kills).sort((a, b) => a - b), brokerRestartAtS: times[kills] }
    }
}

export async function crashRun(o: CrashRunOptions): Promise<CrashRunResult> {
    const log = o.log ?? (() => {})
    const dir = mkdtempSync(join(tmpdir(), "meternode-crash-"))
    const broker = await new Broker({ kind: "mosquitto", persistence: true }).start()
    let server: PostgresServer | undefined
    let collector: CollectorProcess | undefined
    let fleet: ChildProcess | undefined
    try {
        let dbArgs: string[]
        if (o.database === "PostgreSQL") {
            server = await new PostgresServer().start({ fsync: true })
            dbArgs = ["--db", await server.createDatabase("crash")]
        } else dbArgs = ["--data-dir", join(dir, "db")]
        const args = [...dbArgs, "--broker", broker.url, "--client-id", `crash-${process.pid}`, "--http", "0"]
        collector = await new CollectorProcess(args).start(120_000)
        const { killsAtS, brokerRestartAtS } = faultTimes(o.seconds, o.kills, o.seed)
        log(
            `seed ${o.seed}: SIGKILL at ${killsAtS.map(t => t.toFixed(1)).join(", ")} s, broker restart at ${brokerRestartAtS.toFixed(1)} s`
        )
        const fleetLog = join(dir, "fleet.jsonl")
        const id = `crash${process.pid}`
        const run = startFleet([
            ...["--broker", broker.url, "--nodes", String(o.nodes), "--rate", String(o.nodes)],
            ...["--readings", String(o.seconds), "--interval", "1", "--window", "100"],
            ...["--id", id, "--seed", String(o.seed), "--log", fleetLog],
        ])
        fleet = run.child
        await waitFor("the fleet connected", async () => /nodes connected/.test(run.output), 60_000)
        const t0 = Date.now()
        const at = (s: number) => sleep(Math.max(0, t0 + s * 1000 - Date.now()))
        const faults = [
            ...killsAtS.map(s => ({ s, kind: "kill" as const })),
            { s: brokerRestartAtS, kind: "broker" as const },
        ].sort((a, b) => a.s - b.s)
        const rnd = random(o.seed + 1)
        // Duplicates absorbed over every run of the collector: what it had absorbed just before
        // each kill, and in its last run (deliveries again of what a kill caught committed but
        // not yet acknowledged show in the run after it).
        let absorbed = 0
        for (const f of faults) {
            await at(f.s)
            if (f.kind === "kill") {
                absorbed += (await collector.json("/api/stats").catch(() => ({ duplicates: 0 }))).duplicates
                await collector.kill()
                // Down for 1 to 4 s: the broker queues what comes meanwhile in the collector's session.
                await sleep(1000 + 3000 * rnd())
                collector = await new CollectorProcess(args).start(120_000)
                log(`${((Date.now() - t0) / 1000).toFixed(1)} s: collector killed and restarted`)
            } else {
                await broker.restart(1000)
                log(`${((Date.now() - t0) / 1000).toFixed(1)} s: broker restarted`)
            }
        }
        const code = await run.exited
        if (code !== 0) throw new Error(`the fleet exited with ${code}:\n${run.output.slice(-2000)}`)
        const fleetDoneAt = Date.now()
        const taken = readFileSync(fleetLog, "utf-8")
            .split("\n")
            .filter(Boolean)
            .map(l => JSON.parse(l) as { node: string; seq: number; delta: number; total: number })
        const stats = await waitFor(
            `all ${taken.length} readings stored`,
            async () => {
                const { nodes } = await collector!.json("/api/nodes")
                const n = nodes
                    .filter((x: any) => x.node.startsWith(id))
                    .reduce((s: number, x: any) => s + (x.meters[0]?.readings ?? 0), 0)
                return n >= taken.length && (await collector!.json("/api/stats"))
            },
            180_000
        ).catch((e): undefined => {
            log(String(e))
            return undefined
        })
        const catchUpS = (Date.now() - fleetDoneAt) / 1000
        await collector.stop()
        collector = undefined
        const db =
            dbArgs[0] === "--db" ? await openDatabase({ url: dbArgs[1] }) : await openDatabase({ dataDir: dbArgs[1] })
        let rows: { node: string; seq: number; delta: number; total: number }[]
        try {
            rows = await db.query(
                "SELECT node, seq, delta, total FROM readings WHERE node LIKE $1 ORDER BY node, seq",
                [`${id}-%`]
            )
        } finally {
            await db.close()
        }
        const want = new Map(taken.map(t => [`${t.node}/${t.seq}`, t]))
        const seen = new Map<string, number>()
        let wrong = 0
        for (const r of rows) {
            const key = `${r.node}/${r.seq}`
            seen.set(key, (seen.get(key) ?? 0) + 1)
            const t = want.get(key)
            if (!t || Math.round(r.delta * 1000) !== t.delta || Math.round(r.total * 1000) !== t.total) wrong++
        }
        const stored = [...want.keys()].filter(k => seen.has(k)).length
        const doubled = [...seen.values()].reduce((s, n) => s + n - 1, 0)
        // Energy: per node, the sum of the deltas against the change of the total over the run.
        let energyDiffMilli = 0
        const byNode = new Map<string, typeof rows>()
        for (const r of rows) byNode.set(r.node, [...(byNode.get(r.node) ?? []), r])
        for (const list of byNode.values()) {
            const sum = list.reduce((s, r) => s + Math.round(r.delta * 1000), 0)
            const change =
                Math.round(list[list.length - 1].total * 1000) -
                (Math.round(list[0].total * 1000) - Math.round(list[0].delta * 1000))
            energyDiffMilli = Math.max(energyDiffMilli, Math.abs(sum - change))
        }
        const notes = [`${o.nodes} nodes for ${o.seconds} s`]
        if (stats) notes.push(`at least ${absorbed + stats.duplicates} duplicates absorbed over the collector's runs`)
        return {
            database: o.database,
            taken: taken.length,
            stored,
            lost: taken.length - stored,
            doubled,
            wrong,
            energyDiffMilli,
            killsAtS,
            brokerRestartAtS,
            catchUpS,
            notes,
        }
    } finally {
        await collector?.kill()
        await stopChild(fleet, "SIGKILL")
        await broker.dispose()
        await server?.stop()
        rmSync(dir, { recursive: true, force: true })
    }
}
