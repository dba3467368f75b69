// What the fleet page learns without asking again: each status and each meter's newest reading,
// as the collector commits them, pushed to the browsers over server-sent events (GET /api/events).
//
// The collector keeps the fleet (each node's last status, each meter's newest reading) in memory:
// read from the database at start, then moved on by every message it commits, and, while a
// browser watches, read again every RELOAD_MS for what it did not see itself (another collector of
// a --share group, rows inserted by hand). A browser that connects gets it as its first event, at
// once (a thousand nodes took PGlite a few hundred ms to read), then the changes.
// Changes are gathered for FLUSH_MS and go out as one `update`: under a backlog of thousands of
// messages a second, a browser gets a few events a second, each node and meter once, its newest.
import type { IncomingMessage, ServerResponse } from "node:http"
import type { Parsed } from "./payload"

/** How long changes are gathered before they go out: well inside the page's 2 s promise. */
export const FLUSH_MS = 200
/** How often the fleet is read from the database again. */
export const RELOAD_MS = 60_000
/** A comment line every so often keeps proxies from closing an idle stream and finds dead clients. */
const KEEPALIVE_MS = 15_000
/** A browser that reads slower than this much piles up: it is cut off, reconnects and starts again. */
const MAX_BUFFERED_BYTES = 1 << 20

export interface FleetMeter {
    meter: string
    quantity: string
    unit: string
    /** The newest reading (gaps aside): its seq, time base, end (in that base) and arrival. */
    last_seq: number | null
    time: "utc_ms" | "uptime_s" | null
    end: number | null
    received_at: string | null
}

export interface FleetNode {
    node: string
    status: Record<string, unknown> | null
    /** When the status last changed (the same status again does not move it), ISO 8601. */
    status_at: string | null
    meters: FleetMeter[]
}

export interface StatusEvent {
    node: string
    status: Record<string, unknown>
    /** When it last changed, Unix ms. */
    at: number
}

export interface ReadingEvent extends FleetMeter {
    node: string
    /** The newest element stored is a gap (its start in `end`). */
    gap: boolean
}

export class LiveEvents {
    private readonly clients = new Set<ServerResponse>()
    private fleet = new Map<string, FleetNode>()
    private loaded?: Promise<void>
    private load?: () => Promise<FleetNode[]>
    /** Messages committed while the fleet is being read: applied on top of what was read. */
    private duringLoad?: Parsed[]
    private statuses = new Map<string, StatusEvent>()
    private readings = new Map<string, ReadingEvent>()
    private flushTimer?: NodeJS.Timeout
    private keepaliveTimer?: NodeJS.Timeout
    private reloadTimer?: NodeJS.Timeout
    /** Updates sent since start (for /api/stats). */
    sent = 0
    /** More fields of the first event (whether the page may send commands). */
    about: Record<string, unknown> = {}

    get listeners() {
        return this.clients.size
    }

    /** Reads the fleet with `load` now and every RELOAD_MS; resolves once it has been read. */
    track(load: () => Promise<FleetNode[]>, log: (line: string) => void) {
        this.load = load
        this.reloadTimer = setInterval(() => {
            if (this.clients.size)
                this.reload().catch(e => log(`collector: fleet page: reading the fleet: ${(e as Error).message}`))
        }, RELOAD_MS)
        this.reloadTimer.unref()
        return this.reload()
    }

    private reload() {
        const load = this.load!
        const run = (async () => {
            this.duringLoad = []
            try {
                const nodes = await load()
                const fleet = new Map(nodes.map(n => [n.node, n]))
                const during = this.duringLoad
                this.duringLoad = undefined
                this.fleet = fleet
                for (const parsed of during) this.apply(parsed, Date.now())
            } finally {
                this.duringLoad = undefined
            }
        })()
        this.loaded ??= run
        return run
    }

    /** The fleet, by node id: what a browser starts from. */
    async snapshot(): Promise<FleetNode[]> {
        await this.loaded?.catch(() => {})
        return [...this.fleet.values()].sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0))
    }

    /** Called with each message once its transaction has committed; nothing to do without a page. */
    stored(parsed: Parsed, now = Date.now()) {
        if (!this.load) return
        this.duringLoad?.push(parsed)
        this.apply(parsed, now)
    }

    private node(id: string) {
        let n = this.fleet.get(id)
        if (!n) this.fleet.set(id, (n = { node: id, status: null, status_at: null, meters: [] }))
        return n
    }

    private apply(parsed: Parsed, now: number) {
        if (parsed.kind === "status") {
            const n = this.node(parsed.node)
            // As the database does: the same status again keeps its time.
            if (JSON.stringify(n.status) !== JSON.stringify(parsed.status)) {
                n.status = parsed.status
                n.status_at = new Date(now).toISOString()
            }
            if (this.clients.size)
                this.statuses.set(parsed.node, {
                    node: parsed.node,
                    status: parsed.status,
                    at: Date.parse(n.status_at!),
                })
        } else if (parsed.kind === "readings" && parsed.elements.length) {
            const n = this.node(parsed.node)
            let m = n.meters.find(x => x.meter === parsed.meter)
            if (!m) {
                n.meters.push(
                    (m = {
                        meter: parsed.meter,
                        quantity: parsed.quantity,
                        unit: parsed.unit,
                        last_seq: null,
                        time: null,
                        end: null,
                        received_at: null,
                    })
                )
                n.meters.sort((a, b) => (a.meter < b.meter ? -1 : 1))
            }
            const readings = parsed.elements.filter(e => !e.gap)
            const newest = readings.reduce<(typeof readings)[number] | undefined>(
                (a, b) => (!a || b.seq > a.seq ? b : a),
                undefined
            )
            // A backlog or a replay may bring older readings after newer ones: the newest stays.
            if (newest && (m.last_seq === null || newest.seq > m.last_seq)) {
                m.last_seq = newest.seq
                m.time = parsed.time
                m.end = newest.end
                m.received_at = new Date(now).toISOString()
            }
            if (this.clients.size) {
                const gap = parsed.elements.find(e => e.gap && (m.last_seq === null || e.seq > m.last_seq))
                this.readings.set(`${parsed.node}/${parsed.meter}`, {
                    node: parsed.node,
                    ...m,
                    gap: !!gap,
                })
            }
        } else return
        if (this.clients.size) this.flushTimer ??= setTimeout(() => this.flush(), FLUSH_MS)
    }

    private flush() {
        this.flushTimer = undefined
        if (!this.statuses.size && !this.readings.size) return
        const data = JSON.stringify({ statuses: [...this.statuses.values()], readings: [...this.readings.values()] })
        this.statuses = new Map()
        this.readings = new Map()
        this.sent++
        this.broadcast(`event: update\ndata: ${data}\n\n`)
    }

    private broadcast(text: string) {
        for (const res of this.clients) {
            if (res.writableLength > MAX_BUFFERED_BYTES) {
                res.destroy()
                continue
            }
            res.write(text)
        }
    }

    /**
     * GET /api/events: the fleet first (the `fleet` event), then its changes (`update`), until
     * the browser or the collector closes the stream. Both come from memory in one turn of the
     * event loop, so no change falls between the snapshot and the stream.
     */
    async serve(req: IncomingMessage, res: ServerResponse) {
        const nodes = await this.snapshot()
        if (req.destroyed || res.destroyed) return
        res.writeHead(200, {
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-store",
            connection: "keep-alive",
        })
        // `retry`: how soon the browser's EventSource connects again after the stream broke.
        res.write(
            `retry: 1000\nevent: fleet\ndata: ${JSON.stringify({ ...this.about, flush_ms: FLUSH_MS, nodes })}\n\n`
        )
        this.clients.add(res)
        this.keepaliveTimer ??= setInterval(() => this.broadcast(": keepalive\n\n"), KEEPALIVE_MS)
        this.keepaliveTimer.unref()
        const gone = () => {
            this.clients.delete(res)
            if (!this.clients.size && this.keepaliveTimer) {
                clearInterval(this.keepaliveTimer)
                this.keepaliveTimer = undefined
            }
        }
        req.on("close", gone)
        res.on("close", gone)
    }

    close() {
        if (this.flushTimer) clearTimeout(this.flushTimer)
        if (this.keepaliveTimer) clearInterval(this.keepaliveTimer)
        if (this.reloadTimer) clearInterval(this.reloadTimer)
        for (const res of this.clients) res.end()
        this.clients.clear()
    }
}
