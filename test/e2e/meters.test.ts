// Meter inputs end to end: a Jacdac device on the simulator's bus, outside the VM as a board's C
// firmware would be, serves a button (an S0 input) and a temperature sensor. The node counts the
// button's pulses into energy readings and reads the sensor as a level, both on the broker.
import { after, before, describe, test } from "node:test"
import assert from "node:assert/strict"
import { Broker } from "../../devs/lib/broker"
import { busClients } from "../../devs/lib/simulator"
import { BUTTON_SERVICE_CLASS, JacdacBusDevice, TEMPERATURE_SERVICE_CLASS } from "../../devs/lib/jacdac-device"
import { NodeUnderTest, Recorder } from "./helpers"

const NODE = "e2e-meters"
/**
 * Pulses of the long run: 3,000 at 20 Hz take 150 s, 75 readings, the 7-bit event counter of the
 * button wrapping 47 times. E2E_PULSES=10000 runs the longer soak (8.5 minutes).
 */
const PULSES = Number(process.env.E2E_PULSES ?? 3_000)
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms))

/** Presses the button `count` times at `hz`: low for half the period, then an `up` with the time held. */
async function pulse(device: JacdacBusDevice, count: number, hz: number) {
    const periodMs = 1000 / hz
    const lowMs = Math.round(periodMs / 2)
    const t0 = performance.now()
    for (let i = 0; i < count; i++) {
        device.buttonDown(1)
        await sleep(t0 + i * periodMs + lowMs - performance.now())
        device.buttonUp(1, lowMs)
        await sleep(t0 + (i + 1) * periodMs - performance.now())
    }
}

describe("meter inputs on the Jacdac bus", () => {
    let broker: Broker
    let recorder: Recorder
    let node: NodeUnderTest
    let device: JacdacBusDevice
    let sensorTimer: NodeJS.Timeout

    before(async () => {
        broker = await new Broker({ persistence: false }).start()
        console.log(`# broker: ${broker.describe()}`)
        recorder = await new Recorder(broker.url, `meters/${NODE}/#`).start()
        node = new NodeUnderTest({
            MQTT_URL: broker.url,
            NODE_ID: NODE,
            READ_MS: 2000,
            KEEPALIVE_S: 5,
            FLUSH_S: 2,
            METER_ID: "grid",
            METER_KIND: "s0",
            METER_OPTS: "imp=1000/kWh min_pulse_ms=15",
            METER2: "boiler temperature",
        })
        await node.build()
        device = new JacdacBusDevice([
            { serviceClass: BUTTON_SERVICE_CLASS },
            { serviceClass: TEMPERATURE_SERVICE_CLASS },
        ])
    })

    after(async () => {
        clearInterval(sensorTimer)
        device?.stop()
        await node?.dispose()
        await recorder?.stop()
        await broker?.dispose()
    })

    const gridTotal = () => {
        const r = recorder.readings("/grid/reading")
        return r.length ? r[r.length - 1].total : 0
    }

    /**
     * Waits for the total to reach `total`, then for two more grid readings: a pulse counted late
     * or twice would show in them.
     */
    async function waitForTotalThenSettle(total: number, timeoutMs: number) {
        await recorder.waitFor(`${total} Wh`, () => gridTotal() >= total, timeoutMs)
        const seq = recorder.readings("/grid/reading").at(-1).seq
        await recorder.waitFor(
            "two grid readings after the total was reached",
            r => r.readings("/grid/reading").some(e => e.seq >= seq + 2),
            15_000
        )
    }

    test("button pulses at 20 Hz become exact energy readings; a temperature becomes min/mean/max", async () => {
        const sim = await node.start(true)
        await sim.waitForLine(/^node: boot/, 30_000)
        assert.ok(busClients() > 0, "the simulator is on this process's bus (another process holds port 8082?)")
        device.start()
        let temperature = 21
        sensorTimer = setInterval(() => device.reading(2, (temperature = temperature === 21 ? 23 : 21)), 200)
        await recorder.waitFor(
            "a grid and a boiler reading",
            r => r.readings("/grid/reading").length > 0 && r.readings("/boiler/reading").length > 0,
            30_000
        )
        // Binding: the first temperature arrived, so the role manager has seen the device.
        await pulse(device, 200, 20)
        await waitForTotalThenSettle(200, 20_000)
        const grid = recorder.readings("/grid/reading")
        assert.equal(gridTotal(), 200, "every pulse counted once: 1 Wh each")
        assert.equal(Math.round(grid.reduce((s, r) => s + r.delta, 0) * 1000), 200_000, "the deltas sum to the total")
        assert.ok(grid.every(r => r.quantity === "energy" && r.unit === "Wh"))
        const boiler = recorder.readings("/boiler/reading")
        const last = boiler[boiler.length - 1]
        assert.deepEqual([last.quantity, last.unit, last.min, last.max], ["temperature", "°C", 21, 23])
        assert.ok(last.mean > 21 && last.mean < 23, `mean ${last.mean}`)
        console.log(
            `# 200 pulses at 20 Hz: total ${gridTotal()} Wh in ${grid.length} readings; boiler ${JSON.stringify(last)}`
        )
    })

    test(`the total survives a restart of the program; ${PULSES} more pulses at 20 Hz are counted exactly`, async () => {
        const before = gridTotal()
        await recorder.publish(`meters/${NODE}/cmd/restart`, "{}")
        await recorder.waitFor(
            "boot 2 online",
            r =>
                r.messages.some(
                    m => m.topic.endsWith("/status") && m.payload.includes('"boot":2') && m.payload.includes('"online"')
                ),
            30_000
        )
        // The new boot has bound the device again: a reading of its sensor with samples of this boot.
        await recorder.waitFor(
            "a boiler reading of boot 2 with both temperatures",
            r => r.readings("/boiler/reading").some(e => e.boot === 2 && e.min === 21 && e.max === 23),
            30_000
        )
        const t0 = Date.now()
        await pulse(device, PULSES, 20)
        const seconds = (Date.now() - t0) / 1000
        await waitForTotalThenSettle(before + PULSES, 30_000)
        assert.equal(gridTotal(), before + PULSES, "counted exactly across the restart")
        const boot2 = recorder.readings("/grid/reading").filter(r => r.boot === 2)
        assert.equal(Math.round(boot2.reduce((s, r) => s + r.delta, 0) * 1000), PULSES * 1000)
        console.log(
            `# ${PULSES} pulses in ${seconds.toFixed(0)} s (${(PULSES / seconds).toFixed(1)} Hz) after a restart: total ${before} -> ${gridTotal()} Wh, ${device.framesSent} frames sent`
        )
    })
})
