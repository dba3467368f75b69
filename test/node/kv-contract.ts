// The behaviour the storage layer relies on from a KeyValueStore, as one list of checks run
// against the fake store in Node (kv.test.ts) and against the real Settings store in the
// DeviceScript simulator (test/ds/settings-kv.test.ts). Imports nothing from Node or DeviceScript,
// so both runtimes compile it; tests register through the `test` function each runner passes in.
import { KeyValueStore, MAX_KEY_CHARS, maxValueBytes } from "../../src/storage/kv"

export type RegisterTest = (name: string, body: () => Promise<void>) => void
export type StoreFactory = () => KeyValueStore

function fail(message: string) {
    throw new Error(message)
}

function pattern(length: number, seed: number) {
    const b = Buffer.alloc(length)
    for (let i = 0; i < length; ++i) b[i] = (seed * 31 + i * 7 + 1) & 0xff
    return b
}

function sameBytes(a: Buffer, b: Buffer) {
    if (!a || !b || a.length !== b.length) return false
    for (let i = 0; i < a.length; ++i) if (a[i] !== b[i]) return false
    return true
}

async function expectValue(store: KeyValueStore, key: string, expected: Buffer) {
    const back = await store.get(key)
    if (!sameBytes(back, expected))
        fail(key + ": read " + (back ? back.length + " bytes that differ" : "nothing") + ", wrote " + expected.length)
}

async function expectRefused(body: () => Promise<void>, what: string) {
    let threw = false
    try {
        await body()
    } catch (e) {
        threw = true
    }
    if (!threw) fail(what + " was accepted")
}

/** 200 distinct byte values, 0 and 255 among them. */
function roundTripValue() {
    const value = Buffer.alloc(200)
    for (let i = 0; i < value.length; ++i) value[i] = (i * 37 + 11) & 0xff
    value[0] = 0
    value[199] = 255
    return value
}

/** Log bytes a value costs in jd_fstor: the 24-byte entry plus the value aligned to 8. */
function logCostBytes(valueBytes: number) {
    return 24 + (valueBytes === 0 ? 8 : Math.ceil(valueBytes / 8) * 8)
}

/** The log bytes the latest value of each key written through it takes: what compaction keeps. */
class LiveBytesTracker implements KeyValueStore {
    private keys: string[] = []
    private costs: number[] = []
    constructor(private readonly inner: KeyValueStore) {}
    async get(key: string) {
        return await this.inner.get(key)
    }
    async set(key: string, value: Buffer) {
        await this.inner.set(key, value)
        const i = this.keys.indexOf(key)
        if (i >= 0) this.costs[i] = logCostBytes(value.length)
        else {
            this.keys.push(key)
            this.costs.push(logCostBytes(value.length))
        }
    }
    /** Forgets a write the store dropped. */
    dropped(key: string) {
        const i = this.keys.indexOf(key)
        if (i >= 0) this.costs[i] = 0
    }
    liveBytes() {
        let total = 0
        for (const c of this.costs) total += c
        return total
    }
}

/**
 * Registers the contract checks in order. The last one fills the store, so run them against a
 * store no other test needs afterwards. `report` receives measured figures.
 */
export function registerKeyValueContract(
    test: RegisterTest,
    makeRawStore: StoreFactory,
    report: (line: string) => void
) {
    let tracker: LiveBytesTracker = null
    const makeStore = () => {
        if (!tracker) tracker = new LiveBytesTracker(makeRawStore())
        return tracker
    }
    test("round trip of arbitrary bytes; a missing key reads as null", async () => {
        const store = makeStore()
        const value = roundTripValue()
        await store.set("ct.round", value)
        await expectValue(store, "ct.round", value)
        if ((await store.get("ct.never")) !== null) fail("a key never written did not read as null")
    })

    test("overwrite: the latest value wins, longer or shorter", async () => {
        const store = makeStore()
        await store.set("ct.over", pattern(40, 1))
        await store.set("ct.over", pattern(120, 2))
        await expectValue(store, "ct.over", pattern(120, 2))
        await store.set("ct.over", pattern(3, 3))
        await expectValue(store, "ct.over", pattern(3, 3))
        await store.set("ct.over", Buffer.alloc(0))
        if ((await store.get("ct.over")) !== null) fail("an empty value did not read as null")
    })

    test("keys of 13 characters work, longer ones are refused", async () => {
        const store = makeStore()
        const longest = "ct.0123456789"
        if (longest.length !== MAX_KEY_CHARS) fail("test key is " + longest.length + " characters")
        await store.set(longest, pattern(20, 4))
        await expectValue(store, longest, pattern(20, 4))
        await expectRefused(async () => await store.set(longest + "x", pattern(20, 5)), "a 14-character key")
    })

    // What happens one byte over the limit differs: the raw store (and the fake) truncates and
    // aborts on reading, SettingsKeyValueStore refuses; each store's own tests check that.
    test("the largest value round-trips", async () => {
        const store = makeStore()
        const key = "ct.max"
        const most = maxValueBytes(key)
        if (most !== 225) fail("max value for a 6-character key is " + most + ", expected 225")
        await store.set(key, pattern(most, 6))
        await expectValue(store, key, pattern(most, 6))
    })

    test("compaction keeps the latest value of every key", async () => {
        const store = makeStore()
        await store.set("ct.keep", pattern(50, 8))
        // 60 rewrites of 200 bytes append 13,440 log bytes: more than the region, so the log
        // is compacted at least once while this runs.
        for (let i = 0; i < 60; ++i) {
            await store.set("ct.churn", pattern(200, 100 + i))
            await expectValue(store, "ct.churn", pattern(200, 100 + i))
        }
        await expectValue(store, "ct.keep", pattern(50, 8))
        await expectValue(store, "ct.round", roundTripValue())
        report("compaction: 60 rewrites of a 200-byte value, " + 60 * logCostBytes(200) + " log bytes, all read back")
    })

    test("a full store drops a write silently: set resolves, the value is absent", async () => {
        const store = makeStore()
        const valueBytes = 200
        let stored = 0
        let failedKey = ""
        for (let i = 0; i < 100 && !failedKey; ++i) {
            const key = "ct.f" + i
            await store.set(key, pattern(valueBytes, 200 + i))
            const back = await store.get(key)
            if (sameBytes(back, pattern(valueBytes, 200 + i))) stored++
            else {
                failedKey = key
                if (back !== null) fail(key + ": a dropped write left " + back.length + " bytes behind")
            }
        }
        if (!failedKey) fail("100 writes of 200 bytes all persisted: the store never filled")
        for (let i = 0; i < stored; ++i) await expectValue(store, "ct.f" + i, pattern(valueBytes, 200 + i))
        tracker.dropped(failedKey)
        let line = "full: these checks hold " + tracker.liveBytes() + " log bytes (" + stored + " new values of "
        line += valueBytes + " bytes); writing " + logCostBytes(valueBytes) + " more resolved and stored nothing"
        report(line)
    })
}
