// The Open Energy Dashboard output: posts each meter's new readings to OED's CSV readings upload
// (`POST /api/csv/readings`, OED's routes/csv.js and services/csvPipeline), beside ingest and
// independently of it: it reads what is committed, and its position in the database
// (migrations/003_oed_output.sql) says what OED has, so a restarted collector neither posts a
// reading twice nor skips one.
//
// Per meter, in seq order, up to batchRows readings an upload. After OED has accepted an upload,
// one transaction moves the meter's position to the highest seq read and records as holes the
// seqs below it that no stored reading covered. A reading that arrives later with its seq in a
// hole (a backlog, a replay, a transaction that committed after the output read past it) is a
// late reading: the next upload carries it. A crash between OED's answer and that transaction
// posts the upload again at the next start; OED keeps the readings it has (`update=no`: same
// meter, same start), so nothing is stored twice there either.
//
// OED unreachable, a 5xx, 408 or 429 answer, or a timeout: the meter waits (1 s, doubling up to a
// minute) and the same readings go again. Any other answer but OED's SUCCESS (a 4xx: an unknown
// meter, a refused login, readings OED's checks refuse) would come again: the meter is parked
// until the collector restarts, OED's answer logged, counted and kept in oed_positions; the
// other meters go on.
import { gzipSync } from "node:zlib"
import type { Database } from "./db"
import { OED_HEADER, oedRow } from "./format"
import { AMOUNTS } from "./payload"
import type { ReadingRow } from "./query"

/**
 * Which OED the form is for. "current": OED since mid-2024 (`username`; no `createMeter`, which it
 * refuses as an unexpected argument: the meter must exist). "1.0": OED 1.0.0 (`email`, and
 * `createMeter=yes`: a meter OED lacks is created).
 */
export type OedApi = "current" | "1.0"
export const OED_APIS: OedApi[] = ["current", "1.0"]

export interface OedOptions {
    /** OED's base URL, http(s)://host[:port][/path]: the upload goes to api/csv/readings under it. */
    url: string
    username: string
    password: string
    api?: OedApi
    /** The OED meter name of a meter: `{node}` and `{meter}` replaced. */
    meterName?: string
    /** Readings per upload. */
    batchRows?: number
    /** Between passes over the meters, ms. */
    intervalMs?: number
    /** The first wait after a failed upload that may succeed later, ms (doubling up to maxRetryMs). */
    retryMs?: number
    maxRetryMs?: number
    /** An upload without an answer after this long is abandoned and tried again, ms. */
    timeoutMs?: number
    log?: (line: string) => void
}

export const OED_DEFAULTS = {
    api: "current" as OedApi,
    meterName: "{node}.{meter}",
    batchRows: 500,
    intervalMs: 10_000,
    retryMs: 1000,
    maxRetryMs: 60_000,
    timeoutMs: 60_000,
}

/** OED's meters.name is VARCHAR(50) (sql/meter/create_meters_table.sql). */
export const OED_METER_NAME_MAX = 50

/**
 * The form fields besides the login, the meter and the file, as OED's
 * validateCsvUploadParams.js names them. yes/no is what both OED 1.0 (yes/no only) and later
 * (yes/no/true/false) accept.
 */
export const OED_FIELDS: Record<string, string> = {
    // The file is gzipped (OED's default; smaller, and gzip checks its own integrity).
    gzip: "yes",
    // It starts with OED_HEADER, as the export's files do.
    headerRow: "yes",
    // Rows by start time, oldest first.
    timeSort: "increasing",
    // Each reading once in the file (some meters repeat every row).
    duplications: "1",
    // The value is the amount over the interval, not a register...
    cumulative: "no",
    // ...so there is no register to reset.
    cumulativeReset: "no",
    // Each row has its start and end.
    endOnly: "no",
    // A reading OED has (same meter, same start) is kept, not overwritten: an upload sent twice changes nothing.
    update: "no",
    // OED refreshes its daily and hourly views on its own schedule; refreshing them at every upload is costly.
    refreshReadings: "no",
    // Timestamps are UTC, which has no daylight saving time.
    honorDst: "no",
    // Timestamps are exactly YYYY-MM-DD HH:mm:ss.
    relaxedParsing: "no",
}

export interface OedStats {
    /** Uploads OED accepted. */
    uploads: number
    /** Readings in them. */
    posted: number
    /** Of these, readings stored after the position had passed their seq. */
    late: number
    /** Uploads that failed and are tried again (OED unreachable, 5xx, 408, 429, a timeout). */
    retries: number
    /** Uploads OED refused: their meters wait for a restart. */
    refused: number
    /** Meters waiting for a restart, "node/meter": why. */
    parked: Record<string, string>
}

/** A stored reading on its way to OED, with where the readings a partial one covers end. */
type PendingRow = ReadingRow & { covered_end: number | null }

type Range = [number, number]

interface MeterWork {
    node: string
    meter: string
    quantity: string
    unit: string
    posted_seq: number
    work: boolean
}

type Answer = { kind: "accepted" } | { kind: "retry" | "refused"; reason: string }

const AMOUNT_LIST = AMOUNTS.map(q => `'${q}'`).join(", ")

/** covered_end only for partial rows: PostgreSQL evaluates the subquery only where CASE needs it. */
const PENDING_COLUMNS = `r.seq, r.first_seq, r.boot, r.time_base, r.start_time, r.end_time, r.delta, r.total,
    r.reported_delta, r.min, r.mean, r.max, r.estimated, r.gap, r.after_seq, r.replay, r.partial,
    CASE WHEN r.partial THEN (SELECT max(c.end_time) FROM readings c
        WHERE c.node = r.node AND c.meter = r.meter AND c.seq >= r.first_seq AND c.seq < r.seq
          AND c.time_base = 'utc_ms' AND NOT c.gap) END AS covered_end`

/** The seqs in (after, last row's seq] that no row's [first_seq, seq] covers; rows by seq. */
export function holesAfter(after: number, rows: { seq: number; first_seq: number }[]): Range[] {
    const holes: Range[] = []
    let next = after + 1
    for (const r of rows) {
        if (r.first_seq > next) holes.push([next, r.first_seq - 1])
        next = Math.max(next, r.seq + 1)
    }
    return holes
}

/** The holes without the seqs of `covered`. */
export function subtractRanges(holes: Range[], covered: Range[]): Range[] {
    let out = holes
    for (const [from, to] of covered)
        out = out.flatMap(([a, b]): Range[] => {
            if (to < a || from > b) return [[a, b]]
            const left: Range[] = a < from ? [[a, from - 1]] : []
            const right: Range[] = b > to ? [[to + 1, b]] : []
            return [...left, ...right]
        })
    return out
}

/**
 * The row OED gets for a stored reading, or null: gaps, levels and readings in uptime are not
 * OED readings. A partial merged reading carries only the amount not stored before, which lies
 * after the stored readings it covers: it goes from where they end, so it overlaps none of them.
 */
function oedLine(r: PendingRow): string | null {
    if (r.delta === null) return null
    if (!r.partial || r.covered_end === null) return oedRow(r)
    if (r.end_time === null || r.covered_end >= r.end_time) return null
    return oedRow({ ...r, start_time: r.covered_end })
}

/** OED's answer as one line: its HTML without tags, shortened. */
function answerText(body: string) {
    const text = body
        .replace(/<[^>]*>/g, " ")
        .replace(/\s+/g, " ")
        .trim()
    return text.length > 300 ? text.slice(0, 300) + "..." : text
}

export class OedOutput {
    readonly stats: OedStats = { uploads: 0, posted: 0, late: 0, retries: 0, refused: 0, parked: {} }
    private readonly options: Required<Omit<OedOptions, "log">>
    private readonly log: (line: string) => void
    private readonly endpoint: string
    /** Meters whose last upload failed and that wait: until when, and the next wait. */
    private readonly waiting = new Map<string, { untilMs: number; nextWaitMs: number; tries: number }>()
    private stopping = false
    private loop?: Promise<void>
    private wake?: () => void

    constructor(
        readonly db: Database,
        options: OedOptions
    ) {
        const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined))
        this.options = { ...OED_DEFAULTS, ...given } as Required<Omit<OedOptions, "log">>
        this.log = options.log ?? (line => console.log(line))
        const base = new URL(options.url)
        if (base.protocol !== "http:" && base.protocol !== "https:")
            throw new Error(`collector: oed: ${options.url} is not an http:// or https:// URL`)
        if (base.username || base.password)
            throw new Error("collector: oed: the URL carries credentials: give the user name and the password apart")
        if (!base.pathname.endsWith("/")) base.pathname += "/"
        this.endpoint = new URL("api/csv/readings", base).toString()
        if (!OED_APIS.includes(this.options.api)) throw new Error(`collector: oed: unknown API ${this.options.api}`)
        if (!/\{node\}|\{meter\}/.test(this.options.meterName))
            throw new Error("collector: oed: the meter name needs {node} or {meter}")
        if (!(Number.isInteger(this.options.batchRows) && this.options.batchRows > 0))
            throw new Error("collector: oed: the batch is a number of readings")
    }

    /** Where the uploads go (no credentials in it). */
    get where() {
        return this.endpoint
    }

    /** The OED meter name of node/meter. */
    meterName(node: string, meter: string) {
        return this.options.meterName.replaceAll("{node}", node).replaceAll("{meter}", meter)
    }

    /** Posts beside ingest until stop(): a pass at once, then every intervalMs (sooner when a retry is due). */
    start() {
        this.loop ??= this.run()
        return this
    }

    /** Ends after the upload in progress (and its position) is done. */
    async stop() {
        this.stopping = true
        this.wake?.()
        await this.loop
    }

    private async run() {
        while (!this.stopping) {
            try {
                await this.pass()
            } catch (e) {
                // The database (down, or closing): the next pass tries again; nothing moved.
                this.log(`collector: oed: ${(e as Error).message}`)
            }
            if (this.stopping) break
            const now = Date.now()
            let waitMs = this.options.intervalMs
            for (const w of this.waiting.values()) waitMs = Math.min(waitMs, Math.max(0, w.untilMs - now))
            await new Promise<void>(resolve => {
                const timer = setTimeout(resolve, waitMs)
                this.wake = () => {
                    clearTimeout(timer)
                    resolve()
                }
            })
        }
    }

    /**
     * Posts until no meter has anything left that can go now: one upload per meter a round, so
     * a meter with a long history does not hold the others back. Resolves with the uploads done.
     */
    async pass() {
        let uploads = 0
        for (;;) {
            const meters = await this.db.query<MeterWork>(
                `SELECT m.node, m.meter, m.quantity, m.unit, coalesce(p.posted_seq, 0) AS posted_seq,
                        (EXISTS (SELECT 1 FROM readings r
                                 WHERE r.node = m.node AND r.meter = m.meter AND r.seq > coalesce(p.posted_seq, 0))
                         OR EXISTS (SELECT 1 FROM oed_holes h JOIN readings r ON r.node = h.node AND r.meter = h.meter
                                        AND r.seq BETWEEN h.from_seq AND h.to_seq
                                    WHERE h.node = m.node AND h.meter = m.meter)) AS work
                 FROM meters m LEFT JOIN oed_positions p ON p.node = m.node AND p.meter = m.meter
                 WHERE m.quantity IN (${AMOUNT_LIST}) ORDER BY m.node, m.meter`
            )
            const names = new Map<string, string[]>()
            for (const m of meters) {
                const name = this.meterName(m.node, m.meter)
                names.set(name, [...(names.get(name) ?? []), `${m.node}/${m.meter}`])
            }
            let more = false
            for (const m of meters) {
                if (this.stopping) return uploads
                const key = `${m.node}/${m.meter}`
                if (!m.work || this.stats.parked[key] !== undefined) continue
                if ((this.waiting.get(key)?.untilMs ?? 0) > Date.now()) continue
                const name = this.meterName(m.node, m.meter)
                const sharing = names.get(name)!
                if (name.length > OED_METER_NAME_MAX) {
                    this.park(
                        key,
                        `OED meter name ${name} is over ${OED_METER_NAME_MAX} characters: choose another --oed-meter`
                    )
                    continue
                }
                if (sharing.length > 1) {
                    this.park(key, `OED meter name ${name} is also ${sharing.filter(k => k !== key).join(", ")}'s`)
                    continue
                }
                const result = await this.postMeter(m, name)
                if (result.uploaded) uploads++
                if (result.more) more = true
            }
            if (!more) return uploads
            // Ingest (the HTTP API, MQTT keepalives) between rounds.
            await new Promise(resolve => setImmediate(resolve))
        }
    }

    private park(key: string, reason: string) {
        this.stats.parked[key] = reason
        this.log(`collector: oed ${key}: not posted until the collector restarts: ${reason}`)
    }

    /** One upload of one meter (its late readings first); more when it read a full batch. */
    private async postMeter(m: MeterWork, name: string): Promise<{ uploaded: boolean; more: boolean }> {
        const key = `${m.node}/${m.meter}`
        const { batchRows } = this.options
        const holes = (
            await this.db.query<{ from_seq: number; to_seq: number }>(
                "SELECT from_seq, to_seq FROM oed_holes WHERE node = $1 AND meter = $2 ORDER BY from_seq",
                [m.node, m.meter]
            )
        ).map((h): Range => [h.from_seq, h.to_seq])
        const late = holes.length
            ? await this.db.query<PendingRow>(
                  `SELECT ${PENDING_COLUMNS} FROM oed_holes h
                   JOIN readings r ON r.node = h.node AND r.meter = h.meter AND r.seq BETWEEN h.from_seq AND h.to_seq
                   WHERE h.node = $1 AND h.meter = $2 ORDER BY r.seq LIMIT $3`,
                  [m.node, m.meter, batchRows]
              )
            : []
        const fresh =
            late.length < batchRows
                ? await this.db.query<PendingRow>(
                      `SELECT ${PENDING_COLUMNS} FROM readings r
                       WHERE r.node = $1 AND r.meter = $2 AND r.seq > $3 ORDER BY r.seq LIMIT $4`,
                      [m.node, m.meter, m.posted_seq, batchRows - late.length]
                  )
                : []
        if (!late.length && !fresh.length) return { uploaded: false, more: false }
        const rows = [...late, ...fresh]
        for (const r of rows) Object.assign(r, { node: m.node, meter: m.meter, quantity: m.quantity, unit: m.unit })
        const lines = rows
            .map(r => ({ r, line: oedLine(r) }))
            .filter((x): x is { r: PendingRow; line: string } => x.line !== null)
            .sort((a, b) => a.r.start_time - b.r.start_time || a.r.seq - b.r.seq)
        if (lines.length) {
            const answer = await this.upload(
                name,
                lines.map(x => x.line)
            )
            if (answer.kind !== "accepted") {
                await this.failed(m, key, answer)
                return { uploaded: false, more: false }
            }
        }
        const postedSeq = fresh.length ? fresh[fresh.length - 1].seq : m.posted_seq
        const newHoles = [
            ...subtractRanges(
                holes,
                late.map((r): Range => [r.first_seq, r.seq])
            ),
            ...holesAfter(m.posted_seq, fresh),
        ]
        const lateLines = lines.filter(x => late.includes(x.r)).length
        const until = lines.length ? Math.max(...lines.map(x => x.r.end_time!)) : null
        await this.db.transaction(async tx => {
            const moved = await tx.query(
                `INSERT INTO oed_positions AS p (node, meter, posted_seq, oed_meter, posted_until, readings_posted, posted_at)
                 VALUES ($1, $2, $3, $4, $5::bigint, $6::bigint, CASE WHEN $6::bigint > 0 THEN now() END)
                 ON CONFLICT (node, meter) DO UPDATE SET posted_seq = EXCLUDED.posted_seq,
                     oed_meter = coalesce(EXCLUDED.oed_meter, p.oed_meter),
                     posted_until = greatest(p.posted_until, EXCLUDED.posted_until),
                     readings_posted = p.readings_posted + EXCLUDED.readings_posted,
                     posted_at = coalesce(EXCLUDED.posted_at, p.posted_at), refused_at = NULL, refusal = NULL
                 WHERE p.posted_seq = $7
                 RETURNING posted_seq`,
                [m.node, m.meter, postedSeq, lines.length ? name : null, until, lines.length, m.posted_seq]
            )
            if (!moved.length)
                throw new Error(`the position of ${key} moved meanwhile: is another collector posting to this OED?`)
            await tx.query("DELETE FROM oed_holes WHERE node = $1 AND meter = $2", [m.node, m.meter])
            for (const [from, to] of newHoles)
                await tx.query("INSERT INTO oed_holes (node, meter, from_seq, to_seq) VALUES ($1, $2, $3, $4)", [
                    m.node,
                    m.meter,
                    from,
                    to,
                ])
        })
        const waited = this.waiting.get(key)
        if (waited) {
            this.waiting.delete(key)
            this.log(`collector: oed ${key}: delivered after ${waited.tries} failed tries`)
        }
        if (lines.length) {
            this.stats.uploads++
            this.stats.posted += lines.length
            this.stats.late += lateLines
        }
        return { uploaded: lines.length > 0, more: rows.length >= batchRows }
    }

    private async failed(m: MeterWork, key: string, answer: Exclude<Answer, { kind: "accepted" }>) {
        if (answer.kind === "retry") {
            this.stats.retries++
            const w = this.waiting.get(key) ?? { untilMs: 0, nextWaitMs: this.options.retryMs, tries: 0 }
            w.tries++
            w.untilMs = Date.now() + w.nextWaitMs
            if (w.tries === 1)
                this.log(`collector: oed ${key}: ${answer.reason}; trying again (from ${w.nextWaitMs} ms, doubling)`)
            w.nextWaitMs = Math.min(this.options.maxRetryMs, w.nextWaitMs * 2)
            this.waiting.set(key, w)
            return
        }
        this.stats.refused++
        this.waiting.delete(key)
        this.park(key, `OED refused the upload: ${answer.reason}`)
        await this.db
            .query(
                `INSERT INTO oed_positions AS p (node, meter, refused_at, refusal) VALUES ($1, $2, now(), $3)
                 ON CONFLICT (node, meter) DO UPDATE SET refused_at = EXCLUDED.refused_at, refusal = EXCLUDED.refusal`,
                [m.node, m.meter, answer.reason]
            )
            .catch(e => this.log(`collector: oed ${key}: the refusal not recorded: ${(e as Error).message}`))
    }

    /** One multipart upload; what OED's answer means for it. */
    private async upload(name: string, lines: string[]): Promise<Answer> {
        const o = this.options
        const form = new FormData()
        // OED checks the login in multer's file filter, which sees only the fields sent before the
        // file: every field goes first, the file last.
        form.append(o.api === "1.0" ? "email" : "username", o.username)
        form.append("password", o.password)
        form.append("meterName", name)
        if (o.api === "1.0") form.append("createMeter", "yes")
        for (const [field, value] of Object.entries(OED_FIELDS)) form.append(field, value)
        const csv = OED_HEADER + "\n" + lines.join("\n") + "\n"
        form.append("csvfile", new Blob([gzipSync(csv)], { type: "application/gzip" }), `${name}.csv.gz`)
        let res: Response | undefined
        let body = ""
        for (let attempt = 1; !res; attempt++) {
            try {
                res = await fetch(this.endpoint, {
                    method: "POST",
                    body: form,
                    redirect: "manual",
                    signal: AbortSignal.timeout(o.timeoutMs),
                })
                body = await res.text()
            } catch (e) {
                const err = e as Error & { cause?: { code?: string; message?: string } }
                const timedOut = err.name === "TimeoutError"
                res = undefined
                // A kept-alive connection that OED closed while idle (its keep-alive timeout, or an
                // event loop that a long query held) fails at once: a new one is worth one more
                // try. The upload may then arrive twice: OED keeps one (update=no).
                if (attempt === 1 && !timedOut) continue
                const why = timedOut ? `no answer in ${o.timeoutMs} ms` : (err.cause?.code ?? err.message)
                return { kind: "retry", reason: `OED unreachable (${why})` }
            }
        }
        // OED's success() answers 200 with this heading; anything else did not store the readings.
        if (res.ok && body.includes("<h1>SUCCESS</h1>")) return { kind: "accepted" }
        const text = answerText(body)
        if (res.status >= 500 || res.status === 408 || res.status === 429)
            return { kind: "retry", reason: `OED answered ${res.status} ${text}` }
        if (res.status >= 300 && res.status < 400)
            return {
                kind: "refused",
                reason: `${res.status}, redirected to ${res.headers.get("location")}: give the URL OED answers at`,
            }
        const hint = /unexpected argument/.test(body) ? " (another OED version? see --oed-api)" : ""
        return { kind: "refused", reason: `${res.status} ${text}${hint}` }
    }
}
