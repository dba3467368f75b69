// An image composed for one configuration, run with settings that name a driver it lacks: the
// node says so by name, on the console and in its status, and the meters it has still run.
import { test } from "node:test"
import assert from "node:assert/strict"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { buildFirmware, Simulator } from "../../devs/lib/simulator"
import { Recorder, withBroker } from "./helpers"

test("settings for a driver the image lacks are named at boot, and the other meters run", async () => {
    await withBroker({}, async broker => {
        const runDir = mkdtempSync(join(tmpdir(), "meternode-compose-"))
        const recorder = await new Recorder(broker.url, "meters/#").start()
        let sim: Simulator | undefined
        try {
            const settings = {
                MQTT_URL: broker.url,
                NODE_ID: "e2e-compose",
                READ_MS: 1000,
                METER_KIND: "sim",
                METER2: "water s0 imp=1/10L",
                TIME_TOPIC: "-",
            }
            // Composed for the simulated meter alone: no S0 driver in the image.
            const bytecode = await buildFirmware(settings, runDir, `e2e-compose-${process.pid}`, {
                METER_KIND: "sim",
            })
            sim = await new Simulator({ bytecode, runDir, mode: "device", clearFlash: true }).start()
            await sim.waitForLine(/^meter water: this image has no s0 driver/, 30_000)
            await recorder.waitFor(
                "a status naming the missing driver",
                r => r.messages.some(m => m.topic === "meters/e2e-compose/status" && /no s0 driver/.test(m.payload)),
                30_000
            )
            await recorder.waitFor(
                "readings of the simulated meter",
                r => r.messages.some(m => m.topic === "meters/e2e-compose/main/reading"),
                30_000
            )
            assert.ok(!recorder.messages.some(m => m.topic === "meters/e2e-compose/water/reading"))
        } finally {
            await sim?.kill()
            await recorder.stop()
            rmSync(runDir, { recursive: true, force: true })
        }
    })
})
