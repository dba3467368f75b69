// The `time` command steps a set clock, back or forward, and the readings stay truthful: they
// never overlap, never go back in time, never have start == end, and the reading that spans a
// step is flagged estimated. No reading is lost: seq stays contiguous and the totals add up.
import { after, before, describe, test } from "node:test"
import assert from "node:assert/strict"
import { Broker } from "../../devs/lib/broker"
import { NodeUnderTest, Recorder } from "./helpers"

const NODE = "e2e-clock-step"
const CMD = `meters/${NODE}/cmd/time`

describe("clock steps", () => {
    let broker: Broker
    let recorder: Recorder
    let node: NodeUnderTest

    before(async () => {
        broker = await new Broker({ persistence: false }).start()
        recorder = await new Recorder(broker.url, `meters/${NODE}/#`).start()
        node = new NodeUnderTest({
            MQTT_URL: broker.url,
            NODE_ID: NODE,
            READ_MS: 1000,
            KEEPALIVE_S: 5,
            TIME_TOPIC: "-",
            HA_PREFIX: "-",
        })
        await node.build()
        await node.start(true)
    })

    after(async () => {
        await node?.dispose()
        await recorder?.stop()
        await broker?.dispose()
    })

    const replies = () =>
        recorder.messages.filter(m => m.topic === `meters/${NODE}/reply/time`).map(m => JSON.parse(m.payload))
    const utcReadings = () => recorder.readings().filter(r => r.time === "utc_ms")

    test("stepped back 8 s and forward 30 s: readings stay contiguous, the spanning ones flagged", async () => {
        await recorder.waitFor("2 readings", r => r.readings().length >= 2, 30_000)
        await recorder.publish(CMD, JSON.stringify({ id: "set", utc_ms: Date.now() }))
        await recorder.waitFor("4 readings in UTC", () => utcReadings().length >= 4, 20_000)

        const lastBeforeSteps = Math.max(...recorder.readings().map(r => r.seq as number))
        const back = Date.now() - 8000
        await recorder.publish(CMD, JSON.stringify({ id: "back", utc_ms: back }))
        await recorder.waitFor("the reply", () => replies().some(r => r.id === "back"), 10_000)
        const reply = replies().find(r => r.id === "back")
        assert.equal(reply.ok, true, JSON.stringify(reply))
        assert.ok(Math.abs(reply.utc_ms - back) < 2000, `the reply shows the new time: ${reply.utc_ms} vs ${back}`)
        const beforeForward = utcReadings().length
        await recorder.waitFor("readings after the step back", () => utcReadings().length >= beforeForward + 3, 30_000)

        await recorder.publish(CMD, JSON.stringify({ id: "fwd", utc_ms: Date.now() + 30_000 - 8000 }))
        const afterForward = utcReadings().length
        await recorder.waitFor(
            "readings after the step forward",
            () => utcReadings().length >= afterForward + 3,
            20_000
        )

        const readings = recorder.readings()
        for (let i = 1; i < readings.length; i++) {
            const a = readings[i - 1]
            const b = readings[i]
            assert.equal(b.seq, a.seq + 1, "no reading lost")
            assert.ok(b.end > b.start, `seq ${b.seq}: start ${b.start} < end ${b.end}`)
            if (a.time === b.time) assert.equal(b.start, a.end, `seq ${b.seq} starts where seq ${a.seq} ended`)
            assert.equal(Math.round((b.total - a.total) * 1000), Math.round(b.delta * 1000), "the total adds the delta")
        }
        const utc = utcReadings().filter(r => r.seq > lastBeforeSteps)
        console.log(
            `# after the steps: ${utc.map(r => `${r.seq}:${r.end - r.start}ms${r.estimated ? "~" : ""}`).join(" ")}`
        )
        // Back: no reading may end before the last one did, so none is taken until the clock passes
        // it again; the next one carries the energy of the pause. Forward: one reading spans the
        // step. Those two are flagged, and only those.
        const flagged = utc.filter(r => r.estimated)
        assert.equal(flagged.length, 2, "the reading after each step is flagged")
        assert.ok(flagged[1].end - flagged[1].start >= 25_000, "the forward step is spanned by one reading")
        for (const r of utc.filter(r => !r.estimated)) assert.equal(r.end - r.start, 1000, `seq ${r.seq}`)
        const lines = node.simulator!.lines
        assert.ok(lines.some(l => /^time: clock stepped by -\d+ ms \(time command\)/.test(l)))
    })

    test("a step of more than 30 days is refused with the reason", async () => {
        await recorder.publish(CMD, JSON.stringify({ id: "far", utc_ms: Date.now() + 40 * 86_400_000 }))
        await recorder.waitFor("the reply", () => replies().some(r => r.id === "far"), 10_000)
        const reply = replies().find(r => r.id === "far")
        assert.equal(reply.ok, false)
        assert.match(reply.error, /more than 30 days/)
    })
})
