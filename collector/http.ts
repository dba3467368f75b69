// The collector's HTTP API, read-only:
//   GET /api/readings?node=&meter=&from=&to=&format=json|csv|oed   every stored UTC reading that
//       overlaps [from, to), streamed page by page as the database returns them
//   GET /api/nodes    each node: last status, meters, last reading and its age, gaps
//   GET /api/stats    the collector's counters since it started
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import { once } from "node:events"
import type { Database } from "./db"
import { COMBINED_HEADER, csvRow, jsonRow, OED_HEADER } from "./format"
import { FAR_FUTURE_MS, nodesSummary, oedLinesInRange, PAGE_ROWS, readingsInRange, type Range } from "./query"

export interface HttpOptions {
    port: number
    host?: string
    /** The counters /api/stats shows. */
    stats?: () => object
    log?: (line: string) => void
    /** More routes (the fleet page, page.ts), tried first: true when they answered the request. */
    routes?: (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<boolean>
}

class BadRequest extends Error {}

const NODE_ID = /^[^/+#\s]{1,64}$/
const METER_ID = /^[A-Za-z0-9_-]{1,32}$/
const FORMATS = ["json", "csv", "oed"] as const
type Format = (typeof FORMATS)[number]

/** Unix ms, or an ISO 8601 date or date-time (UTC when it names no zone). */
export function parseTime(name: string, value: string): number {
    let ms: number
    if (/^-?\d{1,16}$/.test(value)) ms = Number(value)
    else if (/^\d{4}-\d{2}-\d{2}$/.test(value)) ms = Date.parse(value + "T00:00:00Z")
    else if (/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})?$/.test(value))
        ms = Date.parse(value.replace(" ", "T") + (/(Z|[+-]\d{2}:\d{2})$/.test(value) ? "" : "Z"))
    else throw new BadRequest(`${name}: neither Unix milliseconds nor an ISO 8601 time: ${JSON.stringify(value)}`)
    if (!Number.isFinite(ms) || ms < 0 || ms > FAR_FUTURE_MS)
        throw new BadRequest(`${name}: not a valid time: ${value}`)
    return ms
}

/** The query of /api/readings, checked: a 400 names what is wrong. */
export function readingsQuery(params: URLSearchParams): Range & { format: Format } {
    const known = ["node", "meter", "from", "to", "format"]
    const seen = new Set<string>()
    for (const key of params.keys()) {
        if (!known.includes(key)) throw new BadRequest(`unknown parameter ${key} (known: ${known.join(", ")})`)
        if (seen.has(key)) throw new BadRequest(`${key} given twice`)
        seen.add(key)
    }
    const node = params.get("node") ?? undefined
    const meter = params.get("meter") ?? undefined
    if (node !== undefined && !NODE_ID.test(node)) throw new BadRequest(`node: not a node id: ${JSON.stringify(node)}`)
    if (meter !== undefined && !METER_ID.test(meter))
        throw new BadRequest(`meter: not a meter id: ${JSON.stringify(meter)}`)
    const format = (params.get("format") ?? "json") as Format
    if (!FORMATS.includes(format)) throw new BadRequest(`format: one of ${FORMATS.join(", ")}, not ${format}`)
    if (format === "oed" && (!node || !meter))
        throw new BadRequest("format=oed is one meter's file: give node and meter")
    const from = params.has("from") ? parseTime("from", params.get("from")!) : 0
    const to = params.has("to") ? parseTime("to", params.get("to")!) : FAR_FUTURE_MS
    if (from >= to) throw new BadRequest("from must be before to")
    return { node, meter, from, to, format }
}

/** Writes, then waits while the client is slower than the database (or until it hangs up). */
async function write(res: ServerResponse, chunk: string) {
    if (res.write(chunk)) return
    await new Promise<void>(resolve => {
        const go = () => {
            res.off("drain", go)
            res.off("close", go)
            resolve()
        }
        res.on("drain", go)
        res.on("close", go)
    })
}

async function sendReadings(db: Database, res: ServerResponse, q: Range & { format: Format }) {
    const types = { json: "application/json", csv: "text/csv; charset=utf-8", oed: "text/csv; charset=utf-8" }
    const headers: Record<string, string> = { "content-type": types[q.format], "cache-control": "no-store" }
    if (q.format === "oed") headers["content-disposition"] = `attachment; filename="${q.node}.${q.meter}.oed.csv"`
    res.writeHead(200, headers)
    let count = 0
    if (q.format === "json")
        await write(
            res,
            `{"from":${JSON.stringify(new Date(q.from).toISOString())},"to":${JSON.stringify(new Date(q.to).toISOString())},"readings":[`
        )
    else await write(res, (q.format === "csv" ? COMBINED_HEADER : OED_HEADER) + "\n")
    if (q.format === "oed") {
        // Written by the database, a page of text at a time (query.ts).
        for await (const text of oedLinesInRange(db, { ...q, node: q.node!, meter: q.meter! })) {
            if (res.destroyed) return
            await write(res, text)
        }
        res.end()
        return
    }
    for await (const page of readingsInRange(db, q, PAGE_ROWS)) {
        if (res.destroyed) return
        let text = ""
        for (const r of page) {
            text += q.format === "json" ? (count ? ",\n" : "\n") + jsonRow(r) : csvRow(r) + "\n"
            count++
        }
        await write(res, text)
    }
    // The count closes the JSON: a response cut short is not valid JSON.
    if (q.format === "json") await write(res, `\n],"count":${count}}\n`)
    res.end()
}

function sendJson(res: ServerResponse, status: number, body: unknown) {
    const text = JSON.stringify(body, null, 1) + "\n"
    res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" })
    res.end(text)
}

const LOOPBACK_NAMES = new Set(["127.0.0.1", "localhost", "[::1]"])

/**
 * Whether a request's Host may be answered. On a loopback address only loopback names: a page on
 * another site whose name an attacker points at 127.0.0.1 (DNS rebinding) would otherwise read the
 * API and post commands as if it were the collector's own page. On another address, any name: the
 * operator chose to serve the network, under whatever names it has.
 */
export function hostAllowed(boundHost: string, hostHeader: string | undefined) {
    const loopback = LOOPBACK_NAMES.has(boundHost) || boundHost === "::1" || boundHost.startsWith("127.")
    if (!loopback) return true
    if (!hostHeader) return false
    const name = hostHeader.replace(/:\d+$/, "").toLowerCase()
    return LOOPBACK_NAMES.has(name) || name === boundHost
}

export async function startHttp(db: Database, options: HttpOptions): Promise<Server> {
    const log = options.log ?? (line => console.log(line))
    const boundHost = options.host ?? "127.0.0.1"
    const handle = async (req: IncomingMessage, res: ServerResponse) => {
        if (!hostAllowed(boundHost, req.headers.host))
            return sendJson(res, 421, {
                error: `Host ${JSON.stringify(req.headers.host ?? "")}: on ${boundHost} this collector answers to 127.0.0.1, localhost and [::1] only`,
            })
        const url = new URL(req.url ?? "/", "http://collector")
        if (options.routes && (await options.routes(req, res, url))) return
        if (req.method !== "GET") return sendJson(res, 405, { error: "only GET" })
        try {
            if (url.pathname === "/api/readings") return await sendReadings(db, res, readingsQuery(url.searchParams))
            if (url.pathname === "/api/nodes") return sendJson(res, 200, { nodes: await nodesSummary(db) })
            if (url.pathname === "/api/stats") {
                const { rss, heapUsed } = process.memoryUsage()
                return sendJson(res, 200, {
                    ...(options.stats?.() ?? {}),
                    memory: { rss_bytes: rss, heap_used_bytes: heapUsed },
                })
            }
            return sendJson(res, 404, { error: `no ${url.pathname}: /api/readings, /api/nodes, /api/stats` })
        } catch (e) {
            if (e instanceof BadRequest) return sendJson(res, 400, { error: e.message })
            log(`collector: http ${url.pathname}: ${(e as Error).message}`)
            // Mid-stream, the status is gone: a cut connection tells the client it is incomplete.
            if (res.headersSent) res.destroy(e as Error)
            else sendJson(res, 500, { error: "database error" })
        }
    }
    const server = createServer((req, res) => void handle(req, res))
    server.listen(options.port, boundHost)
    await once(server, "listening")
    return server
}
