// What the node asks of every meter: the amount over an interval and the running total (an
// energy, water or gas meter), or the min, mean and max of a level over an interval (a
// temperature, a current). Values are whole thousandths of the meter's unit.
// Pure core: imports nothing from @devicescript.

export interface MeterReading {
    /** Amount meters: the amount over the interval, whole thousandths (mWh for energy). */
    deltaMilliWh: number
    /** Level meters: over the interval, whole thousandths; the mean is weighted by time. */
    level?: LevelSummary
    /** Part of the interval was not measured (a failed sample, a gap between samples). */
    estimated?: boolean
}

export interface LevelSummary {
    minMilli: number
    meanMilli: number
    maxMilli: number
}

export interface EnergyMeter {
    /** The meter's register in thousandths: the total before this boot plus what was read since (0 for levels). */
    readonly totalMilliWh: number
    /** The reading from startMs to endMs (ms since boot); adds an amount to the total. */
    read(startMs: number, endMs: number): MeterReading | Promise<MeterReading>
}
