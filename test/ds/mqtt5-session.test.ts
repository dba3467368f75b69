// MQTT 5's session (src/mqtt/mqtt5-session.ts) in the DeviceScript VM: it compiles there and does
// what the Node tests (test/node/mqtt5-client.test.ts) show it doing, with packets as the decoder
// gives them. Packets it sends are encoded with the MQTT 5 codec, as the client encodes them. And
// the 3.1.1 session's timers past 2^31 ms of uptime, where the VM's truth tests of numbers fail.
import { describe, test, expect } from "@devicescript/test"
import { encodeClientPacket, encodePublishInto } from "../../src/mqtt/codec"
import { MQTT5 } from "../../src/mqtt/mqtt5"
import {
    DEFAULT_WILL_DELAY_S,
    defaultMqtt5Settings,
    Mqtt5Session,
    MQTT_VERSION_AUTO,
    reasonText,
    rememberedVersionOf,
    versionRecord,
} from "../../src/mqtt/mqtt5-session"
import { ConnectPacket, Packet, PacketType, ProtocolVersion, PublishPacket } from "../../src/mqtt/packets"
import { Action, ActionKind, RESUBSCRIBE_MS, Session, SessionState } from "../../src/mqtt/session"

function newSession(remembered: number) {
    const settings = defaultMqtt5Settings()
    settings.remembered = remembered
    return new Mqtt5Session(
        {
            clientId: "vm",
            keepaliveS: 60,
            cleanSession: false,
            inflightWindow: 8,
            will: { topic: "s", payload: Buffer.from("x"), qos: 1, retain: true },
            subscriptions: [],
        },
        settings
    )
}

function sends(actions: Action[]) {
    let n = 0
    for (const a of actions) if (a.kind === ActionKind.Send && a.packet.type === PacketType.Publish) n++
    return n
}

function connack(properties: any, returnCode: number): Packet {
    return { type: PacketType.Connack, sessionPresent: false, returnCode, properties }
}

describe("session in the VM after 24.8 days of uptime", () => {
    // Past 2^31 ms the VM takes a number in a truth test for false (docs/platform-notes.md): a
    // refused subscription must still be asked for again.
    test("a refused subscription is asked for again", () => {
        const t0 = 3000000000
        const s = new Session({
            clientId: "vm",
            keepaliveS: 60,
            cleanSession: false,
            inflightWindow: 8,
            subscriptions: [{ topic: "n/cmd/+", qos: 1 }],
        })
        s.onTransportOpen(t0)
        const subscribe = s
            .onPacket(t0, connack(undefined, 0))
            .filter(a => a.kind === ActionKind.Send && a.packet.type === PacketType.Subscribe)
        expect(subscribe.length).toBe(1)
        const packetId = (subscribe[0].packet as any).packetId
        s.onPacket(t0 + 10, { type: PacketType.Suback, packetId, returnCodes: [0x80] } as Packet)
        const again = s
            .onTick(t0 + 10 + RESUBSCRIBE_MS)
            .filter(a => a.kind === ActionKind.Send && a.packet.type === PacketType.Subscribe)
        expect(again.length).toBe(1)
    })
})

describe("MQTT 5 session in the VM", () => {
    test("CONNECT carries the properties and encodes", () => {
        const s = newSession(0)
        const actions = s.onTransportOpen(0)
        const connect = actions[0].packet as ConnectPacket
        expect(s.protocolVersion).toBe(ProtocolVersion.Mqtt5)
        expect(connect.properties.receiveMaximum).toBe(1)
        expect(connect.properties.maximumPacketSize).toBe(4096)
        expect(connect.will.properties.willDelayInterval).toBe(DEFAULT_WILL_DELAY_S)
        const bytes = encodeClientPacket(connect, MQTT5)
        // Protocol level 5 after the fixed header and the protocol name.
        expect(bytes[8]).toBe(5)
    })

    test("Receive Maximum, Maximum Packet Size and the inflight beyond the window", () => {
        const s = newSession(0)
        s.onTransportOpen(0)
        s.onPacket(0, connack({ receiveMaximum: 8, maximumPacketSize: 60 }, 0))
        expect(s.state).toBe(SessionState.Connected)
        const out: Action[] = []
        for (let i = 0; i < 4; i++) s.publish(0, "t/a", Buffer.from("1"), 1, false, out)
        expect(sends(out)).toBe(4)
        const big: Action[] = []
        const token = s.publish(0, "t/a", Buffer.alloc(100), 1, false, big)
        expect(big[0].kind).toBe(ActionKind.Delivered)
        expect(big[0].token).toBe(token)
        expect(big[0].code).toBe(0x95)
        // Reconnect to a broker with a window of 2: two resent, two wait as new publishes.
        s.onTransportClosed()
        s.onTransportOpen(10)
        const resent = s.onPacket(10, connack({ receiveMaximum: 2 }, 0))
        expect(sends(resent)).toBe(2)
        expect(s.inflightCount()).toBe(2)
    })

    test("a Maximum Packet Size from 2^31 up is a limit no publish reaches", () => {
        const s = newSession(ProtocolVersion.Mqtt5)
        s.onTransportOpen(0)
        s.onPacket(0, connack({ maximumPacketSize: 4294967295 }, 0))
        expect(s.brokerMaxPacketBytes).toBe(4294967295)
        const out: Action[] = []
        s.publish(0, "t/a", Buffer.alloc(300), 1, false, out)
        expect(sends(out)).toBe(1)
    })

    test("auto tries 3.1.1 after a close without CONNACK while nothing is remembered, and does not keep the guess", () => {
        const s = newSession(0)
        s.onTransportOpen(0)
        const closed = s.onTransportClosed()
        expect(closed[0].kind).toBe(ActionKind.Log)
        expect(s.rememberedVersion).toBe(ProtocolVersion.Mqtt311)
        s.onTransportOpen(10)
        expect(s.protocolVersion).toBe(ProtocolVersion.Mqtt311)
        expect(s.mqtt5 === null).toBe(true)
        s.onPacket(10, connack(undefined, 0))
        expect(s.state).toBe(SessionState.Connected)
        // The close may have been an outage: nothing to store, and MQTT 5 at the next connection.
        expect(rememberedVersionOf(versionRecord("h", 1883, s.rememberedVersion), "h", 1883)).toBe(0)
        s.onTransportClosed()
        s.onTransportOpen(20)
        expect(s.protocolVersion).toBe(ProtocolVersion.Mqtt5)
        expect(MQTT_VERSION_AUTO).toBe(0)
    })

    test("auto keeps a version the broker accepted when a connection closes without CONNACK", () => {
        const s = newSession(0)
        s.onTransportOpen(0)
        s.onPacket(0, connack({}, 0))
        s.onTransportClosed()
        // An outage behind a proxy: connections accepted and closed before any CONNACK.
        for (let i = 1; i <= 3; i++) {
            s.onTransportOpen(i * 10)
            expect(s.protocolVersion).toBe(ProtocolVersion.Mqtt5)
            expect(s.onTransportClosed().length).toBe(0)
        }
        expect(s.rememberedVersion).toBe(ProtocolVersion.Mqtt5)
    })

    test("topic aliases: the topic with its alias first, then the alias alone", () => {
        const s = newSession(ProtocolVersion.Mqtt5)
        s.onTransportOpen(0)
        s.onPacket(0, connack({ topicAliasMaximum: 1 }, 0))
        const out: Action[] = []
        s.publish(0, "t/a", Buffer.from("1"), 1, false, out)
        s.publish(0, "t/a", Buffer.from("2"), 1, false, out)
        s.publish(0, "t/b", Buffer.from("3"), 1, false, out)
        const packets = out.map(a => a.packet as PublishPacket)
        expect(packets[0].topic).toBe("t/a")
        expect(packets[0].properties.topicAlias).toBe(1)
        expect(packets[1].topic).toBe("")
        expect(packets[1].properties.topicAlias).toBe(1)
        expect(packets[2].topic).toBe("t/b")
        expect(packets[2].properties === undefined).toBe(true)
        const bytes = Buffer.alloc(64)
        // Header, an empty topic (its length, 0), the packet id, the properties (3: 0x23 0 1), 1 byte of payload.
        const end = encodePublishInto(packets[1], bytes, 0, MQTT5)
        expect(end).toBe(11)
        expect(bytes[2] + bytes[3]).toBe(0)
        expect(bytes[6]).toBe(3)
        expect(bytes[7]).toBe(0x23)
    })

    test("reason texts and a refused CONNACK", () => {
        expect(reasonText(0x87, { reasonString: "no" })).toBe("0x87 not authorized (reason: no)")
        const s = newSession(ProtocolVersion.Mqtt5)
        s.onTransportOpen(0)
        const actions = s.onPacket(0, connack({ reasonString: "x" }, 0x86))
        expect(actions[0].kind).toBe(ActionKind.Refused)
        expect(actions[0].reason).toBe("0x86 bad user name or password (reason: x)")
        expect(s.state).toBe(SessionState.Disconnected)
    })
})
