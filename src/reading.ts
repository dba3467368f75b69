// The JSON payloads the node publishes: readings and status.
// Pure core: imports nothing from @devicescript.

export const FIRMWARE_VERSION = "0.1.0"

export interface EnergyReading {
    meterId: string
    seq: number
    boot: number
    /** Interval start and end, in ms since this boot (the node has no wall clock yet). */
    startMs: number
    endMs: number
    deltaMilliWh: number
    totalMilliWh: number
    powerW: number
}

/** Formats whole thousandths as a decimal without float artefacts, in any runtime: 1234 -> "1.234". */
export function formatMilli(milli: number) {
    const negative = milli < 0
    const abs = Math.round(Math.abs(milli))
    const whole = Math.floor(abs / 1000)
    let frac = "" + (abs % 1000)
    while (frac.length < 3) frac = "0" + frac
    while (frac.length && frac[frac.length - 1] === "0") frac = frac.slice(0, frac.length - 1)
    return (negative && abs ? "-" : "") + whole + (frac.length ? "." + frac : "")
}

function jsonString(s: string) {
    return JSON.stringify(s)
}

/**
 * One reading. `time` says what start/end count from: "uptime" = ms since boot number `boot`.
 * Energy in Wh with mWh resolution; `total` is the meter's cumulative register, so a consumer can
 * check that deltas add up (and a duplicate, recognised by seq, changes nothing).
 */
export function readingPayload(r: EnergyReading) {
    return (
        `{"seq":${r.seq},"meter":${jsonString(r.meterId)},"quantity":"energy","unit":"Wh"` +
        `,"start":${r.startMs},"end":${r.endMs},"time":"uptime","boot":${r.boot}` +
        `,"delta":${formatMilli(r.deltaMilliWh)},"total":${formatMilli(r.totalMilliWh)}` +
        `,"power_w":${formatMilli(Math.round(r.powerW * 1000))}}`
    )
}

export interface NodeStatus {
    online: boolean
    reason?: string
    boot: number
    uptimeS: number
    queued: number
    dropped: number
    lastError: string
}

export function statusPayload(s: NodeStatus) {
    if (!s.online) return `{"state":"offline","reason":${jsonString(s.reason || "shutdown")},"boot":${s.boot}}`
    return (
        `{"state":"online","boot":${s.boot},"version":"${FIRMWARE_VERSION}","uptime_s":${Math.floor(s.uptimeS)}` +
        `,"queued":${s.queued},"dropped":${s.dropped},"error":${jsonString(s.lastError || "")}}`
    )
}

/** The will: published by the broker when the node vanishes without DISCONNECT. */
export const WILL_PAYLOAD = `{"state":"offline","reason":"lost"}`

export function statusTopic(prefix: string, nodeId: string) {
    return `${prefix}/${nodeId}/status`
}

export function readingTopic(prefix: string, nodeId: string, meterId: string) {
    return `${prefix}/${nodeId}/${meterId}/reading`
}
