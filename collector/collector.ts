// The reference collector: a persistent-session QoS 1 subscriber that stores every meternode
// reading in a database exactly once. A message is acknowledged (PUBACK) only once the
// transaction that stores it has committed; until then the broker keeps it in the session and
// delivers it again if the collector dies or drops the connection. What arrives twice is absorbed
// by the key (node, meter, seq). It can also be the nodes' time source: it publishes the time,
// retained, on the time topic, with an empty retained will so that a collector that dies leaves
// no stale time behind.
import mqtt from "mqtt"
import type { Server } from "node:http"
import { openDatabase, type Database } from "./db"
import { exportCsv, oedPath } from "./export"
import { allReadings } from "./query"
import { startHttp } from "./http"
import { flags } from "./format"
import { OedOutput, type OedOptions } from "./oed"
import { IngestQueue, Store } from "./store"
import { maskUrl } from "../src/mqtt/url"
import { LiveEvents } from "./live"
import { pageRoutes } from "./page"

export { COMBINED_HEADER, OED_HEADER, oedTimestamp } from "./format"

/** A stored reading or gap in the combined CSV's terms. */
export interface CollectedRow {
    node: string
    meter: string
    seq: number
    firstSeq: number
    boot: number
    /** "utc_ms" or "uptime_s": what start and end count. */
    time: string
    start: number
    end: number | null
    deltaWh: number | null
    totalWh: number | null
    /** Space-separated: gap, estimated, replay, partial (a merged reading partly stored before). */
    flags: string
}

/** Tells MQTT.js not to send a PUBACK itself: the collector sends it once the message is committed. */
const AFTER_COMMIT = new Error("acknowledged after the commit")

/** Statuses kept in memory per node, newest last (the database keeps the last one). */
const STATUSES_KEPT = 100

export interface CollectorOptions {
    broker: string
    /** postgres://... : a PostgreSQL server. Without it, PGlite in dataDir. */
    db?: string
    /** PGlite's directory (default data/collector-db); ":memory:" for a database in memory. */
    dataDir?: string
    /** A database already open (its schema migrated): the collector does not close it. */
    database?: Database
    prefix?: string
    /** Stable client id: the broker keeps the session (and queues QoS 1 readings) while we are away. */
    clientId?: string
    username?: string
    password?: string
    ca?: Buffer
    /** 5 (default): acknowledgements through MQTT.js's customHandleAcks; 4 (3.1.1): through handleMessage. */
    protocolVersion?: 4 | 5
    /**
     * MQTT 5 shared subscription group: the collectors of one group share the messages (each goes
     * to one of them). They must share one database server (--db).
     */
    share?: string
    /** MQTT 5 session expiry, seconds, while the collector is away (default: never). */
    sessionExpiryS?: number
    timeTopic?: string
    /** Publish the time every this many seconds; 0 = not a time source. */
    timeEveryS?: number
    /** When stopping, write the database as CSV files: this combined file and the per-meter OED files beside it. */
    out?: string
    /** The first wait before connecting again after a failed transaction, ms (doubling up to 30 s). */
    retryMs?: number
    /** Post each meter's new readings to Open Energy Dashboard, beside ingest (collector/oed.ts). */
    oed?: Omit<OedOptions, "log">
    /** Serve the HTTP API on this port (0: any free one; undefined: none). */
    httpPort?: number
    httpHost?: string
    /** The fleet page's commands (restart, time) need this token; without it the page is read-only. */
    operatorToken?: string
    log?: (line: string) => void
}

export const DEFAULT_DATA_DIR = "data/collector-db"
/** The longest wait before connecting again after a failed transaction. */
const MAX_BACKOFF_MS = 30_000

export class Collector {
    store!: Store
    db!: Database
    /** Status messages per node since the collector started, newest last (the last 100). */
    readonly statuses = new Map<string, any[]>()
    http?: Server
    oed?: OedOutput
    /** Statuses and readings as they are committed, for the fleet page's event stream. */
    readonly live = new LiveEvents()
    private client?: mqtt.MqttClient
    private timer?: NodeJS.Timeout
    private readonly prefix: string
    private readonly log: (line: string) => void
    /** A transaction failed: nothing more is acknowledged on this connection. */
    private broken = false
    private backoffMs: number
    private reconnectTimer?: NodeJS.Timeout
    /** Messages waiting for their transaction, and the one in progress (awaited before the database closes). */
    private queue!: IngestQueue
    private stopping = false
    private readonly startedAt = new Date()

    constructor(readonly options: CollectorOptions) {
        this.prefix = options.prefix ?? "meters"
        this.log = options.log ?? (line => console.log(line))
        this.backoffMs = options.retryMs ?? 1000
    }

    get stats() {
        return this.store.stats
    }

    /** Readings delivered again and absorbed. */
    get duplicates() {
        return this.store.stats.duplicates
    }

    get httpPort() {
        const a = this.http?.address()
        return typeof a === "object" && a ? a.port : undefined
    }

    async start() {
        const o = this.options
        if (o.share !== undefined && !/^[^/+#$\s]{1,64}$/.test(o.share))
            throw new Error(`collector: share group ${JSON.stringify(o.share)} is not a name`)
        if (o.share !== undefined && (o.protocolVersion ?? 5) !== 5)
            throw new Error("collector: shared subscriptions are MQTT 5")
        this.db =
            o.database ?? (await openDatabase({ url: o.db, dataDir: o.dataDir ?? DEFAULT_DATA_DIR, log: this.log }))
        this.store = new Store(this.db, {
            prefix: this.prefix,
            log: this.log,
            onStored: parsed => {
                this.live.stored(parsed)
                if (parsed.kind !== "status") return
                const list = this.statuses.get(parsed.node) ?? []
                list.push({ ...parsed.status, retained: parsed.retained, atMs: Date.now() })
                if (list.length > STATUSES_KEPT) list.shift()
                this.statuses.set(parsed.node, list)
            },
        })
        this.queue = new IngestQueue(this.store)
        if (o.httpPort !== undefined)
            this.http = await startHttp(this.db, {
                port: o.httpPort,
                host: o.httpHost,
                stats: () => ({
                    ...this.store.stats,
                    connected: !!this.client?.connected,
                    started_at: this.startedAt.toISOString(),
                    ...(this.oed ? { oed: this.oed.stats } : {}),
                    live: { listeners: this.live.listeners, updates: this.live.sent },
                }),
                log: this.log,
                routes: pageRoutes({
                    db: this.db,
                    live: this.live,
                    operatorToken: o.operatorToken,
                    command: (node, name, payload) => this.command(node, name, payload),
                    log: this.log,
                }),
            })
        if (o.oed) this.oed = new OedOutput(this.db, { ...o.oed, log: this.log }).start()
        const timeTopic = o.timeTopic ?? "meters/time"
        const timeEveryS = o.timeEveryS ?? 0
        const v5 = (o.protocolVersion ?? 5) === 5
        this.client = mqtt.connect(o.broker, {
            clientId: o.clientId ?? "meternode-collector",
            protocolVersion: v5 ? 5 : 4,
            clean: false,
            // MQTT 5 ends a session at disconnection unless told otherwise.
            properties: v5 ? { sessionExpiryInterval: o.sessionExpiryS ?? 0xffffffff } : undefined,
            reconnectPeriod: 1000,
            username: o.username,
            password: o.password,
            ca: o.ca,
            // A collector that vanishes clears the time it published: nodes never read a stale one.
            will: timeEveryS > 0 ? { topic: timeTopic, payload: Buffer.alloc(0), qos: 1, retain: true } : undefined,
        })
        const client = this.client
        // MQTT.js calls handleMessage for every PUBLISH, one at a time, and sends the PUBACK of a
        // QoS 1 one when it calls back without an error; with an error it sends none and goes on to
        // the next PUBLISH. So a QoS 1 message is handed to the queue, MQTT.js goes on at once
        // (the broker keeps its in-flight limit of messages unacknowledged, 20 by default in
        // Mosquitto), and its PUBACK goes out once its transaction has committed, on the connection
        // it came on: after a reconnection, its packet id may name another message. A QoS 0
        // message holds MQTT.js until it is stored: nothing else bounds how many arrive.
        client.handleMessage = (packet, callback) => {
            if (packet.cmd !== "publish") return callback()
            if (!packet.qos)
                return this.gate(String(packet.topic), packet.payload as Buffer, !!packet.retain, err =>
                    err ? callback(err) : callback()
                )
            const stream = client.stream
            const messageId = packet.messageId!
            this.gate(String(packet.topic), packet.payload as Buffer, !!packet.retain, err => {
                if (!err && client.connected && client.stream === stream)
                    client["_sendPacket"](
                        v5 ? { cmd: "puback", messageId, reasonCode: 0 } : { cmd: "puback", messageId }
                    )
            })
            callback(AFTER_COMMIT)
        }
        client.on("error", e => this.log(`collector: ${e.message}`))
        client.on("reconnect", () => this.log("collector: reconnecting"))
        let subscribed: Promise<unknown> | undefined
        client.on("connect", connack => {
            this.log(`collector: connected to ${maskUrl(o.broker)} (session present: ${connack.sessionPresent})`)
            this.broken = false
            // Subscribing again on a kept session is harmless and covers a broker that lost it.
            subscribed = this.subscribe(v5)
            subscribed.catch(e => this.log(`collector: subscribe: ${e.message}`))
        })
        await new Promise<void>((resolve, reject) => {
            const timeout = setTimeout(
                () => reject(new Error(`collector: cannot connect to ${maskUrl(o.broker)}`)),
                15_000
            )
            client.once("connect", () => {
                clearTimeout(timeout)
                subscribed!.then(() => resolve(), reject)
            })
        })
        if (timeEveryS > 0) {
            const publishTime = () => {
                if (this.client?.connected)
                    this.client.publish(timeTopic, JSON.stringify({ utc_ms: Date.now() }), { qos: 0, retain: true })
            }
            publishTime()
            client.on("connect", publishTime)
            this.timer = setInterval(publishTime, timeEveryS * 1000)
        }
        return this
    }

    /** Publishes a command to a node (QoS 1); resolves once the broker has acknowledged it. */
    async command(node: string, name: string, payload: Record<string, unknown>) {
        const client = this.client
        if (!client?.connected) throw new Error("not connected to the broker")
        let timer: NodeJS.Timeout | undefined
        const timeout = new Promise<never>(
            (_, reject) => (timer = setTimeout(() => reject(new Error("no PUBACK from the broker in 5 s")), 5000))
        )
        try {
            await Promise.race([
                client.publishAsync(`${this.prefix}/${node}/cmd/${name}`, JSON.stringify(payload), { qos: 1 }),
                timeout,
            ])
        } finally {
            clearTimeout(timer)
        }
    }

    private subscribe(v5: boolean) {
        // MQTT 5: retained statuses only with a new subscription, not at every reconnection.
        const options = { qos: 1 as const, ...(v5 ? { rh: 1 } : {}) }
        const share = this.options.share ? `$share/${this.options.share}/` : ""
        return this.client!.subscribeAsync({
            [`${share}${this.prefix}/+/+/reading`]: options,
            [`${share}${this.prefix}/+/+/replay`]: options,
            [`${share}${this.prefix}/+/status`]: options,
        })
    }

    /**
     * Every message passes here, in the order it came. done() without an error, once its
     * transaction has committed, acknowledges it; with one, it is not, and the connection is
     * dropped so that the broker delivers the message again when the collector is back.
     */
    private gate(topic: string, payload: Buffer, retained: boolean, done: (err?: Error) => void) {
        if (this.broken || this.stopping) return done(new Error("not acknowledged: the connection is being dropped"))
        this.queue.push({ topic, payload, retained }, err => {
            if (!err) {
                this.backoffMs = this.options.retryMs ?? 1000
                return done()
            }
            this.log(`collector: ${topic}: not stored, not acknowledged (${err.message})`)
            this.dropConnection()
            done(err)
        })
    }

    /** After a failed transaction: disconnect, wait, connect again; the broker resends what is unacknowledged. */
    private dropConnection() {
        if (this.broken || this.stopping) return
        this.broken = true
        const wait = this.backoffMs
        this.backoffMs = Math.min(MAX_BACKOFF_MS, this.backoffMs * 2)
        this.log(`collector: reconnecting in ${wait} ms for the broker to deliver it again`)
        const client = this.client!
        client.end(false, {}, () => {
            this.reconnectTimer = setTimeout(() => {
                if (!this.stopping) client.reconnect()
            }, wait)
        })
    }

    async stop() {
        this.stopping = true
        if (this.timer) clearInterval(this.timer)
        if (this.reconnectTimer) clearTimeout(this.reconnectTimer)
        const client = this.client
        if (client) {
            if (this.timer && client.connected)
                await client
                    .publishAsync(this.options.timeTopic ?? "meters/time", Buffer.alloc(0), { qos: 1, retain: true })
                    .catch(() => {})
            await new Promise<void>(resolve => client.end(false, {}, () => resolve()))
        }
        await this.queue?.idle()
        await this.oed?.stop()
        this.live.close()
        if (this.http) {
            this.http.closeAllConnections()
            await new Promise<void>(resolve => this.http!.close(() => resolve()))
        }
        if (this.db && this.options.out) await exportCsv(this.db, this.options.out)
        if (this.db && !this.options.database) await this.db.close()
    }

    /** The Open Energy Dashboard file of `node`/`meter` that stop() writes beside `out`. */
    oedPath(node: string, meter: string) {
        return oedPath(this.options.out ?? "data/readings.csv", node, meter)
    }

    /** Every stored row, in the combined CSV's terms, by node, meter and seq (for a small database). */
    async rows(): Promise<CollectedRow[]> {
        const out: CollectedRow[] = []
        for await (const page of allReadings(this.db))
            for (const r of page)
                out.push({
                    node: r.node,
                    meter: r.meter,
                    seq: r.seq,
                    firstSeq: r.gap ? (r.after_seq ?? 0) + 1 : r.first_seq,
                    boot: r.boot,
                    time: r.time_base,
                    start: r.start_time,
                    end: r.end_time,
                    deltaWh: r.delta,
                    totalWh: r.total,
                    flags: flags(r),
                })
        return out
    }

    /**
     * Per meter: readings and gaps stored, the sum of the deltas, and the change of the meter
     * total from the first reading's start to the last reading's end. They agree unless a gap
     * lies between (energy counted in a lost interval).
     */
    async summary() {
        return summary(this.db)
    }
}

export async function summary(db: Database) {
    const rows = await db.query<{
        node: string
        meter: string
        readings: number
        gaps: number
        sum: number
        first_total: number
        first_delta: number
        last_total: number
    }>(
        `SELECT node, meter, count(*) FILTER (WHERE NOT gap) AS readings, count(*) FILTER (WHERE gap) AS gaps,
                sum(delta) AS sum,
                (array_agg(total ORDER BY seq) FILTER (WHERE NOT gap))[1] AS first_total,
                (array_agg(delta ORDER BY seq) FILTER (WHERE NOT gap))[1] AS first_delta,
                (array_agg(total ORDER BY seq DESC) FILTER (WHERE NOT gap))[1] AS last_total
         FROM readings GROUP BY node, meter HAVING count(*) FILTER (WHERE delta IS NOT NULL) > 0 ORDER BY node, meter`
    )
    const r3 = (x: number) => Math.round(x * 1000) / 1000
    return rows.map(r => ({
        node: r.node,
        meter: r.meter,
        readings: r.readings,
        gaps: r.gaps,
        sumWh: r3(r.sum),
        totalChangeWh: r3(r.last_total - (r.first_total - r.first_delta)),
    }))
}
