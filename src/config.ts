// The node's configuration: every setting, its default, and its validation.
// Settings come from the Settings store (deployed from .env.defaults / .env.local by devtools or
// baked in by `devs bundle`) and, in the simulator, from the settings the runner builds in.
// Setting names are at most 13 characters: the Settings store's key limit.
//
// Pure core: imports nothing from @devicescript.
import { splitAt } from "./util/arrays"
import { parseBrokerUrl, BrokerAddress } from "./mqtt/url"
import { validateTopicName } from "./mqtt/topics"
import { extraMeterKey, MAX_METERS, MeterDefaults, MeterSpec, parseMeterSetting } from "./meters/meter-spec"

export interface NodeConfig {
    broker: BrokerAddress
    brokerUrl: string
    username: string
    password: string
    nodeId: string
    topicPrefix: string
    keepaliveS: number
    inflightWindow: number
    /** MQTT_VERSION: 5, 4 (3.1.1) or 0 (auto: 5, else 3.1.1); an image speaks 5 only when composed for it. */
    mqttVersion: number
    /** MQTT 5: Session Expiry Interval and Will Delay Interval the node asks for, in seconds. */
    sessionExpiryS: number
    willDelayS: number
    /** By slot (index in records): null where no meter is configured or its configuration is invalid. */
    meters: MeterSpec[]
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
    /** Simulated meter: one-minute readings of history queued at boot, for drain benchmarks. */
    simBacklog: number
}

/** What a composed image's build writes into it, as one JSON text (cheaper in code than an object literal). */
/** A configuration validated at build time (devs/lib/compose.ts): the node's, and what the boot checks. */
export interface BuiltConfig extends BuiltChecks {
    config: NodeConfig
}

export interface BuiltChecks {
    /** The settings' errors found at build time, reported at every boot. */
    errors: string[]
    /** describeConfig() of `config`, made at build time: the board prints it at boot. */
    description: string
    /** Every setting name, and the values the image was built with. */
    keys: string[]
    settings: Record<string, string | number>
}

export interface SettingSpec {
    key: string
    default: string | number
    kind: "string" | "int"
    min?: number
    max?: number
    help: string
}

/**
 * Every setting, one per line: "<KEY> <default> [<min> <max>] | <help>". A range makes it a whole
 * number; "" is an empty default. One literal rather than an array of objects: the firmware's code
 * section is limited to 64 KB, and every property of an object literal costs code.
 */
const SETTINGS_TABLE = `
MQTT_URL mqtt://127.0.0.1:1883 | broker, mqtt://host:port or mqtts://host:port
MQTT_USER "" | user name (put it in .env.local)
MQTT_PASS "" | password (put it in .env.local)
NODE_ID "" | node id in topics and the MQTT client id; default: the device id
TOPIC_PREFIX meters | first topic level
KEEPALIVE_S 30 5 65535 | MQTT keepalive in seconds
INFLIGHT 16 1 64 | QoS 1 publishes awaiting PUBACK at once
MQTT_VERSION 3.1.1 | MQTT protocol: 3.1.1, 5, or auto (5, or 3.1.1 when the broker refuses 5); 5 and auto need an image built for them
MQTT_EXPIRY_S 190080000 0 4294967295 | MQTT 5: how long the broker keeps the node's session after it leaves, s
WILL_DELAY_S 30 0 86400 | MQTT 5: how long the broker waits before publishing the offline will, s
TIME_TOPIC meters/time | topic the node reads UTC from ({"utc_ms":...}); - = none
HA_PREFIX homeassistant | Home Assistant discovery prefix; - = no discovery
METER_ID main | meter id in topics
METER_KIND sim | meter driver: sim, ina219, ina226, s0, temperature, humidity, dc-current, dc-voltage or water-level
METER_OPTS "" | options of the first meter, as "imp=1000/kWh input=s0a" (see docs/meters-and-wiring.md)
METER2 "" | a second meter: "<id> <kind> [option=value ...]"
METER3 "" | a third meter, as METER2
METER4 "" | a fourth meter, as METER2
INA_SHUNT_UO 100000 100 100000000 | INA219/INA226: shunt resistance in micro-ohm (100000 = 0.1 ohm)
INA_MAX_MA 3200 1 1000000 | INA219/INA226: largest expected current in mA (sets the current LSB)
INA_ADDR 64 64 79 | INA219/INA226: 7-bit I2C address (64 = 0x40)
SAMPLE_MS 1000 50 60000 | INA219/INA226: power sampling interval in ms
READ_MS 60000 1000 86400000 | reading interval in ms (readings are stored to the second)
FLUSH_S 600 1 86400 | longest time an unacknowledged reading stays in RAM only, s (the loss bound at a power cut)
QUEUE_BYTES 4608 800 8928 | Settings-store bytes for queued readings (8 KB store: 4608; ESP32's 16 KB: up to 8928)
HISTORY_BYTES 0 0 8192 | RAM bytes of recent readings kept for the replay command (0 = none; 800..8192 needs an image with history)
SIM_SEED 1 1 2147483646 | simulated meter: load profile seed
SIM_MEAN_W 800 0 1000000 | simulated meter: mean power in W
SIM_BACKLOG 0 0 10080 | simulated meter: one-minute readings of history to queue at boot (benchmarks)
`

/** The settings of SETTINGS_TABLE. */
export function settingSpecs(): SettingSpec[] {
    const specs: SettingSpec[] = []
    for (const line of splitAt(SETTINGS_TABLE, "\n")) {
        const bar = line.indexOf(" | ")
        if (bar < 0) continue
        const f = splitAt(line.slice(0, bar), " ")
        const help = line.slice(bar + 3)
        const text = f[1] === '""' ? "" : f[1]
        if (f.length > 2)
            specs.push({
                key: f[0],
                default: parseInt(text),
                kind: "int",
                min: parseInt(f[2]),
                max: parseInt(f[3]),
                help,
            })
        else specs.push({ key: f[0], default: text, kind: "string", help })
    }
    return specs
}

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

function findSpec(specs: SettingSpec[], key: string) {
    for (const s of specs) if (s.key === key) return s
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

/** "cmd" and "reply" are topic levels of the node's commands: a meter of that name would be ambiguous. */
function meterIdError(id: string) {
    if (!isValidId(id) || id === "cmd" || id === "reply")
        return `id ${id} must be 1..32 of ${ID_PATTERN_TEXT}, and not cmd or reply`
    return ""
}

/**
 * The meters by slot. An invalid meter is reported by name and its slot left empty: the other
 * meters keep running. Two meters with one id would share a topic: the later one is refused.
 */
function parseMeters(v: any, errors: string[]): MeterSpec[] {
    const defaults: MeterDefaults = {
        readMs: v.READ_MS,
        sampleMs: v.SAMPLE_MS,
        seed: v.SIM_SEED,
        meanW: v.SIM_MEAN_W,
        shuntMicroOhm: v.INA_SHUNT_UO,
        maxMilliA: v.INA_MAX_MA,
        address: v.INA_ADDR,
    }
    const meters: MeterSpec[] = []
    const ids: string[] = []
    // S0 meters take the board's S0 inputs in order (s0a, s0b...); a Jacdac sensor binds to the role named by its kind.
    let s0Inputs = 0
    for (let slot = 0; slot < MAX_METERS; ++slot) {
        meters.push(null)
        // The first meter's three settings read as one "<id> <kind> [options]" line, like the others'.
        const key = slot ? extraMeterKey(slot) : "METER_ID/METER_KIND/METER_OPTS"
        const text: string = slot
            ? v[extraMeterKey(slot)]
            : v.METER_ID + " " + v.METER_KIND + (v.METER_OPTS ? " " + v.METER_OPTS : "")
        if (!text) continue
        const words = splitAt(text, " ")
        const kind = words[1]
        const parsed = parseMeterSetting(
            slot,
            text,
            defaults,
            kind === "s0" ? "s0" + String.fromCharCode(97 + s0Inputs) : kind
        )
        const id = words[0]
        const idError = meterIdError(id)
        if (idError) parsed.errors.push(idError)
        if (ids.indexOf(id) >= 0) parsed.errors.push("id " + id + " is already used by another meter")
        if (parsed.errors.length) {
            errors.push(`meter ${id} (${key}): ${parsed.errors.join("; ")}; this meter is off, the others run`)
            continue
        }
        if (kind === "s0") s0Inputs++
        ids.push(id)
        meters[slot] = parsed.spec
    }
    return meters
}

/**
 * A topic (or topic prefix, checked with `suffix` appended) setting: "-" = none (""); an invalid
 * one is reported and its default used.
 */
function topicSetting(v: any, key: string, suffix: string, errors: string[]): string {
    const value: string = v[key] === "-" ? "" : v[key]
    const error = value ? validateTopicName(value + suffix) : null
    if (!error) return value
    errors.push(`setting ${key}: ${error}`)
    return findSpec(settingSpecs(), key).default as string
}

export interface ParsedConfig {
    config: NodeConfig
    /** One text per invalid setting; the default was used instead. */
    errors: string[]
}

/**
 * Builds the configuration from raw settings. Without NODE_ID (or with an invalid one) the node id
 * is "", which the node replaces with its device id at boot: the host validates settings without
 * knowing which board will run them.
 */
export function parseConfig(raw: Record<string, any>): ParsedConfig {
    const errors: string[] = []
    const v: any = {}
    const specs = settingSpecs()
    for (const spec of specs) v[spec.key] = readValue(raw, spec, errors)
    for (const key of Object.keys(raw))
        if (!findSpec(specs, key) && raw[key] !== undefined) errors.push(`setting ${key}: unknown setting (ignored)`)

    let broker = parseBrokerUrl(v.MQTT_URL)
    if (typeof broker === "string") {
        errors.push(`setting MQTT_URL: ${broker}`)
        v.MQTT_URL = findSpec(specs, "MQTT_URL").default
        broker = parseBrokerUrl(v.MQTT_URL) as BrokerAddress
    }
    let nodeId: string = v.NODE_ID
    if (nodeId && !isValidId(nodeId)) {
        errors.push(`setting NODE_ID: ${nodeId} must be 1..32 of ${ID_PATTERN_TEXT}`)
        nodeId = ""
    }
    const meters = parseMeters(v, errors)
    const prefix = topicSetting(v, "TOPIC_PREFIX", "/x", errors)
    const timeTopic = topicSetting(v, "TIME_TOPIC", "", errors)
    const haPrefix = topicSetting(v, "HA_PREFIX", "/x", errors)
    // By protocol level, as CONNECT writes it: 4 is MQTT 3.1.1, 5 is MQTT 5; 0 stands for auto.
    let mqttVersion = ["auto", "-", "-", "-", "3.1.1", "5"].indexOf(v.MQTT_VERSION)
    if (mqttVersion < 0) {
        errors.push(`setting MQTT_VERSION: ${v.MQTT_VERSION} is not auto, 5 or 3.1.1`)
        mqttVersion = 4
    }
    let historyBytes: number = v.HISTORY_BYTES
    if (historyBytes > 0 && historyBytes < 800) {
        errors.push(`setting HISTORY_BYTES: ${historyBytes} is too small for three blocks; 0 (none) or 800..8192`)
        historyBytes = 0
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
            mqttVersion,
            sessionExpiryS: v.MQTT_EXPIRY_S,
            willDelayS: v.WILL_DELAY_S,
            meters,
            timeTopic,
            haPrefix,
            readingIntervalMs: v.READ_MS,
            flushIntervalMs: v.FLUSH_S * 1000,
            queueBytes: v.QUEUE_BYTES,
            historyBytes,
            simBacklog: v.SIM_BACKLOG,
        },
        errors,
    }
}

/** Where describeConfig() writes the node id when it is the device id, known only at boot. */
export const DEVICE_ID_MARK = "<device id>"

/** The configuration as it may be logged and published: secrets masked. */
export function describeConfig(c: NodeConfig) {
    // Built in pieces: the DeviceScript compiler fails on template literals with many substitutions.
    let text = "broker " + c.brokerUrl
    if (c.username) text += " user " + c.username
    if (c.password) text += " password ***"
    text += `, node ${c.nodeId || DEVICE_ID_MARK}, prefix ${c.topicPrefix}, keepalive ${c.keepaliveS} s`
    for (const m of c.meters) if (m) text += `, meter ${m.id} (${m.kind}) every ${m.readMs / 1000} s`
    return (
        text +
        `, time from ${c.timeTopic || "the time command only"}, flush within ${c.flushIntervalMs / 1000} s, queue ${c.queueBytes} B`
    )
}
