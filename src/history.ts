// Recent history for the `replay` command: every reading the node takes, kept in RAM in the flash
// queue's own format (a DurableQueue over a RAM key-value store), so that when the room runs out
// the oldest readings are merged into longer intervals, exactly as in the flash queue: the most
// recent readings at full resolution, older ones coarser, energy exact. It costs no flash writes
// (delivered readings never touch flash) and is lost at a restart: history starts at boot.
//
// Pure core: the fiber primitives are passed in.
import { DurableQueue } from "./storage/durable-queue"
import { KeyValueStore } from "./storage/kv"
import { FLAG_CLOCK_NOT_SET, ReadingRecord } from "./storage/records"
import { recordInUtc } from "./clock"

/** A key-value store in RAM, for the history queue. */
export class MemoryKeyValueStore implements KeyValueStore {
    private values: any = {}
    async get(key: string): Promise<Buffer> {
        const v = this.values[key]
        return v && v.length ? v : null
    }
    async set(key: string, value: Buffer) {
        this.values[key] = value
    }
}

export interface HistoryPlatform {
    sleep(ms: number): Promise<void>
    spawn(fn: () => Promise<void>): void
}

/** Records read per step of a replay: one message's worth. */
const REPLAY_CHUNK = 12

export interface ReplayRange {
    fromMs: number
    toMs: number
}

/** Why a replay request is unusable, or "". `from` and `to` are Unix ms, from < to. */
export function replayRangeError(request: any): string {
    const from = request ? request.from : undefined
    const to = request ? request.to : undefined
    if (typeof from !== "number" || typeof to !== "number" || Math.floor(from) !== from || Math.floor(to) !== to)
        return "replay needs from and to, whole Unix milliseconds"
    if (from >= to) return "replay needs from before to"
    return ""
}

/**
 * Whether reading `r` (in UTC) overlaps [fromMs, toMs): a reading is replayed when any part of
 * its interval lies in the range, so a merged reading that straddles an edge comes whole.
 */
export function inRange(r: ReadingRecord, range: ReplayRange) {
    if (r.flags & FLAG_CLOCK_NOT_SET) return false
    const startMs = r.startS * 1000
    const endMs = (r.startS + r.durationS) * 1000
    return startMs < range.toMs && (endMs > range.fromMs || (r.durationS === 0 && startMs >= range.fromMs))
}

export class History {
    private readonly queue: DurableQueue
    private pending: ReadingRecord[] = []
    private busy = false
    private pumping = false

    constructor(
        budgetBytes: number,
        private readonly platform: HistoryPlatform,
        pause?: () => Promise<void>
    ) {
        this.queue = new DurableQueue(new MemoryKeyValueStore(), budgetBytes, { keyPrefix: "h.", pause })
    }

    async open() {
        return await this.queue.open()
    }

    /** Readings held (a merged one covers several). */
    size() {
        return this.queue.size() + this.pending.length
    }

    /** Keeps a copy of `r`. RAM only: safe on any fiber. */
    add(r: ReadingRecord) {
        this.pending.push(r)
        if (this.pumping) return
        this.pumping = true
        const self = this
        this.platform.spawn(async () => await self.pump())
    }

    /** Moves pending readings into the queue and lets it merge, in a fiber of its own. */
    private async pump() {
        while (this.busy) await this.platform.sleep(10)
        this.busy = true
        try {
            while (this.pending.length) {
                const r = this.pending.shift()
                this.queue.append(r)
                // Merging keeps the history within its budget; a RAM store has no write to fail.
                await this.queue.flush(0)
            }
        } finally {
            this.busy = false
            this.pumping = false
        }
    }

    /**
     * Calls `send` with the held readings that overlap `range`, oldest first, in UTC, at most
     * REPLAY_CHUNK at a time (one message's worth, so memory stays bounded). Readings of a boot
     * whose UTC offset is unknown cannot be placed in a range: they are counted, not sent.
     */
    async replay(
        range: ReplayRange,
        utcOffsetS: (boot: number) => number,
        send: (records: ReadingRecord[]) => Promise<void>
    ) {
        while (this.busy) await this.platform.sleep(10)
        this.busy = true
        let sent = 0
        let untimed = 0
        try {
            const total = this.queue.size()
            for (let from = 0; from < total; from += REPLAY_CHUNK) {
                const records = await this.queue.peek(REPLAY_CHUNK, from)
                const chosen: ReadingRecord[] = []
                for (const stored of records) {
                    const r = recordInUtc(stored, utcOffsetS(stored.boot))
                    if (r.flags & FLAG_CLOCK_NOT_SET) untimed++
                    else if (inRange(r, range)) chosen.push(r)
                }
                if (chosen.length) {
                    sent += chosen.length
                    // Under the lock: a merge meanwhile would shift positions. Readings taken while
                    // the broker acknowledges wait in `pending`.
                    await send(chosen)
                }
            }
        } finally {
            this.busy = false
        }
        return { sent, untimed }
    }
}
