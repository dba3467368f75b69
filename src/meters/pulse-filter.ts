// Counting S0 pulses from raw edges with their true times (an input that reports each edge as it
// happens; the firmware's button inputs use PulseMeter, which needs only the low time of each
// `up`): a contact bounces, and wiring picks up glitches, so the raw edges are not pulses. The filter keeps a debounced line state:
// - it turns LOW (a pulse starts, and is counted) once the raw line stayed low for minPulseMs;
// - it turns HIGH again once the raw line stayed high for minGapMs.
// Bounce inside a pulse and glitches shorter than minPulseMs change nothing, and a pulse that
// stays low for minutes is still one pulse. DIN 43864 (S0) specifies pulses of at least 30 ms.
//
// Edges alone do not say when a low period reaches minPulseMs: a pulse is counted at its rising
// edge, or by poll(now) while the line is still low (at a reading boundary, so a long pulse is
// counted in the interval it started in).
//
// Pure core: imports nothing from @devicescript.

export interface PulseFilterOptions {
    /** Shortest low period that is a pulse, ms. */
    minPulseMs: number
    /** Shortest high period between two pulses, ms. */
    minGapMs: number
}

export class PulseFilter {
    /** Pulses counted. */
    count = 0
    /** Low periods too short to be a pulse (bounce and glitches). */
    glitches = 0
    /** When the last pulse counted started (its falling edge), ms; -1 before the first. */
    lastPulseStartMs = -1
    private rawLow = false
    /** When the raw line last changed level. */
    private rawSinceMs = -1
    /** The debounced state: LOW from a counted pulse until the line has been high for minGapMs. */
    private filteredLow = false

    constructor(readonly options: PulseFilterOptions) {}

    /** The raw line went low (a button `down`). */
    onFall(nowMs: number) {
        if (this.rawLow) return
        // The high period that ends here: long enough, and the pulse before it is over.
        if (this.filteredLow && this.rawSinceMs >= 0 && nowMs - this.rawSinceMs >= this.options.minGapMs)
            this.filteredLow = false
        this.rawLow = true
        this.rawSinceMs = nowMs
    }

    /** The raw line went high (a button `up`). Returns the pulses counted (0 or 1). */
    onRise(nowMs: number) {
        if (!this.rawLow) return 0
        const counted = this.poll(nowMs)
        if (!counted && !this.filteredLow) this.glitches++
        this.rawLow = false
        this.rawSinceMs = nowMs
        return counted
    }

    /** Counts a pulse whose low period has lasted minPulseMs by now. Returns the pulses counted. */
    poll(nowMs: number) {
        if (!this.rawLow || this.filteredLow) return 0
        // A line that has been high long enough since the last pulse was already let go in
        // onFall; a low that started right after a pulse (a bounce) is not a new pulse.
        if (nowMs - this.rawSinceMs < this.options.minPulseMs) return 0
        this.filteredLow = true
        this.count++
        this.lastPulseStartMs = this.rawSinceMs
        return 1
    }
}
