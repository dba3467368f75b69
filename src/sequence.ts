// Reading sequence numbers that strictly increase per meter and are never reused, also across
// reboots, without a flash write per reading: the node persists a reservation ("every seq up to
// N may have been used") before it hands out numbers above the previous reservation. After a
// reboot it continues above the reservation, so a power cut leaves a gap in seq, never a reuse.
//
// Pure core: imports nothing from @devicescript.

/** Numbers reserved per flash write: at one reading a minute, one write every ~17 hours. */
export const SEQ_BLOCK = 1000

export class SequenceAllocator {
    private nextSeq: number
    private reservedUpTo: number

    /** `reservedUpTo`: the reservation persisted by the previous boot (0 on a new device). */
    constructor(
        reservedUpTo: number,
        readonly blockSize = SEQ_BLOCK
    ) {
        this.reservedUpTo = reservedUpTo
        this.nextSeq = reservedUpTo + 1
    }

    /** The reservation to persist before `take()` may hand out the next number, or -1 if none is needed. */
    reservationNeeded() {
        return this.nextSeq > this.reservedUpTo ? this.nextSeq + this.blockSize - 1 : -1
    }

    /** Call once the reservation returned by reservationNeeded() is safely in flash. */
    reserved(upTo: number) {
        if (upTo > this.reservedUpTo) this.reservedUpTo = upTo
    }

    /** The next number; only valid while reservationNeeded() is -1. */
    take() {
        if (this.nextSeq > this.reservedUpTo)
            throw new Error("sequence numbers used before their reservation was persisted")
        return this.nextSeq++
    }

    peek() {
        return this.nextSeq
    }
}
