// The collector's benchmarks (`npm run bench -- --only ingest,range`), on a real Mosquitto (its
// default in-flight limits) and a real PostgreSQL server (default settings, fsync on).
//
//   ingest: one reading per message (a node online), published by raw MQTT connections from
//           pre-encoded PUBLISH packets so that the publisher is not what is measured, into
//           1 collector, 3 collectors sharing through --share, a naive subscriber that INSERTs
//           each message as it arrives and acknowledges it at once (not crash-safe), and COPY of
//           the same rows (the database's own limit). Sustained readings/s from the first publish
//           to the last row stored; every run counts rows and distinct keys against what was
//           published.
//   range:  a year of one-minute readings (525,600) of one meter, loaded with generate_series,
//           out of GET /api/readings?format=oed of a running collector (PGlite and PostgreSQL):
//           seconds to the last byte and the collector's RSS and heap before and during; then
//           GET /api/nodes with that year stored.
//
// `node --import tsx test/bench/ingest.ts naive --broker URL --db URL --prefix P` is the naive
// subscriber's process.
import mqtt from "mqtt"
import mqttPacket from "mqtt-packet"
import pg from "pg"
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { connect, type Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { spawn } from "node:child_process"
import { pathToFileURL } from "node:url"
import { parseArgs } from "node:util"
import type { Broker } from "../../devs/lib/broker"
import { sleep, trackChild } from "../../devs/lib/process"
import { print } from "../../devs/lib/report"
import { openDatabase } from "../../collector/db"
import { energyLabel, readingMessage } from "../../src/reading"
import { newRecord } from "../../src/storage/records"
import { CollectorProcess, PostgresServer, postgresMissing, ROOT, stopChild, T0_S } from "../collector/helpers"

/** Simulated nodes the published readings are spread over. */
const NODES = 100
/** Raw MQTT connections the publisher uses; each keeps up to WINDOW PUBLISHes awaiting PUBACK. */
const PUBLISHERS = 4
const WINDOW = 2000

interface Published {
    /** Pre-encoded PUBLISH packets per connection. */
    packets: Buffer[][]
    /** The same readings as rows of the readings table, for COPY. */
    rows: string[]
    readings: number
}

/** `count` single-reading messages of NODES nodes under `prefix`, encoded by the firmware's payload code. */
function encode(prefix: string, count: number): Published {
    const packets = Array.from({ length: PUBLISHERS }, (): Buffer[] => [])
    const rows: string[] = []
    const label = [energyLabel("main")]
    const totals = new Array(NODES).fill(1_000_000)
    for (let i = 0; i < count; i++) {
        const n = i % NODES
        const seq = Math.floor(i / NODES) + 1
        const r = newRecord()
        r.seq = r.firstSeq = seq
        r.boot = 1
        r.startS = T0_S + seq * 60
        r.durationS = 60
        r.deltaMilliWh = 1000 + ((i * 7919) % 20_000)
        totals[n] += r.deltaMilliWh
        r.totalMilliWh = totals[n]
        const node = `${prefix}-${n}`
        const m = readingMessage([r], label)
        const conn = n % PUBLISHERS
        const list = packets[conn]
        list.push(
            mqttPacket.generate({
                cmd: "publish",
                topic: `${prefix}/${node}/main/reading`,
                payload: Buffer.from(m.payload),
                qos: 1,
                retain: false,
                dup: false,
                messageId: (list.length % 65535) + 1,
            })
        )
        const start = r.startS * 1000
        rows.push(
            `${node},main,${seq},${seq},1,utc_ms,${start},${start + 60_000},${r.deltaMilliWh / 1000},${r.totalMilliWh / 1000}`
        )
    }
    return { packets, rows, readings: count }
}

/** One raw MQTT 3.1.1 connection that writes its packets, WINDOW awaiting PUBACK at most. */
async function rawPublish(port: number, clientId: string, packets: Buffer[]) {
    const socket: Socket = connect(port, "127.0.0.1")
    socket.setNoDelay(true)
    await new Promise<void>((resolve, reject) => {
        socket.once("connect", () => resolve())
        socket.once("error", reject)
    })
    const parser = mqttPacket.parser({ protocolVersion: 4 })
    let acked = 0
    let connacked: () => void
    let progressed: () => void = () => {}
    const connack = new Promise<void>(r => (connacked = r))
    parser.on("packet", p => {
        if (p.cmd === "connack") connacked()
        else if (p.cmd === "puback") {
            acked++
            progressed()
        }
    })
    socket.on("data", d => parser.parse(d))
    socket.write(mqttPacket.generate({ cmd: "connect", clientId, clean: true, keepalive: 60, protocolVersion: 4 }))
    await connack
    let sent = 0
    while (acked < packets.length) {
        const upTo = Math.min(packets.length, acked + WINDOW)
        if (sent < upTo) {
            // Many packets in one write: the broker reads them in one go.
            const chunk = Buffer.concat(packets.slice(sent, upTo))
            sent = upTo
            if (!socket.write(chunk)) await new Promise(r => socket.once("drain", r))
        }
        await new Promise<void>(r => (progressed = r))
    }
    socket.end(mqttPacket.generate({ cmd: "disconnect" }))
}

/** Publishes everything over PUBLISHERS connections at once; resolves with the seconds it took. */
async function publishAll(port: number, p: Published, tag: string) {
    const t = performance.now()
    await Promise.all(p.packets.map((list, i) => rawPublish(port, `${tag}-pub-${i}-${process.pid}`, list)))
    return (performance.now() - t) / 1000
}

async function count(pool: pg.Pool) {
    const [r] = (
        await pool.query("SELECT count(*)::int AS n, count(DISTINCT (node, meter, seq))::int AS keys FROM readings")
    ).rows
    return r as { n: number; keys: number }
}

interface IngestFigure {
    name: string
    readingsPerS: number
    publishS: number
    totalS: number
    rows: number
    keys: number
    published: number
}

/** Until the database holds `expected` rows (or stops moving for 30 s); the seconds from t0. */
async function waitRows(pool: pg.Pool, expected: number, t0: number) {
    let last = -1
    let stillSince = Date.now()
    for (;;) {
        const { n } = await count(pool)
        if (n >= expected) return (performance.now() - t0) / 1000
        if (n !== last) {
            last = n
            stillSince = Date.now()
        } else if (Date.now() - stillSince > 30_000) return (performance.now() - t0) / 1000
        await sleep(50)
    }
}

function describeFigure(f: IngestFigure, baseline?: IngestFigure) {
    const lost = f.published - f.keys
    const doubled = f.rows - f.keys
    return (
        `  ${f.name.padEnd(54)} ${String(Math.round(f.readingsPerS)).padStart(6)} readings/s` +
        (baseline ? `  ${(f.readingsPerS / baseline.readingsPerS).toFixed(2).padStart(5)} x naive` : "") +
        (f.publishS
            ? `  (${f.totalS.toFixed(1)} s; publisher done at ${f.publishS.toFixed(1)} s)  `
            : `  (${f.totalS.toFixed(1)} s)  `) +
        `${f.rows} rows, ${lost} lost, ${doubled} doubled`
    )
}

export interface IngestOptions {
    readings: number
}

export async function ingestBench(broker: Broker, options: IngestOptions) {
    const missing = postgresMissing()
    if (missing) {
        print(`\ningest: skipped: ${missing}`)
        return undefined
    }
    print(
        `\ningest: ${options.readings} readings, one per message, from ${NODES} nodes over ${PUBLISHERS} raw MQTT connections; ` +
            `PostgreSQL with fsync on, Mosquitto's default in-flight limit`
    )
    const server = await new PostgresServer().start({ fsync: true })
    const version = (await (await openDatabase({ url: server.url("postgres") })).query("SHOW server_version"))[0]
    print(`  PostgreSQL ${version.server_version}`)
    const figures: IngestFigure[] = []
    let run = 0
    /** One configuration on a new database: start the consumer, publish, wait for the last row. */
    const measure = async (
        name: string,
        startConsumer: (db: string, prefix: string) => Promise<() => Promise<void>>
    ) => {
        const prefix = `ing${++run}`
        const data = encode(prefix, options.readings)
        const url = await server.createDatabase("ingest")
        await (await openDatabase({ url })).close()
        const pool = new pg.Pool({ connectionString: url, max: 1 })
        const stop = await startConsumer(url, prefix)
        try {
            const t0 = performance.now()
            const publishS = await publishAll(broker.port, data, prefix)
            const totalS = await waitRows(pool, data.readings, t0)
            const { n, keys } = await count(pool)
            const f = { name, readingsPerS: n / totalS, publishS, totalS, rows: n, keys, published: data.readings }
            figures.push(f)
            print(
                describeFigure(
                    f,
                    figures.find(x => x.name.startsWith("naive"))
                )
            )
            return f
        } finally {
            await stop()
            await pool.end()
        }
    }
    try {
        // The publisher and the broker alone: nothing subscribes, so the broker drops each message.
        const alone = encode("ing0", options.readings)
        const publisherS = await publishAll(broker.port, alone, "ing0")
        print(
            `  ${"publisher alone (no subscriber)".padEnd(54)} ${String(Math.round(alone.readings / publisherS)).padStart(6)} readings/s`
        )
        const naive = await measure("naive subscriber, INSERT per message, auto-ack", async (db, prefix) => {
            const child = trackChild(
                spawn(
                    process.execPath,
                    [
                        "--import",
                        "tsx",
                        join(ROOT, "test/bench/ingest.ts"),
                        "naive",
                        "--broker",
                        broker.url,
                        "--db",
                        db,
                        "--prefix",
                        prefix,
                    ],
                    { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] }
                )
            )
            await new Promise<void>((resolve, reject) => {
                child.stdout!.on("data", d => /subscribed/.test(String(d)) && resolve())
                child.once("exit", code => reject(new Error(`the naive subscriber exited (${code})`)))
            })
            return () => stopChild(child, "SIGTERM")
        })
        const collectors = async (n: number, db: string, prefix: string) => {
            const started = await Promise.all(
                Array.from({ length: n }, (_, i) =>
                    new CollectorProcess([
                        "--db",
                        db,
                        "--broker",
                        broker.url,
                        "--prefix",
                        prefix,
                        "--client-id",
                        `${prefix}-collector-${i}`,
                        ...(n > 1 ? ["--share", prefix] : []),
                    ]).start()
                )
            )
            return async () => {
                for (const c of started) await c.stop()
            }
        }
        const one = await measure("1 collector", (db, prefix) => collectors(1, db, prefix))
        const three = await measure("3 collectors, --share", (db, prefix) => collectors(3, db, prefix))
        // COPY: the same rows from a file the server reads itself, into the same table.
        const copyData = encode("ing-copy", options.readings)
        const url = await server.createDatabase("ingest")
        await (await openDatabase({ url })).close()
        const dir = mkdtempSync(join(tmpdir(), "meternode-copy-"))
        const pool = new pg.Pool({ connectionString: url, max: 1 })
        try {
            chmodSync(dir, 0o755)
            const file = join(dir, "rows.csv")
            writeFileSync(file, copyData.rows.join("\n") + "\n", { mode: 0o644 })
            const nodes = [...new Set(copyData.rows.map(r => r.split(",")[0]))]
            await pool.query("INSERT INTO nodes (node) SELECT unnest($1::text[])", [nodes])
            await pool.query(
                "INSERT INTO meters (node, meter, quantity, unit) SELECT unnest($1::text[]), 'main', 'energy', 'Wh'",
                [nodes]
            )
            const t0 = performance.now()
            await pool.query(
                `COPY readings (node, meter, seq, first_seq, boot, time_base, start_time, end_time, delta, total) FROM '${file}' WITH (FORMAT csv)`
            )
            const totalS = (performance.now() - t0) / 1000
            const { n, keys } = await count(pool)
            const f = {
                name: "COPY of the same rows (the database's limit)",
                readingsPerS: n / totalS,
                publishS: 0,
                totalS,
                rows: n,
                keys,
                published: copyData.readings,
            }
            figures.push(f)
            print(describeFigure(f, naive))
        } finally {
            await pool.end()
            rmSync(dir, { recursive: true, force: true })
        }
        print(
            `  3 collectors / 1 collector: ${(three.readingsPerS / one.readingsPerS).toFixed(2)} x; ` +
                `goal 10,000 readings/s with 3 collectors: ${three.readingsPerS >= 10_000 ? "met" : "NOT met"}`
        )
        const bad = figures.filter(f => f.rows !== f.published || f.keys !== f.published)
        if (bad.length) {
            print(`  FAILED: rows or keys differ from what was published: ${bad.map(f => f.name).join(", ")}`)
            process.exitCode = 1
        }
        return { publisherPerS: alone.readings / publisherS, figures }
    } finally {
        await server.stop()
    }
}

// ---- The naive subscriber ----

/**
 * A subscriber as one writes it first: MQTT.js acknowledges each message as it arrives, and each
 * reading goes in with its own INSERT, committed on its own. A crash loses what was acknowledged
 * and not yet inserted: the baseline for speed, not for safety.
 */
async function naiveSubscriber(argv: string[]) {
    const { values } = parseArgs({
        args: argv,
        options: { broker: { type: "string" }, db: { type: "string" }, prefix: { type: "string" } },
        strict: true,
    })
    const db = new pg.Client({ connectionString: values.db })
    await db.connect()
    const known = new Set<string>()
    // pg runs one query at a time per connection: each waits for the one before, as it would queued.
    let last: Promise<unknown> = Promise.resolve()
    const query = (sql: string, params: unknown[]) =>
        (last = last.then(() => db.query(sql, params)).catch(e => console.error(`naive: ${e.message}`)))
    const client = await mqtt.connectAsync(values.broker!, {
        clientId: `${values.prefix}-naive`,
        protocolVersion: 5,
        clean: false,
        properties: { sessionExpiryInterval: 0xffffffff },
    })
    client.on("message", (topic, payload) => {
        const [, node, meter] = topic.split("/")
        const m = JSON.parse(String(payload))
        if (!known.has(node)) {
            known.add(node)
            query("INSERT INTO nodes (node) VALUES ($1) ON CONFLICT DO NOTHING", [node])
            query("INSERT INTO meters (node, meter, quantity, unit) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING", [
                node,
                meter,
                m.quantity,
                m.unit,
            ])
        }
        for (const r of m.readings)
            query(
                `INSERT INTO readings (node, meter, seq, first_seq, boot, time_base, start_time, end_time, delta, total)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
                [node, meter, r.seq, r.first_seq ?? r.seq, r.boot, m.time, r.start, r.end, r.delta, r.total]
            )
    })
    await client.subscribeAsync(`${values.prefix}/+/+/reading`, { qos: 1 })
    console.log("subscribed")
    process.on("SIGTERM", async () => {
        await client.endAsync()
        await db.end()
        process.exit(0)
    })
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href && process.argv[2] === "naive")
    await naiveSubscriber(process.argv.slice(3))

// ---- A year's range ----

const YEAR_READINGS = 525_600
/** 2025-01-01 00:00:00 UTC. */
const YEAR_T0_MS = Date.UTC(2025, 0, 1)

/** The collector process's resident memory, from the kernel. */
function rssBytes(pid: number) {
    const m = readFileSync(`/proc/${pid}/status`, "utf-8").match(/^VmRSS:\s+(\d+) kB/m)
    return m ? Number(m[1]) * 1024 : 0
}

const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(0)

export async function rangeBench(broker: Broker) {
    print(
        `\nrange: a year of one-minute readings of one meter (${YEAR_READINGS}) out of GET /api/readings?format=oed of a running collector`
    )
    const figures: Record<string, unknown>[] = []
    const server = postgresMissing() ? undefined : await new PostgresServer().start()
    const dirs: string[] = []
    try {
        for (const kind of ["PGlite", "PostgreSQL"] as const) {
            if (kind === "PostgreSQL" && !server) {
                print(`  PostgreSQL: skipped: ${postgresMissing()}`)
                continue
            }
            let dbArgs: string[]
            if (kind === "PGlite") {
                const dir = mkdtempSync(join(tmpdir(), "meternode-range-"))
                dirs.push(dir)
                dbArgs = ["--data-dir", dir]
            } else dbArgs = ["--db", await server!.createDatabase("range")]
            const db =
                kind === "PGlite" ? await openDatabase({ dataDir: dbArgs[1] }) : await openDatabase({ url: dbArgs[1] })
            let loadS: number
            try {
                const t = performance.now()
                await db.exec(`
                    INSERT INTO nodes (node) VALUES ('year');
                    INSERT INTO meters (node, meter, quantity, unit) VALUES ('year', 'main', 'energy', 'Wh');
                    INSERT INTO readings (node, meter, seq, first_seq, boot, time_base, start_time, end_time, delta, total)
                    SELECT 'year', 'main', g, g, 1, 'utc_ms', ${YEAR_T0_MS} + (g - 1) * 60000, ${YEAR_T0_MS} + g * 60000,
                           1.5, 1000 + g * 1.5
                    FROM generate_series(1::bigint, ${YEAR_READINGS}) AS g;
                    ANALYZE readings;`)
                loadS = (performance.now() - t) / 1000
            } finally {
                await db.close()
            }
            const collector = await new CollectorProcess([
                ...dbArgs,
                "--broker",
                broker.url,
                "--client-id",
                `range-${kind}-${process.pid}`,
                "--http",
                "0",
            ]).start(120_000)
            try {
                const pid = collector.pid!
                const heap = async () => (await collector.json("/api/stats")).memory?.heap_used_bytes ?? 0
                // Settled: a first small query warms the code paths, then the idle figures.
                await collector.get("/api/readings?node=year&meter=main&from=2025-01-01&to=2025-01-02&format=oed")
                await sleep(500)
                const before = { rss: rssBytes(pid), heap: await heap() }
                let peak = { ...before }
                let sampling = true
                const sampler = (async () => {
                    while (sampling) {
                        peak.rss = Math.max(peak.rss, rssBytes(pid))
                        peak.heap = Math.max(peak.heap, await heap().catch(() => 0))
                        await sleep(50)
                    }
                })()
                const t = performance.now()
                const res = await fetch(
                    `http://127.0.0.1:${collector.httpPort}/api/readings?node=year&meter=main&from=2025-01-01&to=2026-01-01&format=oed`
                )
                let firstByteS = 0
                let bytes = 0
                let lines = 0
                for await (const chunk of res.body as any as AsyncIterable<Uint8Array>) {
                    if (!firstByteS) firstByteS = (performance.now() - t) / 1000
                    bytes += chunk.length
                    // indexOf, not a loop over 22 MB in JavaScript: the client is not what is measured.
                    const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length)
                    for (let i = buf.indexOf(10); i !== -1; i = buf.indexOf(10, i + 1)) lines++
                }
                const seconds = (performance.now() - t) / 1000
                sampling = false
                await sampler
                const readings = lines - 1
                const nodesS: number[] = []
                for (let i = 0; i < 3; i++) {
                    const t2 = performance.now()
                    const nodes = await collector.json("/api/nodes")
                    nodesS.push((performance.now() - t2) / 1000)
                    if (nodes.nodes[0]?.meters[0]?.readings !== YEAR_READINGS)
                        throw new Error(`/api/nodes: ${JSON.stringify(nodes).slice(0, 300)}`)
                }
                nodesS.sort((a, b) => a - b)
                const ok = res.status === 200 && readings === YEAR_READINGS && seconds < 2
                print(
                    `  ${kind.padEnd(10)} loaded in ${loadS.toFixed(1)} s; oed: ${readings} readings, ${mb(bytes)} MB in ${seconds.toFixed(2)} s ` +
                        `(first byte ${(firstByteS * 1000).toFixed(0)} ms; goal under 2 s: ${seconds < 2 ? "met" : "NOT met"}); ` +
                        `collector RSS ${mb(before.rss)} MB before, ${mb(peak.rss)} MB at most during, heap ${mb(before.heap)} -> ${mb(peak.heap)} MB; ` +
                        `GET /api/nodes median ${(nodesS[1] * 1000).toFixed(0)} ms`
                )
                if (!ok) process.exitCode = 1
                figures.push({ kind, loadS, readings, bytes, seconds, firstByteS, before, peak, nodesS: nodesS[1] })
            } finally {
                await collector.stop()
            }
        }
    } finally {
        await server?.stop()
        for (const d of dirs) rmSync(d, { recursive: true, force: true })
    }
    return figures
}
