// The JSON payloads the node publishes: readings (batches of stored records) and status.
// Pure core: imports nothing from @devicescript.
import { FLAG_CLOCK_NOT_SET, FLAG_ESTIMATED, FLAG_GAP, isAdditive, ReadingRecord } from "./storage/records"
import { MeterLabel } from "./meters/meter-spec"
import { PublishProperties } from "./mqtt/packets"

/**
 * The firmware's version, one string everywhere (console, status, Home Assistant): the compiler
 * stamps each image with it (package.json's version, or the next patch and the git commit), and
 * the node takes it from the image at boot. Node tests see the fallback.
 */
export const firmware = { version: "0.1.0" }

/** Largest reading message: Pico W and ESP32 TLS stacks stay safe under 1 KB. */
export const MAX_READING_MESSAGE_BYTES = 1000
/** Readings per message at most: the records are decoded into objects on a 64 KB heap. */
export const MAX_READINGS_PER_MESSAGE = 12

/** The label of an energy meter in Wh, the kind of every meter before several kinds existed. */
export function energyLabel(id: string): MeterLabel {
    return { id, quantity: "energy", unit: "Wh" }
}

/** Formats whole thousandths as a decimal without float artefacts, in any runtime: 1234 -> "1.234". */
export function formatMilli(milli: number) {
    const abs = Math.round(Math.abs(milli))
    // 1000 + the thousandths: always four digits, the leading 1 dropped below.
    let frac = "" + (1000 + (abs % 1000))
    while (frac.length > 1 && frac[frac.length - 1] === "0") frac = frac.slice(0, frac.length - 1)
    return (milli < 0 && abs ? "-" : "") + Math.floor(abs / 1000) + (frac.length > 1 ? "." + frac.slice(1) : "")
}

/**
 * One element of a message's `readings` array.
 * - A reading: seq, boot, start and end (in the message's time base), then delta and total (Wh) for an amount, or min,
 *   mean and max for a level. `first_seq` when merged: it covers first_seq..seq, all delivered
 *   in this one element. `estimated` when the value is not measured.
 * - A gap (`gap: true`): after time `start` of boot `boot` and until that boot ended, the node
 *   cannot account for what happened (a power cut or crash): readings after `after_seq` may be
 *   missing, and the meter total continued from `total` at the next boot.
 */
export function readingElement(r: ReadingRecord) {
    // Stored times are seconds; the message's time base is seconds or milliseconds (see readingMessage).
    const scale = r.flags & FLAG_CLOCK_NOT_SET ? 1 : 1000
    const gap = r.flags & FLAG_GAP && r.durationS === 0
    let text = '{"seq":' + r.seq
    if (gap) text += ',"gap":true'
    else if (r.firstSeq !== r.seq) text += ',"first_seq":' + r.firstSeq
    text += ',"boot":' + r.boot + ',"start":' + r.startS * scale
    if (gap) return text + ',"after_seq":' + (r.firstSeq - 1) + ',"total":' + formatMilli(r.totalMilliWh) + "}"
    text += ',"end":' + (r.startS + r.durationS) * scale
    if (isAdditive(r)) text += ',"delta":' + formatMilli(r.deltaMilliWh) + ',"total":' + formatMilli(r.totalMilliWh)
    else
        text +=
            ',"min":' +
            formatMilli(r.minMilli) +
            ',"mean":' +
            formatMilli(r.meanMilli) +
            ',"max":' +
            formatMilli(r.maxMilli)
    if (r.flags & FLAG_ESTIMATED) text += ',"estimated":true'
    return text + "}"
}

/**
 * A reading message up to its first element: `{"meter":...,"readings":[` for records like
 * `first`. The elements follow, comma-separated, and `]}` closes it.
 */
export function readingHead(first: ReadingRecord, meters: MeterLabel[], replay?: boolean) {
    const additive = isAdditive(first)
    const label = meters[first.meter] || {
        id: "meter" + first.meter,
        quantity: additive ? "energy" : "level",
        unit: additive ? "Wh" : "",
    }
    return (
        // The unit goes in as it is: the VM's JSON.stringify escapes each byte of a non-ASCII
        // character (°C) as a character of its own. Units come from our own table, without quotes.
        '{"meter":' +
        JSON.stringify(label.id) +
        ',"quantity":"' +
        label.quantity +
        '","unit":"' +
        label.unit +
        // What the times count from: "uptime_s" = seconds since boot `boot` (that boot never learned
        // the time), "utc_ms" = Unix milliseconds (whole seconds: readings are timed to the second).
        (first.flags & FLAG_CLOCK_NOT_SET ? '","time":"uptime_s' : '","time":"utc_ms') +
        (replay ? '","replay":true,"readings":[' : '","readings":[')
    )
}

export interface ReadingMessage {
    /** Index into the node's meters. */
    meter: number
    payload: string
    /** Records from the start of the list that the payload carries (at least 1). */
    count: number
}

/**
 * One message from the oldest records of `records`: consecutive records of the same meter and
 * time base, as many as fit in MAX_READING_MESSAGE_BYTES and MAX_READINGS_PER_MESSAGE.
 * `meters[r.meter]` names the meter and its quantity and unit (the same for every element); a
 * record of a meter no longer configured is named "meter<index>". `replay` marks readings
 * republished from history by the replay command.
 */
export function readingMessage(records: ReadingRecord[], meters: MeterLabel[], replay?: boolean): ReadingMessage {
    const first = records[0]
    const uptime = first.flags & FLAG_CLOCK_NOT_SET
    const additive = isAdditive(first)
    const head = readingHead(first, meters, replay)
    // In bytes: a unit such as °C is longer in UTF-8 than in characters. Elements are ASCII.
    const headBytes = Buffer.from(head).length
    let body = ""
    let count = 0
    while (count < records.length && count < MAX_READINGS_PER_MESSAGE) {
        const r = records[count]
        if (r.meter !== first.meter || (r.flags & FLAG_CLOCK_NOT_SET) !== uptime || isAdditive(r) !== additive) break
        const element = readingElement(r)
        // "]}" closes the message; a comma separates elements.
        if (count && headBytes + body.length + 1 + element.length + 2 > MAX_READING_MESSAGE_BYTES) break
        body += (count ? "," : "") + element
        count++
    }
    return { meter: first.meter, payload: head + body + "]}", count }
}

export interface NodeStatus {
    online: boolean
    reason?: string
    boot: number
    uptimeS: number
    /** Readings waiting for the broker's acknowledgement. */
    queued: number
    /** Since the queue began: readings dropped for lack of room, and merged into longer intervals. */
    dropped: number
    merged: number
    lastError: string
    /** The wall clock: "set" once UTC arrived this boot, else "unset" (readings are in uptime). */
    clock?: string
    /** The MQTT version of the connection: "5" or "3.1.1". */
    mqtt?: string
}

export function statusPayload(s: NodeStatus) {
    if (!s.online) return `{"state":"offline","reason":${JSON.stringify(s.reason || "shutdown")},"boot":${s.boot}}`
    // Two templates: one with every substitution crashes the compiler.
    return (
        `{"state":"online","boot":${s.boot},"version":${JSON.stringify(firmware.version)},"uptime_s":${Math.floor(s.uptimeS)},"queued":${s.queued}` +
        `,"dropped":${s.dropped},"merged":${s.merged},"clock":"${s.clock || "unset"}","mqtt":"${s.mqtt || "3.1.1"}","error":${JSON.stringify(s.lastError || "")}}`
    )
}

/**
 * MQTT 5's Content Type of the status and the command replies (a 3.1.1 connection sends no
 * properties). Not on reading messages: 19 bytes each, where topic aliases save 28.
 */
export const JSON_CONTENT: PublishProperties = { contentType: "application/json" }

/** The will: published by the broker when the node vanishes without DISCONNECT. */
export const WILL_PAYLOAD = `{"state":"offline","reason":"lost"}`

export function statusTopic(prefix: string, nodeId: string) {
    return `${prefix}/${nodeId}/status`
}

export function readingTopic(prefix: string, nodeId: string, meterId: string) {
    return `${prefix}/${nodeId}/${meterId}/reading`
}

/** Where replayed history goes: apart from live readings, so a dashboard's state never steps back. */
export function replayTopic(prefix: string, nodeId: string, meterId: string) {
    return `${prefix}/${nodeId}/${meterId}/replay`
}
