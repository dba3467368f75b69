// Hostile input from anyone with publish rights on the broker: oversized and deep commands, names
// too long to echo, topics too long to check, and messages over the node's packet limit. Through
// all of it the node keeps delivering readings with contiguous seq, never crashes, answers what it
// refuses with a clear error, and after a restart with the same flash and session nothing of it
// comes back. Real Mosquitto, with `message_size_limit` set as docs/security.md recommends.
import { after, before, describe, test } from "node:test"
import assert from "node:assert/strict"
import mqtt from "mqtt"
import { Broker } from "../../devs/lib/broker"
import { CRASH, NodeUnderTest, Recorder, until } from "./helpers"

const NODE = "e2e-hostile"
const CMD = `meters/${NODE}/cmd`
/** What the broker lets through: the node skips anything over its 4,096-byte packet limit up to this. */
const BROKER_LIMIT = 8192

describe("hostile input", () => {
    let broker: Broker
    let recorder: Recorder
    let attacker: mqtt.MqttClient
    let node: NodeUnderTest

    before(async () => {
        broker = await new Broker({ persistence: false, extraConfig: [`message_size_limit ${BROKER_LIMIT}`] }).start()
        console.log(`# broker: ${broker.describe()}`)
        recorder = await new Recorder(broker.url, `meters/${NODE}/#`).start()
        attacker = await mqtt.connectAsync(broker.url, { clientId: `attacker-${process.pid}`, reconnectPeriod: 0 })
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
        await recorder.waitFor("3 readings", r => r.readings().length >= 3, 30_000)
    })

    after(async () => {
        await attacker?.endAsync(true)
        await node?.dispose()
        await recorder?.stop()
        await broker?.dispose()
    })

    const replies = (name: string) =>
        recorder.messages.filter(m => m.topic === `meters/${NODE}/reply/${name}`).map(m => JSON.parse(m.payload))

    /** Readings keep coming after `since`, and every seq delivered so far is contiguous. */
    async function readingsGoOn(since: number) {
        await recorder.waitFor("3 more readings", r => r.readings().filter(e => e.atMs > since).length >= 3, 20_000)
        const seqs = [...new Set(recorder.readings().map(e => e.seq as number))].sort((a, b) => a - b)
        for (let i = 1; i < seqs.length; i++)
            assert.equal(seqs[i], seqs[i - 1] + 1, `seq ${seqs[i - 1]} then ${seqs[i]}`)
        const crashes = node.simulator!.lines.filter(l => CRASH.test(l))
        assert.deepEqual(crashes, [], "no crash, panic, OutOfMemory or InfiniteLoop")
    }

    test("commands over their budgets get one clear error each", async () => {
        const since = Date.now()
        await attacker.publishAsync(`${CMD}/status`, JSON.stringify({ id: "big", pad: "x".repeat(3500) }), { qos: 1 })
        await attacker.publishAsync(`${CMD}/${"n".repeat(2048)}`, JSON.stringify({ id: "long" }), { qos: 1 })
        const deep = '{"id":' + "[".repeat(240) + "]".repeat(240) + "}"
        await attacker.publishAsync(`${CMD}/status`, deep, { qos: 1 })
        await attacker.publishAsync(`${CMD}/status`, JSON.stringify({ id: "i".repeat(3000) }), { qos: 1 })
        await attacker.publishAsync(`${CMD}/${"n".repeat(40)}`, JSON.stringify({ id: "name" }), { qos: 1 })
        await recorder.waitFor(
            "4 error replies",
            () => replies("status").length + replies("invalid").length >= 4,
            20_000
        )
        const errors = [...replies("status"), ...replies("invalid")].map(r => `${r.id}: ${r.error}`).sort()
        assert.deepEqual(errors, [
            "null: command name over 16 bytes",
            "null: payload nested deeper than 4",
            "null: payload over 512 bytes",
            "null: payload over 512 bytes",
        ])
        // A topic too long to check is dropped before it is decoded, the error on the console and in the status.
        const dropped = `mqtt: dropped a topic of ${CMD.length + 1 + 2048} bytes`
        await until("the long topic dropped", () => node.simulator!.lines.some(l => l.startsWith(dropped)), 10_000)
        await readingsGoOn(since)
    })

    test("a message over the node's packet limit is skipped and acknowledged; the connection stays up", async () => {
        const since = Date.now()
        const connectsBefore = node.simulator!.lines.filter(l => l.startsWith("mqtt: connected")).length
        for (const bytes of [4096, 6000, BROKER_LIMIT - 200])
            await attacker.publishAsync(`${CMD}/status`, "x".repeat(bytes), { qos: 1 })
        await until(
            "three messages dropped",
            () => node.simulator!.lines.filter(l => /^mqtt: dropped a message of \d+ bytes/.test(l)).length >= 3,
            20_000
        )
        await readingsGoOn(since)
        const connects = node.simulator!.lines.filter(l => l.startsWith("mqtt: connected")).length
        assert.equal(connects, connectsBefore, "no reconnect, so no will and no redelivery loop")
    })

    test("messages over the broker's message_size_limit never reach the node", async () => {
        const since = Date.now()
        const dropped = () => node.simulator!.lines.filter(l => /^mqtt: dropped a message/.test(l)).length
        const before = dropped()
        // Mosquitto refuses them at the door (with MQTT 3.1.1 it disconnects the sender).
        for (const bytes of [60 * 1024, 1024 * 1024]) {
            const big = await mqtt.connectAsync(broker.url, { clientId: `big-${bytes}`, reconnectPeriod: 0 })
            big.on("error", () => {})
            big.publish(`${CMD}/status`, Buffer.alloc(bytes, 0x5b), { qos: 0 })
            await new Promise(r => setTimeout(r, 500))
            big.end(true)
        }
        await readingsGoOn(since)
        assert.equal(dropped(), before, "nothing over the broker's limit reached the node")
    })

    test("after a restart with the same flash and session, none of it is delivered again", async () => {
        await node.kill()
        const since = Date.now()
        await node.start(false)
        await recorder.waitFor(
            "3 readings of the new boot",
            r => r.readings().filter(e => e.atMs > since).length >= 3,
            30_000
        )
        await new Promise(r => setTimeout(r, 3000))
        const lines = node.simulator!.lines
        assert.deepEqual(
            lines.filter(l => l.startsWith("command: ") || l.startsWith("mqtt: dropped")),
            [],
            "no command and no oversized message came back from the session"
        )
        assert.deepEqual(
            lines.filter(l => CRASH.test(l)),
            []
        )
    })
})
