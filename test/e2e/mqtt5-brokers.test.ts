// The MQTT client handed MQTT 5's session (src/mqtt/mqtt5-session.ts), over a Node socket, against
// real brokers: Mosquitto 2 speaks MQTT 5 with it (topic aliases, the Will Delay), aedes 1.2.0 does
// not, and the node falls back to 3.1.1. This runs the pure client in Node; test/e2e/mqtt5-node.test.ts
// runs the firmware built with MQTT_VERSION=auto in the simulator.
import { after, describe, test } from "node:test"
import assert from "node:assert/strict"
import mqtt from "mqtt"
import { Broker, BrokerKind, findMosquitto, startBroker } from "../../devs/lib/broker"
import { MqttClient } from "../../src/mqtt/client"
import { defaultMqtt5Settings, Mqtt5Session, MQTT_VERSION_AUTO } from "../../src/mqtt/mqtt5-session"
import { ProtocolVersion } from "../../src/mqtt/packets"
import { NodeSocket, nodeClock } from "../fixtures/node-socket"

const NODE = "e2e-mqtt5"
const STATUS = `meters/${NODE}/status`
const READING = `meters/${NODE}/main/reading`
const WILL_DELAY_S = 3

async function until(done: () => boolean, what: string, ms = 10_000) {
    const deadline = Date.now() + ms
    while (!done()) {
        if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
        await nodeClock.sleep(20)
    }
}

async function nodeOn(broker: Broker) {
    const socket = new NodeSocket()
    const session = new Mqtt5Session(
        {
            clientId: `meternode-${NODE}`,
            keepaliveS: 30,
            cleanSession: false,
            inflightWindow: 16,
            will: { topic: STATUS, payload: Buffer.from('{"state":"offline","reason":"lost"}'), qos: 1, retain: true },
            subscriptions: [{ topic: `meters/${NODE}/cmd/+`, qos: 1 }],
        },
        { ...defaultMqtt5Settings(), version: MQTT_VERSION_AUTO, willDelayS: WILL_DELAY_S }
    )
    const seen = { connections: 0, delivered: [] as number[], messages: [] as string[], errors: [] as string[] }
    const client = new MqttClient(
        { host: "127.0.0.1", port: broker.port, tls: false },
        session,
        {
            onConnected: () => {
                seen.connections++
            },
            onDelivered: token => {
                seen.delivered.push(token)
            },
            onMessage: m => {
                seen.messages.push(`${m.topic} ${m.payload.toString()}`)
            },
            onError: text => {
                seen.errors.push(text)
            },
        },
        socket,
        nodeClock
    )
    client.start()
    await until(() => seen.connections === 1, "the node's first connection")
    return { socket, session, client, seen }
}

async function subscriber(broker: Broker, protocolVersion: 4 | 5) {
    const c = await mqtt.connectAsync(broker.url, {
        clientId: `sub-${process.pid}`,
        protocolVersion,
        reconnectPeriod: 0,
    })
    const received: { topic: string; payload: string; retain: boolean }[] = []
    c.on("message", (topic, payload, packet) =>
        received.push({ topic, payload: payload.toString(), retain: packet.retain })
    )
    await c.subscribeAsync(`meters/${NODE}/#`, { qos: 1 })
    return { c, received }
}

for (const kind of ["mosquitto", "aedes"] as BrokerKind[])
    describe(`MQTT version auto against ${kind}`, { skip: kind === "mosquitto" && !findMosquitto() }, () => {
        const cleanups: (() => Promise<void> | void)[] = []
        after(async () => {
            for (const c of cleanups.reverse()) await c()
        })

        test(
            kind === "mosquitto"
                ? "MQTT 5: readings with topic aliases, a command, and the Will Delay"
                : "falls back to 3.1.1, and works",
            async t => {
                t.mock.method(console, "log", () => {})
                const broker = await startBroker({ kind })
                cleanups.push(() => broker.stop())
                const sub = await subscriber(broker, kind === "mosquitto" ? 5 : 4)
                cleanups.push(() => sub.c.endAsync())
                const { socket, session, client, seen } = await nodeOn(broker)
                cleanups.push(() => client.stop())
                const mqtt5 = kind === "mosquitto"
                assert.equal(session.protocolVersion, mqtt5 ? ProtocolVersion.Mqtt5 : ProtocolVersion.Mqtt311)
                assert.equal(session.rememberedVersion, session.protocolVersion)
                if (mqtt5) assert.ok(session.topicAliasMaximum > 0, "Mosquitto allows topic aliases")
                // aedes's 3.1.1 CONNACK refusing MQTT 5 is an answer, not a protocol error.
                else assert.deepEqual(seen.errors, [], "no error on the way to 3.1.1")

                client.publish(STATUS, Buffer.from('{"state":"online"}'), 1, true)
                for (let i = 1; i <= 3; i++) client.publish(READING, Buffer.from(`{"seq":${i}}`), 1, false)
                await until(() => seen.delivered.length === 4, "four PUBACKs")
                await until(() => sub.received.length >= 4, "four messages at the subscriber")
                // The broker resolved the aliases: every message under its full topic.
                assert.deepEqual(
                    sub.received.map(m => `${m.topic} ${m.payload}`),
                    [`${STATUS} {"state":"online"}`, ...[1, 2, 3].map(i => `${READING} {"seq":${i}}`)]
                )
                await sub.c.publishAsync(`meters/${NODE}/cmd/status`, '{"id":"r1"}', { qos: 1 })
                await until(() => seen.messages.length === 1, "the command at the node")
                assert.equal(seen.messages[0], `meters/${NODE}/cmd/status {"id":"r1"}`)
                if (!mqtt5) return

                // A cut the node recovers from within the Will Delay: no will.
                sub.received.length = 0
                socket.cut()
                await until(() => seen.connections === 2, "the reconnection")
                await nodeClock.sleep(WILL_DELAY_S * 1000 + 500)
                assert.deepEqual(
                    sub.received.filter(m => m.topic === STATUS),
                    [],
                    "no will after a quick reconnect"
                )
                // A cut it does not recover from: the will, no sooner than the Will Delay.
                socket.unreachable = true
                const cutAtMs = Date.now()
                socket.cut()
                await until(() => sub.received.some(m => m.topic === STATUS), "the will", 3 * WILL_DELAY_S * 1000)
                const afterMs = Date.now() - cutAtMs
                assert.ok(afterMs >= WILL_DELAY_S * 1000 - 100, `the will came ${afterMs} ms after the cut`)
                assert.match(sub.received.find(m => m.topic === STATUS).payload, /lost/)
            }
        )
    })
