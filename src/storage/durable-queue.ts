// A FIFO of reading records in flash, for store-and-forward: readings wait here until the broker
// acknowledged them, across power cuts, and when the room runs out old readings are merged into
// longer intervals (totals stay exact, only time resolution degrades) before any is dropped.
//
// Layout in the key-value store, all keys from a fixed set that is overwritten, never deleted
// (a delete leaves a tombstone that compaction keeps):
// - `<prefix>b00`..`<prefix>bNN`: N slots of one block each (records.ts), at most BLOCK_BYTES;
// - `<prefix>meta`: the queue's blocks in order, each as (slot, serial it must hold, records at
//   its start that are gone), a limit below which every serial ever written lies, and lifetime
//   counters.
// N comes from the byte budget given to the constructor: the most log bytes these keys can hold
// at once, so the rest of the store keeps its room. One slot stays free for copy-on-write merges.
//
// Crash safety: each value write is atomic in jd_fstor (the value, then the entry that makes it
// visible), and every write is read back. The meta is the commit record:
// - a new block's slot is put into the meta before the block is written; until it is, the slot
//   holds an older serial (serials only grow, and restart above the meta's limit after a
//   reboot) and the block reads as empty, which it was;
// - the newest block is rewritten in place as it grows, so its old copy is a prefix of the new;
// - merged blocks go to a free slot, then the meta swaps them in (copy on write);
// - removals and records moved into a merged block only change the meta's skip counts.
// A crash between two writes leaves the state of the last meta, plus at most records flush() had
// not yet reported as written.
//
// Work per call is bounded: open() and flush() touch each slot a bounded number of times, and
// every loop over records calls the `pause` option every few dozen records: the DeviceScript VM
// stops a fiber that runs about 128K operations without yielding, and decoding one record costs
// a few hundred.
//
// Pure core: imports nothing from @devicescript.
import { KeyValueStore } from "./kv"
import { entryCostBytes } from "./kv"
import {
    BlockReader,
    BlockWriter,
    ByteReader,
    ByteWriter,
    canMerge,
    mergeInto,
    ReadingRecord,
    recordError,
    copyRecord,
    BLOCK_HEADER_BYTES,
} from "./records"
import { removeAt } from "../util/arrays"

/** Block value size: a multiple of 8 (no alignment waste in the log) and within the 226 bytes a 5-character key allows. */
export const BLOCK_BYTES = 224
/** Most slots: the meta must stay within its 225-byte value limit. */
export const MAX_SLOTS = 35
/** Fewest slots: two blocks to merge and a free one to merge them into. */
export const MIN_SLOTS = 3
/** New blocks kept in RAM (about 1 KB) while flush() is not called or cannot write, before the oldest is dropped. */
export const MAX_STAGED_BLOCKS = 4
/**
 * Interval lengths, s, that merging coarsens to, finest first; 0 = pack blocks tighter without
 * coarsening. Each divides the next, so merged intervals nest and line up across merges.
 */
export const MERGE_LEVELS_S = [0, 10, 30, 60, 300, 900, 1800, 3600, 7200, 21600, 43200, 86400]
/**
 * A budget for an 8 KB store (simulator, RP2040) with about 2 KB used by others: the log holds
 * 8,120 bytes, 6,072 left; 4,608 pays for 18 slots (17 blocks of records and a free one, 4,464
 * bytes) and the meta (144), and leaves 1,464 bytes of log for rewrites between compactions.
 */
export const BUDGET_FOR_8K_STORE_BYTES = 4608

/** Bytes a moved record can gain or lose when it becomes the full first record of a block, or stops being one. */
const FULL_RECORD_SLACK_BYTES = 32
/** A block with less room than this left is treated as full when merging: few records are that short. */
const FULL_SLACK_BYTES = 4
/** Records decoded or encoded between two calls of the pause option: about 25K VM operations. */
const RECORDS_PER_PAUSE = 24

const META_FORMAT = 0xa2
const META_HEADER_BYTES = 18
const META_BYTES_PER_BLOCK = 6
/** Serials handed out between two raises of the limit in the meta. */
const SERIAL_RESERVE = 64

/** Log bytes the meta of a queue with `slots` slots can take (one slot is always free). */
export function metaCostBytes(slots: number) {
    return entryCostBytes(META_HEADER_BYTES + META_BYTES_PER_BLOCK * (slots - 1))
}

/** Slots a byte budget pays for: every slot holding a full block, and the largest meta. */
export function slotsForBudget(budgetBytes: number) {
    let slots = MAX_SLOTS
    while (slots > 0 && slots * entryCostBytes(BLOCK_BYTES) + metaCostBytes(slots) > budgetBytes) slots--
    return slots
}

export interface QueueOptions {
    /** Key prefix, at most 6 characters so block keys stay within 9 and values can be BLOCK_BYTES; default "q.". */
    keyPrefix?: string
    /**
     * Lets other fibers run; called every few dozen records in long operations. In DeviceScript
     * pass `async () => await ds.sleep(0)`: the VM stops a fiber that runs about 128K operations
     * without yielding. Node needs none.
     */
    pause?: () => Promise<void>
}

interface Block {
    /** Slot index, or -1 while staged in RAM only. */
    slot: number
    serial: number
    /** Records in the block's bytes, and how many at its start are gone (removed or merged on). */
    count: number
    skip: number
    length: number
    finestDurationS: number
    /** Bytes of this block known to be in its slot (0: not written yet). */
    flushedLength: number
    /** The block's bytes while it is open for appends or not yet in flash; null after. */
    writer: BlockWriter
    /** The newest block, which appends go to. */
    open: boolean
}

/** The block of `writer`'s records: staged in RAM and open for appends (slot -1), or in flash in `slot`. */
function blockOf(slot: number, writer: BlockWriter): Block {
    return {
        slot,
        serial: writer.serial,
        count: writer.count,
        skip: 0,
        length: writer.length,
        finestDurationS: writer.finestDurationS,
        flushedLength: slot < 0 ? 0 : writer.length,
        writer,
        open: slot < 0,
    }
}

/** Whether `a` and `b` are as long and hold the same bytes from `from` on. */
function sameBytes(a: Buffer, b: Buffer, from: number) {
    if (!a || !b || a.length !== b.length) return false
    for (let i = from; i < a.length; ++i) if (a[i] !== b[i]) return false
    return true
}

/**
 * Readings (not records: a merged record covers several) in a block after its first `skip`
 * records. Decodes without pausing: up to half the VM's budget for a full block.
 */
function readingsIn(bytes: Buffer, skip: number) {
    const reader = new BlockReader(bytes)
    let readings = 0
    let index = 0
    for (let r = reader.next(); r; r = reader.next()) if (index++ >= skip) readings += r.seq - r.firstSeq + 1
    return readings
}

// ---- merging two blocks ---------------------------------------------------------------------------

interface PendingRecord {
    record: ReadingRecord
    /** Input positions of the first and last record merged into it. */
    firstIndex: number
    lastIndex: number
    /** No further record can join it. */
    closed: boolean
}

/**
 * Collects input records, merges neighbours of the same meter at a level, and writes the results
 * to one block in input order. When the block is full it is cut back to the last point where it
 * holds exactly the first `cleanBoundary` inputs: with several meters interleaved, a merged record
 * can cover inputs beyond others not yet written, and those must not end up in two blocks.
 */
class MergeOutput extends BlockWriter {
    full = false
    cleanBoundary = 0
    /** Block bytes holding exactly the first `cleanBoundary` inputs. */
    cleanLength = BLOCK_HEADER_BYTES
    private pending: PendingRecord[] = []
    private lastEmittedIndex = -1

    constructor(
        private readonly level: number,
        serial: number
    ) {
        super(BLOCK_BYTES, serial)
    }

    add(r: ReadingRecord, index: number) {
        let p: PendingRecord = null
        for (const q of this.pending) if (!q.closed && q.record.meter === r.meter) p = q
        if (p && canMerge(p.record, r, this.level)) {
            mergeInto(p.record, r)
            p.lastIndex = index
        } else {
            if (p) p.closed = true
            // A copy: merging changes it, and the reader still refers to r.
            this.pending.push({ record: copyRecord(r), firstIndex: index, lastIndex: index, closed: false })
        }
        this.emit(index + 1, false)
    }

    /**
     * Writes the pending records no further input can join, or with `all` every one (the inputs
     * ended). When full, the block's bytes up to `cleanLength` hold the first `cleanBoundary` inputs.
     */
    emit(nextInput: number, all: boolean) {
        if (all) for (const q of this.pending) q.closed = true
        while (!this.full && this.pending.length && this.pending[0].closed) {
            const q = this.pending[0]
            if (!this.tryAppend(q.record)) {
                this.full = true
                return
            }
            if (q.lastIndex > this.lastEmittedIndex) this.lastEmittedIndex = q.lastIndex
            removeAt(this.pending, 0)
            const next = this.pending.length ? this.pending[0].firstIndex : nextInput
            if (this.lastEmittedIndex < next) {
                this.cleanBoundary = next
                this.cleanLength = this.length
            }
        }
    }
}

interface MergeStep {
    /** The step replaces the block at this position and takes records from the next. */
    index: number
    writer: BlockWriter
    /** Records taken from the second block, after its skip. */
    taken: number
    /** Records read from both blocks that the new block holds. */
    inputs: number
}

// ---- the queue ------------------------------------------------------------------------------------

/**
 * The queue. Call open() once before anything else. append() stages a record in RAM; flush()
 * writes what is staged (only records still queued: a reading acknowledged before the next flush
 * never reaches flash); peek(n) reads the oldest records; remove(n) forgets them once the broker
 * acknowledged them (persisted by the next flush). Records of one meter keep their order; records
 * of different meters can change places when merged.
 */
export class DurableQueue {
    readonly slots: number
    private blocks: Block[] = []
    private nextSerial = 1
    /** Every serial in flash is below this; the meta in flash says so. */
    private serialLimit = 1
    /** Since the queue began: readings dropped for lack of room, and records merged into others (kept in the meta). */
    droppedReadings = 0
    mergedRecords = 0
    /** Merge steps (each one block written) since this object was created. */
    merges = 0
    private generation = 0
    /** The meta as last written or read (an empty one before the first write). */
    private committedMeta: Buffer = null
    /** The oldest block's bytes, so peek() does not read flash every time. */
    private headCache: Buffer
    private headCacheSerial: number
    private readCache: Buffer
    private readCacheSerial: number
    readonly keyPrefix: string
    private readonly metaKey: string
    private readonly pause: () => Promise<void>
    private recordsSincePause = 0
    /** Records at the head that flush() must leave alone (see flush()). */
    private pinned: number

    /** `budgetBytes`: log bytes the queue's keys may hold in the store at most (see slotsForBudget()). */
    constructor(
        private readonly store: KeyValueStore,
        budgetBytes: number,
        options?: QueueOptions
    ) {
        // A longer prefix makes the store refuse every full block.
        this.keyPrefix = options && options.keyPrefix ? options.keyPrefix : "q."
        this.metaKey = this.keyPrefix + "meta"
        this.pause = options && options.pause
        // The configuration allows no budget under MIN_SLOTS blocks.
        this.slots = slotsForBudget(budgetBytes)
    }

    /** Counts a record decoded or encoded; pauses every RECORDS_PER_PAUSE of them. */
    private async tick() {
        if (++this.recordsSincePause % RECORDS_PER_PAUSE === 0 && this.pause) await this.pause()
    }

    /** A writer holding the records of `bytes`, to append after them; null unless they are the readable block `serial`. */
    private async resumeWriter(bytes: Buffer, serial: number) {
        const writer = new BlockWriter(BLOCK_BYTES, serial)
        const reader = new BlockReader(bytes)
        for (let r = reader.next(); r; r = reader.next()) {
            writer.tryAppend(r)
            await this.tick()
        }
        return reader.error || reader.serial !== serial ? null : writer
    }

    private blockKey(slot: number) {
        return this.keyPrefix + (slot < 10 ? "b0" : "b") + slot
    }

    // ---- restoring ------------------------------------------------------------------------------

    /**
     * Restores the queue from flash. Returns "" or what was lost (an unreadable meta, missing or
     * unreadable blocks: a gap in the readings); the queue then holds what could be read.
     */
    async open(): Promise<string> {
        this.blocks = []
        // Slots not in the queue still hold their old block. New serials start above every
        // serial in them, so a stale block is never taken for a new one, whatever the meta says.
        let serialsFrom = 1
        for (let slot = 0; slot < this.slots; ++slot) {
            const bytes = await this.store.get(this.blockKey(slot))
            if (bytes) serialsFrom = Math.max(serialsFrom, new BlockReader(bytes).serial + 1)
        }
        this.serialLimit = this.nextSerial = serialsFrom
        this.committedMeta = this.buildMeta(0)
        const meta = await this.store.get(this.metaKey)
        if (!meta) return ""
        // The header ends with the number of blocks listed.
        const count = meta.length < META_HEADER_BYTES ? 0 : meta[META_HEADER_BYTES - 1]
        if (meta[0] !== META_FORMAT || meta.length !== META_HEADER_BYTES + META_BYTES_PER_BLOCK * count) {
            return "queue: " + this.metaKey + " unreadable, queued readings (if any) are lost"
        }
        const rd = new ByteReader(meta, 1, meta.length)
        this.generation = rd.uint(4)
        const serialLimit = rd.uint(4)
        if (serialLimit > this.serialLimit) this.serialLimit = this.nextSerial = serialLimit
        this.droppedReadings = rd.uint(4)
        this.mergedRecords = rd.uint(4)
        rd.pos = META_HEADER_BYTES
        this.committedMeta = meta
        let missing = 0
        let gaps = ""
        let tail: Block = null
        for (let i = 0; i < count; ++i) {
            const slot = rd.uint(1)
            const serial = rd.uint(4)
            const skip = rd.uint(1)
            const bytes = slot < MAX_SLOTS ? await this.store.get(this.blockKey(slot)) : null
            const writer = bytes ? await this.resumeWriter(bytes, serial) : null
            if (!writer || !writer.count) {
                missing++
                continue
            }
            // Missing blocks before a readable one are a gap; at the end they are new blocks
            // whose write a crash prevented, which held no flushed records.
            if (missing) gaps += (gaps ? ", " : "") + missing + " before " + this.blockKey(slot)
            missing = 0
            if (skip < writer.count) {
                // Appends continue in the newest block; the others are read from flash.
                if (tail) tail.writer = null
                tail = blockOf(slot, writer)
                tail.skip = skip
                this.blocks.push(tail)
            }
        }
        if (tail) tail.open = true
        return gaps ? "queue: blocks missing or unreadable, their readings are lost: " + gaps : ""
    }

    // ---- appending --------------------------------------------------------------------------------

    /** Stages a record in RAM; returns "" or why it was refused or what had to be dropped. */
    append(record: ReadingRecord): string {
        const error = recordError(record)
        if (error) return "queue: record refused: " + error
        const tail = this.blocks.length ? this.blocks[this.blocks.length - 1] : null
        if (tail && tail.open && tail.writer.tryAppend(record)) {
            tail.count = tail.writer.count
            tail.length = tail.writer.length
            tail.finestDurationS = tail.writer.finestDurationS
            return ""
        }
        if (tail) {
            tail.open = false
            if (tail.flushedLength === tail.length) tail.writer = null
        }
        const writer = new BlockWriter(BLOCK_BYTES, this.nextSerial++)
        writer.tryAppend(record)
        this.blocks.push(blockOf(-1, writer))
        // Drops the oldest staged block once RAM holds too many (flush() not called, or failing).
        let staged = 0
        let oldest = -1
        for (let i = this.blocks.length - 1; i >= 0; --i)
            if (this.blocks[i].slot < 0) {
                staged++
                oldest = i
            }
        if (staged <= MAX_STAGED_BLOCKS) return ""
        const b = this.blocks[oldest]
        const lost = readingsIn(b.writer.bytes(), b.skip)
        removeAt(this.blocks, oldest)
        this.droppedReadings += lost
        return "queue: flash not written, dropped " + lost + " readings held in RAM"
    }

    // ---- reading and removing -------------------------------------------------------------------------

    /** Blocks closed for appends whose records are not all in flash yet: a reason to flush now. */
    closedUnflushedBlocks() {
        let n = 0
        for (const b of this.blocks) if (!b.open && b.flushedLength !== b.length) n++
        return n
    }

    size() {
        let n = 0
        for (const b of this.blocks) n += b.count - b.skip
        return n
    }

    /**
     * Copies of `n` records from position `from` (0: the oldest), oldest first; fewer at the end
     * of the queue. Each copy is an object of a dozen numbers (about 200 bytes of the VM's heap):
     * keep n small, or use read().
     */
    async peek(n: number, from = 0): Promise<ReadingRecord[]> {
        const out: ReadingRecord[] = []
        // push returns the new length: never 0, so the read goes on.
        await this.read(from, n, r => out.push(copyRecord(r)) > 0)
        return out
    }

    /**
     * Calls `visit` with up to `n` records from position `from`, oldest first, until it returns
     * false; returns how many it took. Reads only the blocks that hold them and allocates no
     * record: `visit` gets the block reader's own, valid only during the call.
     */
    async read(from: number, n: number, visit: (r: ReadingRecord) => boolean) {
        let taken = 0
        for (let i = 0; i < this.blocks.length && taken < n; ++i) {
            const b = this.blocks[i]
            // From here on, `from` counts the records in the block's bytes, those gone included.
            from += b.skip
            if (from >= b.count) {
                from -= b.count
                continue
            }
            // The open block is read in its writer's buffer: online, that is every read. The
            // spare reader, when no other read holds it, decodes into the records it has.
            const bytes = b.writer ? b.writer.buf : await this.blockBytes(i)
            const length = b.writer ? b.writer.length : bytes ? bytes.length : 0
            const reader = this.spareReader ? this.spareReader.reset(bytes, length) : new BlockReader(bytes, length)
            this.spareReader = null
            let index = 0
            let more = true
            for (let r = reader.next(); r && taken < n && more; r = reader.next()) {
                if (index++ >= from) {
                    more = visit(r)
                    if (more) taken++
                }
                await this.tick()
            }
            this.spareReader = reader
            if (!more) break
            from = 0
        }
        return taken
    }

    /** A block reader for read() to reuse: its records are decoded into again. */
    private spareReader: BlockReader = null

    /**
     * The bytes of the block at position i: from RAM while staged or open, else from flash. The
     * head block and the last other block read are kept: a drain peeks the same block a dozen
     * times in a row, and a Settings read costs about 20 ms in the simulator. A serial names
     * one content for good (a rewrite takes a new serial), so the copies never go stale.
     */
    private async blockBytes(i: number): Promise<Buffer> {
        const b = this.blocks[i]
        if (b.writer) return b.writer.bytes()
        if (b.serial === this.headCacheSerial) return this.headCache
        if (b.serial === this.readCacheSerial) return this.readCache
        const bytes = await this.store.get(this.blockKey(b.slot))
        if (i === 0) {
            this.headCache = bytes
            this.headCacheSerial = b.serial
        } else {
            this.readCache = bytes
            this.readCacheSerial = b.serial
        }
        return bytes
    }

    /** Forgets the oldest `n` records (once the broker acknowledged them); the next flush() persists it. */
    remove(n: number) {
        while (n > 0 && this.blocks.length) {
            const head = this.blocks[0]
            const take = Math.min(n, head.count - head.skip)
            head.skip += take
            n -= take
            if (head.skip >= head.count) removeAt(this.blocks, 0)
        }
    }

    // ---- writing ------------------------------------------------------------------------------------

    /**
     * Writes staged records and removals to flash, merging or, as a last resort, dropping old
     * records when the slots run out. Returns "" once everything queued is in flash, else what
     * failed (what is not written stays in RAM for the next try).
     *
     * `pinned`: the oldest records that are out for delivery (published, PUBACK awaited). Their
     * blocks are neither merged nor dropped, so remove(n) after the acknowledgement still removes
     * exactly the records that were sent. Do not call append() or remove() while a flush runs.
     */
    async flush(pinned = 0): Promise<string> {
        this.pinned = pinned
        for (let round = 0; round <= MAX_SLOTS + 1; ++round) {
            let waiting = 0
            for (const b of this.blocks) {
                if (b.slot >= 0) continue
                const slot = this.slotForStaged()
                if (slot < 0) waiting++
                else b.slot = slot
            }
            let error = await this.writeMeta()
            if (error) return error
            for (const b of this.blocks) {
                if (b.slot < 0 || b.flushedLength === b.length) continue
                // Taken before the write: a record appended meanwhile is not in flash yet.
                const length = b.length
                error = await this.writeVerified(this.blockKey(b.slot), b.writer.bytes())
                if (error) return error
                b.flushedLength = length
                if (!b.open && b.flushedLength === b.length) b.writer = null
            }
            if (!waiting) return ""
            // Slots the previous meta still listed are free now that the new one is written.
            if (this.slotForStaged() >= 0) continue
            error = await this.makeRoom()
            if (error) return error
        }
        return "queue: flush did not finish"
    }

    /** A free slot for a staged block, or -1: one always stays free for merges to write into. */
    private slotForStaged() {
        let assigned = 0
        for (const b of this.blocks) if (b.slot >= 0) assigned++
        return assigned + 1 < this.slots ? this.freeSlot() : -1
    }

    /** A slot neither the queue nor the meta in flash refers to, or -1. */
    private freeSlot() {
        for (let slot = 0; slot < this.slots; ++slot) {
            let used = false
            // The slots the meta in flash lists, one every META_BYTES_PER_BLOCK bytes after its header.
            const meta = this.committedMeta
            for (let at = META_HEADER_BYTES; at < meta.length; at += META_BYTES_PER_BLOCK)
                if (meta[at] === slot) used = true
            for (const b of this.blocks) if (b.slot === slot) used = true
            if (!used) return slot
        }
        return -1
    }

    private buildMeta(generation: number) {
        let listed = 0
        for (const b of this.blocks) if (b.slot >= 0) listed++
        const w = new ByteWriter(Buffer.alloc(META_HEADER_BYTES + META_BYTES_PER_BLOCK * listed))
        w.uint(META_FORMAT, 1)
        w.uint(generation, 4)
        w.uint(this.serialLimit, 4)
        w.uint(this.droppedReadings, 4)
        w.uint(this.mergedRecords, 4)
        w.uint(listed, 1)
        for (const b of this.blocks) {
            if (b.slot < 0) continue
            w.uint(b.slot, 1)
            w.uint(b.serial, 4)
            w.uint(b.skip, 1)
        }
        return w.buf
    }

    /**
     * Writes the meta if anything in it changed but the generation. `serialToWrite`: a serial
     * about to be written to a slot, which must lie below the limit in flash first.
     */
    private async writeMeta(serialToWrite = -1): Promise<string> {
        const limit = this.serialLimit
        for (const b of this.blocks)
            if (b.slot >= 0 && b.serial >= this.serialLimit) serialToWrite = Math.max(serialToWrite, b.serial)
        if (serialToWrite >= this.serialLimit) this.serialLimit = serialToWrite + SERIAL_RESERVE
        const meta = this.buildMeta(this.generation + 1)
        // Past the format and the generation.
        if (sameBytes(meta, this.committedMeta, 5)) return ""
        const error = await this.writeVerified(this.metaKey, meta)
        if (error) {
            this.serialLimit = limit
            return error
        }
        this.generation++
        this.committedMeta = meta
        return ""
    }

    /** Writes `value` under `key` and reads it back; returns "" when it is in flash, else an error text. */
    private async writeVerified(key: string, value: Buffer): Promise<string> {
        await this.store.set(key, value)
        const back = await this.store.get(key)
        if (!sameBytes(back, value, 0)) return "queue: writing " + key + " did not persist (settings store full?)"
        return ""
    }

    // ---- making room ------------------------------------------------------------------------------------

    /** In flash as it is in RAM and closed for appends: can be merged. */
    private isSettled(b: Block) {
        return b.slot >= 0 && !b.open && b.flushedLength === b.length
    }

    /** Position of the oldest block holding no pinned record: merges and drops start there. */
    private firstMovable() {
        let pinned = this.pinned
        let i = 0
        while (i < this.blocks.length && pinned > 0) {
            pinned -= this.blocks[i].count - this.blocks[i].skip
            i++
        }
        return i
    }

    /**
     * Frees a slot by merging: at the finest level where it works, a sweep from the oldest block
     * lets each block take in as much of the next as fits, until one block is left empty. Drops
     * the oldest block only when no level frees a slot.
     */
    private async makeRoom(): Promise<string> {
        for (const level of MERGE_LEVELS_S) {
            // Whether a sweep at this level could empty a block. Coarsening needs a settled block
            // with readings finer than the level. Packing without coarsening (level 0) needs room
            // left in the others (free bytes, and records at their start that are gone) for about
            // its records; the room counted includes its own, and re-encoding moves a few bytes
            // either way.
            let finer = false
            let room = 0
            let smallest = BLOCK_BYTES
            for (let i = this.firstMovable(); i < this.blocks.length; ++i) {
                const b = this.blocks[i]
                if (!this.isSettled(b)) continue
                if (b.finestDurationS < level) finer = true
                const gone = Math.floor(((b.length - BLOCK_HEADER_BYTES) * b.skip) / b.count)
                room += BLOCK_BYTES - b.length + gone
                smallest = Math.min(smallest, b.length - BLOCK_HEADER_BYTES - gone)
            }
            if (level ? !finer : room + FULL_RECORD_SLACK_BYTES < 2 * smallest) continue
            const plan = await this.planSweep(level)
            if (!plan) continue
            for (const step of plan) {
                const error = await this.commitStep(step)
                if (error) return error
            }
            return ""
        }
        return await this.dropOldest()
    }

    /**
     * Plans a sweep over the settled blocks from the oldest: block i, merged at `level`, takes in
     * the records of block i + 1 that fit after it. Returns the steps that change a block, up to
     * the first that leaves the next block empty, or null when no block would be emptied. Only
     * reads; committing the steps in order (each a block write, then the meta) keeps every crash
     * point a consistent queue.
     */
    private async planSweep(level: number): Promise<MergeStep[]> {
        const start = this.firstMovable()
        if (start >= this.blocks.length || !this.isSettled(this.blocks[start])) return null
        const plan: MergeStep[] = []
        let firstSkip = this.blocks[start].skip
        for (let i = start; i + 1 < this.blocks.length && this.isSettled(this.blocks[i + 1]); ++i) {
            const a = this.blocks[i]
            const b = this.blocks[i + 1]
            // A full block with nothing to merge or leave out cannot take anything in: skip the
            // reading and decoding (a few hundred VM operations a record).
            if (!firstSkip && a.length > BLOCK_BYTES - FULL_SLACK_BYTES && (!level || a.finestDurationS >= level)) {
                firstSkip = b.skip
                continue
            }
            // Steps take serials in order when committed.
            const step = await this.mergeStep(i, firstSkip, level, this.nextSerial + plan.length)
            // A block that takes nothing from the next is left as it is: rewriting it would not
            // bring a free slot closer.
            if (step && step.taken) plan.push(step)
            if (step && b.skip + step.taken >= b.count) return plan
            firstSkip = step ? b.skip + step.taken : b.skip
        }
        return null
    }

    /**
     * One block from the records of block i (after `firstSkip`) and as many of block i + 1 as
     * fit, merged at `level`; null when block i's records alone do not fit or a block is unreadable.
     */
    private async mergeStep(i: number, firstSkip: number, level: number, serial: number): Promise<MergeStep> {
        const out = new MergeOutput(level, serial)
        let index = 0
        for (let part = 0; part < 2 && !out.full; ++part) {
            // Reads the block planSweep read as the second of the step before from the cache.
            const reader = new BlockReader(await this.blockBytes(i + part))
            const skip = part ? this.blocks[i + 1].skip : firstSkip
            let k = 0
            for (let r = reader.next(); r && !out.full; r = reader.next()) {
                if (k++ >= skip) out.add(r, index++)
                await this.tick()
            }
            if (reader.error) return null
        }
        // Unless the block is full, everything was written: the clean boundary is the end.
        out.emit(index, true)
        let writer: BlockWriter = out
        if (out.length !== out.cleanLength) {
            out.length = out.cleanLength
            writer = await this.resumeWriter(out.bytes(), serial)
        }
        const inputs = out.cleanBoundary
        const firstInputs = this.blocks[i].count - firstSkip
        if (inputs < firstInputs) return null
        return { index: i, writer, taken: inputs - firstInputs, inputs }
    }

    /** Writes a merge step's block to a free slot, then the meta that puts it in place of block i. */
    private async commitStep(step: MergeStep): Promise<string> {
        const i = step.index
        const slot = this.freeSlot()
        if (slot < 0) return "queue: no free slot to merge into"
        // Planned with the serials that follow, in the order the steps are committed.
        const writer = step.writer
        this.nextSerial++
        let error = ""
        if (writer.serial >= this.serialLimit) error = await this.writeMeta(writer.serial)
        if (error) return error
        error = await this.writeVerified(this.blockKey(slot), writer.bytes())
        if (error) return error
        const saved = this.blocks.slice()
        const mergedBefore = this.mergedRecords
        const merged = blockOf(slot, writer)
        merged.writer = null
        this.blocks[i] = merged
        // A copy: the saved blocks keep the old skip.
        const next = Object.assign({}, this.blocks[i + 1])
        next.skip += step.taken
        this.blocks[i + 1] = next
        if (next.skip >= next.count) removeAt(this.blocks, i + 1)
        this.mergedRecords += step.inputs - writer.count
        error = await this.writeMeta()
        if (error) {
            // The meta in flash still has the old blocks: so does RAM again.
            this.blocks = saved
            this.mergedRecords = mergedBefore
            return error
        }
        this.merges++
        return ""
    }

    /** The last resort: forgets the oldest block not out for delivery, counting its readings as dropped. */
    private async dropOldest(): Promise<string> {
        const i = this.firstMovable()
        if (i >= this.blocks.length || !this.isSettled(this.blocks[i])) return "queue: no room and nothing to drop"
        const saved = this.blocks.slice()
        const readings = readingsIn(await this.blockBytes(i), this.blocks[i].skip)
        removeAt(this.blocks, i)
        this.droppedReadings += readings
        const error = await this.writeMeta()
        if (error) {
            this.blocks = saved
            this.droppedReadings -= readings
        }
        return error
    }
}
