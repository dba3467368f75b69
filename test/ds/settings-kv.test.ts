// The KeyValueStore contract (test/node/kv-contract.ts, shared with the Node tests) against the
// real Settings store in the simulator, whose flash starts empty in test mode, plus what only the
// DeviceScript adapter does: refuse entries the store would truncate.
import { describe, test, expect } from "@devicescript/test"
import { registerKeyValueContract } from "../node/kv-contract"
import { SettingsKeyValueStore } from "../../src/storage/settings-kv"
import { maxValueBytes } from "../../src/storage/kv"

const store = new SettingsKeyValueStore()

describe("SettingsKeyValueStore refuses what the store would truncate", () => {
    test("a value one byte over the limit and a 14-character key throw before anything is sent", async () => {
        let threw = 0
        try {
            await store.set("ds.long", Buffer.alloc(maxValueBytes("ds.long") + 1))
        } catch (e) {
            threw++
        }
        try {
            await store.get("ds.0123456789x")
        } catch (e) {
            threw++
        }
        expect(threw).toBe(2)
        expect(await store.get("ds.long")).toBe(null)
    })
})

describe("KeyValueStore contract: the Settings store", () => {
    registerKeyValueContract(
        (name, body) => test(name, body),
        () => store,
        line => console.log("    [settings] " + line)
    )
})
