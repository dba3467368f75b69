// Boot recovery: where the previous boot's readings end, and what it left unaccounted for. The
// previous boot's state, its acknowledgement mark and the newest records still queued say how
// far its readings are safe; records the broker acknowledged before a power cut leave the queue,
// and a boot that did not stop as planned gets a gap record on each meter's topic, covering
// every seq after that point.
//
// Platform code: DeviceScript only.
import * as ds from "@devicescript/core"
import { NodeConfig } from "../config"
import { ReplayHistory } from "../features"
import { WallClock } from "../clock"
import { ACK_KEY, ackMarkFromJson, gapRecord, lastKnown, LastKnown, NodeState } from "../node-state"
import { readJsonSetting } from "../platform/settings-store"
import { DurableQueue } from "../storage/durable-queue"
import { ReadingRecord } from "../storage/records"
import { Uplink } from "../uplink"
import { FlashState } from "./flash-state"

/** What recovery needs of the node. */
export interface RecoveryHost {
    readonly config: NodeConfig
    /** The state as the previous boot left it. */
    readonly previous: NodeState
    readonly queue: DurableQueue
    readonly uplink: Uplink
    readonly flash: FlashState
    readonly clock: WallClock
    /** Null when HISTORY_BYTES is 0. */
    readonly history: ReplayHistory
    reportError(text: string): void
}

/**
 * Where the previous boot's accounted-for readings end (see lastKnown()), once the records its
 * acknowledgement mark covers have left the queue. Sets the clock's floor: time did not go back
 * while the node was off, so no time message may set the clock before the newest reading known
 * in UTC (the queue's, or the mark's after a planned stop).
 */
export async function recoverLastKnown(node: RecoveryHost): Promise<LastKnown> {
    const queue = node.queue
    const acked = ackMarkFromJson(await readJsonSetting(ACK_KEY, undefined))
    if (acked) await dropAcknowledged(node, acked.seq)
    const newestByMeter = await newestQueuedByMeter(node)
    const newestQueued = queue.size() ? (await queue.peek(1, queue.size() - 1))[0] : null
    const known = lastKnown(node.previous, newestQueued, newestByMeter, acked)
    let floorS = known.endUtc ? known.endS : 0
    if (acked && acked.endUtc && acked.endS > floorS) floorS = acked.endS
    node.clock.floorS = floorS
    return known
}

/**
 * Every meter's readings after `known` are unaccounted for: each meter's topic gets a gap, with a
 * seq of this boot's. Call once this boot's first seq reservation is in flash.
 */
export async function queueGaps(node: RecoveryHost, known: LastKnown) {
    const meters = node.config.meters
    const sequence = node.flash.sequence
    let gaps = 0
    for (let slot = 0; slot < meters.length; ++slot) {
        // Levels are not billing data: a temperature's missing minutes need no record.
        const gap =
            meters[slot] && meters[slot].additive ? gapRecord(node.previous, known, slot, sequence.peek()) : null
        if (!gap) continue
        sequence.take()
        gaps++
        await node.uplink.append(gap)
        if (node.history) node.history.add(gap)
    }
    if (gaps) {
        node.reportError(
            `node: boot ${node.previous.boot} did not stop as planned: readings after seq ${known.seq} (second ${known.endS} of that boot) are unaccounted for, reported as a gap`
        )
        await node.uplink.flush()
    }
}

/**
 * Drops the queue's oldest records up to seq `ackedSeq`: the broker acknowledged them before
 * the last boot ended, and their removal had not reached flash. Without this, the readings and
 * gaps a power cut caught there were sent again. The queue holds records in the order of their
 * seqs, and acknowledgements come in the queue's order.
 */
async function dropAcknowledged(node: RecoveryHost, ackedSeq: number) {
    const queue = node.queue
    const upTo = await queue.read(0, queue.size(), r => r.seq <= ackedSeq)
    if (!upTo) return
    queue.remove(upTo)
    const error = await queue.flush()
    if (error) node.reportError(error)
}

/**
 * The newest queued record of each meter, by slot: walks the queue back from its end until
 * every configured meter has one (meters interleave, so usually a few records).
 */
async function newestQueuedByMeter(node: RecoveryHost) {
    const meters = node.config.meters
    const queue = node.queue
    const found: ReadingRecord[] = []
    let missing = 0
    for (const m of meters) {
        found.push(null)
        if (m) missing++
    }
    let end = queue.size()
    while (end > 0 && missing > 0) {
        const from = end > 12 ? end - 12 : 0
        const records = await queue.peek(end - from, from)
        for (let i = records.length - 1; i >= 0; --i) {
            const r = records[i]
            if (r.meter < found.length && meters[r.meter] && !found[r.meter]) {
                found[r.meter] = r
                missing--
            }
        }
        end = from
        // Lets other fibers run: the VM stops a fiber after ~128K operations.
        await ds.sleep(0)
    }
    return found
}
