// The firmware composed to speak MQTT 5 (MQTT_VERSION=auto), in the simulator, against both
// brokers: Mosquitto 2 speaks MQTT 5 with it, aedes 1.2.0 refuses it and the node falls back to
// 3.1.1 and remembers that in flash. On each, the data path: readings, the status (which names the
// version), commands, the will.
import { after, before, describe, test } from "node:test"
import assert from "node:assert/strict"
import mqtt from "mqtt"
import { Broker, BrokerKind, findMosquitto } from "../../devs/lib/broker"
import { NodeUnderTest, Recorder } from "./helpers"

const READ_MS = 1000
const KEEPALIVE_S = 5
/** Long enough for a kill and a restart of the simulator (a few seconds), short enough to wait out. */
const WILL_DELAY_S = 15
/** What the node logs when the broker refuses MQTT 5 (src/mqtt/mqtt5-session.ts versionRefused). */
const FALLBACK = /MQTT 5: .*; trying MQTT 3\.1\.1 next/

const statusOf = (r: Recorder, node: string) =>
    r.messages.filter(m => m.topic === `meters/${node}/status`).map(m => ({ ...JSON.parse(m.payload), atMs: m.atMs }))

for (const kind of ["mosquitto", "aedes"] as BrokerKind[])
    describe(`MQTT_VERSION=auto against ${kind}`, { skip: kind === "mosquitto" && !findMosquitto() }, () => {
        const NODE = `e2e-v5-${kind}`
        const version = kind === "mosquitto" ? "5" : "3.1.1"
        let broker: Broker
        let recorder: Recorder
        let node: NodeUnderTest

        before(async () => {
            broker = await new Broker({ kind, persistence: false }).start()
            recorder = await new Recorder(broker.url, `meters/${NODE}/#`).start()
            node = new NodeUnderTest({
                MQTT_URL: broker.url,
                NODE_ID: NODE,
                READ_MS,
                KEEPALIVE_S,
                MQTT_VERSION: "auto",
                WILL_DELAY_S,
                HA_PREFIX: "-",
            })
            await node.build()
        })

        after(async () => {
            await node?.dispose()
            await recorder?.stop()
            await broker?.dispose()
        })

        test(`readings arrive in order and the status says MQTT ${version}`, async () => {
            const sim = await node.start(true)
            await recorder.waitFor("5 readings", r => r.readings().length >= 5, 30_000)
            const seqs = recorder.readings().map(r => r.seq)
            assert.deepEqual(
                seqs,
                seqs.map((_, i) => seqs[0] + i),
                "consecutive seqs"
            )
            await recorder.waitFor("an online status", r => statusOf(r, NODE).some(s => s.state === "online"), 10_000)
            assert.equal(statusOf(recorder, NODE).at(-1).mqtt, version)
            if (kind === "aedes")
                assert.ok(
                    sim.lines.some(l => FALLBACK.test(l)),
                    "the first boot fell back"
                )
            else assert.ok(!sim.lines.some(l => FALLBACK.test(l)), "Mosquitto accepted MQTT 5")
        })

        if (kind === "mosquitto")
            test("a request sent by MQTT.js v5 gets its reply on its Response Topic, with its Correlation Data", async () => {
                const app = await mqtt.connectAsync(broker.url, {
                    clientId: `app-${process.pid}`,
                    protocolVersion: 5,
                    reconnectPeriod: 0,
                })
                try {
                    const replies: { topic: string; body: any; correlation?: string }[] = []
                    app.on("message", (topic, payload, packet) =>
                        replies.push({
                            topic,
                            body: JSON.parse(payload.toString()),
                            correlation: packet.properties?.correlationData?.toString(),
                        })
                    )
                    await app.subscribeAsync("app/responses/#", { qos: 1 })
                    await app.subscribeAsync(`meters/${NODE}/reply/#`, { qos: 1 })
                    await app.publishAsync(`meters/${NODE}/cmd/status`, '{"id":"q1"}', {
                        qos: 1,
                        properties: { responseTopic: "app/responses/7", correlationData: Buffer.from("corr-7") },
                    })
                    // Under the topic prefix (where readings and statuses live) and not the node's replies: refused.
                    await app.publishAsync(`meters/${NODE}/cmd/status`, '{"id":"q2"}', {
                        qos: 1,
                        properties: { responseTopic: `meters/${NODE}/main/reading`, correlationData: Buffer.from("x") },
                    })
                    await recorder.waitFor("both replies", () => replies.length >= 2, 10_000)
                    const answered = replies.find(r => r.body.id === "q1")
                    assert.equal(answered.topic, "app/responses/7")
                    assert.equal(answered.correlation, "corr-7")
                    assert.equal(answered.body.ok, true)
                    assert.equal(answered.body.status.mqtt, "5")
                    const refused = replies.find(r => r.body.id === "q2")
                    assert.equal(refused.topic, `meters/${NODE}/reply/status`)
                    assert.equal(refused.correlation, undefined)
                    assert.deepEqual(refused.body, {
                        id: "q2",
                        ok: false,
                        error: `response topic refused: under meters/ but not meters/${NODE}/reply/`,
                    })
                    assert.ok(
                        !recorder.messages.some(m => m.topic.endsWith("/reading") && m.payload.includes('"q2"')),
                        "nothing published on the reading topic"
                    )
                } finally {
                    await app.endAsync()
                }
            })

        test(
            kind === "mosquitto"
                ? "a restart within the Will Delay leaves no offline status; a node that stays away gets its will after it"
                : "the version is remembered: the next boot does not try MQTT 5 again; the will on a kill",
            async () => {
                const boot = statusOf(recorder, NODE).at(-1).boot
                const restartedAt = Date.now()
                await node.kill()
                const sim = await node.start(false)
                await recorder.waitFor(
                    "online with the next boot",
                    r => statusOf(r, NODE).some(s => s.state === "online" && s.boot === boot + 1),
                    30_000
                )
                assert.equal(statusOf(recorder, NODE).at(-1).mqtt, version)
                if (kind === "aedes")
                    assert.ok(!sim.lines.some(l => FALLBACK.test(l)), "the second boot went straight to 3.1.1")
                else {
                    // Past the Will Delay of the kill: the reconnection cancelled the will [MQTT-3.1.3-9].
                    const waitMs = restartedAt + WILL_DELAY_S * 1000 + 2000 - Date.now()
                    await new Promise(resolve => setTimeout(resolve, Math.max(0, waitMs)))
                    assert.deepEqual(
                        statusOf(recorder, NODE)
                            .filter(s => s.state !== "online")
                            .map(s => s.reason),
                        [],
                        "no offline status across the restart"
                    )
                }
                const killedAt = Date.now()
                await node.kill()
                const waitMs = (kind === "mosquitto" ? WILL_DELAY_S * 1000 : 0) + KEEPALIVE_S * 1500 + 10_000
                await recorder.waitFor(
                    "the will",
                    r => statusOf(r, NODE).some(s => s.state === "offline" && s.atMs >= killedAt),
                    waitMs
                )
                const will = statusOf(recorder, NODE).find(s => s.state === "offline" && s.atMs >= killedAt)
                assert.equal(will.reason, "lost")
                if (kind === "mosquitto")
                    assert.ok(
                        will.atMs - killedAt >= WILL_DELAY_S * 1000 - 500,
                        `the will came ${will.atMs - killedAt} ms after the kill`
                    )
            }
        )
    })
