// The readings: each meter in a fiber of its own reads at every boundary of its interval, and
// every reading becomes a record with the next seq, queued on the uplink (and kept for replay).
//
// Platform code: DeviceScript only.
import * as ds from "@devicescript/core"
import { nextBoundaryMs, WallClock } from "../clock"
import { NodeConfig } from "../config"
import { ReplayHistory } from "../features"
import { EnergyMeter, MeterReading } from "../meters/meter"
import { MeterLabel } from "../meters/meter-spec"
import { energyRecord, FLAG_CLOCK_NOT_SET, FLAG_ESTIMATED, FLAG_NON_ADDITIVE } from "../storage/records"
import { Uplink } from "../uplink"
import { FlashState } from "./flash-state"

/** What the readings need of the node. */
export interface ReadingHost {
    readonly config: NodeConfig
    /** By slot; null where no meter runs. */
    readonly meters: EnergyMeter[]
    readonly labels: MeterLabel[]
    readonly boot: number
    readonly clock: WallClock
    /** Seqs, and each meter's last amount for the acknowledgement mark's ceilings. */
    readonly flash: FlashState
    readonly uplink: Uplink
    /** Null when HISTORY_BYTES is 0. */
    readonly history: ReplayHistory
    /** A planned stop began: no reading after it. */
    readonly stopping: boolean
}

/** Starts meter `slot`'s readings in a fiber of its own. */
export function startReadingLoop(node: ReadingHost, slot: number) {
    setTimeout(async () => await readingLoop(node, slot), 0)
}

/**
 * Takes meter `slot`'s reading at every boundary: whole seconds of uptime, and once the clock
 * is set, multiples of the meter's interval in UTC. Each reading starts where the previous one
 * ended, in the stored seconds, so intervals never overlap or leave holes, even across the
 * moment the time arrives or the clock is re-anchored.
 */
async function readingLoop(node: ReadingHost, slot: number) {
    const spec = node.config.meters[slot]
    const meter = node.meters[slot]
    const clock = node.clock
    let startMs = Math.floor(ds.millis() / 1000) * 1000
    let startS = startMs / 1000
    let startUtc = false
    /** The boundary last reached: the next one is scheduled from it, even while startMs waits. */
    let boundaryMs = startMs
    let clockChanges = clock.changes
    while (!node.stopping) {
        let endMs = nextBoundaryMs(boundaryMs, spec.readMs, clock)
        const waitMs = endMs - ds.millis()
        if (waitMs > 0) await ds.sleep(waitMs)
        if (node.stopping) break
        // After a long stall, end the reading now rather than firing a burst of missed ones.
        if (ds.millis() - endMs >= 1000) endMs = Math.floor(ds.millis() / 1000) * 1000
        boundaryMs = endMs
        let endS = endMs / 1000
        if (clock.isSet()) {
            if (!startUtc) startS += clock.bootOffsetS
            startUtc = true
            endS = Math.round(endMs / 1000) + clock.offsetS
        }
        // The clock stepped back past this interval's start: a reading may neither end before it
        // starts nor overlap the last one. The energy goes on accumulating in the meter, into
        // the first reading that ends after startS.
        if (endS <= startS) continue
        const r = await meter.read(startMs, endMs)
        // A level meter with no value yet has nothing to say about this interval.
        if (r) {
            // The interval that spans a step of the clock is not the time it says: flagged.
            if (clock.changes !== clockChanges) r.estimated = true
            await queueReading(node, slot, r, startMs, endMs, startS, endS)
        }
        clockChanges = clock.changes
        startMs = endMs
        startS = endS
    }
}

/** Stores and queues one reading of meter `slot`, in stored seconds startS..endS. */
async function queueReading(
    node: ReadingHost,
    slot: number,
    r: MeterReading,
    startMs: number,
    endMs: number,
    startS: number,
    endS: number
) {
    const meter = node.meters[slot]
    const record = energyRecord(
        slot,
        await node.flash.takeSeq(),
        node.boot,
        startMs,
        endMs,
        r.deltaMilliWh,
        meter.totalMilliWh
    )
    if (node.clock.isSet()) record.flags &= ~FLAG_CLOCK_NOT_SET
    record.startS = startS
    record.durationS = endS - startS
    if (r.level) {
        record.flags |= FLAG_NON_ADDITIVE
        record.deltaMilliWh = 0
        record.totalMilliWh = 0
        record.minMilli = r.level.minMilli
        record.meanMilli = r.level.meanMilli
        record.maxMilli = r.level.maxMilli
    }
    if (r.estimated) record.flags |= FLAG_ESTIMATED
    node.flash.lastDeltas[slot] = record.deltaMilliWh
    await node.uplink.append(record)
    if (node.history) node.history.add(record)
    console.log(`reading: seq ${record.seq} of ${node.labels[slot].id}, queued ${node.uplink.size()}`)
}
