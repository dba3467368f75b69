// Reading records as stored in flash: a fixed binary layout for one record on its own, and blocks
// that pack many records, each after the first of its meter stored as the difference from the
// previous one (about 2 to 3 bytes for a one-minute energy reading instead of 26).
//
// Byte code is hand-written for the Buffer subset Node and the DeviceScript VM share, with
// arithmetic instead of bit operations for anything that can exceed 2^31 (the VM's bit operations
// are 32-bit signed).
// Pure core: imports nothing from @devicescript.

/** Min, mean and max of a level (power, temperature...) instead of delta and total of an amount. */
export const FLAG_NON_ADDITIVE = 1
/** Covers several readings, firstSeq..seq, merged to save room. */
export const FLAG_MERGED = 2
/** Readings are missing before this one. */
export const FLAG_GAP = 4
/** The value is estimated, not measured. */
export const FLAG_ESTIMATED = 8
/** startS counts seconds since boot number `boot`; without it, seconds since 1970 (UTC). */
export const FLAG_CLOCK_NOT_SET = 16

/** Largest magnitude of a delta, min, mean or max: they are stored as signed 32-bit integers. */
export const MAX_INT32 = 2147483647
/** Largest total: stored as an unsigned 48-bit integer (2.8e11 Wh in mWh). */
export const MAX_UINT48 = 281474976710655
/** Longest interval, seconds: stored as an unsigned 24-bit integer (194 days). */
export const MAX_DURATION_S = 16777215

/**
 * One stored reading, or several merged into one (FLAG_MERGED). Additive quantities (energy) have
 * delta and total; non-additive ones (FLAG_NON_ADDITIVE) min, mean and max; the other pair is 0.
 */
export interface ReadingRecord {
    /** The meter's index in the node's configuration, 0..255. */
    meter: number
    flags: number
    /** The first and last reading covered; equal unless merged. */
    firstSeq: number
    seq: number
    /** The boot count, 0..65535. */
    boot: number
    /**
     * Interval start, whole seconds: since boot `boot` with FLAG_CLOCK_NOT_SET, else Unix time.
     * Readings carry ms since boot; each boundary is rounded to the second once, so consecutive
     * records stay contiguous (start = previous start + previous duration).
     */
    startS: number
    durationS: number
    /** Additive: the amount over the interval and the meter's register at its end, in thousandths (mWh). */
    deltaMilliWh: number
    totalMilliWh: number
    /** Non-additive: over the interval, in thousandths of the unit; the mean is weighted by time. */
    minMilli: number
    meanMilli: number
    maxMilli: number
}

export function newRecord(): ReadingRecord {
    return {
        meter: 0,
        flags: 0,
        firstSeq: 0,
        seq: 0,
        boot: 0,
        startS: 0,
        durationS: 0,
        deltaMilliWh: 0,
        totalMilliWh: 0,
        minMilli: 0,
        meanMilli: 0,
        maxMilli: 0,
    }
}

export function copyRecord(r: ReadingRecord): ReadingRecord {
    return Object.assign({}, r)
}

/** Copies every field of `from` into `to`, an object the caller reuses; returns `to`. */
export function copyInto(to: ReadingRecord, from: ReadingRecord) {
    return Object.assign(to, from)
}

export function isAdditive(r: ReadingRecord) {
    return (r.flags & FLAG_NON_ADDITIVE) === 0
}

export function recordEndS(r: ReadingRecord) {
    return r.startS + r.durationS
}

/** A record for one energy reading as the node takes them: ms since boot, mWh. */
export function energyRecord(
    meter: number,
    seq: number,
    boot: number,
    startMs: number,
    endMs: number,
    deltaMilliWh: number,
    totalMilliWh: number
): ReadingRecord {
    const r = newRecord()
    r.meter = meter
    r.flags = FLAG_CLOCK_NOT_SET
    r.firstSeq = seq
    r.seq = seq
    r.boot = boot
    r.startS = Math.round(startMs / 1000)
    r.durationS = Math.round(endMs / 1000) - r.startS
    r.deltaMilliWh = deltaMilliWh
    r.totalMilliWh = totalMilliWh
    return r
}

// ---- merging ------------------------------------------------------------------------------

/** Slack on a merge level for rounded and jittered intervals: 2% (3,672 s still counts as an hour). */
const LEVEL_SLACK_DIVISOR = 50

/** The level-long time slot, counted from the clock's zero, that holds the middle of `r`. */
function levelSlot(r: ReadingRecord, levelS: number) {
    return Math.floor((r.startS + r.durationS / 2) / levelS)
}

/**
 * Whether `b` can be merged into `a` (b directly follows a) at a merge level of `levelS`
 * seconds: same meter, boot and kind, no reading and no time between them, both in the same
 * level-long slot of the clock (so merged intervals line up across merges and levels nest) and
 * together not much longer than the level; for additive quantities b's total must continue a's,
 * so the merged total stays exact.
 */
export function canMerge(a: ReadingRecord, b: ReadingRecord, levelS: number) {
    if (levelS <= 0 || a.meter !== b.meter || !continues(a, b)) return false
    if ((a.flags ^ b.flags) & FLAG_CLOCK_NOT_SET || b.flags & FLAG_GAP) return false
    if (a.durationS + b.durationS > levelS + Math.floor(levelS / LEVEL_SLACK_DIVISOR)) return false
    if (levelSlot(a, levelS) !== levelSlot(b, levelS)) return false
    // A level's delta is 0.
    const delta = a.deltaMilliWh + b.deltaMilliWh
    return delta <= MAX_INT32 && delta >= -MAX_INT32
}

/** Merges `b` into `a` in place (check canMerge first): one record covering both intervals. */
export function mergeInto(a: ReadingRecord, b: ReadingRecord) {
    const keep = a.flags & (FLAG_NON_ADDITIVE | FLAG_CLOCK_NOT_SET | FLAG_GAP)
    a.flags = keep | FLAG_MERGED | ((a.flags | b.flags) & FLAG_ESTIMATED)
    a.seq = b.seq
    if (isAdditive(a)) {
        a.deltaMilliWh += b.deltaMilliWh
        a.totalMilliWh = b.totalMilliWh
    } else {
        if (b.minMilli < a.minMilli) a.minMilli = b.minMilli
        if (b.maxMilli > a.maxMilli) a.maxMilli = b.maxMilli
        const durationS = a.durationS + b.durationS
        a.meanMilli = durationS
            ? Math.round((a.meanMilli * a.durationS + b.meanMilli * b.durationS) / durationS)
            : Math.round((a.meanMilli + b.meanMilli) / 2)
    }
    a.durationS += b.durationS
}

// ---- bytes ----------------------------------------------------------------------------------

/** Sequential writer into a fixed buffer; `overflow` is set (and nothing written) past its end. */
export class ByteWriter {
    pos = 0
    overflow = false
    constructor(readonly buf: Buffer) {}

    /**
     * `v` as a little-endian integer of `bytes` bytes (exact up to 2^53; a negative one in two's
     * complement), or for `bytes` 0 as an unsigned LEB128 varint: 7 bits a byte, low first.
     */
    uint(v: number, bytes: number) {
        const base = bytes ? 256 : 128
        for (let i = 1; ; ++i) {
            const high = Math.floor(v / base)
            const more = bytes ? i < bytes : high > 0
            if (this.pos >= this.buf.length) this.overflow = true
            else this.buf[this.pos++] = v - high * base + (more && !bytes ? 128 : 0)
            if (!more) return
            v = high
        }
    }
}

/** Signed as zigzag, for a varint: 0, -1, 1, -2... as 0, 1, 2, 3... */
function zigzag(v: number) {
    return v >= 0 ? v * 2 : -v * 2 - 1
}

function unzigzag(z: number) {
    const half = Math.floor(z / 2)
    return z - half * 2 ? -half - 1 : half
}

/** Sequential reader over buf[pos..end); `error` is set at the first read past the end or bad varint. */
export class ByteReader {
    error = ""
    constructor(
        public buf: Buffer,
        public pos: number,
        public end: number
    ) {}

    /** A little-endian unsigned integer of `bytes` bytes, or for `bytes` 0 a varint of at most 8 bytes. */
    uint(bytes: number) {
        let v = 0
        let scale = 1
        for (let i = 0; i < (bytes || 8); ++i) {
            const b = this.pos < this.end ? this.buf[this.pos++] : this.fail("truncated at byte " + this.pos)
            if (!bytes && b < 128) return v + b * scale
            v += (bytes ? b : b - 128) * scale
            scale *= bytes ? 256 : 128
        }
        return bytes ? v : this.fail("varint too long at byte " + this.pos)
    }

    /** Keeps the first error; returns 0 to read on with. */
    fail(error: string) {
        if (!this.error) this.error = error
        return 0
    }

    int32() {
        const v = this.uint(4)
        return v > MAX_INT32 ? v - 4294967296 : v
    }
}

// ---- one record on its own --------------------------------------------------------------------

/**
 * The full layout, little-endian:
 *   0 u8 flags, 1 u8 meter, 2 u32 seq, 6 u16 boot, 8 u32 startS, 12 u24 durationS, then
 *   additive: 15 i32 delta (mWh), 19 u48 total (mWh): 25 bytes;
 *   non-additive: 15 i32 min, 19 i32 mean, 23 i32 max: 27 bytes;
 *   with FLAG_MERGED, a varint seq - firstSeq follows.
 */
function writeFull(w: ByteWriter, r: ReadingRecord) {
    const flags = r.seq !== r.firstSeq ? r.flags | FLAG_MERGED : r.flags
    w.uint(flags, 1)
    w.uint(r.meter, 1)
    w.uint(r.seq, 4)
    w.uint(r.boot, 2)
    w.uint(r.startS, 4)
    w.uint(r.durationS, 3)
    if (isAdditive(r)) {
        w.uint(r.deltaMilliWh, 4)
        w.uint(r.totalMilliWh, 6)
    } else {
        w.uint(r.minMilli, 4)
        w.uint(r.meanMilli, 4)
        w.uint(r.maxMilli, 4)
    }
    if (flags & FLAG_MERGED) w.uint(r.seq - r.firstSeq, 0)
}

/** Reads a record in the full layout into `into` (every field set), or a new record. */
function readFull(rd: ByteReader, into?: ReadingRecord) {
    const r = into || newRecord()
    r.flags = rd.uint(1)
    r.meter = rd.uint(1)
    r.seq = rd.uint(4)
    r.boot = rd.uint(2)
    r.startS = rd.uint(4)
    r.durationS = rd.uint(3)
    r.deltaMilliWh = r.totalMilliWh = r.minMilli = r.meanMilli = r.maxMilli = 0
    if (isAdditive(r)) {
        r.deltaMilliWh = rd.int32()
        r.totalMilliWh = rd.uint(6)
    } else {
        r.minMilli = rd.int32()
        r.meanMilli = rd.int32()
        r.maxMilli = rd.int32()
    }
    r.firstSeq = r.flags & FLAG_MERGED ? r.seq - rd.uint(0) : r.seq
    return r
}

/** Longest encoding of one record, in a block or on its own. */
export const MAX_RECORD_BYTES = 40

/**
 * Why a record cannot be stored, or "": each field must read back from the full layout as it
 * is, so only whole numbers that fit their field pass, and the pair the record's kind does not
 * store (min, mean and max of an additive record; delta and total of a level) must be 0.
 */
export function recordError(r: ReadingRecord) {
    const w = new ByteWriter(Buffer.alloc(MAX_RECORD_BYTES))
    writeFull(w, r)
    const back = readFull(new ByteReader(w.buf, 0, w.pos))
    // The layout marks every record covering several readings as merged.
    back.flags &= r.flags | ~FLAG_MERGED
    for (const field of Object.keys(r)) {
        const v = (r as any)[field]
        if (v !== (back as any)[field]) return field + " " + v + " out of range"
    }
    return ""
}

/** One record in the full layout (25 or 27 bytes, more when merged). Check recordError first. */
export function encodeRecord(r: ReadingRecord) {
    const w = new ByteWriter(Buffer.alloc(MAX_RECORD_BYTES))
    writeFull(w, r)
    return w.buf.slice(0, w.pos)
}

/** The record in `bytes`, or null when they are not one. */
export function decodeRecord(bytes: Buffer): ReadingRecord {
    const rd = new ByteReader(bytes, 0, bytes.length)
    const r = readFull(rd)
    if (rd.error || rd.pos < rd.end || r.firstSeq < 0) return null
    return r
}

// ---- blocks -----------------------------------------------------------------------------------

/** First byte of a block: the format, so a future layout can be told apart. */
export const BLOCK_FORMAT = 0xb1
/** Format byte and u32 serial. */
export const BLOCK_HEADER_BYTES = 5

const CHANGE_METER = 1
const CHANGE_FLAGS = 2
const CHANGE_DURATION = 4
const CHANGE_SPAN = 8

function span(r: ReadingRecord) {
    return r.seq - r.firstSeq + 1
}

/**
 * Whether `r` can be stored as a difference from `ref`, the previous record of its meter in the
 * block: same boot and kind, the next reading and the next interval, and a total that continues.
 */
function continues(ref: ReadingRecord, r: ReadingRecord) {
    return (
        ref.boot === r.boot &&
        (ref.flags & FLAG_NON_ADDITIVE) === (r.flags & FLAG_NON_ADDITIVE) &&
        r.firstSeq === ref.seq + 1 &&
        r.startS === ref.startS + ref.durationS &&
        (!isAdditive(r) || r.totalMilliWh === ref.totalMilliWh + r.deltaMilliWh) &&
        (r.seq === r.firstSeq || (r.flags & FLAG_MERGED) !== 0)
    )
}

/** The previous record of `meter` in the block, or null. */
function findRef(refs: ReadingRecord[], meter: number) {
    for (const ref of refs) if (ref.meter === meter) return ref
    return null
}

/**
 * Makes `r` the reference for the next record of its meter, and returns that reference: `r` is
 * copied into it, so a block costs one object per meter however many records it holds.
 */
function setRef(refs: ReadingRecord[], r: ReadingRecord) {
    const ref = findRef(refs, r.meter)
    if (ref) return copyInto(ref, r)
    refs.push(copyRecord(r))
    return refs[refs.length - 1]
}

/**
 * Record encoding inside a block. Each record starts with a varint v:
 * - v even: the previous record's meter, flags, duration and span, and v / 2 is the zigzag of the
 *   first value's difference from the previous record of that meter (additive: delta; non-additive:
 *   mean, then zigzag varints for the min and max differences follow);
 * - v = 1: the full layout follows (writeFull);
 * - v odd > 1: (v - 1) / 2 says what changed: 1 meter (u8 follows; the reference becomes that
 *   meter's previous record), 2 flags (u8), 4 duration (zigzag difference), 8 span (varint span - 1);
 *   then the value differences as above.
 * The reference's seq + 1 is the first seq, its end the start, and for additive quantities its
 * total + delta the total.
 */
function writeInBlock(w: ByteWriter, refs: ReadingRecord[], lastMeter: number, r: ReadingRecord) {
    const ref = findRef(refs, r.meter)
    if (!ref || !continues(ref, r)) {
        w.uint(1, 0)
        writeFull(w, r)
        return
    }
    let changes = 0
    if (r.meter !== lastMeter) changes |= CHANGE_METER
    if (r.flags !== ref.flags) changes |= CHANGE_FLAGS
    if (r.durationS !== ref.durationS) changes |= CHANGE_DURATION
    if (span(r) !== span(ref)) changes |= CHANGE_SPAN
    const additive = isAdditive(r)
    const firstDiff = additive ? r.deltaMilliWh - ref.deltaMilliWh : r.meanMilli - ref.meanMilli
    if (!changes) {
        w.uint(zigzag(firstDiff) * 2, 0)
    } else {
        w.uint(changes * 2 + 1, 0)
        if (changes & CHANGE_METER) w.uint(r.meter, 1)
        if (changes & CHANGE_FLAGS) w.uint(r.flags, 1)
        if (changes & CHANGE_DURATION) w.uint(zigzag(r.durationS - ref.durationS), 0)
        if (changes & CHANGE_SPAN) w.uint(span(r) - 1, 0)
        w.uint(zigzag(firstDiff), 0)
    }
    if (!additive) {
        w.uint(zigzag(r.minMilli - ref.minMilli), 0)
        w.uint(zigzag(r.maxMilli - ref.maxMilli), 0)
    }
}

/**
 * Decodes the next record into the reference of its meter, which it then is: records of one
 * meter are differences from each other, so decoding in place allocates nothing (a record in
 * the full layout, the first of its meter in a block, becomes its reference; a reader reused
 * decodes it into a record it already has).
 */
function readInBlock(rd: ByteReader, refs: ReadingRecord[], lastMeter: number, spares: ReadingRecord[]): ReadingRecord {
    const v = rd.uint(0)
    if (rd.error) return null
    if (v === 1) {
        // A record of its own: the first of its meter becomes the reference as it is, uncopied.
        const full = readFull(rd, spares.pop())
        const ref = findRef(refs, full.meter)
        if (!ref) return refs[refs.push(full) - 1]
        spares.push(full)
        return copyInto(ref, full)
    }
    const half = Math.floor(v / 2)
    const changes = v - half * 2 ? half : 0
    const meter = changes & CHANGE_METER ? rd.uint(1) : lastMeter
    const r = findRef(refs, meter)
    if (!r) {
        rd.fail("record refers to meter " + meter + " before its first record")
        return null
    }
    // The reference's end is this record's start, its seq + 1 the first seq.
    const startS = r.startS + r.durationS
    if (changes & CHANGE_FLAGS) {
        const flags = rd.uint(1)
        if ((flags & FLAG_NON_ADDITIVE) !== (r.flags & FLAG_NON_ADDITIVE)) {
            rd.fail("record changes kind within its meter")
            return null
        }
        r.flags = flags
    }
    if (changes & CHANGE_DURATION) r.durationS += unzigzag(rd.uint(0))
    const spanReadings = changes & CHANGE_SPAN ? rd.uint(0) + 1 : span(r)
    const firstDiff = unzigzag(changes ? rd.uint(0) : half)
    r.firstSeq = r.seq + 1
    r.seq = r.firstSeq + spanReadings - 1
    r.startS = startS
    if (isAdditive(r)) {
        r.deltaMilliWh += firstDiff
        r.totalMilliWh += r.deltaMilliWh
    } else {
        r.meanMilli += firstDiff
        r.minMilli += unzigzag(rd.uint(0))
        r.maxMilli += unzigzag(rd.uint(0))
    }
    return r
}

/**
 * Builds one block: a 5-byte header (format, u32 serial) and records appended while they fit in
 * `capacityBytes`. Also keeps what the queue needs to choose blocks to merge.
 */
export class BlockWriter extends ByteWriter {
    private refs: ReadingRecord[] = []
    private lastMeter = -1
    /** Bytes of the records appended; a record that does not fit is written past it, then dropped. */
    length = BLOCK_HEADER_BYTES
    count = 0
    /** Shortest interval in the block, s (0 while empty). */
    finestDurationS = 0

    constructor(
        capacityBytes: number,
        readonly serial: number
    ) {
        super(Buffer.alloc(capacityBytes))
        this.uint(BLOCK_FORMAT, 1)
        this.uint(serial, 4)
    }

    /** Appends `r` if it fits; false (and nothing changed) otherwise. Check recordError first. */
    tryAppend(r: ReadingRecord) {
        this.pos = this.length
        this.overflow = false
        writeInBlock(this, this.refs, this.lastMeter, r)
        if (this.overflow) return false
        this.length = this.pos
        this.count++
        setRef(this.refs, r)
        this.lastMeter = r.meter
        if (!this.finestDurationS || r.durationS < this.finestDurationS) this.finestDurationS = r.durationS
        return true
    }

    bytes() {
        return this.buf.slice(0, this.length)
    }
}

/**
 * Reads a block's records in order; `error` says why it stopped early. The record returned is
 * the reader's own, decoded in place: it is valid until the next call of next(), and changes
 * then. Copy what you keep (copyRecord).
 */
export class BlockReader extends ByteReader {
    private refs: ReadingRecord[] = []
    /** Records of earlier blocks, decoded into again: a reader reused allocates no record. */
    private spares: ReadingRecord[] = []
    private lastMeter = -1
    serial = -1

    /** Reads the first `length` bytes of `bytes` (all of them by default): an open block's buffer is read where it is. */
    constructor(bytes: Buffer, length = bytes ? bytes.length : 0) {
        super(bytes, 0, 0)
        this.reset(bytes, length)
    }

    /** Starts over on another block, as the constructor does, keeping its record objects. */
    reset(bytes: Buffer, length = bytes ? bytes.length : 0) {
        while (this.refs.length) this.spares.push(this.refs.pop())
        this.lastMeter = -1
        this.error = ""
        this.buf = bytes
        // Past the format byte.
        this.pos = 1
        this.end = length
        if (!bytes || length < BLOCK_HEADER_BYTES || bytes[0] !== BLOCK_FORMAT) this.fail("not a block")
        else this.serial = this.uint(4)
        return this
    }

    /** The next record, or null at the end or at an error. */
    next(): ReadingRecord {
        if (this.error || this.pos >= this.end) return null
        const r = readInBlock(this, this.refs, this.lastMeter, this.spares)
        if (this.error) return null
        this.lastMeter = r.meter
        return r
    }
}
