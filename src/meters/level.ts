// The min, mean and max of a level (a temperature, a current) over a reading interval, from
// samples taken at irregular times: each sample holds until the next one, so the mean is weighted
// by time, as a stored reading's mean must be. An interval with no sample at all is estimated
// from the last value known.
//
// Pure core: imports nothing from @devicescript.
import { LevelSummary } from "./meter"

export class LevelAccumulator {
    private min = 0
    private max = 0
    /** Sum of value x ms since the interval started, and the ms covered. */
    private weighted = 0
    private coveredMs = 0
    private samples = 0
    private lastValue = 0
    private lastMs = -1
    private hasValue = false

    /** A sample of `value` (in the unit) at nowMs. */
    add(value: number, nowMs: number) {
        this.advance(nowMs)
        // The value carried over from the previous interval held at its start: it counts for min and max.
        if (!this.hasValue || value < this.min) this.min = value
        if (!this.hasValue || value > this.max) this.max = value
        this.samples++
        this.lastValue = value
        this.hasValue = true
    }

    /** The last value holds from the last sample to nowMs. */
    private advance(nowMs: number) {
        if (this.hasValue && this.lastMs >= 0 && nowMs > this.lastMs) {
            this.weighted += this.lastValue * (nowMs - this.lastMs)
            this.coveredMs += nowMs - this.lastMs
        }
        this.lastMs = nowMs
    }

    /**
     * Closes the interval at endMs: its summary in thousandths, or null when no value was ever
     * seen. `estimated` when no sample fell inside it (the last value was carried over).
     */
    close(endMs: number): { summary: LevelSummary; estimated: boolean } {
        if (!this.hasValue) return null
        this.advance(endMs)
        const estimated = this.samples === 0
        const mean = this.coveredMs > 0 ? this.weighted / this.coveredMs : this.lastValue
        const summary = {
            minMilli: Math.round(this.min * 1000),
            meanMilli: Math.round(mean * 1000),
            maxMilli: Math.round(this.max * 1000),
        }
        // The next interval starts with the value that holds now.
        this.min = this.lastValue
        this.max = this.lastValue
        this.weighted = 0
        this.coveredMs = 0
        this.samples = 0
        return { summary, estimated }
    }
}
