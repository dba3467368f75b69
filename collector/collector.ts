// The reference collector: a persistent-session QoS 1 subscriber that turns meternode messages
// into CSV. It deduplicates by (node, meter, seq), understands batches, merged readings, gaps and
// replays, and keeps going across broker restarts. It can also be the nodes' time source: it
// publishes the time, retained, on the time topic, with an empty retained will so that a
// collector that dies leaves no stale time behind.
//
// Files, for `--out readings.csv`:
//   readings.csv                      every reading and gap of every node, one row each, with
//                                     seq, boot, time base and flags (the collector's own record;
//                                     read back at start so a restart deduplicates too)
//   readings.<node>.<meter>.oed.csv   what Open Energy Dashboard imports for one meter: reading
//                                     (Wh), start timestamp, end timestamp, in UTC
import mqtt from "mqtt"
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { basename, dirname, join } from "node:path"

export interface CollectorOptions {
    broker: string
    /** Path of the combined CSV; the per-meter files go next to it. */
    out: string
    prefix?: string
    /** Stable client id: the broker keeps the session (and queues QoS 1 readings) while we are away. */
    clientId?: string
    username?: string
    password?: string
    ca?: Buffer
    timeTopic?: string
    /** Publish the time every this many seconds; 0 = not a time source. */
    timeEveryS?: number
    log?: (line: string) => void
}

/** One row of the combined CSV. */
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
    totalWh: number
    /** Space-separated: gap, estimated, replay, partial (a merged reading partly delivered before). */
    flags: string
}

export const COMBINED_HEADER = "node,meter,seq,first_seq,boot,time,start,end,start_utc,end_utc,delta_wh,total_wh,flags"
export const OED_HEADER = "reading,start_timestamp,end_timestamp"

/** UTC as Open Energy Dashboard reads it: "YYYY-MM-DD HH:mm:ss". */
export function oedTimestamp(ms: number) {
    return new Date(ms).toISOString().slice(0, 19).replace("T", " ")
}

function rowToCsv(r: CollectedRow) {
    const utc = r.time === "utc_ms"
    const cells = [
        r.node,
        r.meter,
        r.seq,
        r.firstSeq,
        r.boot,
        r.time,
        r.start,
        r.end ?? "",
        utc ? new Date(r.start).toISOString() : "",
        utc && r.end !== null ? new Date(r.end).toISOString() : "",
        r.deltaWh ?? "",
        r.totalWh,
        r.flags,
    ]
    return cells.join(",")
}

function rowFromCsv(line: string): CollectedRow | null {
    const c = line.split(",")
    if (c.length !== 13 || c[0] === "node") return null
    const num = (s: string) => (s === "" ? null : Number(s))
    return {
        node: c[0],
        meter: c[1],
        seq: Number(c[2]),
        firstSeq: Number(c[3]),
        boot: Number(c[4]),
        time: c[5],
        start: Number(c[6]),
        end: num(c[7]),
        deltaWh: num(c[10]),
        totalWh: Number(c[11]),
        flags: c[12],
    }
}

/** What the collector knows of one meter: the seqs it has, with the energy each carried. */
interface MeterLedger {
    /** seq -> Wh it carried (a merged reading's energy sits on its last seq, 0 on the others). */
    seqs: Map<number, number>
}

export class Collector {
    readonly rows: CollectedRow[] = []
    duplicates = 0
    /** Status messages per node, newest last. */
    readonly statuses = new Map<string, any[]>()
    private client?: mqtt.MqttClient
    private timer?: NodeJS.Timeout
    private readonly ledgers = new Map<string, MeterLedger>()
    private readonly prefix: string
    private readonly log: (line: string) => void

    constructor(readonly options: CollectorOptions) {
        this.prefix = options.prefix ?? "meters"
        this.log = options.log ?? (line => console.log(line))
    }

    /** The per-meter Open Energy Dashboard file of `node`/`meter`. */
    oedPath(node: string, meter: string) {
        const out = this.options.out
        const stem = basename(out).replace(/\.csv$/, "")
        return join(dirname(out), `${stem}.${node}.${meter}.oed.csv`)
    }

    async start() {
        this.loadExisting()
        const o = this.options
        const timeTopic = o.timeTopic ?? "meters/time"
        const timeEveryS = o.timeEveryS ?? 0
        this.client = mqtt.connect(o.broker, {
            clientId: o.clientId ?? "meternode-collector",
            clean: false,
            reconnectPeriod: 500,
            username: o.username,
            password: o.password,
            ca: o.ca,
            // A collector that vanishes clears the time it published: nodes never read a stale one.
            will: timeEveryS > 0 ? { topic: timeTopic, payload: Buffer.alloc(0), qos: 1, retain: true } : undefined,
        })
        this.client.on("message", (topic, payload, packet) =>
            this.onMessage(topic, payload.toString(), !!packet.retain)
        )
        this.client.on("error", e => this.log(`collector: ${e.message}`))
        this.client.on("reconnect", () => this.log("collector: reconnecting"))
        await new Promise<void>((resolve, reject) => {
            const timeout = setTimeout(() => reject(new Error(`collector: cannot connect to ${o.broker}`)), 15_000)
            this.client!.once("connect", connack => {
                clearTimeout(timeout)
                this.log(`collector: connected to ${o.broker} (session present: ${connack.sessionPresent})`)
                // Subscribing again on a kept session is harmless and covers a broker that lost it.
                this.client!.subscribe(
                    {
                        [`${this.prefix}/+/+/reading`]: { qos: 1 },
                        [`${this.prefix}/+/+/replay`]: { qos: 1 },
                        [`${this.prefix}/+/status`]: { qos: 1 },
                    },
                    err => (err ? reject(err) : resolve())
                )
            })
        })
        if (timeEveryS > 0) {
            const publishTime = () => {
                if (this.client?.connected)
                    this.client.publish(timeTopic, JSON.stringify({ utc_ms: Date.now() }), { qos: 0, retain: true })
            }
            publishTime()
            this.client.on("connect", publishTime)
            this.timer = setInterval(publishTime, timeEveryS * 1000)
        }
        return this
    }

    async stop() {
        if (this.timer) clearInterval(this.timer)
        const client = this.client
        if (!client) return
        if (this.timer && client.connected)
            await client
                .publishAsync(this.options.timeTopic ?? "meters/time", Buffer.alloc(0), { qos: 1, retain: true })
                .catch(() => {})
        await new Promise<void>(resolve => client.end(false, {}, () => resolve()))
    }

    /** Rows of earlier runs: what was collected before is not written twice. */
    private loadExisting() {
        const out = this.options.out
        mkdirSync(dirname(out), { recursive: true })
        if (!existsSync(out)) {
            writeFileSync(out, COMBINED_HEADER + "\n")
            return
        }
        for (const line of readFileSync(out, "utf-8").split("\n")) {
            const row = line ? rowFromCsv(line) : null
            if (!row) continue
            this.rows.push(row)
            if (!row.flags.includes("gap")) this.remember(row.node, row.meter, row.firstSeq, row.seq, row.deltaWh ?? 0)
            else this.remember(row.node, row.meter, row.seq, row.seq, 0)
        }
        if (this.rows.length) this.log(`collector: ${this.rows.length} rows already in ${out}`)
    }

    private ledger(node: string, meter: string) {
        const key = `${node}/${meter}`
        let l = this.ledgers.get(key)
        if (!l) {
            l = { seqs: new Map() }
            this.ledgers.set(key, l)
        }
        return l
    }

    private remember(node: string, meter: string, firstSeq: number, seq: number, deltaWh: number) {
        const l = this.ledger(node, meter)
        for (let s = firstSeq; s < seq; s++) l.seqs.set(s, 0)
        l.seqs.set(seq, deltaWh)
    }

    private onMessage(topic: string, text: string, retained: boolean) {
        const levels = topic.split("/")
        if (levels.length === 3 && levels[2] === "status") {
            let status: any
            try {
                status = JSON.parse(text)
            } catch {
                this.log(`collector: ${topic}: status is not JSON`)
                return
            }
            const list = this.statuses.get(levels[1]) ?? []
            list.push({ ...status, retained, atMs: Date.now() })
            this.statuses.set(levels[1], list)
            return
        }
        // Replayed history comes on its own topic; a reading the collector already has is a duplicate.
        if (levels.length !== 4 || levels[2] === "cmd" || levels[2] === "reply") return
        if (levels[3] !== "reading" && levels[3] !== "replay") return
        const node = levels[1]
        let body: any
        try {
            body = JSON.parse(text)
        } catch {
            this.log(`collector: ${topic}: reading message is not JSON, ignored`)
            return
        }
        if (!body || !Array.isArray(body.readings) || typeof body.meter !== "string") {
            this.log(`collector: ${topic}: not a reading batch, ignored`)
            return
        }
        const fresh: CollectedRow[] = []
        for (const e of body.readings) {
            const row = this.admit(node, body, e)
            if (row) fresh.push(row)
        }
        if (!fresh.length) return
        appendFileSync(this.options.out, fresh.map(rowToCsv).join("\n") + "\n")
        for (const r of fresh) {
            if (r.flags.includes("gap") || r.time !== "utc_ms" || r.end === null) continue
            const path = this.oedPath(r.node, r.meter)
            if (!existsSync(path)) writeFileSync(path, OED_HEADER + "\n")
            appendFileSync(path, `${r.deltaWh},${oedTimestamp(r.start)},${oedTimestamp(r.end)}\n`)
        }
    }

    /** The row for one element, or null for a duplicate (or something unreadable, logged). */
    /** Meters whose readings are levels, named once in the log. */
    private skippedLevels = new Set<string>()

    private admit(node: string, body: any, e: any): CollectedRow | null {
        const meter: string = body.meter
        if (typeof e?.seq !== "number" || typeof e.boot !== "number" || typeof e.start !== "number") {
            this.log(`collector: ${node}/${meter}: element without seq, boot or start, ignored`)
            return null
        }
        // Levels (a temperature's min/mean/max) are not billing data: the files hold amounts.
        if (typeof e.delta !== "number" && !e.gap) {
            if (!this.skippedLevels.has(node + "/" + meter))
                this.log(`collector: ${node}/${meter}: a level (${body.quantity}), not an amount: not collected`)
            this.skippedLevels.add(node + "/" + meter)
            return null
        }
        const l = this.ledger(node, meter)
        const flags: string[] = []
        if (e.replay || body.replay) flags.push("replay")
        if (e.gap) {
            if (l.seqs.has(e.seq)) return this.duplicate()
            this.remember(node, meter, e.seq, e.seq, 0)
            return this.keep({
                node,
                meter,
                seq: e.seq,
                firstSeq: e.after_seq + 1,
                boot: e.boot,
                time: body.time,
                start: e.start,
                end: null,
                deltaWh: null,
                totalWh: e.total,
                flags: "gap",
            })
        }
        const firstSeq = typeof e.first_seq === "number" ? e.first_seq : e.seq
        // A merged reading may cover seqs delivered before (sent, then merged after a power cut
        // before the acknowledgement reached flash): only the energy not yet counted is new.
        let seenWh = 0
        let seen = 0
        for (let s = firstSeq; s <= e.seq; s++)
            if (l.seqs.has(s)) {
                seen++
                seenWh += l.seqs.get(s)!
            }
        const count = e.seq - firstSeq + 1
        if (seen === count) return this.duplicate()
        let delta: number = e.delta
        if (seen) {
            delta = Math.round((e.delta - seenWh) * 1000) / 1000
            flags.push("partial")
        }
        if (e.estimated) flags.push("estimated")
        this.remember(node, meter, firstSeq, e.seq, delta)
        return this.keep({
            node,
            meter,
            seq: e.seq,
            firstSeq,
            boot: e.boot,
            time: body.time,
            start: e.start,
            end: e.end,
            deltaWh: delta,
            totalWh: e.total,
            flags: flags.join(" "),
        })
    }

    private duplicate(): null {
        this.duplicates++
        return null
    }

    private keep(row: CollectedRow) {
        this.rows.push(row)
        return row
    }

    /**
     * Per meter: readings and gaps collected, the sum of the deltas, and the change of the meter
     * total from the first reading's start to the last reading's end. They agree unless a gap
     * lies between (energy counted in a lost interval).
     */
    summary() {
        const out: {
            node: string
            meter: string
            readings: number
            gaps: number
            sumWh: number
            totalChangeWh: number
        }[] = []
        const keys = new Set(this.rows.map(r => `${r.node}/${r.meter}`))
        for (const key of keys) {
            const [node, meter] = key.split("/")
            const rows = this.rows.filter(r => r.node === node && r.meter === meter).sort((a, b) => a.seq - b.seq)
            const readings = rows.filter(r => !r.flags.includes("gap"))
            if (!readings.length) continue
            const sumWh = readings.reduce((s, r) => s + (r.deltaWh ?? 0), 0)
            const first = readings[0]
            const last = readings[readings.length - 1]
            out.push({
                node,
                meter,
                readings: readings.length,
                gaps: rows.length - readings.length,
                sumWh: Math.round(sumWh * 1000) / 1000,
                totalChangeWh: Math.round((last.totalWh - (first.totalWh - (first.deltaWh ?? 0))) * 1000) / 1000,
            })
        }
        return out
    }
}
