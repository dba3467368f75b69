// What each of a node's meters is: its id, its kind (which driver reads it), what it measures and
// in which unit, and the options of its driver. A node has up to MAX_METERS meters. The first is
// configured by METER_ID, METER_KIND, READ_MS and METER_OPTS; the others by one setting each,
// METER2..METER4, holding "<id> <kind> [option=value ...]", for example
//     METER2 = "water s0 imp=1/10L input=s0b every=900"
// A meter's index in records and in the queue is its slot (0 for the first, 1 for METER2...), so a
// meter whose configuration is invalid leaves its slot empty and never shifts the others.
//
// Pure core: imports nothing from @devicescript.
import { splitAt } from "../util/arrays"

export const MAX_METERS = 4

/**
 * The setting that configures a slot after the first: METER2..METER4. A function, not an array:
 * a module's top-level arrays are built in every image that imports the module.
 */
export function extraMeterKey(slot: number) {
    return "METER" + (slot + 1)
}

/** How a meter appears in its messages: what it measures, in which unit. */
export interface MeterLabel {
    id: string
    quantity: string
    unit: string
}

export interface MeterSpec extends MeterLabel {
    /** 0 for the first meter, 1 for METER2... */
    slot: number
    kind: string
    /** Amounts (delta and total) or levels (min, mean, max). */
    additive: boolean
    readMs: number
    // The fields below are each read by some kinds' drivers only; a composed image's spec carries
    // only those of its kind (devs/lib/compose.ts).
    /** ina219/ina226: the sampling period, ms. */
    sampleMs?: number
    /** sim: seed of the load profile and mean power, W. */
    seed?: number
    meanW?: number
    /** ina219/ina226: shunt (micro-ohm), largest current (mA), 7-bit address. */
    shuntMicroOhm?: number
    maxMilliA?: number
    address?: number
    /** s0 and Jacdac sensors: the role (service instance) that carries the input. */
    input?: string
    /** s0: one pulse is pulseMilliNum / pulseDen thousandths of the unit (exact for any label). */
    pulseMilliNum?: number
    pulseDen?: number
    /** s0: debounce, ms (DIN 43864 specifies pulses of at least 30 ms). */
    minPulseMs?: number
    minGapMs?: number
}

/**
 * Every kind: "<kind> <quantity> <unit>", amounts first. Kinds after LEVEL_KINDS_FROM are Jacdac
 * sensors read as levels. One string, not objects: the firmware's code section is limited to 64 KB
 * and every literal costs code.
 */
const KINDS =
    "sim energy Wh,ina219 energy Wh,ina226 energy Wh,s0 energy Wh,temperature temperature °C,humidity humidity %,dc-current current A,dc-voltage voltage V,water-level level %"
const LEVEL_KINDS_FROM = 4

/** Numeric options, with their ranges: name, min, max. */
const NUMERIC_OPTIONS =
    "every 1 86400,sample_ms 50 60000,seed 1 2147483646,mean_w 0 1000000,shunt_uo 100 100000000,max_ma 1 1000000,addr 64 79,min_pulse_ms 1 10000,min_gap_ms 1 10000"

export function kindNames() {
    const names: string[] = []
    for (const k of splitAt(KINDS, ",")) names.push(splitAt(k, " ")[0])
    return names
}

/** Defaults every meter starts from: the single-meter settings of earlier versions. */
export type MeterDefaults = Pick<
    MeterSpec,
    "readMs" | "sampleMs" | "seed" | "meanW" | "shuntMicroOhm" | "maxMilliA" | "address"
>

/** The units a pulse constant may name: "<name> <unit reported> <factor to it> <quantity>". */
const PULSE_UNITS = "kWh Wh 1000 energy,Wh Wh 1 energy,m3 m3 1 gas,L L 1 water"

export interface PulseConstant {
    /** One pulse is milliNum / den thousandths of `unit`. */
    milliNum: number
    den: number
    unit: string
    quantity: string
}

/**
 * Parses a meter's pulse constant as printed on it: "1000/kWh" (1000 impulses per kWh), "1/10L"
 * (one impulse per 10 litres), "100/m3". Returns the constant or an error text.
 */
export function parsePulseConstant(text: string): PulseConstant | string {
    const slash = text.indexOf("/")
    const impulses = parseWholeNumber(text.slice(0, slash))
    const rest = text.slice(slash + 1)
    // "10L": an amount, then the unit; "kWh": the unit alone.
    const counted = rest.charCodeAt(0) >= 48 && rest.charCodeAt(0) <= 57
    const amount = counted ? parseInt(rest) : 1
    const unitName = rest.slice(counted ? ("" + amount).length : 0)
    for (const u of splitAt(PULSE_UNITS, ",")) {
        const f = splitAt(u, " ")
        if (f[0] === unitName && impulses >= 1 && impulses <= 1000000 && amount >= 1 && amount <= 1000000)
            return { milliNum: amount * parseInt(f[2]) * 1000, den: impulses, unit: f[1], quantity: f[3] }
    }
    return (
        'imp: expected the pulse constant printed on the meter, impulses/[amount]unit with 1..1000000 and kWh, Wh, m3 or L, as 1000/kWh, 1/10L or 100/m3, not "' +
        text +
        '"'
    )
}

/** A whole number written in decimal digits only, or -1. */
function parseWholeNumber(text: string) {
    if (!text.length || text.length > 10) return -1
    let n = 0
    for (let i = 0; i < text.length; ++i) {
        const c = text.charCodeAt(i)
        if (c < 48 || c > 57) return -1
        n = n * 10 + (c - 48)
    }
    return n
}

/**
 * Reads "name=value" words: text options as they are, numeric ones checked against their range.
 * Pushes an error for anything else.
 */
export function parseOptions(words: string[], errors: string[]) {
    const options: any = {}
    // Text options. Here, not at the top level: a module's top-level arrays are built in every
    // image that imports the module.
    const textOptions = ["imp", "input", "quantity"]
    const numeric = splitAt(NUMERIC_OPTIONS, ",")
    for (const w of words) {
        if (!w) continue
        const eq = w.indexOf("=")
        const name = eq > 0 ? w.slice(0, eq) : ""
        const text = w.slice(eq + 1)
        if (textOptions.indexOf(name) >= 0) {
            options[name] = text
            continue
        }
        let known = false
        for (const spec of numeric) {
            const f = splitAt(spec, " ")
            if (f[0] !== name) continue
            known = true
            const n = parseWholeNumber(text)
            if (n < parseInt(f[1]) || n > parseInt(f[2]))
                errors.push(name + ": " + text + " is not a whole number in " + f[1] + ".." + f[2])
            else options[name] = n
        }
        if (!known)
            errors.push(
                "option " +
                    w +
                    ": expected name=value with a name among " +
                    textOptions.join(", ") +
                    ", " +
                    NUMERIC_OPTIONS
            )
    }
    return options
}

export interface ParsedMeter {
    spec: MeterSpec
    /** Why the meter cannot run; empty when spec is usable. */
    errors: string[]
}

/** `value` unless undefined, else `fallback`. */
function or(value: any, fallback: any) {
    return value === undefined ? fallback : value
}

/**
 * One meter from its id, kind and option words. `defaultInput` is the role an input-driven meter
 * binds to when no input= is given (the board files name S0 inputs s0a, s0b...).
 */
export function buildMeterSpec(
    slot: number,
    id: string,
    kind: string,
    optionWords: string[],
    defaults: MeterDefaults,
    defaultInput: string
): ParsedMeter {
    const errors: string[] = []
    const kinds = splitAt(KINDS, ",")
    let info: string[] = null
    for (let i = 0; i < kinds.length; ++i) {
        const k = splitAt(kinds[i], " ")
        if (k[0] === kind) info = [k[1], k[2], i < LEVEL_KINDS_FROM ? "amount" : "level"]
    }
    if (!info) {
        errors.push("unknown meter kind " + kind + " (known: " + kindNames().join(", ") + ")")
        return { spec: null, errors }
    }
    const o = parseOptions(optionWords, errors)
    const spec: MeterSpec = {
        slot,
        id,
        kind,
        quantity: info[0],
        unit: info[1],
        additive: info[2] === "amount",
        readMs: o.every === undefined ? defaults.readMs : o.every * 1000,
        sampleMs: or(o.sample_ms, defaults.sampleMs),
        seed: or(o.seed, defaults.seed + slot),
        meanW: or(o.mean_w, defaults.meanW),
        shuntMicroOhm: or(o.shunt_uo, defaults.shuntMicroOhm),
        maxMilliA: or(o.max_ma, defaults.maxMilliA),
        address: or(o.addr, defaults.address),
        input: o.input || defaultInput,
        pulseMilliNum: 0,
        pulseDen: 1,
        minPulseMs: or(o.min_pulse_ms, 30),
        minGapMs: or(o.min_gap_ms, 30),
    }
    if (kind === "s0") {
        const c = parsePulseConstant(o.imp || "")
        if (typeof c === "string") errors.push(c)
        else {
            const pc = c as PulseConstant
            spec.pulseMilliNum = pc.milliNum
            spec.pulseDen = pc.den
            spec.unit = pc.unit
            spec.quantity = o.quantity || pc.quantity
            if (["energy", "water", "gas"].indexOf(spec.quantity) < 0)
                errors.push("quantity: " + spec.quantity + " is not energy, water or gas")
        }
    }
    return { spec, errors }
}

/** Splits a METER2..METER4 value "<id> <kind> [options]" and builds its meter. */
export function parseMeterSetting(
    slot: number,
    text: string,
    defaults: MeterDefaults,
    defaultInput: string
): ParsedMeter {
    const words = splitAt(text, " ")
    if (words.length < 2 || !words[0])
        return { spec: null, errors: ['expected "<id> <kind> [option=value ...]", not "' + text + '"'] }
    return buildMeterSpec(slot, words[0], words[1], words.slice(2), defaults, defaultInput)
}

/** Thousandths of the unit after `pulses` pulses: exact, whatever the constant, so deltas always sum to the total. */
export function pulsesToMilli(spec: MeterSpec, pulses: number) {
    return Math.floor((pulses * spec.pulseMilliNum) / spec.pulseDen)
}

/** The pulse count a persisted total stands for (the inverse of pulsesToMilli). */
export function milliToPulses(spec: MeterSpec, milli: number) {
    // "+ 0" turns the -0 of ceil(-1e-9) into 0.
    return Math.ceil((milli * spec.pulseDen) / spec.pulseMilliNum - 1e-9) + 0
}
