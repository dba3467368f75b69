// What the collector accepts from the broker, checked before anything reaches the database: the
// topic, the size and nesting of the payload (bounded before JSON.parse), the header of a reading
// message and the types of its elements. The payload contract itself (start before end, amounts
// not negative, seq positive...) is the database's CHECK constraints' job: one definition, that
// no path around this module escapes. Pure: no I/O.

/** Largest payload read: a node's messages stay under 1 KB. */
export const MAX_PAYLOAD_BYTES = 64 * 1024
/** Deepest nesting of objects and arrays read: a reading message has 3 levels. */
export const MAX_DEPTH = 8
/** Elements in one reading message at most (a node sends up to 12). */
export const MAX_ELEMENTS = 1000
/** Bytes of a refused payload kept in rejected_messages. */
export const KEPT_PAYLOAD_BYTES = 1024

/** Quantities whose readings are amounts (delta and total), and levels (min, mean, max). */
export const AMOUNTS = ["energy", "water", "gas"]
export const LEVELS = ["temperature", "humidity", "current", "voltage", "level"]

export interface Element {
    seq: number
    firstSeq: number
    boot: number
    start: number
    end: number | null
    delta: number | null
    total: number | null
    min: number | null
    mean: number | null
    max: number | null
    estimated: boolean
    gap: boolean
    afterSeq: number | null
    /** The element as received, for the record of a refusal or a conflict. */
    text: string
}

export interface ReadingBatch {
    kind: "readings"
    node: string
    meter: string
    quantity: string
    unit: string
    time: "utc_ms" | "uptime_s"
    replay: boolean
    elements: Element[]
    /** Elements of the wrong shape, refused one by one; the others are stored. */
    refused: { reason: string; detail: string; text: string }[]
}

export interface StatusMessage {
    kind: "status"
    node: string
    status: Record<string, unknown>
    retained: boolean
}

export interface Rejected {
    kind: "rejected"
    reason: string
    detail: string
}

export type Parsed = ReadingBatch | StatusMessage | Rejected

const NODE_ID = /^[^/+#\s]{1,64}$/
const METER_ID = /^[A-Za-z0-9_-]{1,32}$/

const reject = (reason: string, detail: string): Rejected => ({ kind: "rejected", reason, detail })

type TopicKind = { kind: "reading" | "replay"; node: string; meter: string } | { kind: "status"; node: string }

/** `<prefix>/<node>/<meter>/reading|replay` or `<prefix>/<node>/status`, else a reason. */
export function parseTopic(topic: string, prefix: string): TopicKind | Rejected {
    const levels = topic.split("/")
    const p = prefix.split("/").length
    if (levels.slice(0, p).join("/") !== prefix) return reject("bad_topic", `not under ${prefix}/`)
    const rest = levels.slice(p)
    if (!NODE_ID.test(rest[0] ?? "")) return reject("bad_topic", "not a node id")
    if (rest.length === 2 && rest[1] === "status") return { kind: "status", node: rest[0] }
    if (rest.length === 3 && (rest[2] === "reading" || rest[2] === "replay")) {
        if (!METER_ID.test(rest[1]) || rest[1] === "cmd" || rest[1] === "reply")
            return reject("bad_topic", "not a meter id")
        return { kind: rest[2], node: rest[0], meter: rest[1] }
    }
    return reject("bad_topic", "neither a reading, a replay nor a status topic")
}

/** The deepest nesting of [ and { outside strings, stopping as soon as it passes `limit`. */
export function nestingDepth(text: string, limit = MAX_DEPTH) {
    let depth = 0
    let deepest = 0
    let inString = false
    for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i)
        if (inString) {
            if (c === 92)
                i++ // backslash: skip the escaped character
            else if (c === 34) inString = false
        } else if (c === 34) inString = true
        else if (c === 91 || c === 123) {
            if (++depth > deepest) deepest = depth
            if (deepest > limit) return deepest
        } else if (c === 93 || c === 125) depth--
    }
    return deepest
}

/** The first bytes of a payload as text Postgres accepts (no NUL). */
export function keptPayload(payload: Buffer | string, bytes = KEPT_PAYLOAD_BYTES) {
    const buf = typeof payload === "string" ? Buffer.from(payload) : payload
    return buf.subarray(0, bytes).toString("utf-8").replace(/\0/g, "\ufffd")
}

const isObject = (v: unknown): v is Record<string, any> => typeof v === "object" && v !== null && !Array.isArray(v)

/** One element's fields, typed; null and a reason when a field has the wrong type. */
function readElement(e: unknown): { element?: Element; reason?: string; detail?: string } {
    if (!isObject(e)) return { reason: "bad_element", detail: "not an object" }
    const ints = ["seq", "boot", "start"]
    for (const f of ints)
        if (!Number.isSafeInteger(e[f])) return { reason: "bad_element", detail: `${f} is not an integer` }
    for (const f of ["first_seq", "after_seq", "end"])
        if (e[f] !== undefined && !Number.isSafeInteger(e[f]))
            return { reason: "bad_element", detail: `${f} is not an integer` }
    for (const f of ["delta", "total", "min", "mean", "max"])
        if (e[f] !== undefined && !Number.isFinite(e[f]))
            return { reason: "bad_element", detail: `${f} is not a number` }
    for (const f of ["estimated", "gap", "replay"])
        if (e[f] !== undefined && typeof e[f] !== "boolean")
            return { reason: "bad_element", detail: `${f} is not a boolean` }
    const num = (v: unknown) => (v === undefined ? null : (v as number))
    const gap = e.gap === true
    return {
        element: {
            seq: e.seq,
            firstSeq: gap ? e.seq : (e.first_seq ?? e.seq),
            boot: e.boot,
            start: e.start,
            end: num(e.end),
            delta: num(e.delta),
            total: num(e.total),
            min: num(e.min),
            mean: num(e.mean),
            max: num(e.max),
            estimated: e.estimated === true,
            gap,
            afterSeq: num(e.after_seq),
            text: JSON.stringify(e),
        },
    }
}

/** Reads one message: a reading batch, a status, or the reason it is refused. */
export function parseMessage(topic: string, payload: Buffer, prefix: string, retained = false): Parsed {
    const where = parseTopic(topic, prefix)
    if (where.kind === "rejected") return where
    if (payload.length > MAX_PAYLOAD_BYTES)
        return reject("too_large", `${payload.length} bytes, more than ${MAX_PAYLOAD_BYTES}`)
    const text = payload.toString("utf-8")
    const depth = nestingDepth(text)
    if (depth > MAX_DEPTH) return reject("too_deep", `nested deeper than ${MAX_DEPTH}`)
    let body: unknown
    try {
        body = JSON.parse(text)
    } catch (e) {
        return reject("not_json", (e as Error).message.slice(0, 200))
    }
    if (where.kind === "status") {
        if (!isObject(body) || typeof body.state !== "string") return reject("bad_status", "not an object with a state")
        return { kind: "status", node: where.node, status: body, retained }
    }
    if (!isObject(body)) return reject("bad_header", "not an object")
    if (body.meter !== where.meter)
        return reject("meter_mismatch", `meter ${JSON.stringify(body.meter)} on the topic of ${where.meter}`)
    if (typeof body.quantity !== "string" || !/^[a-z0-9_]{1,32}$/.test(body.quantity))
        return reject("bad_header", "quantity is not a name")
    if (typeof body.unit !== "string" || body.unit.length > 16)
        return reject("bad_header", "unit is not a short string")
    if (body.time !== "utc_ms" && body.time !== "uptime_s")
        return reject("bad_header", "time is neither utc_ms nor uptime_s")
    if (body.replay !== undefined && typeof body.replay !== "boolean")
        return reject("bad_header", "replay is not a boolean")
    if (!Array.isArray(body.readings) || body.readings.length === 0)
        return reject("bad_header", "readings is not a non-empty array")
    if (body.readings.length > MAX_ELEMENTS) return reject("bad_header", `more than ${MAX_ELEMENTS} readings`)
    const amount = AMOUNTS.includes(body.quantity)
    const level = LEVELS.includes(body.quantity)
    const batch: ReadingBatch = {
        kind: "readings",
        node: where.node,
        meter: where.meter,
        quantity: body.quantity,
        unit: body.unit,
        time: body.time,
        replay: where.kind === "replay" || body.replay === true,
        elements: [],
        refused: [],
    }
    for (const raw of body.readings) {
        const { element, reason, detail } = readElement(raw)
        if (!element) {
            batch.refused.push({ reason: reason!, detail: detail!, text: keptPayload(JSON.stringify(raw) ?? "") })
            continue
        }
        // The quantity says what an element must carry; the database checks the rest.
        const isLevel = element.mean !== null && element.delta === null
        if (!element.gap && ((amount && isLevel) || (level && !isLevel))) {
            batch.refused.push({
                reason: "bad_element",
                detail: `${isLevel ? "a level" : "not a level"} for ${body.quantity}`,
                text: keptPayload(element.text),
            })
            continue
        }
        batch.elements.push(element)
    }
    return batch
}
