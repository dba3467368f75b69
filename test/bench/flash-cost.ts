// Flash cost of the node's write policy, over simulated days: the firmware's own queue code
// (DurableQueue, records, the node's state value) against the model of the Settings store
// (FakeSettingsStore: jd_fstor's log, entry costs and compaction), driven the way uplink.ts and
// src/node/flash-state.ts drive them. Days of one-minute readings cannot be run in real time in
// the simulator; the code that decides what is written is the same.
//
// The policy, as in uplink.ts and src/node/flash-state.ts: append every reading; remove it when
// acknowledged (online: before the next flush) and write the acknowledgement mark (its seq, and
// each meter's ceiling: its total plus twice its last amount), and before that, when the
// reading's total is above the ceiling, write the mark with the ceiling raised; flush every
// FLUSH_S, or at once when two closed blocks wait in RAM. The state is written for every new
// block of 1,000 sequence numbers.
import { FakeSettingsStore } from "../fixtures/fake-kv"
import { queueStats } from "../fixtures/queue-stats"
import { DurableQueue } from "../../src/storage/durable-queue"
import { energyRecord } from "../../src/storage/records"
import { SimulatedEnergyMeter } from "../../src/meters/simulated"
import { ACK_KEY, AckMark, ackMarkToJson, NodeState, STATE_KEY, stateToJson } from "../../src/node-state"
import { SEQ_BLOCK } from "../../src/sequence"

/** Erase cycles a flash page is rated for (ESP32 and RP2040 datasheets' external flash). */
export const ERASE_CYCLES = 100_000

export interface FlashScenario {
    name: string
    /** 8192 in the simulator and on RP2040, 16384 on ESP32. */
    storeBytes: number
    /** Log bytes other users keep live (WiFi credentials, configuration, the program entry). */
    othersBytes: number
    queueBytes: number
    flushS: number
    readingS: number
    /** Whether the broker acknowledges every reading before the next flush. */
    online: boolean
    days: number
}

export interface FlashResult {
    scenario: FlashScenario
    readings: number
    bytesPerReading: number
    writesPerDay: number
    compactionsPerDay: number
    /** Two regions alternate: a compaction erases one, so each is erased every other compaction. */
    lifetimeYears: number
    droppedWrites: number
    droppedReadings: number
    mergedRecords: number
}

export async function flashCost(s: FlashScenario): Promise<FlashResult> {
    const store = new FakeSettingsStore(s.storeBytes, s.othersBytes)
    const queue = new DurableQueue(store, s.queueBytes)
    await queue.open()
    const meter = new SimulatedEnergyMeter(1, 800, 0)
    // A node that learned the time: its state carries the boot's UTC offset, as it does in the field.
    const state: NodeState = {
        boot: 1,
        seq: SEQ_BLOCK,
        totals: [0],
        markSeq: 0,
        markEndS: 0,
        markUtc: true,
        offsets: [{ boot: 1, offsetS: 1763800000 }],
        clean: false,
    }
    const writeState = async () => await store.set(STATE_KEY, Buffer.from(JSON.stringify(stateToJson(state))))
    const mark: AckMark = { boot: 1, seq: 0, endS: 1763800000, endUtc: true, totals: [0] }
    const writeMark = async (ceiling: number) => {
        mark.totals = [Math.max(mark.totals[0], ceiling)]
        await store.set(ACK_KEY, Buffer.from(JSON.stringify(ackMarkToJson(mark))))
    }

    // The worst case for what follows: an earlier outage filled every queue slot, so the store
    // holds the whole queue budget live and has the least room between compactions.
    let seq = 0
    const take = (i: number) => {
        const startMs = i * s.readingS * 1000
        const r = meter.read(startMs, startMs + s.readingS * 1000)
        return energyRecord(
            0,
            ++seq,
            state.boot,
            startMs,
            startMs + s.readingS * 1000,
            r.deltaMilliWh,
            meter.totalMilliWh
        )
    }
    let i = 0
    while (queueStats(queue).blocks < queue.slots - 1) {
        queue.append(take(i++))
        if (queue.closedUnflushedBlocks() >= 1) await queue.flush()
    }
    queue.remove(queue.size())
    await queue.flush()
    await writeState()

    const bytesBefore = store.bytesWritten
    const compactionsBefore = store.compactions
    let writes = 0
    const countingSet = store.set.bind(store)
    store.set = async (key: string, value: Buffer) => {
        writes++
        await countingSet(key, value)
    }
    const readings = Math.round((s.days * 86400) / s.readingS)
    let lastFlushS = 0
    let lastDelta = 0
    for (let n = 0; n < readings; n++, i++) {
        const nowS = (n + 1) * s.readingS
        if (seq + 1 > state.seq) {
            state.seq += SEQ_BLOCK
            await writeState()
        }
        const r = take(i)
        queue.append(r)
        if (s.online) {
            // Published (above the ceiling: the mark first), acknowledged, gone from the queue.
            if (r.totalMilliWh > mark.totals[0]) await writeMark(r.totalMilliWh + 2 * lastDelta)
            queue.remove(1)
            mark.seq = r.seq
            mark.endS += s.readingS
            await writeMark(r.totalMilliWh + 2 * r.deltaMilliWh)
        }
        lastDelta = r.deltaMilliWh
        if (queue.closedUnflushedBlocks() >= 2 || nowS - lastFlushS >= s.flushS) {
            await queue.flush()
            lastFlushS = nowS
        }
    }
    const compactionsPerDay = (store.compactions - compactionsBefore) / s.days
    const q = queueStats(queue)
    return {
        scenario: s,
        readings,
        bytesPerReading: (store.bytesWritten - bytesBefore) / readings,
        writesPerDay: writes / s.days,
        compactionsPerDay,
        lifetimeYears: compactionsPerDay > 0 ? (2 * ERASE_CYCLES) / compactionsPerDay / 365 : Infinity,
        droppedWrites: store.droppedWrites,
        droppedReadings: q.droppedReadings,
        mergedRecords: q.mergedRecords,
    }
}
