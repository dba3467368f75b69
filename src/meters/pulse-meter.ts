// An S0 (or reed contact) pulse meter on a button service: each pulse is a fixed amount (the
// meter's constant, 1000/kWh...), and the total is the pulse count converted exactly, so the
// deltas of successive readings always sum to the total.
//
// Pulses are counted from `up` events alone, by the time the input was low, which the button
// server measures at the pin (in C, every few ms, debounced). Arrival times are no use for timing:
// events reach the VM in batches, so a down and the up before it can arrive in the same turn. A
// low period shorter than minPulseMs is a glitch (DIN 43864 specifies S0 pulses of at least
// 30 ms); a long one is one pulse, counted when it ends. Only `up` events are needed, so a lost
// `down` loses nothing.
//
// The instantaneous rate (power or flow) comes from the period between the last two pulses; once
// the time since the last pulse exceeds that period, the rate can be at most one pulse over that
// time, so it decays towards zero when pulses stop, and is zero after RATE_TIMEOUT_MS.
//
// Pure core: imports nothing from @devicescript.
import { MeterSpec, milliToPulses, pulsesToMilli } from "./meter-spec"
import { EnergyMeter, MeterReading } from "./meter"

/** No pulse for this long: the rate is zero. */
export const RATE_TIMEOUT_MS = 3600000
const MS_PER_HOUR = 3600000

export class PulseMeter implements EnergyMeter {
    totalMilliWh: number
    /** Pulses counted since boot, and low periods too short to be one. */
    count = 0
    glitches = 0
    /** When the last pulse started, and the period before it, ms (for pulseRate). */
    lastPulseMs = -1
    periodMs = 0
    /** Pulses since the meter's register was zero, at boot. */
    private readonly basePulses: number

    constructor(
        readonly spec: MeterSpec,
        startTotalMilli: number
    ) {
        this.basePulses = milliToPulses(spec, startTotalMilli)
        // The persisted total is what readings said: keep it, even if a changed constant makes it no multiple of a pulse.
        this.totalMilliWh = startTotalMilli
    }

    /** The input went high at nowMs after being low for lowMs (a button `up`). Returns the pulses counted. */
    onRiseHeld(nowMs: number, lowMs: number) {
        if (!(lowMs >= this.spec.minPulseMs)) {
            this.glitches++
            return 0
        }
        const start = nowMs - lowMs
        if (this.lastPulseMs >= 0) this.periodMs = start - this.lastPulseMs
        this.lastPulseMs = start
        this.count++
        return 1
    }

    read(startMs: number, endMs: number): MeterReading {
        const total = pulsesToMilli(this.spec, this.basePulses + this.count)
        const delta = total > this.totalMilliWh ? total - this.totalMilliWh : 0
        if (delta) this.totalMilliWh = total
        return { deltaMilliWh: delta }
    }
}

/**
 * Power in W (energy meters) or flow in units per hour, at nowMs. A free function, not a method:
 * the firmware compiles every method of a class, and only the functions it calls.
 */
export function pulseRate(meter: PulseMeter, nowMs: number) {
    if (meter.lastPulseMs < 0 || meter.periodMs <= 0) return 0
    const since = nowMs - meter.lastPulseMs
    if (since >= RATE_TIMEOUT_MS) return 0
    const period = since > meter.periodMs ? since : meter.periodMs
    return (meter.spec.pulseMilliNum / meter.spec.pulseDen / 1000) * (MS_PER_HOUR / period)
}
