// The fleet page and what only it needs, beside the read-only API of http.ts:
//   GET /                      the page (collector/web/, served from disk: no build step)
//   GET /web/*, /vendor/*      its script and style, and uPlot from node_modules
//   GET /api/fleet             each node's status and each meter's newest reading, as the collector keeps them
//   GET /api/events            server-sent events: the fleet as /api/fleet tells it, then statuses and newest
//                              readings as they are committed (live.ts)
//   GET /api/completeness      per meter, hour by hour: readings at full resolution, merged, a gap, nothing
//   POST /api/command          restart or time, to one node: only with the operator token, every one logged
import type { IncomingMessage, ServerResponse } from "node:http"
import { createRequire } from "node:module"
import { readFile } from "node:fs/promises"
import { timingSafeEqual } from "node:crypto"
import { join } from "node:path"
import type { Database } from "./db"
import type { FleetNode, LiveEvents } from "./live"

const WEB_DIR = join(import.meta.dirname, "web")
const require = createRequire(import.meta.url)

/** Every file the page may load, by path: nothing else on disk is reachable. */
const FILES: Record<string, { file: string; type: string }> = {
    "/": { file: join(WEB_DIR, "index.html"), type: "text/html; charset=utf-8" },
    "/web/app.js": { file: join(WEB_DIR, "app.js"), type: "text/javascript; charset=utf-8" },
    "/web/style.css": { file: join(WEB_DIR, "style.css"), type: "text/css; charset=utf-8" },
    "/vendor/uplot.js": {
        file: require.resolve("uplot/dist/uPlot.iife.min.js"),
        type: "text/javascript; charset=utf-8",
    },
    "/vendor/uplot.css": { file: require.resolve("uplot/dist/uPlot.min.css"), type: "text/css; charset=utf-8" },
}

/** The page's own files only; no inline script, no other origin (a stored node id is never code). */
const CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'"

export const HOUR_MS = 3_600_000
export const MAX_DAYS = 31
/** Commands the page may send: the others (shutdown, replay) are not for a browser. */
export const PAGE_COMMANDS = ["restart", "time"] as const

const NODE_ID = /^[^/+#\s]{1,64}$/
const METER_ID = /^[A-Za-z0-9_-]{1,32}$/

export type HourState = "full" | "merged" | "gap" | "none"

export interface HourCompleteness {
    /** The hour's start, Unix ms (UTC hours). */
    start: number
    state: HourState
    /** Milliseconds of the hour covered by readings at full resolution, and by merged readings. */
    full_ms: number
    merged_ms: number
    /** Gap elements that start in the hour: readings after their after_seq may be missing. */
    gaps: number
}

/**
 * One meter's last `days` UTC hours, up to the current one. Each reading counts in the hours it
 * overlaps, so the work is per reading in the range, in one query through readings_utc_start.
 * A gap outranks merged, merged outranks full: the strip shows the worst of an hour.
 */
export async function completeness(db: Database, node: string, meter: string, days: number, nowMs = Date.now()) {
    const [m] = await db.query<{ max_span_ms: number }>(
        "SELECT max_span_ms FROM meters WHERE node = $1 AND meter = $2",
        [node, meter]
    )
    if (!m) return undefined
    const to = Math.ceil((nowMs + 1) / HOUR_MS) * HOUR_MS
    const from = to - days * 24 * HOUR_MS
    const rows = await db.query<{ hour: number; full_ms: number; merged_ms: number; gaps: number }>(
        `WITH r AS (
             SELECT start_time, coalesce(end_time, start_time + 1) AS end_time, gap, first_seq < seq AS merged
             FROM readings
             WHERE node = $1 AND meter = $2 AND time_base = 'utc_ms' AND start_time >= $3::bigint AND start_time < $5::bigint
               AND (end_time > $4::bigint OR (gap AND start_time >= $4::bigint)))
         SELECT h AS hour,
             coalesce(sum(least(end_time, (h + 1) * ${HOUR_MS}) - greatest(start_time, h * ${HOUR_MS}))
                 FILTER (WHERE NOT gap AND NOT merged), 0)::bigint AS full_ms,
             coalesce(sum(least(end_time, (h + 1) * ${HOUR_MS}) - greatest(start_time, h * ${HOUR_MS}))
                 FILTER (WHERE NOT gap AND merged), 0)::bigint AS merged_ms,
             (count(*) FILTER (WHERE gap))::bigint AS gaps
         FROM r CROSS JOIN LATERAL generate_series(greatest(start_time, $4::bigint) / ${HOUR_MS},
                                                   (least(end_time, $5::bigint) - 1) / ${HOUR_MS}) AS h
         GROUP BY h ORDER BY h`,
        [node, meter, Math.max(0, from - m.max_span_ms), from, to]
    )
    const byHour = new Map(rows.map(r => [r.hour * HOUR_MS, r]))
    const hours: HourCompleteness[] = []
    for (let start = from; start < to; start += HOUR_MS) {
        const r = byHour.get(start)
        const full_ms = Math.min(HOUR_MS, r?.full_ms ?? 0)
        const merged_ms = Math.min(HOUR_MS, r?.merged_ms ?? 0)
        const gaps = r?.gaps ?? 0
        const state: HourState = gaps ? "gap" : merged_ms ? "merged" : full_ms ? "full" : "none"
        hours.push({ start, state, full_ms, merged_ms, gaps })
    }
    return { node, meter, from, to, hour_ms: HOUR_MS, hours }
}

/**
 * What the fleet table shows, in one query: each node's last status and, per meter, its newest
 * reading (through the key, one row per meter). /api/nodes tells more (counts, gaps, holes), at
 * several times the cost and size for a thousand nodes. The collector reads it at start and keeps
 * it in memory (live.ts).
 */
export async function fleet(db: Database): Promise<FleetNode[]> {
    const rows = await db.query<FleetNode & { status_at: Date | string | null }>(
        `SELECT n.node, n.status, n.status_at, coalesce((
             SELECT json_agg(json_build_object('meter', m.meter, 'quantity', m.quantity, 'unit', m.unit,
                        'last_seq', l.seq, 'time', l.time_base, 'end', l.end_time, 'received_at', l.received_at)
                        ORDER BY m.meter)
             FROM meters m LEFT JOIN LATERAL (
                 SELECT seq, time_base, end_time, received_at FROM readings r
                 WHERE r.node = m.node AND r.meter = m.meter AND NOT gap ORDER BY seq DESC LIMIT 1) l ON true
             WHERE m.node = n.node), '[]') AS meters
         FROM nodes n ORDER BY n.node`
    )
    return rows.map(r => ({
        ...r,
        status_at: r.status_at === null ? null : new Date(r.status_at).toISOString(),
        meters: r.meters.map(m => ({
            ...m,
            received_at: m.received_at === null ? null : new Date(m.received_at).toISOString(),
        })),
    }))
}

export interface PageOptions {
    db: Database
    live: LiveEvents
    /** The operator token: without it the page is read-only and POST /api/command answers 403. */
    operatorToken?: string
    /** Publishes a command to a node; resolves once the broker has it (PUBACK). */
    command?: (node: string, name: string, payload: Record<string, unknown>) => Promise<void>
    log: (line: string) => void
}

function sendJson(res: ServerResponse, status: number, body: unknown) {
    res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" })
    res.end(JSON.stringify(body) + "\n")
}

async function readBody(req: IncomingMessage, limit: number) {
    let text = ""
    for await (const chunk of req) {
        text += chunk
        if (text.length > limit) throw new Error("body too large")
    }
    return text
}

function tokenMatches(given: string, expected: string) {
    const a = Buffer.from(given)
    const b = Buffer.from(expected)
    return a.length === b.length && timingSafeEqual(a, b)
}

let commandsSent = 0

/**
 * The routes of the page; resolves true when it answered the request, false to leave it to the
 * API (http.ts).
 */
export function pageRoutes(options: PageOptions) {
    // The page learns from the event stream's first event whether to offer commands.
    options.live.about = { commands: options.operatorToken && options.command ? PAGE_COMMANDS : [] }
    options.live
        .track(() => fleet(options.db), options.log)
        .catch(e => options.log(`collector: fleet page: reading the fleet: ${(e as Error).message}`))
    return async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> => {
        const path = url.pathname
        try {
            if (path === "/api/command") {
                await command(req, res, options)
                return true
            }
            if (req.method !== "GET") return false
            const file = FILES[path]
            if (file) {
                const body = await readFile(file.file)
                res.writeHead(200, {
                    "content-type": file.type,
                    "cache-control": "no-cache",
                    "content-security-policy": CSP,
                    "x-content-type-options": "nosniff",
                })
                res.end(body)
                return true
            }
            if (path === "/api/events") {
                await options.live.serve(req, res)
                return true
            }
            if (path === "/api/fleet") {
                sendJson(res, 200, { nodes: await options.live.snapshot() })
                return true
            }
            if (path === "/api/completeness") {
                const p = url.searchParams
                const node = p.get("node") ?? ""
                const meter = p.get("meter") ?? ""
                const days = Number(p.get("days") ?? 7)
                if (!NODE_ID.test(node)) sendJson(res, 400, { error: "node: a node id is needed" })
                else if (!METER_ID.test(meter)) sendJson(res, 400, { error: "meter: a meter id is needed" })
                else if (!(Number.isInteger(days) && days >= 1 && days <= MAX_DAYS))
                    sendJson(res, 400, { error: `days: a whole number of days, 1 to ${MAX_DAYS}` })
                else {
                    const c = await completeness(options.db, node, meter, days)
                    if (c) sendJson(res, 200, c)
                    else sendJson(res, 404, { error: `no meter ${node}/${meter}` })
                }
                return true
            }
            return false
        } catch (e) {
            options.log(`collector: http ${path}: ${(e as Error).message}`)
            if (res.headersSent) res.destroy()
            else sendJson(res, 500, { error: "server error" })
            return true
        }
    }
}

async function command(req: IncomingMessage, res: ServerResponse, o: PageOptions) {
    if (req.method !== "POST") return sendJson(res, 405, { error: "POST a command" })
    if (!o.operatorToken || !o.command)
        return sendJson(res, 403, { error: "commands are off: the collector was started without an operator token" })
    const auth = req.headers.authorization ?? ""
    const from = req.socket.remoteAddress
    if (!auth.startsWith("Bearer ") || !tokenMatches(auth.slice(7), o.operatorToken)) {
        o.log(`collector: command refused from ${from}: wrong or no operator token`)
        return sendJson(res, 401, { error: "operator token wrong or missing" })
    }
    let body: { node?: unknown; command?: unknown }
    try {
        body = JSON.parse(await readBody(req, 1024))
    } catch {
        return sendJson(res, 400, { error: 'the body is {"node": ..., "command": ...}' })
    }
    const node = String(body.node ?? "")
    const name = String(body.command ?? "")
    if (!NODE_ID.test(node)) return sendJson(res, 400, { error: "node: not a node id" })
    if (!(PAGE_COMMANDS as readonly string[]).includes(name))
        return sendJson(res, 400, { error: `command: one of ${PAGE_COMMANDS.join(", ")}` })
    const id = `page-${Date.now()}-${++commandsSent}`
    // `time` sets the node's clock from the collector's: the one the readings are judged by.
    const payload: Record<string, unknown> = name === "time" ? { id, utc_ms: Date.now() } : { id }
    o.log(`collector: command ${name} to ${node} (id ${id}) from ${from}`)
    try {
        await o.command(node, name, payload)
    } catch (e) {
        o.log(`collector: command ${name} to ${node} (id ${id}) not sent: ${(e as Error).message}`)
        return sendJson(res, 503, { error: `not sent: ${(e as Error).message}` })
    }
    sendJson(res, 202, { id, node, command: name, sent: true })
}
