// The whole data path: simulated meter -> firmware in the simulator -> real broker -> subscriber.
import { after, before, describe, test } from "node:test"
import assert from "node:assert/strict"
import { Broker } from "../../devs/lib/broker"
import { NodeUnderTest, Recorder } from "./helpers"
import { expandHomeAssistantConfig } from "../fixtures/home-assistant"

const NODE = "e2e-path"
const READ_MS = 1000
const KEEPALIVE_S = 5

describe("data path", () => {
    let broker: Broker
    let recorder: Recorder
    let node: NodeUnderTest

    before(async () => {
        broker = await new Broker({ persistence: false }).start()
        console.log(`# broker: ${broker.describe()}`)
        recorder = await new Recorder(broker.url, `meters/${NODE}/#`).start()
        node = new NodeUnderTest({
            MQTT_URL: broker.url,
            NODE_ID: NODE,
            READ_MS,
            KEEPALIVE_S,
            SIM_SEED: 7,
        })
        await node.build()
    })

    after(async () => {
        await node?.dispose()
        await recorder?.stop()
        await broker?.dispose()
    })

    test("readings reach the broker at QoS 1 with increasing seq, and totals add up", async () => {
        await node.start(true)
        await recorder.waitFor("8 readings", r => r.readings().length >= 8, 30_000)
        const readings = recorder.readings()
        const messages = recorder.messages.filter(m => m.topic === `meters/${NODE}/main/reading`)
        assert.ok(
            messages.every(m => m.qos === 1 && !m.retain),
            "readings are delivered at QoS 1, not retained"
        )
        for (const r of readings) {
            assert.equal(r.meter, "main")
            assert.equal(r.unit, "Wh")
            assert.equal(r.time, "uptime_s")
            assert.ok(Number.isInteger(r.seq) && r.seq > 0, `seq ${r.seq} is a positive integer`)
            assert.ok(Number.isInteger(r.start) && Number.isInteger(r.end), "interval bounds are whole seconds")
            assert.ok(r.end > r.start, "interval has a positive length")
            assert.ok(r.delta > 0, "the simulated load always draws power")
        }
        for (let i = 1; i < readings.length; i++) {
            assert.equal(readings[i].seq, readings[i - 1].seq + 1, "consecutive seq within one boot")
            assert.equal(readings[i].start, readings[i - 1].end, "intervals are contiguous")
            const totalChange = Math.round((readings[i].total - readings[i - 1].total) * 1000)
            assert.equal(totalChange, Math.round(readings[i].delta * 1000), "total grows by exactly the delta")
        }
        // Each interval is READ_MS long, to the second.
        for (const r of readings.slice(1))
            assert.ok(Math.abs((r.end - r.start) * 1000 - READ_MS) <= 1000, `interval ${r.end - r.start} s`)
    })

    test("the retained status says online", async () => {
        await recorder.waitFor(
            "an online status",
            r => r.messages.some(m => m.topic.endsWith("/status") && m.payload.includes('"online"')),
            10_000
        )
        const status = recorder.messages.filter(m => m.topic === `meters/${NODE}/status`).at(-1)!
        const body = JSON.parse(status.payload)
        assert.equal(body.state, "online")
        assert.ok(body.boot >= 1)
        // A fresh subscriber gets it as a retained message.
        const late = await new Recorder(broker.url, `meters/${NODE}/status`).start()
        try {
            await late.waitFor("the retained status", r => r.messages.length > 0, 5000)
            assert.equal(late.messages[0].retain, true)
            assert.equal(JSON.parse(late.messages[0].payload).state, "online")
        } finally {
            await late.stop()
        }
    })

    test("after SIGKILL (power cut) the will says offline, the lost boot is reported as a gap, and seq continues above", async () => {
        const before = recorder.readings()
        const lastSeq = Math.max(...before.map(r => r.seq))
        const lastBoot = before.at(-1).boot
        // Taken before the kill: a fast broker publishes the will before kill() has returned.
        const killedAt = Date.now()
        await node.kill()
        await recorder.waitFor(
            "the will (offline, lost)",
            r =>
                r.messages.some(m => m.topic.endsWith("/status") && m.atMs >= killedAt && m.payload.includes('"lost"')),
            KEEPALIVE_S * 1500 + 5000
        )
        const countBefore = recorder.readings().length
        await node.start(false)
        await recorder.waitFor("readings after restart", r => r.readings().length >= countBefore + 3, 30_000)
        const afterRestart = recorder.readings().slice(countBefore)
        assert.ok(afterRestart[0].seq > lastSeq, `first seq after restart ${afterRestart[0].seq} > ${lastSeq}`)
        assert.equal(afterRestart[0].boot, lastBoot + 1, "boot count increments")
        // The boot that was cut off is reported as a gap: after its last reading known safe,
        // with a seq of its own above everything published before.
        await recorder.waitFor("the gap", r => r.gaps().length >= 1, 10_000)
        const gap = recorder.gaps()[0]
        assert.equal(gap.boot, lastBoot)
        assert.ok(gap.after_seq <= lastSeq && gap.seq > lastSeq && gap.seq < afterRestart[0].seq, JSON.stringify(gap))
        const all = recorder.readings().map(r => r.seq)
        assert.equal(new Set(all).size, all.length, "no seq is ever published twice")
        await recorder.waitFor(
            "online again",
            r =>
                r.messages
                    .filter(m => m.topic.endsWith("/status"))
                    .at(-1)!
                    .payload.includes('"online"'),
            10_000
        )
    })

    test("Home Assistant discovery: a retained energy sensor config; a meter renamed has its old config cleared", async () => {
        const ha = await new Recorder(broker.url, "homeassistant/#").start()
        try {
            // Retained: a subscriber arriving now gets it (and the Recorder checks it against docs/asyncapi.yaml).
            await ha.waitFor(
                "the discovery config",
                r => r.messages.some(m => m.topic.includes(`meternode_${NODE}_main_energy`)),
                10_000
            )
            const config = expandHomeAssistantConfig(
                ha.messages.find(m => m.topic === `homeassistant/sensor/meternode_${NODE}_main_energy/config`)!.payload
            )
            assert.equal(config.device_class, "energy")
            assert.equal(config.state_class, "total_increasing")
            assert.equal(config.state_topic, `meters/${NODE}/main/reading`)
            assert.equal(config.availability_topic, `meters/${NODE}/status`)
            // The value template picks the newest total of a reading message, as Home Assistant's Jinja would.
            const last = recorder.messages.filter(m => m.topic.endsWith("/reading")).at(-1)!
            const readings = JSON.parse(last.payload).readings
            assert.equal(config.value_template, "{{ value_json.readings[-1].total }}")
            assert.ok(typeof readings[readings.length - 1].total === "number")
            // Renamed meter: the next boot clears main's config and announces grid's.
            const sentAt = Date.now()
            await node.kill()
            await node.reconfigure({ METER_ID: "grid" })
            await node.start(false)
            await ha.waitFor(
                "main cleared and grid announced",
                r => {
                    const recent = r.messages.filter(m => m.atMs >= sentAt)
                    return (
                        recent.some(m => m.topic.includes("_main_energy") && m.payload === "") &&
                        recent.some(m => m.topic.includes("_grid_energy") && m.payload !== "")
                    )
                },
                30_000
            )
        } finally {
            await ha.stop()
        }
    })
})

describe("commands", () => {
    const NODE_CMD = "e2e-cmd"
    let broker: Broker
    let recorder: Recorder
    let node: NodeUnderTest

    before(async () => {
        broker = await new Broker({ persistence: false }).start()
        recorder = await new Recorder(broker.url, `meters/${NODE_CMD}/#`).start()
        node = new NodeUnderTest({ MQTT_URL: broker.url, NODE_ID: NODE_CMD, READ_MS: 1000, KEEPALIVE_S: 5 })
        await node.start(true)
        await recorder.waitFor(
            "the node online",
            r => r.messages.some(m => m.topic.endsWith("/status") && m.payload.includes('"online"')),
            30_000
        )
    })

    after(async () => {
        await node?.dispose()
        await recorder?.stop()
        await broker?.dispose()
    })

    test("a malformed or unknown command gets an error reply and changes nothing", async () => {
        const readingsBefore = recorder.readings().length
        await recorder.publish(`meters/${NODE_CMD}/cmd/launch`, JSON.stringify({ id: "c1" }))
        await recorder.publish(`meters/${NODE_CMD}/cmd/restart`, "{not json")
        await recorder.waitFor(
            "two error replies",
            r => r.messages.filter(m => m.topic.includes("/reply/")).length >= 2,
            10_000
        )
        const replies = recorder.messages
            .filter(m => m.topic.includes("/reply/"))
            .map(m => ({ topic: m.topic, body: JSON.parse(m.payload) }))
        assert.deepEqual(replies[0], {
            topic: `meters/${NODE_CMD}/reply/launch`,
            body: {
                id: "c1",
                ok: false,
                error: "unknown command launch (known: replay, restart, shutdown, status, time)",
            },
        })
        assert.deepEqual(replies[1], {
            topic: `meters/${NODE_CMD}/reply/restart`,
            body: { id: null, ok: false, error: "payload is not JSON" },
        })
        // Still the same boot, still publishing.
        await recorder.waitFor("more readings", r => r.readings().length >= readingsBefore + 2, 10_000)
        const last = recorder.readings().at(-1)
        assert.equal(last.boot, 1)
    })

    test("restart is graceful: status offline (restart), never the will, then online with the next boot", async () => {
        const sentAt = Date.now()
        await recorder.publish(`meters/${NODE_CMD}/cmd/restart`, JSON.stringify({ id: "r1" }))
        await recorder.waitFor(
            "online again after the restart",
            r =>
                r.messages.some(
                    m => m.atMs > sentAt && m.topic.endsWith("/status") && JSON.parse(m.payload).state === "online"
                ),
            30_000
        )
        const statuses = recorder.messages
            .filter(m => m.atMs > sentAt && m.topic.endsWith("/status"))
            .map(m => JSON.parse(m.payload))
        assert.deepEqual(statuses[0], { state: "offline", reason: "restart", boot: 1 })
        assert.ok(!statuses.some(s => s.reason === "lost"), "the will never fired")
        assert.equal(statuses.at(-1).boot, 2)
        const reply = recorder.messages.find(
            m => m.topic === `meters/${NODE_CMD}/reply/restart` && m.payload.includes("r1")
        )
        assert.deepEqual(JSON.parse(reply!.payload), { id: "r1", ok: true })
    })

    test("shutdown is graceful and final: status offline (shutdown) outlives the keepalive, no will, no more readings", async () => {
        await recorder.waitFor("readings of boot 2", r => r.readings().some(e => e.boot === 2), 30_000)
        const sentAt = Date.now()
        await recorder.publish(`meters/${NODE_CMD}/cmd/shutdown`, JSON.stringify({ id: "s1" }))
        await recorder.waitFor(
            "offline (shutdown)",
            r =>
                r.messages.some(
                    m => m.atMs > sentAt && m.topic.endsWith("/status") && m.payload.includes('"shutdown"')
                ),
            15_000
        )
        const readingsAtStop = recorder.readings().length
        // Past 1.5 x keepalive: a node that merely vanished would have its will published by now.
        await new Promise(r => setTimeout(r, 5 * 1500 + 1000))
        const statuses = recorder.messages
            .filter(m => m.atMs > sentAt && m.topic.endsWith("/status"))
            .map(m => JSON.parse(m.payload))
        assert.deepEqual(statuses, [{ state: "offline", reason: "shutdown", boot: 2 }])
        assert.equal(recorder.readings().length, readingsAtStop, "no reading after the stop")
        const late = await new Recorder(broker.url, `meters/${NODE_CMD}/status`).start()
        try {
            await late.waitFor("the retained status", r => r.messages.length > 0, 5000)
            assert.deepEqual(JSON.parse(late.messages[0].payload), { state: "offline", reason: "shutdown", boot: 2 })
        } finally {
            await late.stop()
        }
    })
})

describe("meter configuration", () => {
    let broker: Broker
    before(async () => {
        broker = await new Broker({ persistence: false }).start()
    })
    after(async () => {
        await broker?.dispose()
    })

    async function runNode(
        nodeId: string,
        settings: Record<string, string | number>,
        what: string,
        until: (r: Recorder) => boolean
    ) {
        const recorder = await new Recorder(broker.url, `meters/${nodeId}/#`).start()
        const node = new NodeUnderTest({
            MQTT_URL: broker.url,
            NODE_ID: nodeId,
            READ_MS: 1000,
            KEEPALIVE_S: 5,
            ...settings,
        })
        try {
            await node.start(true)
            await recorder.waitFor(what, until, 30_000)
            return { recorder, lines: [...node.simulator!.lines] }
        } finally {
            await node.dispose()
            await recorder.stop()
        }
    }

    test("an INA226 the board does not have: the failing samples are named, readings are flagged estimated, the node stays up", async () => {
        const { recorder, lines } = await runNode(
            "e2e-ina",
            { METER_KIND: "ina226" },
            "3 readings",
            r => r.readings().length >= 3
        )
        const readings = recorder.readings()
        assert.ok(
            readings.every(r => r.estimated === true && r.delta === 0),
            JSON.stringify(readings.slice(0, 3))
        )
        const named = lines.filter(l => l.startsWith("meter: INA226 at I2C address 64:"))
        assert.ok(named.length >= 1, "the failing chip is named on the console")
        assert.equal(named.length, 1, "reported once a minute, not at every sample")
        console.log(`# ina226 without I2C: ${named[0]}`)
    })

    test("a shunt the chip cannot be calibrated for: named in the status, no readings, commands still answered", async () => {
        const { recorder } = await runNode(
            "e2e-badmeter",
            { METER_KIND: "ina219", INA_SHUNT_UO: 100, INA_MAX_MA: 1 },
            "an online status",
            r => r.messages.some(m => m.topic.endsWith("/status") && m.payload.includes('"online"'))
        )
        const status = JSON.parse(recorder.messages.find(m => m.topic.endsWith("/status"))!.payload)
        assert.match(status.error, /^meter main \(ina219\): INA219: calibration .* out of 1\.\.65534/)
        assert.equal(recorder.readings().length, 0)
    })
})
