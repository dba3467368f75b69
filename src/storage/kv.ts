// The key-value store the storage layer is written against: DeviceScript's Settings store on the
// device (settings-kv.ts), a model of it in tests (test/fixtures/fake-kv.ts).
// Pure core: imports nothing from @devicescript.

/** Longest key the Settings store accepts. */
export const MAX_KEY_CHARS = 13
/**
 * Longest entry, key length + 1 + value length. A longer value is silently truncated on write,
 * and reading it back aborts the VM, so stores refuse to write one.
 */
export const MAX_ENTRY_BYTES = 232

/**
 * Flash-backed key-value store with the Settings store's semantics: a value is bytes; an empty
 * value reads as missing (null), which is how the store deletes; a full store drops a write
 * without an error, so callers read back every value they depend on.
 */
export interface KeyValueStore {
    /** The value, or null when the key is missing or its value is empty. */
    get(key: string): Promise<Buffer | null>
    /** Throws for a key or value over the limits; resolves even when the store was full. */
    set(key: string, value: Buffer): Promise<void>
}

/** Largest value that can be stored under `key`. */
export function maxValueBytes(key: string) {
    return MAX_ENTRY_BYTES - key.length - 1
}

/** Error text for a key the store cannot hold or, when given, a value it would truncate; or "". */
export function entryError(key: string, value?: Buffer) {
    if (!key || key.length > MAX_KEY_CHARS) return "key " + key + " is empty or over " + MAX_KEY_CHARS + " characters"
    const most = maxValueBytes(key)
    if (value && value.length > most)
        return "value for " + key + " is " + value.length + " bytes, over the " + most + "-byte limit"
    return ""
}
/** Log bytes of one entry record in the Settings store (16-byte key field, offset, size). */
export const ENTRY_OVERHEAD_BYTES = 24

/** Log bytes a write of `valueBytes` costs in the Settings store; an empty value (a delete) still takes 8. */
export function entryCostBytes(valueBytes: number) {
    const aligned = valueBytes === 0 ? 8 : Math.ceil(valueBytes / 8) * 8
    return ENTRY_OVERHEAD_BYTES + aligned
}
