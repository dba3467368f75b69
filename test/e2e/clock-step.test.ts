// The `time` command steps a set clock, back or forward, and the readings stay truthful: they
// never overlap, never go back in time, never have start == end, and the reading that spans a
// step is flagged estimated. No reading is lost: seq stays contiguous and the totals add up.
import { after, before, describe, test } from "node:test"
import assert from "node:assert/strict"
import { Broker } from "../../devs/lib/broker"
import { NodeUnderTest, Recorder, until } from "./helpers"

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

    test("after a reboot, a time from before the newest reading in flash is refused until the time command sets it", async () => {
        const timeTopic = `meters/${NODE}/time-source`
        await node.kill()
        await node.reconfigure({ TIME_TOPIC: timeTopic })
        // A stale (or forged) retained time, an hour behind the readings the node already sent.
        await recorder.publish(timeTopic, JSON.stringify({ utc_ms: Date.now() - 3600_000 }), true)
        const since = Date.now()
        await node.start(false)
        const refused = /^time from time topic is \d+ s before the end of the last reading in flash: refused/
        await until("the refusal", () => node.simulator!.lines.some(l => refused.test(l)), 30_000)
        await recorder.waitFor(
            "readings of the new boot",
            r => r.readings().filter(e => e.atMs > since).length >= 3,
            30_000
        )
        const newBoot = () => recorder.readings().filter(e => e.atMs > since)
        assert.deepEqual(
            newBoot()
                .filter(r => r.time === "utc_ms")
                .map(r => r.seq),
            [],
            "no reading of the new boot is stamped with the refused time"
        )
        // The status names it, once its rate limit lets it (the birth status told of the gap).
        const statusErrors = () =>
            recorder.messages
                .filter(m => m.topic === `meters/${NODE}/status` && m.atMs > since)
                .map(m => JSON.parse(m.payload).error as string)
        await until("the status names the refusal", () => statusErrors().some(e => refused.test(e)), 20_000)
        // The operator's command is the way out, whatever the floor says.
        await recorder.publish(CMD, JSON.stringify({ id: "reset", utc_ms: Date.now() }))
        await recorder.waitFor("the reply", () => replies().some(r => r.id === "reset"), 10_000)
        assert.equal(replies().find(r => r.id === "reset").ok, true)
        await recorder.waitFor("readings in UTC again", () => newBoot().some(r => r.time === "utc_ms"), 20_000)
        await recorder.publish(timeTopic, "", true)
    })
})
