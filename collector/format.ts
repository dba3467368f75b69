// Stored readings as text: the collector's combined CSV, JSON, and what Open Energy Dashboard's
// CSV readings upload takes (one meter per file).
import type { ReadingRow } from "./query"

/** Every reading and gap of every node, one row each (amounts in delta/total, levels in min/mean/max). */
export const COMBINED_HEADER =
    "node,meter,seq,first_seq,boot,time,start,end,start_utc,end_utc,delta_wh,total_wh,flags,min,mean,max"
export const OED_HEADER = "reading,start_timestamp,end_timestamp"

/** UTC as Open Energy Dashboard reads it: "YYYY-MM-DD HH:mm:ss". */
export function oedTimestamp(ms: number) {
    return new Date(ms).toISOString().slice(0, 19).replace("T", " ")
}

function csvCell(v: unknown) {
    if (v === null || v === undefined) return ""
    const s = String(v)
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s
}

/** Space-separated: gap, estimated, replay, partial (a merged reading partly stored before). */
export function flags(r: ReadingRow) {
    const out: string[] = []
    if (r.gap) out.push("gap")
    if (r.estimated) out.push("estimated")
    if (r.replay) out.push("replay")
    if (r.partial) out.push("partial")
    return out.join(" ")
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString())

export function csvRow(r: ReadingRow) {
    const utc = r.time_base === "utc_ms"
    return [
        r.node,
        r.meter,
        r.seq,
        r.gap ? (r.after_seq ?? 0) + 1 : r.first_seq,
        r.boot,
        r.time_base,
        r.start_time,
        r.end_time,
        utc ? iso(r.start_time) : null,
        utc ? iso(r.end_time) : null,
        r.delta,
        r.total,
        flags(r),
        r.min,
        r.mean,
        r.max,
    ]
        .map(csvCell)
        .join(",")
}

/** A reading in the payload's own names (docs/protocol.md), plus UTC strings and the collector's flags. */
export function jsonRow(r: ReadingRow) {
    const utc = r.time_base === "utc_ms"
    const o: Record<string, unknown> = { node: r.node, meter: r.meter, seq: r.seq }
    if (r.first_seq !== r.seq) o.first_seq = r.first_seq
    o.boot = r.boot
    o.time = r.time_base
    o.start = r.start_time
    if (r.end_time !== null) o.end = r.end_time
    if (utc) o.start_utc = iso(r.start_time)
    if (utc && r.end_time !== null) o.end_utc = iso(r.end_time)
    for (const k of ["delta", "total", "min", "mean", "max", "after_seq", "reported_delta"] as const)
        if (r[k] !== null) o[k] = r[k]
    for (const k of ["gap", "estimated", "replay", "partial"] as const) if (r[k]) o[k] = true
    return JSON.stringify(o)
}

/**
 * A row of Open Energy Dashboard's upload, or null for what it cannot take (gaps, readings in
 * uptime). An amount's reading is its delta; a level's its mean.
 */
export function oedRow(r: ReadingRow) {
    if (r.gap || r.time_base !== "utc_ms" || r.end_time === null) return null
    const value = r.delta ?? r.mean
    return `${value},${oedTimestamp(r.start_time)},${oedTimestamp(r.end_time)}`
}
