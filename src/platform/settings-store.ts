// The Settings store (flash) as the node uses it: JSON values under short keys, every write
// verified by reading it back, because a full store fails silently (the write resolves and the
// value is simply not there).
import { writeSetting } from "@devicescript/settings"
import { SettingsKeyValueStore } from "../storage/settings-kv"

const store = new SettingsKeyValueStore()

/**
 * A JSON setting, or `missing` when absent or not JSON. Read through SettingsKeyValueStore: the
 * package's readSetting can wait forever when its answer arrives early (see settings-kv.ts).
 */
export async function readJsonSetting(key: string, missing: any): Promise<any> {
    const bytes = await store.get(key)
    if (!bytes) return missing
    try {
        return JSON.parse(bytes.toString())
    } catch (e) {
        return missing
    }
}

/** Largest JSON value written: key + 1 + value must stay within the store's 232-byte entry limit. */
export const MAX_VALUE_BYTES = 200

/** Reads the given keys; missing ones are left out. */
export async function readSettings(keys: string[]) {
    const out: Record<string, any> = {}
    for (const key of keys) {
        const v = await readJsonSetting(key, undefined)
        if (v !== undefined && v !== null) out[key] = v
    }
    return out
}

/** Writes a JSON value and reads it back; returns an error text, or "" when the value is in flash. */
export async function writeVerified(key: string, value: any): Promise<string> {
    const json = JSON.stringify(value)
    if (Buffer.from(json).length > MAX_VALUE_BYTES)
        return `flash: value for ${key} is ${Buffer.from(json).length} bytes, over the ${MAX_VALUE_BYTES}-byte limit`
    await writeSetting(key, value)
    const back = await readJsonSetting(key, undefined)
    if (JSON.stringify(back) !== json) return `flash: writing ${key} did not persist (settings store full?)`
    return ""
}
