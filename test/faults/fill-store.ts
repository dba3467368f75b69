// Fault program (runs in the simulator before the node, on the node's flash): fills the Settings
// store with other values until only `leaveBytes` of its log are left, as settings of another
// program, or a QUEUE_BYTES set for a bigger store, would. `npm run faults` (store-full) uses it.
import * as ds from "@devicescript/core"
import { SettingsKeyValueStore } from "../../src/storage/settings-kv"

/** Log bytes a value of this many bytes takes in jd_fstor: a 24-byte entry and the value, 8-aligned. */
const VALUE_BYTES = 200
const ENTRY_BYTES = 24 + VALUE_BYTES
/** The simulator's store is 8,192 bytes, of which 8,096 take values (docs/platform-notes.md). */
const USABLE_BYTES = 8096

export async function fillStore(o: { leaveBytes: number }) {
    const store = new SettingsKeyValueStore()
    const value = Buffer.alloc(VALUE_BYTES)
    value.fillAt(0, VALUE_BYTES, 0x5a)
    const count = Math.floor((USABLE_BYTES - o.leaveBytes) / ENTRY_BYTES)
    let written = 0
    for (let i = 0; i < count; i++) {
        const key = "other" + i
        await store.set(key, value)
        const back = await store.get(key)
        if (!back || back.length !== VALUE_BYTES) break
        written++
    }
    console.log(`FILLED ${written} values of ${VALUE_BYTES} bytes: ${written * ENTRY_BYTES} bytes of the store's log`)
}
