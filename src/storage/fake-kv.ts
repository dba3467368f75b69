// A model of DeviceScript's Settings store (jacdac-c jd_fstor) for tests: an append-only log in a
// fixed region where every write costs 24 + align8(len) bytes, compacted when full. It enforces
// the real limits and fails the same ways: a write that does not fit even after compaction is
// dropped without an error, an over-long value is stored truncated and reading it "aborts the VM".
// Pure core: imports nothing from @devicescript.
import { KeyValueStore, MAX_ENTRY_BYTES, MAX_KEY_CHARS } from "./kv"

/** Log bytes of one entry record (16-byte key field, offset, size). */
export const ENTRY_OVERHEAD_BYTES = 24
/** Region bytes the log can never use: the 24-byte header and two entries' worth of slack. */
export const REGION_OVERHEAD_BYTES = 72

/** Log bytes a write of `valueBytes` costs; an empty value (a delete) still takes 8. */
export function entryCostBytes(valueBytes: number) {
    const aligned = valueBytes === 0 ? 8 : Math.ceil(valueBytes / 8) * 8
    return ENTRY_OVERHEAD_BYTES + aligned
}

interface LogEntry {
    key: string
    value: Buffer
    /** Stored truncated: reading it back aborts the VM on a device. */
    truncated: boolean
}

function sameBytes(a: Buffer, b: Buffer) {
    if (a.length !== b.length) return false
    for (let i = 0; i < a.length; ++i) if (a[i] !== b[i]) return false
    return true
}

export class FakeSettingsStore implements KeyValueStore {
    /** Log bytes appended by set() since creation, compaction copies not included. */
    bytesWritten = 0
    /** Times the log was full and rewritten with only the latest entry per key. */
    compactions = 0
    /** Writes dropped because the store was full even after compaction. */
    droppedWrites = 0
    private log: LogEntry[] = []
    private logBytes = 0

    /**
     * `capacityBytes`: the region (8192 in the simulator and on RP2040, 16384 on ESP32).
     * `reservedBytes`: log bytes held by other users of the store (WiFi, configuration, the
     * program): live data that compaction keeps. Tests change it to model others growing.
     */
    constructor(
        readonly capacityBytes = 8192,
        public reservedBytes = 2048
    ) {}

    /** An independent copy: the same flash contents and counters. */
    clone() {
        const copy = new FakeSettingsStore(this.capacityBytes, this.reservedBytes)
        for (const e of this.log)
            copy.log.push({ key: e.key, value: e.value.slice(0, e.value.length), truncated: e.truncated })
        copy.logBytes = this.logBytes
        copy.bytesWritten = this.bytesWritten
        copy.compactions = this.compactions
        copy.droppedWrites = this.droppedWrites
        return copy
    }

    /** Log bytes available to entries, others' included. */
    usableBytes() {
        return this.capacityBytes - REGION_OVERHEAD_BYTES
    }

    /** Log bytes compaction would keep: the latest entry per key (tombstones too) and the reserve. */
    liveBytes() {
        let total = this.reservedBytes
        for (let i = 0; i < this.log.length; ++i)
            if (this.isLatest(i)) total += entryCostBytes(this.log[i].value.length)
        return total
    }

    /** Log bytes in use now, dead copies included. */
    usedBytes() {
        return this.reservedBytes + this.logBytes
    }

    async get(key: string): Promise<Buffer | null> {
        this.checkKey(key)
        const e = this.latest(key)
        if (!e) return null
        if (e.truncated) throw new Error("VM abort: reading over-long setting " + key)
        if (!e.value.length) return null
        return e.value.slice(0, e.value.length)
    }

    async set(key: string, value: Buffer): Promise<void> {
        this.checkKey(key)
        let stored = value.slice(0, value.length)
        let truncated = false
        const room = MAX_ENTRY_BYTES - key.length - 1
        if (stored.length > room) {
            stored = stored.slice(0, room)
            truncated = true
        }
        // jd_fstor skips a write that would not change the value.
        const current = this.latest(key)
        if (current && !current.truncated && !truncated && sameBytes(current.value, stored)) return
        const cost = entryCostBytes(stored.length)
        if (this.usedBytes() + cost > this.usableBytes()) {
            this.compact()
            if (this.usedBytes() + cost > this.usableBytes()) {
                this.droppedWrites++
                return
            }
        }
        this.log.push({ key, value: stored, truncated })
        this.logBytes += cost
        this.bytesWritten += cost
    }

    private checkKey(key: string) {
        if (!key || !key.length || key.length > MAX_KEY_CHARS) throw new RangeError("invalid settings key: " + key)
    }

    private latest(key: string): LogEntry {
        for (let i = this.log.length - 1; i >= 0; --i) if (this.log[i].key === key) return this.log[i]
        return null
    }

    private isLatest(index: number) {
        const key = this.log[index].key
        for (let i = index + 1; i < this.log.length; ++i) if (this.log[i].key === key) return false
        return true
    }

    private compact() {
        const kept: LogEntry[] = []
        let bytes = 0
        for (let i = 0; i < this.log.length; ++i)
            if (this.isLatest(i)) {
                kept.push(this.log[i])
                bytes += entryCostBytes(this.log[i].value.length)
            }
        this.log = kept
        this.logBytes = bytes
        this.compactions++
    }
}
