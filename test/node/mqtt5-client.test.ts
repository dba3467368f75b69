// The MQTT client (src/mqtt/client.ts) handed MQTT 5's session (src/mqtt/mqtt5-session.ts), in Node,
// against a scripted broker that reads and writes with mqtt-packet at protocolVersion 5 (and 4 for
// the fallback to 3.1.1): what the node tells the broker in CONNECT, what it does with the CONNACK,
// the reason codes it turns into errors, and the choice of protocol version.
import { describe, test, TestContext } from "node:test"
import assert from "node:assert/strict"
import mqttPacket from "mqtt-packet"

import { MAX_INBOUND_PACKET_BYTES, MqttClient, REFUSED_FLOOR_MS, TICK_MS } from "../../src/mqtt/client"
import {
    DEFAULT_SESSION_EXPIRY_S,
    DEFAULT_WILL_DELAY_S,
    defaultMqtt5Settings,
    INBOUND_RECEIVE_MAXIMUM,
    MAX_REASON_CHARS,
    Mqtt5Session,
    mqtt5Session,
    Mqtt5Settings,
    MQTT_VERSION_AUTO,
    reasonText,
    rememberedVersionOf,
    versionRecord,
    versionToRemember,
    versionToTry,
} from "../../src/mqtt/mqtt5-session"
import { PacketType, ProtocolVersion } from "../../src/mqtt/packets"
import { NodeConfig, parseConfig } from "../../src/config"
import { keepaliveTimers, SessionOptions } from "../../src/mqtt/session"
import { CLOSED_BY_BROKER } from "../../src/mqtt/transport"
import { FakeBroker, FakeClock, Reports, settle, until } from "../fixtures/scripted-broker"

const CLIENT_ID = "meternode-test"
const COMMANDS = "meters/n1/cmd/+"

interface Setup {
    options?: Partial<SessionOptions>
    settings?: Partial<Mqtt5Settings>
    /** Prepares the broker before the client starts (its version, its answers). */
    broker?: (broker: FakeBroker) => void
    /** Whether to wait for the first CONNACK to be accepted. */
    connected?: boolean
}

/** A client with MQTT 5's session, started; connected unless `connected` is false. */
async function mqtt5Client(t: TestContext, setup: Setup = {}) {
    const logs: string[] = []
    t.mock.method(console, "log", (...args: any[]) => {
        logs.push(args.join(" "))
    })
    const clock = new FakeClock()
    const broker = new FakeBroker(clock)
    broker.protocolVersion = 5
    if (setup.broker) setup.broker(broker)
    const reports = new Reports(clock)
    const options: SessionOptions = {
        clientId: CLIENT_ID,
        keepaliveS: 60,
        cleanSession: false,
        inflightWindow: 16,
        will: { topic: "meters/n1/status", payload: Buffer.from('{"state":"offline"}'), qos: 1, retain: true },
        subscriptions: [],
        ...setup.options,
    }
    const session = new Mqtt5Session(options, { ...defaultMqtt5Settings(), ...setup.settings })
    const client = new MqttClient({ host: "broker.test", port: 1883, tls: false }, session, reports, broker, clock)
    client.start()
    if (setup.connected !== false) await until(() => reports.connections === 1, "the first CONNACK")
    // The client starts its loop on a real timer: the first CONNECT comes before any fake time passes.
    else await until(() => broker.openedAtMs.length > 0 && broker.packets.length > 0, "the first CONNECT")
    return { clock, broker, reports, client, session, logs }
}

/** A broker that accepts MQTT 5 with these CONNACK properties. */
function connackWith(properties: any) {
    return (broker: FakeBroker) => {
        broker.onConnect = () => broker.send({ cmd: "connack", reasonCode: 0, sessionPresent: false, properties })
    }
}

/** Waits for what the client's flush timers (real ones, setTimeout 0) would still write. */
async function written() {
    await new Promise(resolve => setTimeout(resolve, 20))
    await settle()
}

/**
 * Lets fake time pass (the reconnect backoff) until the client opens connection number `opens`,
 * within `ms`, then waits for its CONNECT, and for `connections` accepted connections if given.
 */
async function reconnect(
    clock: FakeClock,
    broker: FakeBroker,
    reports: Reports,
    opens: number,
    ms: number,
    connections?: number
) {
    assert.ok(await clock.runUntil(() => broker.openedAtMs.length >= opens, ms), `connection ${opens} opened`)
    await until(() => connects(broker).length === 1, "its CONNECT")
    if (connections !== undefined) await until(() => reports.connections === connections, "its CONNACK")
}

function connects(broker: FakeBroker) {
    return broker.packets.filter(p => p.cmd === "connect")
}

describe("MQTT 5: what the node tells the broker in CONNECT", () => {
    test("protocol level 5, Session Expiry, Receive Maximum, Maximum Packet Size = the client's inbound limit, and a Will Delay", async t => {
        const { broker, session } = await mqtt5Client(t)
        const [connect] = connects(broker)
        assert.equal(connect.protocolVersion, 5)
        assert.deepEqual(connect.properties, {
            sessionExpiryInterval: DEFAULT_SESSION_EXPIRY_S,
            receiveMaximum: INBOUND_RECEIVE_MAXIMUM,
            maximumPacketSize: MAX_INBOUND_PACKET_BYTES,
        })
        assert.equal(connect.clean, false)
        assert.deepEqual(connect.will.properties, {
            willDelayInterval: DEFAULT_WILL_DELAY_S,
            contentType: "application/json",
        })
        assert.equal(session.protocolVersion, ProtocolVersion.Mqtt5)
        assert.deepEqual(broker.violations, [])
    })

    test("the defaults: a session kept for as long as the queue keeps readings, a will delayed 30 s", () => {
        // 2,167 days: the longest outage the largest queue (QUEUE_BYTES 8928) held before dropping.
        assert.ok(DEFAULT_SESSION_EXPIRY_S >= 2167 * 86400 && DEFAULT_SESSION_EXPIRY_S < 2 ** 32)
        assert.equal(DEFAULT_WILL_DELAY_S, 30)
        assert.equal(INBOUND_RECEIVE_MAXIMUM, 1)
    })

    test("Session Expiry and Will Delay are the settings'", async t => {
        const { broker } = await mqtt5Client(t, { settings: { sessionExpiryS: 600, willDelayS: 5 } })
        const [connect] = connects(broker)
        assert.equal(connect.properties.sessionExpiryInterval, 600)
        assert.equal(connect.will.properties.willDelayInterval, 5)
    })
})

describe("MQTT 5: what the CONNACK says is used", () => {
    test("Receive Maximum bounds the QoS 1 window below the node's own", async t => {
        const { broker, client, reports, session } = await mqtt5Client(t, {
            broker: connackWith({ receiveMaximum: 2 }),
        })
        const tokens: number[] = []
        for (let i = 0; i < 5; i++) tokens.push(client.publish("t/a", Buffer.from(String(i)), 1, false))
        await until(() => broker.publishes().length === 2, "two PUBLISH packets")
        await written()
        assert.equal(broker.publishes().length, 2, "two in flight")
        assert.equal(session.inflightCount(), 2)
        broker.send({ cmd: "puback", messageId: broker.publishes()[0].messageId })
        await until(() => broker.publishes().length === 3, "the third PUBLISH after a PUBACK")
        await written()
        assert.equal(broker.publishes().length, 3)
        assert.deepEqual(reports.delivered, [tokens[0]])
    })

    test("the node's window stays when the broker's Receive Maximum is larger", async t => {
        const { broker, client } = await mqtt5Client(t, {
            options: { inflightWindow: 3 },
            broker: connackWith({ receiveMaximum: 100 }),
        })
        for (let i = 0; i < 5; i++) client.publish("t/a", Buffer.from(String(i)), 1, false)
        await until(() => broker.publishes().length === 3, "three PUBLISH packets")
        await written()
        assert.equal(broker.publishes().length, 3)
    })

    test("a publish over the broker's Maximum Packet Size is not sent: done with reason 0x95 and an error; smaller ones go", async t => {
        const { broker, client, reports, session } = await mqtt5Client(t, {
            broker: connackWith({ maximumPacketSize: 100 }),
        })
        assert.equal(session.brokerMaxPacketBytes, 100)
        const big = client.publish("t/big", Buffer.alloc(200, 0x61), 1, false)
        const small = client.publish("t/small", Buffer.from("ok"), 1, false)
        await until(() => broker.publishes().length === 1, "the small PUBLISH")
        await written()
        assert.deepEqual(
            broker.publishes().map(p => p.topic),
            ["t/small"]
        )
        assert.deepEqual(reports.delivered, [big])
        assert.deepEqual(reports.codes, [0x95])
        assert.equal(reports.errors.length, 1)
        assert.match(reports.errors[0], /t\/big not sent: the broker's Maximum Packet Size is 100/)
        broker.send({ cmd: "puback", messageId: broker.publishes()[0].messageId })
        await settle()
        assert.deepEqual(reports.delivered, [big, small])
        assert.deepEqual(reports.codes, [0x95, undefined])
        // Exactly at the limit still goes, one byte more does not: 1 + 1 + (2 + 5 + 2 + 1 + payload) bytes.
        client.publish("t/max", Buffer.alloc(100 - 12, 0x62), 1, false)
        const over = client.publish("t/max", Buffer.alloc(100 - 11, 0x62), 1, false)
        await until(() => broker.publishes().length === 2 && reports.delivered.length === 3, "the PUBLISH at the limit")
        await written()
        assert.equal(broker.publishes().length, 2)
        assert.deepEqual(reports.delivered.slice(2), [over])
        assert.match(reports.errors[1], /a message of 101 bytes to t\/max not sent/)
    })

    test("Server Keep Alive replaces the node's keepalive", async t => {
        const { clock, broker } = await mqtt5Client(t, {
            options: { keepaliveS: 60 },
            broker: connackWith({ serverKeepAlive: 10 }),
        })
        const connectedAtMs = clock.nowMs
        assert.ok(await clock.runUntil(() => broker.count("pingreq") === 1, 20_000), "a PINGREQ")
        const afterMs = clock.nowMs - connectedAtMs
        assert.ok(afterMs <= keepaliveTimers(10).pingIdleMs + TICK_MS, `PINGREQ after ${afterMs} ms`)
    })

    test("an Assigned Client Identifier is the client id of the next CONNECT", async t => {
        const { clock, broker, reports } = await mqtt5Client(t, {
            options: { clientId: "" },
            broker: connackWith({ assignedClientIdentifier: "auto-1234" }),
        })
        assert.equal(connects(broker)[0].clientId, "")
        broker.hangUp()
        await reconnect(clock, broker, reports, 2, 60_000)
        assert.equal(connects(broker)[0].clientId, "auto-1234")
    })

    test("Topic Alias Maximum is recorded", async t => {
        const { session } = await mqtt5Client(t, { broker: connackWith({ topicAliasMaximum: 10 }) })
        assert.equal(session.topicAliasMaximum, 10)
    })

    test("topic aliases 1..N: the topic and its alias the first time on a connection, then the alias alone", async t => {
        const { clock, broker, client, reports } = await mqtt5Client(t, {
            broker: connackWith({ topicAliasMaximum: 2 }),
        })
        const topics = ["t/a", "t/a", "t/b", "t/c", "t/a", "t/b", "t/c"]
        for (const topic of topics) client.publish(topic, Buffer.from(topic), 1, false)
        await until(() => broker.publishes().length === topics.length, "every PUBLISH")
        const wire = (p: any) => [p.topic, p.properties?.topicAlias]
        assert.deepEqual(broker.publishes().map(wire), [
            ["t/a", 1],
            ["", 1],
            ["t/b", 2],
            ["t/c", undefined],
            ["", 1],
            ["", 2],
            ["t/c", undefined],
        ])
        // What the broker resolves is what was published.
        const byAlias = new Map<number, string>()
        const resolved = broker.publishes().map(p => {
            const alias = p.properties?.topicAlias
            if (alias && p.topic) byAlias.set(alias, p.topic)
            return p.topic || byAlias.get(alias)
        })
        assert.deepEqual(resolved, topics)
        assert.deepEqual(
            broker.publishes().map(p => p.payload.toString()),
            topics
        )
        // Unacknowledged, they go again on the next connection, where aliases start again.
        broker.hangUp()
        await reconnect(clock, broker, reports, 2, 60_000, 2)
        await until(() => broker.publishes().length === topics.length, "the resends")
        assert.deepEqual(broker.publishes().slice(0, 3).map(wire), [
            ["t/a", 1],
            ["", 1],
            ["t/b", 2],
        ])
        assert.ok(broker.publishes().every(p => p.dup))
        assert.deepEqual(broker.violations, [])
    })

    test("no topic aliases when the broker allows none", async t => {
        const { broker, client } = await mqtt5Client(t)
        for (let i = 0; i < 3; i++) client.publish("t/a", Buffer.from("1"), 1, false)
        await until(() => broker.publishes().length === 3, "every PUBLISH")
        assert.deepEqual(
            broker.publishes().map(p => [p.topic, p.properties?.topicAlias]),
            [
                ["t/a", undefined],
                ["t/a", undefined],
                ["t/a", undefined],
            ]
        )
    })

    for (const [what, properties, text] of [
        ["Maximum QoS 0", { maximumQoS: 0 }, /configuration error: the broker allows Maximum QoS 0/],
        // mqtt-packet takes the byte as a boolean.
        ["Retain Available 0", { retainAvailable: false }, /configuration error: the broker allows Retain Available 0/],
    ] as const)
        test(`${what} is a configuration error: DISCONNECT, no connection, the refused floor`, async t => {
            const { clock, broker, reports } = await mqtt5Client(t, {
                broker: connackWith(properties),
                connected: false,
            })
            await until(() => reports.errors.length === 1, "the error")
            assert.match(reports.errors[0], text)
            assert.equal(reports.connections, 0)
            const disconnect = broker.packets.find(p => p.cmd === "disconnect")
            assert.ok(disconnect, "a DISCONNECT")
            assert.equal(disconnect.reasonCode, 0x83)
            const closedAtMs = clock.nowMs
            assert.ok(await clock.runUntil(() => broker.openedAtMs.length === 2, 2 * REFUSED_FLOOR_MS))
            assert.ok(broker.openedAtMs[1] - closedAtMs >= REFUSED_FLOOR_MS)
        })
})

describe("MQTT 5: reason codes and reason strings become errors", () => {
    test("a refusing CONNACK: the code in hex, its name and the reason string", async t => {
        const { reports } = await mqtt5Client(t, {
            broker: b => {
                b.onConnect = () =>
                    b.send({
                        cmd: "connack",
                        reasonCode: 0x87,
                        sessionPresent: false,
                        properties: { reasonString: "acl says no" },
                    })
            },
            connected: false,
        })
        await until(() => reports.errors.length === 1, "the error")
        assert.equal(
            reports.errors[0],
            "mqtt: broker refused the connection: 0x87 not authorized (reason: acl says no)"
        )
    })

    test("a hostile reason string is cut to MAX_REASON_CHARS", async t => {
        const { reports } = await mqtt5Client(t, {
            broker: b => {
                b.onConnect = () =>
                    b.send({
                        cmd: "connack",
                        reasonCode: 0x86,
                        sessionPresent: false,
                        properties: { reasonString: "x".repeat(3000) },
                    })
            },
            connected: false,
        })
        await until(() => reports.errors.length === 1, "the error")
        const error = reports.errors[0]
        assert.ok(
            error.includes("0x86 bad user name or password (reason: " + "x".repeat(MAX_REASON_CHARS) + "...)"),
            error
        )
        assert.ok(error.length < 200, `${error.length} characters`)
    })

    test("every reason code has its name; an unknown one says so", () => {
        assert.equal(reasonText(0x8e), "0x8e session taken over")
        assert.equal(reasonText(0xa2), "0xa2 wildcard subscriptions not supported")
        assert.equal(reasonText(0x00), "0x00 success")
        assert.equal(reasonText(0x7f), "0x7f unknown reason code")
        assert.equal(reasonText(0x97, { reasonString: "slow down" }), "0x97 quota exceeded (reason: slow down)")
    })

    test("a refused subscription: its filter, the code and the reason string", async t => {
        const { reports } = await mqtt5Client(t, {
            options: { subscriptions: [{ topic: COMMANDS, qos: 1 }] },
            broker: b => {
                b.onPacket = p => {
                    if (p.cmd !== "subscribe") return false
                    b.send({
                        cmd: "suback",
                        messageId: p.messageId,
                        granted: [0x87],
                        properties: { reasonString: "no commands for you" },
                    })
                    return true
                }
            },
        })
        await until(() => reports.errors.length === 1, "the error")
        assert.equal(
            reports.errors[0],
            `mqtt: subscription to ${COMMANDS} refused by the broker: 0x87 not authorized (reason: no commands for you); asking again in 60 s`
        )
    })

    test("a PUBACK that refuses: done with its reason code, and an error naming the topic", async t => {
        const { broker, client, reports } = await mqtt5Client(t)
        const token = client.publish("meters/n1/main/reading", Buffer.from("{}"), 1, false)
        await until(() => broker.publishes().length === 1, "the PUBLISH")
        broker.send({
            cmd: "puback",
            messageId: broker.publishes()[0].messageId,
            reasonCode: 0x97,
            properties: { reasonString: "over quota" },
        })
        await until(() => reports.delivered.length === 1, "the PUBACK")
        assert.deepEqual(reports.delivered, [token])
        assert.deepEqual(reports.codes, [0x97])
        assert.deepEqual(reports.errors, [
            "mqtt: the broker refused a message to meters/n1/main/reading: 0x97 quota exceeded (reason: over quota)",
        ])
    })

    test("a PUBACK with 0x10 (no matching subscribers) is a success", async t => {
        const { broker, client, reports } = await mqtt5Client(t)
        const token = client.publish("t/a", Buffer.from("1"), 1, false)
        await until(() => broker.publishes().length === 1, "the PUBLISH")
        broker.send({ cmd: "puback", messageId: broker.publishes()[0].messageId, reasonCode: 0x10 })
        await until(() => reports.delivered.length === 1, "the PUBACK")
        assert.deepEqual(reports.codes, [undefined])
        assert.deepEqual(reports.errors, [])
        assert.equal(token, reports.delivered[0])
    })

    test("a DISCONNECT from the broker: an error with its reason, and the connection closed", async t => {
        const { clock, broker, reports } = await mqtt5Client(t)
        broker.send({ cmd: "disconnect", reasonCode: 0x8e, properties: { reasonString: "another client" } })
        await until(() => reports.disconnects.length === 1, "the disconnect")
        assert.deepEqual(reports.errors, [
            "mqtt: disconnected by the broker: 0x8e session taken over (reason: another client)",
        ])
        assert.equal(reports.disconnects[0].reason, CLOSED_BY_BROKER)
        assert.ok(await clock.runUntil(() => broker.openedAtMs.length === 2, 60_000), "reconnects")
    })

    test("DISCONNECT 0x8e twice within SHORT_CONNECTION_MS of the CONNACK is a client take-over: the next attempt waits REFUSED_FLOOR_MS", async t => {
        const { clock, broker, reports } = await mqtt5Client(t)
        await clock.advance(1000)
        broker.send({ cmd: "disconnect", reasonCode: 0x8e })
        await reconnect(clock, broker, reports, 2, REFUSED_FLOOR_MS, 2)
        await clock.advance(1000)
        broker.send({ cmd: "disconnect", reasonCode: 0x8e })
        await until(() => reports.disconnects.length === 2, "the second disconnect")
        const closedAtMs = clock.nowMs
        assert.ok(
            reports.errors.some(e => /take-over/.test(e)),
            reports.errors.join("\n")
        )
        assert.ok(await clock.runUntil(() => broker.openedAtMs.length === 3, 2 * REFUSED_FLOOR_MS), "reconnected")
        assert.ok(broker.openedAtMs[2] - closedAtMs >= REFUSED_FLOOR_MS, "waited the floor")
    })

    test("an AUTH from the broker is refused: DISCONNECT 0x82, a named error, no crash, and the node reconnects", async t => {
        const { clock, broker, reports } = await mqtt5Client(t)
        broker.send({ cmd: "auth", reasonCode: 0x18, properties: { authenticationMethod: "SCRAM-SHA-1" } })
        await until(() => reports.disconnects.length === 1, "the disconnect")
        const disconnect = broker.packets.find(p => p.cmd === "disconnect")
        assert.equal(disconnect.reasonCode, 0x82)
        assert.match(reports.errors[0], /^mqtt: AUTH from the broker refused/)
        await reconnect(clock, broker, reports, 2, 60_000, 2)
        assert.deepEqual(broker.violations, [])
    })

    test("an AUTH instead of a CONNACK is refused the same way", async t => {
        const { broker, reports } = await mqtt5Client(t, {
            broker: b => {
                b.onConnect = () => b.send({ cmd: "auth", reasonCode: 0x18, properties: { authenticationMethod: "X" } })
            },
            connected: false,
        })
        await until(() => reports.errors.length === 1, "the error")
        assert.match(reports.errors[0], /AUTH from the broker refused/)
        assert.equal(broker.packets.find(p => p.cmd === "disconnect").reasonCode, 0x82)
        assert.equal(reports.connections, 0)
    })

    test("a topic alias from the broker (the node allows none) is refused with DISCONNECT 0x94", async t => {
        const messages: string[] = []
        const { broker, reports, client } = await mqtt5Client(t)
        client.events.onMessage = m => {
            messages.push(m.topic)
        }
        broker.send({
            cmd: "publish",
            topic: "meters/n1/cmd/status",
            payload: Buffer.from("{}"),
            qos: 0,
            properties: { topicAlias: 1 },
        })
        await until(() => reports.disconnects.length === 1, "the disconnect")
        assert.equal(broker.packets.find(p => p.cmd === "disconnect").reasonCode, 0x94)
        assert.deepEqual(messages, [])
    })
})

describe("MQTT 5: the client's own packets", () => {
    test("a payload in parts (publishParts) carries an empty property block in MQTT 5", async t => {
        const { broker, client } = await mqtt5Client(t)
        assert.equal(client.publishParts("ha/sensor/x/config", ['{"a":', "1}"], true), true)
        await until(() => broker.publishes().length === 1, "the PUBLISH")
        const [p] = broker.publishes()
        assert.equal(p.topic, "ha/sensor/x/config")
        assert.equal(p.payload.toString(), '{"a":1}')
        assert.deepEqual(broker.violations, [])
    })

    test("a payload in parts over the broker's Maximum Packet Size is not sent (the broker would hang up), and says so", async t => {
        const { broker, client, reports } = await mqtt5Client(t, { broker: connackWith({ maximumPacketSize: 100 }) })
        // 1 + 1 + (2 + 4 + 1 + payload): 100 bytes with a payload of 91, 101 with 92.
        assert.equal(client.publishParts("ha/x", ["a".repeat(50), "b".repeat(42)], true), false)
        assert.equal(client.publishParts("ha/y", ["a".repeat(50), "b".repeat(41)], true), true)
        await until(() => broker.publishes().length === 1, "the PUBLISH at the limit")
        await written()
        assert.deepEqual(
            broker.publishes().map(p => p.topic),
            ["ha/y"]
        )
        assert.equal(reports.errors.length, 1)
        assert.match(reports.errors[0], /a message to ha\/x not sent: over the broker's Maximum Packet Size, 100/)
        assert.deepEqual(broker.violations, [])
    })

    test("a planned stop sends DISCONNECT with reason 0, so the will is discarded", async t => {
        const { clock, broker, client } = await mqtt5Client(t)
        const stopping = client.stop()
        await clock.advance(100)
        await stopping
        const disconnect = broker.packets.find(p => p.cmd === "disconnect")
        assert.ok(disconnect)
        assert.equal(disconnect.reasonCode ?? 0, 0)
        assert.deepEqual(broker.violations, [])
    })
})

describe("MQTT version: the choice as a pure function", () => {
    test("versionToTry: a fixed version, else the one remembered, else 5", () => {
        assert.equal(versionToTry(5, 4), 5)
        assert.equal(versionToTry(4, 5), 4)
        assert.equal(versionToTry(MQTT_VERSION_AUTO, 0), 5)
        assert.equal(versionToTry(MQTT_VERSION_AUTO, 4), 4)
        assert.equal(versionToTry(MQTT_VERSION_AUTO, 5), 5)
    })

    test("versionToRemember: the accepted version; after 5 is refused 3.1.1; after 3.1.1 is refused nothing (5 again)", () => {
        assert.equal(versionToRemember(5, true), 5)
        assert.equal(versionToRemember(4, true), 4)
        assert.equal(versionToRemember(5, false), 4)
        assert.equal(versionToRemember(4, false), 0)
    })

    test("what is stored is keyed by the broker's host:port", () => {
        const record = versionRecord("broker.lan", 1883, 4)
        assert.equal(rememberedVersionOf(record, "broker.lan", 1883), 4)
        assert.equal(rememberedVersionOf(record, "broker.lan", 8883), 0)
        assert.equal(rememberedVersionOf(record, "other", 1883), 0)
        assert.equal(rememberedVersionOf("", "broker.lan", 1883), 0)
        assert.equal(rememberedVersionOf("broker.lan:1883 7", "broker.lan", 1883), 0)
    })
})

/** A broker that speaks only 3.1.1: it answers an MQTT 5 CONNECT with return code 1 and closes, as MQTT 3.1.1 says. */
function only311(broker: FakeBroker) {
    broker.protocolVersion = 4
    broker.onConnect = connect => {
        if (connect.protocolVersion === 5) {
            broker.sendBytes(
                mqttPacket.generate({ cmd: "connack", returnCode: 1, sessionPresent: false }, { protocolVersion: 4 })
            )
            setImmediate(() => broker.hangUp())
        } else broker.send({ cmd: "connack", returnCode: 0, sessionPresent: false })
    }
}

describe("MQTT version auto: the record kept in flash (mqtt5Session)", () => {
    const options = (): SessionOptions => ({
        clientId: "meternode-n1",
        keepaliveS: 30,
        cleanSession: false,
        inflightWindow: 16,
        subscriptions: [],
    })
    const config = (mqttVersion: number) =>
        ({
            ...parseConfig({}).config,
            broker: { host: "b.example", port: 1883, tls: false },
            mqttVersion,
        }) as NodeConfig
    const accept = (session: ReturnType<typeof mqtt5Session>) => {
        session.onTransportOpen(0)
        session.onPacket(0, { type: PacketType.Connack, returnCode: 0, sessionPresent: false, properties: {} })
    }

    test("the record stored for this broker is tried first, and a new answer is handed on once", () => {
        const session = mqtt5Session(options(), config(MQTT_VERSION_AUTO), versionRecord("b.example", 1883, 4))
        assert.equal(session.rememberedVersion, ProtocolVersion.Mqtt311)
        const told: string[] = []
        session.onRemembered = record => told.push(record)
        accept(session)
        assert.equal(session.protocolVersion, ProtocolVersion.Mqtt311)
        assert.deepEqual(told, [], "nothing new to store")
    })

    test("another broker's record, or none, starts from MQTT 5; the accepted version is handed on, once", () => {
        for (const stored of [versionRecord("other.example", 1883, 4), versionRecord("b.example", 8883, 4), "", 5]) {
            const session = mqtt5Session(options(), config(MQTT_VERSION_AUTO), stored as string)
            const told: string[] = []
            session.onRemembered = record => told.push(record)
            accept(session)
            assert.equal(session.protocolVersion, ProtocolVersion.Mqtt5, String(stored))
            accept(session)
            assert.deepEqual(told, [versionRecord("b.example", 1883, 5)], String(stored))
        }
    })

    test("a fixed version stores nothing", () => {
        const session = mqtt5Session(options(), config(ProtocolVersion.Mqtt5), "")
        const told: string[] = []
        session.onRemembered = record => told.push(record)
        accept(session)
        assert.deepEqual(told, [])
    })
})

describe("MQTT version auto: 5, falling back to 3.1.1", () => {
    test("against a 3.1.1 broker (return code 1 to an MQTT 5 CONNECT): the next connection speaks 3.1.1, and that is remembered", async t => {
        const { clock, broker, reports, session, client, logs } = await mqtt5Client(t, {
            broker: only311,
            connected: false,
        })
        await reconnect(clock, broker, reports, 2, 10_000, 1)
        assert.equal(broker.openedAtMs.length, 2)
        assert.equal(connects(broker)[0].protocolVersion, 4)
        assert.equal(session.protocolVersion, ProtocolVersion.Mqtt311)
        assert.equal(session.rememberedVersion, ProtocolVersion.Mqtt311)
        assert.ok(
            logs.some(l => /MQTT 5: .*trying MQTT 3.1.1 next/.test(l)),
            logs.join("\n")
        )
        // 3.1.1 on the wire from then on: a publish and its PUBACK, read by a 3.1.1 parser.
        const token = client.publish("t/a", Buffer.from("1"), 1, false)
        await until(() => broker.publishes().length === 1, "the PUBLISH")
        broker.send({ cmd: "puback", messageId: broker.publishes()[0].messageId })
        await until(() => reports.delivered.length === 1, "the PUBACK")
        assert.deepEqual(reports.delivered, [token])
        assert.deepEqual(broker.violations, [])
    })

    test("a broker that closes the connection right after an MQTT 5 CONNECT, without CONNACK: 3.1.1 next", async t => {
        const { clock, broker, reports, session } = await mqtt5Client(t, {
            broker: b => {
                b.protocolVersion = 4
                b.onConnect = connect => {
                    if (connect.protocolVersion === 5) setImmediate(() => b.hangUp())
                    else b.send({ cmd: "connack", returnCode: 0, sessionPresent: false })
                }
            },
            connected: false,
        })
        await reconnect(clock, broker, reports, 2, 10_000, 1)
        assert.equal(connects(broker)[0].protocolVersion, 4)
        assert.deepEqual(reports.errors, [], "a fallback, not a refusal")
        // A close is no answer (it may have been an outage): the guess is not kept, and the next
        // connection tries MQTT 5 first again.
        assert.equal(session.rememberedVersion, 0)
        broker.hangUp()
        await reconnect(clock, broker, reports, 3, 10_000)
        assert.equal(connects(broker)[0].protocolVersion, 5)
        await reconnect(clock, broker, reports, 4, 10_000, 2)
        assert.equal(connects(broker)[0].protocolVersion, 4)
    })

    test("a broker that accepted MQTT 5, then is down behind a proxy that closes before CONNACK: MQTT 5 throughout", async t => {
        let down = false
        const { clock, broker, reports, session, logs } = await mqtt5Client(t, {
            broker: b => {
                b.onConnect = () => {
                    if (down) setImmediate(() => b.hangUp())
                    else b.send({ cmd: "connack", reasonCode: 0, sessionPresent: false })
                }
            },
        })
        assert.equal(session.rememberedVersion, ProtocolVersion.Mqtt5)
        down = true
        broker.hangUp()
        for (const opens of [2, 3, 4]) {
            await reconnect(clock, broker, reports, opens, 60_000)
            assert.equal(connects(broker)[0].protocolVersion, 5, `connection ${opens}`)
        }
        down = false
        await reconnect(clock, broker, reports, 5, 60_000, 2)
        assert.equal(connects(broker)[0].protocolVersion, 5)
        assert.equal(session.protocolVersion, ProtocolVersion.Mqtt5)
        assert.equal(session.rememberedVersion, ProtocolVersion.Mqtt5)
        assert.ok(!logs.some(l => /trying MQTT 3.1.1/.test(l)), logs.join("\n"))
    })

    test("an MQTT 5 CONNACK with 0x84 (unsupported protocol version): 3.1.1 next, without the refused floor", async t => {
        const { clock, broker, reports, session } = await mqtt5Client(t, {
            broker: b => {
                b.onConnect = connect => {
                    if (connect.protocolVersion === 5)
                        b.send({ cmd: "connack", reasonCode: 0x84, sessionPresent: false })
                    else
                        b.sendBytes(
                            mqttPacket.generate(
                                { cmd: "connack", returnCode: 0, sessionPresent: false },
                                { protocolVersion: 4 }
                            )
                        )
                }
            },
            connected: false,
        })
        await reconnect(clock, broker, reports, 2, REFUSED_FLOOR_MS - 1, 1)
        assert.equal(broker.openedAtMs.length, 2)
        assert.equal(session.protocolVersion, ProtocolVersion.Mqtt311)
        assert.deepEqual(reports.errors, [])
    })

    test("a remembered 3.1.1 is tried first; when it is refused, MQTT 5 is tried again and remembered", async t => {
        const { clock, broker, reports, session } = await mqtt5Client(t, {
            settings: { remembered: ProtocolVersion.Mqtt311 },
            broker: b => {
                // Upgraded: it now refuses 3.1.1.
                b.onConnect = connect => {
                    if (connect.protocolVersion === 4)
                        b.sendBytes(
                            mqttPacket.generate(
                                { cmd: "connack", returnCode: 1, sessionPresent: false },
                                { protocolVersion: 4 }
                            )
                        )
                    else b.send({ cmd: "connack", reasonCode: 0, sessionPresent: false })
                }
            },
            connected: false,
        })
        await reconnect(clock, broker, reports, 2, 10_000, 1)
        assert.equal(broker.openedAtMs.length, 2)
        assert.equal(connects(broker)[0].protocolVersion, 5)
        assert.equal(session.protocolVersion, ProtocolVersion.Mqtt5)
        assert.equal(session.rememberedVersion, ProtocolVersion.Mqtt5)
    })

    test("a remembered 3.1.1 that is accepted stays: no MQTT 5 attempt", async t => {
        const { broker, session } = await mqtt5Client(t, {
            settings: { remembered: ProtocolVersion.Mqtt311 },
            broker: b => {
                b.protocolVersion = 4
            },
        })
        assert.equal(broker.openedAtMs.length, 1)
        assert.equal(connects(broker)[0].protocolVersion, 4)
        assert.equal(session.rememberedVersion, ProtocolVersion.Mqtt311)
    })

    test("a fixed version 5 does not fall back: 0x84 is a refusal", async t => {
        const { clock, broker, reports, session } = await mqtt5Client(t, {
            settings: { version: ProtocolVersion.Mqtt5 },
            broker: b => {
                b.onConnect = () => b.send({ cmd: "connack", reasonCode: 0x84, sessionPresent: false })
            },
            connected: false,
        })
        await until(() => reports.errors.length === 1, "the refusal")
        assert.match(reports.errors[0], /0x84 unsupported protocol version/)
        await reconnect(clock, broker, reports, 2, 2 * REFUSED_FLOOR_MS)
        assert.equal(connects(broker)[0].protocolVersion, 5)
        assert.equal(session.rememberedVersion, 0)
    })

    test("a fixed version 3.1.1 speaks 3.1.1 with MQTT 5's session too", async t => {
        const { broker, session } = await mqtt5Client(t, {
            settings: { version: ProtocolVersion.Mqtt311 },
            broker: b => {
                b.protocolVersion = 4
            },
        })
        assert.equal(connects(broker)[0].protocolVersion, 4)
        assert.equal(connects(broker)[0].properties, undefined)
        assert.equal(session.protocolVersion, ProtocolVersion.Mqtt311)
        assert.equal(session.mqtt5, null)
    })
})
