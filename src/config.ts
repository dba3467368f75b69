// The node's configuration: every setting, its default, and its validation.
// Settings come from the Settings store (deployed from .env.defaults / .env.local by devtools or
// baked in by `devs bundle`) and, in the simulator, from the settings the runner builds in.
// Setting names are at most 13 characters: the Settings store's key limit.
//
// Pure core: imports nothing from @devicescript.
import { parseBrokerUrl, BrokerAddress } from "./mqtt/url"
import { validateTopicName } from "./mqtt/topics"

export interface NodeConfig {
    broker: BrokerAddress
    brokerUrl: string
    username: string
    password: string
    nodeId: string
    topicPrefix: string
    keepaliveS: number
    inflightWindow: number
    meterId: string
    meterKind: string
    /** Retained time topic the node takes UTC from; "" = none (then only the `time` command sets it). */
    timeTopic: string
    /** Home Assistant discovery prefix; "" = no discovery. */
    haPrefix: string
    readingIntervalMs: number
    /** While readings wait for the broker, the longest they stay in RAM only before a flash write. */
    flushIntervalMs: number
    /** Log bytes of the Settings store the reading queue may hold. */
    queueBytes: number
    /** RAM bytes for recent history (the replay command); 0 = none. */
    historyBytes: number
    /** INA219/INA226: shunt in micro-ohm, largest expected current in mA, I2C address, sampling interval. */
    inaShuntMicroOhm: number
    inaMaxMilliA: number
    inaAddress: number
    sampleMs: number
    simSeed: number
    simMeanW: number
    /** Simulated meter: one-minute readings of history queued at boot, for drain benchmarks. */
    simBacklog: number
}

export interface SettingSpec {
    key: string
    /** Default value; undefined = required or derived. */
    default?: string | number
    kind: "string" | "int"
    min?: number
    max?: number
    secret?: boolean
    help: string
}

export const SETTINGS: SettingSpec[] = [
    { key: "MQTT_URL", default: "mqtt://127.0.0.1:1883", kind: "string", help: "broker, mqtt://host:port or mqtts://host:port" },
    { key: "MQTT_USER", default: "", kind: "string", help: "user name (put it in .env.local)" },
    { key: "MQTT_PASS", default: "", kind: "string", secret: true, help: "password (put it in .env.local)" },
    { key: "NODE_ID", default: "", kind: "string", help: "node id in topics and the MQTT client id; default: the device id" },
    { key: "TOPIC_PREFIX", default: "meters", kind: "string", help: "first topic level" },
    { key: "KEEPALIVE_S", default: 30, kind: "int", min: 5, max: 65535, help: "MQTT keepalive in seconds" },
    { key: "INFLIGHT", default: 16, kind: "int", min: 1, max: 64, help: "QoS 1 publishes awaiting PUBACK at once" },
    { key: "TIME_TOPIC", default: "meters/time", kind: "string", help: "topic the node reads UTC from ({\"utc_ms\":...}); - = none" },
    { key: "HA_PREFIX", default: "homeassistant", kind: "string", help: "Home Assistant discovery prefix; - = no discovery" },
    { key: "METER_ID", default: "main", kind: "string", help: "meter id in topics" },
    { key: "METER_KIND", default: "sim", kind: "string", help: "meter driver: sim, ina219 or ina226" },
    { key: "INA_SHUNT_UO", default: 100000, kind: "int", min: 100, max: 100000000, help: "INA219/INA226: shunt resistance in micro-ohm (100000 = 0.1 ohm)" },
    { key: "INA_MAX_MA", default: 3200, kind: "int", min: 1, max: 1000000, help: "INA219/INA226: largest expected current in mA (sets the current LSB)" },
    { key: "INA_ADDR", default: 64, kind: "int", min: 64, max: 79, help: "INA219/INA226: 7-bit I2C address (64 = 0x40)" },
    { key: "SAMPLE_MS", default: 1000, kind: "int", min: 50, max: 60000, help: "INA219/INA226: power sampling interval in ms" },
    { key: "READ_MS", default: 60000, kind: "int", min: 1000, max: 86400000, help: "reading interval in ms (readings are stored to the second)" },
    { key: "FLUSH_S", default: 600, kind: "int", min: 1, max: 86400, help: "longest time an unacknowledged reading stays in RAM only, s (the loss bound at a power cut)" },
    { key: "QUEUE_BYTES", default: 4608, kind: "int", min: 800, max: 8928, help: "Settings-store bytes for queued readings (8 KB store: 4608; ESP32's 16 KB: up to 8928)" },
    { key: "HISTORY_BYTES", default: 2048, kind: "int", min: 0, max: 8192, help: "RAM bytes of recent readings kept for the replay command (0 = none)" },
    { key: "SIM_SEED", default: 1, kind: "int", min: 1, max: 2147483646, help: "simulated meter: load profile seed" },
    { key: "SIM_MEAN_W", default: 800, kind: "int", min: 0, max: 1000000, help: "simulated meter: mean power in W" },
    { key: "SIM_BACKLOG", default: 0, kind: "int", min: 0, max: 5000, help: "simulated meter: one-minute readings of history to queue at boot (benchmarks)" },
]

export const METER_KINDS = ["sim", "ina219", "ina226"]

const ID_PATTERN_TEXT = "letters, digits, '-' and '_'"

/** By character code: DeviceScript does not order strings with < and >. */
function isIdChar(code: number) {
    return (
        (code >= 97 && code <= 122) || // a-z
        (code >= 65 && code <= 90) || // A-Z
        (code >= 48 && code <= 57) || // 0-9
        code === 45 || // -
        code === 95 // _
    )
}

/** Ids become topic levels: keep them to characters no broker or dashboard trips over. */
export function isValidId(id: string) {
    if (!id || id.length > 32) return false
    for (let i = 0; i < id.length; ++i) if (!isIdChar(id.charCodeAt(i))) return false
    return true
}

function findSpec(key: string) {
    for (const s of SETTINGS) if (s.key === key) return s
    return undefined
}

/**
 * Reads one setting from `raw`, falling back to its default. Values may arrive as strings
 * (from .env files) or numbers. Returns the value; pushes a named error on invalid input.
 */
function readValue(raw: Record<string, any>, spec: SettingSpec, errors: string[]): any {
    const value = raw[spec.key]
    if (value === undefined || value === null || value === "") return spec.default
    if (spec.kind === "string") {
        if (typeof value !== "string") {
            errors.push(`setting ${spec.key}: expected a string`)
            return spec.default
        }
        return value
    }
    const n = typeof value === "number" ? value : parseInt("" + value)
    if (typeof n !== "number" || isNaN(n) || Math.floor(n) !== n || n < spec.min || n > spec.max) {
        errors.push(`setting ${spec.key}: ${value} is not a whole number in ${spec.min}..${spec.max}`)
        return spec.default
    }
    return n
}

export interface ParsedConfig {
    config: NodeConfig
    /** One text per invalid setting; the default was used instead. */
    errors: string[]
}

/** Builds the configuration from raw settings; `deviceId` is the fallback node id. */
export function parseConfig(raw: Record<string, any>, deviceId: string): ParsedConfig {
    const errors: string[] = []
    const v: any = {}
    for (const spec of SETTINGS) v[spec.key] = readValue(raw, spec, errors)
    for (const key of Object.keys(raw))
        if (!findSpec(key) && raw[key] !== undefined) errors.push(`setting ${key}: unknown setting (ignored)`)

    let broker = parseBrokerUrl(v.MQTT_URL)
    if (typeof broker === "string") {
        errors.push(`setting MQTT_URL: ${broker}`)
        v.MQTT_URL = findSpec("MQTT_URL").default
        broker = parseBrokerUrl(v.MQTT_URL) as BrokerAddress
    }
    let nodeId: string = v.NODE_ID || deviceId
    if (!isValidId(nodeId)) {
        errors.push(`setting NODE_ID: ${nodeId} must be 1..32 of ${ID_PATTERN_TEXT}`)
        nodeId = deviceId
    }
    let meterId: string = v.METER_ID
    // "cmd" and "reply" are topic levels of the node's commands: a meter of that name would be ambiguous.
    if (!isValidId(meterId) || meterId === "cmd" || meterId === "reply") {
        errors.push(`setting METER_ID: ${meterId} must be 1..32 of ${ID_PATTERN_TEXT}`)
        meterId = "main"
    }
    let prefix: string = v.TOPIC_PREFIX
    const prefixError = validateTopicName(prefix + "/x")
    if (prefixError) {
        errors.push(`setting TOPIC_PREFIX: ${prefixError}`)
        prefix = "meters"
    }
    let timeTopic: string = v.TIME_TOPIC === "-" ? "" : v.TIME_TOPIC
    const timeTopicError = timeTopic ? validateTopicName(timeTopic) : null
    if (timeTopicError) {
        errors.push(`setting TIME_TOPIC: ${timeTopicError}`)
        timeTopic = "meters/time"
    }
    let haPrefix: string = v.HA_PREFIX === "-" ? "" : v.HA_PREFIX
    const haPrefixError = haPrefix ? validateTopicName(haPrefix + "/x") : null
    if (haPrefixError) {
        errors.push(`setting HA_PREFIX: ${haPrefixError}`)
        haPrefix = "homeassistant"
    }
    let historyBytes: number = v.HISTORY_BYTES
    if (historyBytes > 0 && historyBytes < 800) {
        errors.push(`setting HISTORY_BYTES: ${historyBytes} is too small for three blocks; 0 (none) or 800..8192`)
        historyBytes = 2048
    }
    let meterKind: string = v.METER_KIND
    if (METER_KINDS.indexOf(meterKind) < 0) {
        errors.push(`setting METER_KIND: unknown meter kind ${meterKind} (known: ${METER_KINDS.join(", ")})`)
        meterKind = "sim"
    }
    return {
        config: {
            broker: broker as BrokerAddress,
            brokerUrl: v.MQTT_URL,
            username: v.MQTT_USER,
            password: v.MQTT_PASS,
            nodeId,
            topicPrefix: prefix,
            keepaliveS: v.KEEPALIVE_S,
            inflightWindow: v.INFLIGHT,
            meterId,
            meterKind,
            timeTopic,
            haPrefix,
            readingIntervalMs: v.READ_MS,
            flushIntervalMs: v.FLUSH_S * 1000,
            queueBytes: v.QUEUE_BYTES,
            historyBytes,
            inaShuntMicroOhm: v.INA_SHUNT_UO,
            inaMaxMilliA: v.INA_MAX_MA,
            inaAddress: v.INA_ADDR,
            sampleMs: v.SAMPLE_MS,
            simSeed: v.SIM_SEED,
            simMeanW: v.SIM_MEAN_W,
            simBacklog: v.SIM_BACKLOG,
        },
        errors,
    }
}

/** The configuration as it may be logged and published: secrets masked. */
export function describeConfig(c: NodeConfig) {
    // Built in pieces: the DeviceScript compiler fails on template literals with many substitutions.
    let text = "broker " + c.brokerUrl
    if (c.username) text += " user " + c.username
    if (c.password) text += " password ***"
    text += `, node ${c.nodeId}, prefix ${c.topicPrefix}, keepalive ${c.keepaliveS} s`
    text += `, meter ${c.meterId} (${c.meterKind}) every ${c.readingIntervalMs} ms`
    text += `, time from ${c.timeTopic || "the time command only"}`
    text += `, flush within ${c.flushIntervalMs / 1000} s, queue ${c.queueBytes} B`
    return text
}
