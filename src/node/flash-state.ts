// What the node keeps in flash for the next boot, and when it writes it: the state (boot count,
// seq reservation, totals, UTC offsets, whether the boot stopped as planned), rewritten rarely,
// and the acknowledgement mark, rewritten as the broker acknowledges readings. Every write is
// read back (a full Settings store fails silently); a failed one is reported, never fatal.
//
// Platform code: DeviceScript only.
import * as ds from "@devicescript/core"
import { EnergyMeter } from "../meters/meter"
import {
    ACK_KEY,
    AckMark,
    ackMarkToJson,
    NodeState,
    STATE_KEY,
    stateToJson,
    totalOf,
    withHigherTotal,
} from "../node-state"
import { writeVerified } from "../platform/settings-store"
import { SequenceAllocator } from "../sequence"
import { FLAG_CLOCK_NOT_SET, ReadingRecord } from "../storage/records"

/** What the writes need of the node. */
export interface FlashStateHost {
    /** By slot; null where no meter runs. */
    readonly meters: EnergyMeter[]
    reportError(text: string): void
}

export class FlashState {
    readonly sequence: SequenceAllocator
    /** The acknowledgement mark as last written (see AckMark); set at boot, once recovered. */
    mark: AckMark
    /** By slot, the amount of the meter's last reading: the margin of its ceiling. */
    readonly lastDeltas: number[] = []
    /** Whether a write of the mark is under way. */
    private markBusy = false

    /** `state`: as the previous boot left it. */
    constructor(
        private readonly node: FlashStateHost,
        public state: NodeState
    ) {
        this.sequence = new SequenceAllocator(state.seq)
    }

    /** A copy of the state to change and write (its arrays are replaced, never changed in place). */
    next(): NodeState {
        return Object.assign({}, this.state)
    }

    async write(s: NodeState) {
        const error = await writeVerified(STATE_KEY, stateToJson(s))
        if (error) this.node.reportError(error)
        // Kept even if the write failed: a reading is worth more than a seq gap, and the error is
        // on the status topic for a human to act on.
        this.state = s
        return !error
    }

    /** Persists a new seq reservation when the current one is used up (or `force`: the boot write). */
    async persistReservation(force: boolean) {
        const upTo = this.sequence.reservationNeeded()
        if (upTo < 0 && !force) return
        const s = this.next()
        if (upTo >= 0) s.seq = upTo
        await this.write(s)
        if (upTo >= 0) this.sequence.reserved(upTo)
    }

    /** The next seq, its reservation persisted first. */
    async takeSeq() {
        await this.persistReservation(false)
        return this.sequence.take()
    }

    /**
     * The broker acknowledged `r` and everything before it: the mark moves there, also to a seq
     * below where this boot's gap started (a backlog of earlier boots draining), for the next boot
     * to drop what was acknowledged; lastKnown() takes only a seq above its own. A gap record carries
     * the boot it reports on: lastKnown() then starts no time of the next boot from it.
     */
    async onAcknowledged(r: ReadingRecord) {
        const m = this.mark
        m.seq = r.seq
        m.boot = r.boot
        m.endS = r.startS + r.durationS
        m.endUtc = !(r.flags & FLAG_CLOCK_NOT_SET)
        await this.writeMark()
    }

    /**
     * A total above its meter's ceiling (the power rose, or readings taken offline) is published
     * only once the ceiling in flash is above it.
     */
    async beforePublish(last: ReadingRecord) {
        if (last.totalMilliWh > totalOf(this.mark.totals, last.meter)) await this.writeMark()
    }

    /**
     * Writes the acknowledgement mark, each meter's ceiling raised to its total plus twice its
     * last amount: the next reading usually stays below it, so it needs no write of its own
     * before it is published. One write at a time; one that comes meanwhile waits.
     */
    private async writeMark() {
        while (this.markBusy) await ds.sleep(5)
        this.markBusy = true
        try {
            const m = this.mark
            const meters = this.node.meters
            for (let slot = 0; slot < meters.length; ++slot) {
                const meter = meters[slot]
                if (!meter) continue
                m.totals = withHigherTotal(m.totals, slot, meter.totalMilliWh + 2 * (this.lastDeltas[slot] || 0))
            }
            const error = await writeVerified(ACK_KEY, ackMarkToJson(m))
            if (error) this.node.reportError(error)
            else console.log(`flash: acknowledged up to seq ${m.seq}`)
        } finally {
            this.markBusy = false
        }
    }
}
