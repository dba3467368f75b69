// The KeyValueStore contract against the fake Settings store, and the fake's own model of the
// real store's limits and failure modes.
import { describe, test } from "node:test"
import assert from "node:assert/strict"
import { registerKeyValueContract } from "./kv-contract"
import { entryCostBytes, FakeSettingsStore } from "../fixtures/fake-kv"
import { MAX_ENTRY_BYTES, maxValueBytes } from "../../src/storage/kv"

describe("KeyValueStore contract: FakeSettingsStore", () => {
    // One store for the whole list, like the real store in the simulator.
    const store = new FakeSettingsStore()
    registerKeyValueContract(
        (name, body) => test(name, body),
        () => store,
        line => console.log(`  [fake] ${line}`)
    )
})

describe("FakeSettingsStore models jd_fstor", () => {
    test("each write costs 24 + align8(len) bytes of log; an identical rewrite costs nothing", async () => {
        const store = new FakeSettingsStore(8192, 0)
        await store.set("a", Buffer.alloc(1))
        assert.equal(store.bytesWritten, 32)
        await store.set("a", Buffer.alloc(1))
        assert.equal(store.bytesWritten, 32)
        await store.set("a", Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9]))
        assert.equal(store.bytesWritten, 32 + 40)
        assert.equal(store.liveBytes(), 40)
        assert.equal(entryCostBytes(0), 32)
        assert.equal(entryCostBytes(224), 248)
    })

    test("the region holds 8,120 log bytes: 253 entries of 8 bytes in 8 KB, as the simulator measured", async () => {
        const store = new FakeSettingsStore(8192, 0)
        let stored = 0
        for (let i = 0; i < 300; i++) {
            const key = `s${i}`
            await store.set(key, Buffer.from([i & 255, 1, 2, 3, 4, 5, 6, 7]))
            if (await store.get(key)) stored++
        }
        assert.equal(stored, 253)
        assert.equal(store.droppedWrites, 300 - 253)
    })

    test("others' reserved bytes count as live data", async () => {
        const store = new FakeSettingsStore(8192, 2048)
        assert.equal(store.liveBytes(), 2048)
        let stored = 0
        for (let i = 0; i < 100; i++) {
            await store.set(`k${i}`, Buffer.alloc(200, 1))
            if (await store.get(`k${i}`)) stored++
        }
        // (8120 - 2048) / (24 + 200) = 27.1
        assert.equal(stored, 27)
    })

    test("a full log is compacted to the latest entry per key, deletes (empty values) included", async () => {
        const store = new FakeSettingsStore(8192, 2048)
        await store.set("gone", Buffer.alloc(10, 1))
        await store.set("gone", Buffer.alloc(0))
        for (let i = 0; i < 100; i++) await store.set("churn", Buffer.alloc(200, i))
        assert.ok(store.compactions >= 3, `compactions ${store.compactions}`)
        assert.equal(store.droppedWrites, 0)
        assert.deepEqual([...(await store.get("churn"))!], [...Buffer.alloc(200, 99)])
        assert.equal(await store.get("gone"), null)
        // the tombstone stays: 2048 + (24 + 8) + (24 + 200)
        assert.equal(store.liveBytes(), 2048 + 32 + 224)
    })

    test("an over-long entry is stored truncated and reading it aborts", async () => {
        const store = new FakeSettingsStore()
        const key = "long"
        assert.equal(maxValueBytes(key), MAX_ENTRY_BYTES - 5)
        await store.set(key, Buffer.alloc(maxValueBytes(key) + 1, 7))
        await assert.rejects(store.get(key), /VM abort/)
    })

    test("keys over 13 characters throw", async () => {
        const store = new FakeSettingsStore()
        await assert.rejects(store.set("abcdefghijklmn", Buffer.alloc(1)), RangeError)
        await assert.rejects(store.get("abcdefghijklmn"), RangeError)
    })
})
