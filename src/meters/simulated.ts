// A simulated electricity meter for the simulator: a deterministic, seeded load profile, so a
// newcomer sees realistic numbers and tests can predict them. Power follows a daily curve
// (low at night, peaks morning and evening) with seeded noise; energy is power integrated over
// each reading interval.
//
// Pure core: imports nothing from @devicescript.
import { MeterSpec } from "./meter-spec"
import { nextParkMiller, PARK_MILLER_MODULUS as PRNG_MODULUS } from "../util/park-miller"

const MS_PER_HOUR = 3600000
const MS_PER_DAY = 24 * MS_PER_HOUR

/**
 * Park-Miller minimal standard generator, the same sequence in Node and in the VM. The meter
 * below steps the same sequence itself: a class of its own would cost the image a constructor
 * and a method.
 */
export class SeededRandom {
    private state: number
    constructor(seed: number) {
        this.state = Math.floor(Math.abs(seed)) % PRNG_MODULUS || 1
    }
    /** Uniform in [0, 1). */
    next() {
        this.state = nextParkMiller(this.state)
        return (this.state - 1) / (PRNG_MODULUS - 1)
    }
}

export class SimulatedEnergyMeter {
    /** The state of its SeededRandom sequence. */
    private randomState: number
    /** Cumulative energy in whole mWh: integers, so the sum of deltas equals the total exactly. */
    totalMilliWh: number

    constructor(
        seed: number,
        readonly meanW: number,
        startTotalMilliWh: number
    ) {
        this.randomState = Math.floor(Math.abs(seed)) % PRNG_MODULUS || 1
        this.totalMilliWh = startTotalMilliWh
    }

    /** Energy over [startMs, endMs) in whole mWh, and the mean power in W; advances the total. */
    read(startMs: number, endMs: number) {
        this.randomState = nextParkMiller(this.randomState)
        const noise = 0.85 + 0.3 * ((this.randomState - 1) / (PRNG_MODULUS - 1))
        // The load relative to the mean, by the hour of the day at mid-interval: a base load, a
        // morning and an evening peak (a mean of about 1).
        const h = (((startMs + endMs) / 2) % MS_PER_DAY) / MS_PER_HOUR
        const morning = Math.exp(-((h - 7.5) * (h - 7.5)) / 2)
        const evening = Math.exp(-((h - 19) * (h - 19)) / 4)
        const powerW = this.meanW * (0.55 + 0.9 * morning + 1.1 * evening) * noise
        const deltaMilliWh = Math.round((powerW * (endMs - startMs)) / 3600)
        this.totalMilliWh += deltaMilliWh
        return { deltaMilliWh, powerW }
    }
}

/** The simulated meter's driver (kind "sim"). */
export function startSimulatedMeter(spec: MeterSpec, totalMilli: number) {
    return new SimulatedEnergyMeter(spec.seed, spec.meanW, totalMilli)
}
