// What the node asks of every energy meter: the energy over an interval and the running total.
// Pure core: imports nothing from @devicescript.

export interface MeterReading {
    /** Energy over the interval, whole mWh. */
    deltaMilliWh: number
    /** Part of the interval was not measured (a failed sample, a gap between samples). */
    estimated?: boolean
}

export interface EnergyMeter {
    /** The meter's register, mWh: the total before this boot plus what was read since. */
    readonly totalMilliWh: number
    /** The energy from startMs to endMs (ms since boot); adds it to the total. */
    read(startMs: number, endMs: number): MeterReading | Promise<MeterReading>
}
