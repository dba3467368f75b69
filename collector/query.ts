// Reading the stored readings back: a date range of any size page by page (keyset pagination: each
// page starts after the last row of the previous one, through an index, so the range is never
// held in memory and ingest goes on between pages), every reading of a meter for the export, and
// what the collector knows of each node.
import type { Database } from "./db"
import { oedRow } from "./format"

export interface ReadingRow {
    node: string
    meter: string
    quantity: string
    unit: string
    seq: number
    first_seq: number
    boot: number
    time_base: "utc_ms" | "uptime_s"
    start_time: number
    end_time: number | null
    delta: number | null
    total: number | null
    reported_delta: number | null
    min: number | null
    mean: number | null
    max: number | null
    estimated: boolean
    gap: boolean
    after_seq: number | null
    replay: boolean
    partial: boolean
}

const COLUMNS =
    "seq, first_seq, boot, time_base, start_time, end_time, delta, total, reported_delta, min, mean, max, estimated, gap, after_seq, replay, partial"

/** What an Open Energy Dashboard row needs (format.ts oedRow). */
const OED_COLUMNS = "seq, time_base, start_time, end_time, delta, mean, gap"

export interface MeterKey {
    node: string
    meter: string
    quantity: string
    unit: string
    max_span_ms: number
}

export const PAGE_ROWS = 2000
/** OED text pages (oedLinesInRange): about 45 bytes a row, so 1 MB a page. */
export const OED_PAGE_ROWS = 20_000
/** Later than any reading: the end of an open range. */
export const FAR_FUTURE_MS = 8.64e15

export function meters(db: Database, node?: string, meter?: string) {
    return db.query<MeterKey>(
        `SELECT node, meter, quantity, unit, max_span_ms FROM meters
         WHERE ($1::text IS NULL OR node = $1) AND ($2::text IS NULL OR meter = $2) ORDER BY node, meter`,
        [node ?? null, meter ?? null]
    )
}

export interface Range {
    node?: string
    meter?: string
    /** Unix ms: readings that overlap [from, to). Gaps count when their start is in it. */
    from: number
    to: number
}

/**
 * A page of one meter's UTC readings and gaps in a range, after a (start_time, seq): $1 node, $2
 * meter, $3 the lowest start that can overlap, $4 the range's end, $5 its start, $6 and $7 the
 * last (start_time, seq) of the page before; with `ORDER BY start_time, seq LIMIT $8`.
 */
const IN_RANGE = `node = $1 AND meter = $2 AND time_base = 'utc_ms' AND start_time >= $3 AND start_time < $4
    AND (end_time > $5 OR (end_time IS NULL AND start_time >= $5))
    AND (start_time, seq) > ($6, $7)`

/**
 * The UTC readings and gaps that overlap the range, by node, meter and start, in pages of up to
 * pageRows. Readings in uptime (a boot that never had the time) have no place in a date range.
 */
export async function* readingsInRange(db: Database, range: Range, pageRows = PAGE_ROWS): AsyncGenerator<ReadingRow[]> {
    for (const m of await meters(db, range.node, range.meter)) {
        // A reading that overlaps `from` started at most max_span_ms before it.
        const lowest = Math.max(0, range.from - m.max_span_ms)
        // The meter's names come back as columns: each row is built with all its fields at
        // once (adding four to each of half a million rows afterwards costs seconds of GC).
        const page = (after: [number, number]) =>
            db.query<ReadingRow>(
                `SELECT node, meter, $9::text AS quantity, $10::text AS unit, ${COLUMNS} FROM readings
                 WHERE ${IN_RANGE} ORDER BY start_time, seq LIMIT $8`,
                [m.node, m.meter, lowest, range.to, range.from, after[0], after[1], pageRows, m.quantity, m.unit]
            )
        let next = page([-1, 0])
        for (;;) {
            const rows = await next
            if (!rows.length) break
            const last = rows[rows.length - 1]
            // The next page is asked for before this one is handed over: a server reads it while
            // the caller formats and writes this one (two pages in memory at most).
            const more = rows.length === pageRows
            if (more) {
                next = page([last.start_time, last.seq])
                // Not awaited if the caller stops here (a client that hung up): not an unhandled rejection.
                next.catch(() => {})
            }
            yield rows
            if (!more) break
        }
    }
}

/** Unix ms of 10000-01-01: from there JavaScript's ISO dates (+010000-...) and PostgreSQL's part. */
const YEAR_10000_MS = 253_402_300_800_000

/**
 * An OED row's time, `YYYY-MM-DD HH:MM:SS` in UTC, as format.ts oedTimestamp writes it: a
 * timestamp of whole seconds as text in the ISO date style, which db.ts sets (twice as fast as
 * to_char with its time zone).
 */
const oedTime = (column: string) => `('epoch'::timestamp + (${column} / 1000) * interval '1 second')::text`

/**
 * One meter's Open Energy Dashboard rows over a range, as text: the lines of format.ts oedRow for
 * readingsInRange's rows, in the same order, written by the database a page at a time (a year is
 * half a million rows; building an object for each and formatting it here took 5x as long). A
 * page holding a value the database would print otherwise than JavaScript (under 0.0001 or from
 * 1e15 up it writes `1e-05` where JavaScript writes `0.00001`; no value at all; a year past 9999)
 * is fetched again as rows and formatted by oedRow, so the text is always oedRow's.
 */
export async function* oedLinesInRange(
    db: Database,
    range: Range & { node: string; meter: string },
    pageRows = OED_PAGE_ROWS
): AsyncGenerator<string> {
    const [m] = await meters(db, range.node, range.meter)
    if (!m) return
    const lowest = Math.max(0, range.from - m.max_span_ms)
    const params = (after: [number, number]) => [
        m.node,
        m.meter,
        lowest,
        range.to,
        range.from,
        after[0],
        after[1],
        pageRows,
    ]
    const value = "coalesce(delta, mean)"
    const plain = `${value} IS NOT NULL AND (${value} = 0 OR (abs(${value}) >= 1e-4 AND abs(${value}) < 1e15))
                   AND end_time < ${YEAR_10000_MS}`
    const textPage = (after: [number, number]) =>
        db.query<{ text: string | null; n: number; odd: number; last_start: number; last_seq: number }>(
            // The aggregates take the rows in the order of the subquery (PostgreSQL does so for a
            // sorted subquery, as its documentation of aggregates says): no sort of their own, and
            // the last row is the page's last (start_time, seq).
            `SELECT string_agg(${value}::text || ',' || ${oedTime("start_time")} || ',' || ${oedTime("end_time")},
                               E'\n') FILTER (WHERE NOT gap) AS text,
                    count(*)::int AS n,
                    count(*) FILTER (WHERE NOT gap AND NOT (${plain}))::int AS odd,
                    max(start_time) AS last_start,
                    (array_agg(seq))[count(*)] AS last_seq
             FROM (SELECT start_time, end_time, seq, delta, mean, gap FROM readings WHERE ${IN_RANGE}
                   ORDER BY start_time, seq LIMIT $8) AS page`,
            params(after)
        )
    let after: [number, number] = [-1, 0]
    let next = textPage(after)
    for (;;) {
        const [page] = await next
        if (!page.n) return
        const pageAfter = after
        // The next page is asked for before this one is handed over, as in readingsInRange.
        const more = page.n === pageRows
        if (more) {
            after = [Number(page.last_start), Number(page.last_seq)]
            next = textPage(after)
            next.catch(() => {})
        }
        if (page.odd) {
            const rows = await db.query<ReadingRow>(
                `SELECT ${OED_COLUMNS} FROM readings WHERE ${IN_RANGE} ORDER BY start_time, seq LIMIT $8`,
                params(pageAfter)
            )
            const lines = rows.map(oedRow).filter(line => line !== null)
            if (lines.length) yield lines.join("\n") + "\n"
        } else if (page.text) yield page.text + "\n"
        if (!more) return
    }
}

/** Every row of every meter (all time bases), by node, meter and seq, in pages. */
export async function* allReadings(db: Database, pageRows = PAGE_ROWS): AsyncGenerator<ReadingRow[]> {
    for (const m of await meters(db)) {
        let after = 0
        for (;;) {
            const rows = await db.query<ReadingRow>(
                `SELECT node, meter, $5::text AS quantity, $6::text AS unit, ${COLUMNS} FROM readings
                 WHERE node = $1 AND meter = $2 AND seq > $3 ORDER BY seq LIMIT $4`,
                [m.node, m.meter, after, pageRows, m.quantity, m.unit]
            )
            if (!rows.length) break
            yield rows
            if (rows.length < pageRows) break
            after = rows[rows.length - 1].seq
        }
    }
}

/** Holes in the seqs and reported gaps listed per meter, the newest. */
const HOLES_LISTED = 20
const GAPS_LISTED = 20
/** Rows of a meter, the newest, in which the holes listed are looked for (their count is exact). */
export const HOLES_SCANNED = 10_000

/** Each node: its last status, its meters, each meter's last reading and its age, its gaps. */
export async function nodesSummary(db: Database, nowMs = Date.now()) {
    const nodes = await db.query("SELECT node, status, status_at, status_retained, first_seen FROM nodes ORDER BY node")
    // Counts from meter_counts, kept on insert; the last reading and the gaps through the key and
    // the gaps' index: the cost is per meter, not per reading stored.
    const counts = await db.query(
        "SELECT node, meter, readings, gaps, first_seq, last_seq, seqs_held FROM meter_counts"
    )
    const last = await db.query(
        `SELECT m.node, m.meter, l.* FROM meters m CROSS JOIN LATERAL (
             SELECT seq, boot, time_base, start_time, end_time, total, mean, received_at FROM readings r
             WHERE r.node = m.node AND r.meter = m.meter AND NOT gap ORDER BY seq DESC LIMIT 1) l`
    )
    const gaps = await db.query(
        `SELECT m.node, m.meter, g.* FROM meters m CROSS JOIN LATERAL (
             SELECT seq, boot, time_base, start_time, after_seq, total FROM readings r
             WHERE r.node = m.node AND r.meter = m.meter AND gap ORDER BY seq DESC LIMIT ${GAPS_LISTED}) g
         ORDER BY node, meter, seq`
    )
    // Holes are looked for only in meters that have some, among their newest rows.
    const holes = await db.query(
        `SELECT c.node, c.meter, h.from_seq, h.to_seq FROM meter_counts c CROSS JOIN LATERAL (
             SELECT prev + 1 AS from_seq, first_seq - 1 AS to_seq FROM (
                 SELECT seq, first_seq, lag(seq) OVER (ORDER BY seq) AS prev FROM (
                     SELECT seq, first_seq FROM readings r WHERE r.node = c.node AND r.meter = c.meter
                     ORDER BY seq DESC LIMIT ${HOLES_SCANNED}) newest) s
             WHERE first_seq > prev + 1 ORDER BY seq DESC LIMIT ${HOLES_LISTED}) h
         WHERE c.seqs_held < c.last_seq - c.first_seq + 1
         ORDER BY node, meter, from_seq`
    )
    const meterRows = await meters(db)
    const of = <T extends { node: string; meter: string }>(list: T[], node: string, meter: string) =>
        list.filter(r => r.node === node && r.meter === meter)
    return nodes.map(n => ({
        node: n.node,
        status: n.status,
        status_at: n.status_at,
        status_retained: n.status_retained,
        first_seen: n.first_seen,
        meters: meterRows
            .filter(m => m.node === n.node)
            .map(m => {
                const c = of(counts, n.node, m.meter)[0]
                const l = of(last, n.node, m.meter)[0]
                const utc = l?.time_base === "utc_ms"
                const lastAt = l ? (utc ? l.end_time : new Date(l.received_at).getTime()) : null
                const span = c ? c.last_seq - c.first_seq + 1 : 0
                return {
                    meter: m.meter,
                    quantity: m.quantity,
                    unit: m.unit,
                    readings: c?.readings ?? 0,
                    first_seq: c?.first_seq ?? null,
                    last_seq: c?.last_seq ?? null,
                    last_reading: l
                        ? {
                              seq: l.seq,
                              boot: l.boot,
                              time: l.time_base,
                              end: l.end_time,
                              end_utc: utc ? new Date(l.end_time).toISOString() : null,
                              total: l.total,
                              mean: l.mean,
                              received_at: l.received_at,
                          }
                        : null,
                    /** Seconds since the last reading ended (since it was received, for one in uptime). */
                    age_s: lastAt === null ? null : Math.round((nowMs - lastAt) / 1000),
                    gaps: {
                        /** Gap elements the node reported (a power cut or crash). */
                        reported: c?.gaps ?? 0,
                        last_reported: of(gaps, n.node, m.meter).map(g => ({
                            seq: g.seq,
                            boot: g.boot,
                            after_seq: g.after_seq,
                            start: g.start_time,
                            start_utc: g.time_base === "utc_ms" ? new Date(g.start_time).toISOString() : null,
                            total: g.total,
                        })),
                        /**
                         * Seqs between the first and the last that no stored row covers: readings
                         * lost inside a reported gap, or numbers a reboot skipped.
                         */
                        seq_holes: c ? Math.max(0, span - c.seqs_held) : 0,
                        last_holes: of(holes, n.node, m.meter).map(h => ({ from_seq: h.from_seq, to_seq: h.to_seq })),
                    },
                }
            }),
    }))
}
