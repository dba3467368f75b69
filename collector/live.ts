// What the fleet page learns without asking again: each status and each meter's newest reading,
// as the collector commits them, pushed to the browsers over server-sent events (GET /api/events).
// Events are gathered for FLUSH_MS and go out as one `update`: under a backlog of thousands of
// messages a second, a browser gets a few events a second, each node and meter once, its newest.
import type { IncomingMessage, ServerResponse } from "node:http"
import type { Parsed } from "./payload"

/** How long events are gathered before they go out: well inside the page's 2 s promise. */
export const FLUSH_MS = 200
/** A comment line every so often keeps proxies from closing an idle stream and finds dead clients. */
const KEEPALIVE_MS = 15_000
/** A browser that reads slower than this much piles up: it is cut off, reconnects and reloads the fleet. */
const MAX_BUFFERED_BYTES = 1 << 20

export interface StatusEvent {
    node: string
    status: Record<string, unknown>
    /** When the collector stored it, Unix ms. */
    at: number
}

export interface ReadingEvent {
    node: string
    meter: string
    quantity: string
    unit: string
    /** The newest element of what was stored (the highest seq). */
    seq: number
    time: "utc_ms" | "uptime_s"
    /** Its end (a gap's start), in `time`'s terms. */
    end: number
    gap: boolean
    /** Elements of this meter stored since the last update. */
    count: number
    at: number
}

export class LiveEvents {
    private readonly clients = new Set<ServerResponse>()
    private statuses = new Map<string, StatusEvent>()
    private readings = new Map<string, ReadingEvent>()
    private flushTimer?: NodeJS.Timeout
    private keepaliveTimer?: NodeJS.Timeout
    /** Updates sent since start (for /api/stats and the tests). */
    sent = 0

    get listeners() {
        return this.clients.size
    }

    /** Called with each message once its transaction has committed. */
    stored(parsed: Parsed, now = Date.now()) {
        if (!this.clients.size) return
        if (parsed.kind === "status") {
            this.statuses.set(parsed.node, { node: parsed.node, status: parsed.status, at: now })
        } else if (parsed.kind === "readings" && parsed.elements.length) {
            const key = `${parsed.node}/${parsed.meter}`
            const newest = parsed.elements.reduce((a, b) => (b.seq > a.seq ? b : a))
            const before = this.readings.get(key)
            if (before && before.seq > newest.seq) before.count += parsed.elements.length
            else
                this.readings.set(key, {
                    node: parsed.node,
                    meter: parsed.meter,
                    quantity: parsed.quantity,
                    unit: parsed.unit,
                    seq: newest.seq,
                    time: parsed.time,
                    end: newest.end ?? newest.start,
                    gap: newest.gap,
                    count: (before?.count ?? 0) + parsed.elements.length,
                    at: now,
                })
        } else return
        this.flushTimer ??= setTimeout(() => this.flush(), FLUSH_MS)
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

    /** GET /api/events: the stream stays open until the browser or the collector closes it. */
    serve(req: IncomingMessage, res: ServerResponse) {
        res.writeHead(200, {
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-store",
            connection: "keep-alive",
        })
        // `retry`: how soon the browser's EventSource connects again after the stream broke.
        res.write(`retry: 1000\nevent: hello\ndata: {"flush_ms":${FLUSH_MS}}\n\n`)
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
        for (const res of this.clients) res.end()
        this.clients.clear()
    }
}
