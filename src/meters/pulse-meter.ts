// An S0 (or reed contact) pulse meter: raw edges of a button input go through the pulse filter,
// each pulse is a fixed amount (the meter's constant, 1000/kWh...), and the total is the pulse
// count converted exactly, so the deltas of successive readings always sum to the total.
// The instantaneous rate (power or flow) comes from the period between the last two pulses; once
// the time since the last pulse exceeds that period, the rate can be at most one pulse over that
// time, so it decays towards zero when pulses stop, and is zero after RATE_TIMEOUT_MS.
//
// Pure core: imports nothing from @devicescript.
import { PulseFilter } from "./pulse-filter"
import { MeterSpec, milliToPulses, pulsesToMilli } from "./meter-spec"
import { EnergyMeter, MeterReading } from "./meter"

/** No pulse for this long: the rate is zero. */
export const RATE_TIMEOUT_MS = 3600000
const MS_PER_HOUR = 3600000

export class PulseMeter implements EnergyMeter {
    readonly filter: PulseFilter
    totalMilliWh: number
    /** Pulses since the meter's register was zero. */
    private pulses: number
    /** When the last pulse started, and the period before it, ms (for pulseRate). */
    lastPulseMs = -1
    periodMs = 0

    constructor(readonly spec: MeterSpec, startTotalMilli: number) {
        this.filter = new PulseFilter({ minPulseMs: spec.minPulseMs, minGapMs: spec.minGapMs })
        this.pulses = milliToPulses(spec, startTotalMilli)
        // The persisted total is what readings said: keep it, even if a changed constant makes it no multiple of a pulse.
        this.totalMilliWh = startTotalMilli
    }

    /** The input went low (a button `down`). */
    onFall(nowMs: number) {
        this.filter.onFall(nowMs)
    }

    /** The input went high (a button `up`). */
    onRise(nowMs: number) {
        if (this.filter.onRise(nowMs)) this.counted()
    }

    /**
     * A button `up` that says how long the input was low: the button server measured it at the
     * pin, without the delay of the event's delivery. A `down` that never arrived is restored
     * from it, so a lost `down` event loses no pulse.
     */
    onRiseHeld(nowMs: number, heldMs: number) {
        const counted = typeof heldMs === "number" && heldMs >= 0 ? this.filter.onRiseAfterLow(nowMs, heldMs) : this.filter.onRise(nowMs)
        if (counted) this.counted()
    }

    private counted() {
        const start = this.filter.lastPulseStartMs
        if (this.lastPulseMs >= 0) this.periodMs = start - this.lastPulseMs
        this.lastPulseMs = start
    }

    /** Pulses counted since boot. */
    count() {
        return this.filter.count
    }

    read(startMs: number, endMs: number): MeterReading {
        // A pulse still low at the boundary belongs to the interval it started in.
        if (this.filter.poll(endMs)) this.counted()
        const total = pulsesToMilli(this.spec, this.pulses + this.filter.count)
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
