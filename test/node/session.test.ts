// The MQTT session state machine, driven packet by packet the way MQTT.js and coreMQTT test
// their clients: a scripted driver feeds events with a fake clock and collects the actions.
// Every packet the session sends is encoded, then read back by our decoder and by mqtt-packet's
// parser (the reference implementation), so the tests also prove the bytes are valid MQTT.
import { describe, test } from "node:test"
import assert from "node:assert/strict"
import mqttPacket from "mqtt-packet"

import { DecodeFailure } from "../../src/mqtt/decoder"
import {
    ConnectReturnCode,
    Packet,
    PacketType,
    PublishPacket,
    SubscribePacket,
    SUBACK_FAILURE,
} from "../../src/mqtt/packets"
import {
    Action,
    ActionKind,
    connectReturnCodeText,
    keepaliveTimers,
    MAX_PACKET_ID,
    RESUBSCRIBE_MS,
    Session,
    SessionOptions,
    SessionState,
} from "../../src/mqtt/session"
import { SeededRandom } from "../../src/meters/simulated"
import { fromMqttPacket } from "./packet-fixtures"
import { encodePacket, PacketDecoder } from "../fixtures/mqtt-codec"

/** What the node passes (src/node.ts): keep the session, QoS 1 retained will. */
function options(overrides: Partial<SessionOptions> = {}): SessionOptions {
    return {
        clientId: "meternode-test",
        keepaliveS: 30,
        cleanSession: false,
        inflightWindow: 4,
        subscriptions: [],
        ...overrides,
    }
}

/** Drops undefined fields, so packets compare by what they carry on the wire. */
function plain(value: any): any {
    if (value === null || typeof value !== "object" || Buffer.isBuffer(value)) return value
    if (Array.isArray(value)) return value.map(plain)
    const out: any = {}
    for (const key of Object.keys(value)) if (value[key] !== undefined) out[key] = plain(value[key])
    return out
}

/**
 * One direction of one connection as the receiving side reads it: our streaming decoder and
 * mqtt-packet's parser, both fed the whole byte stream.
 */
class Wire {
    private decoder = new PacketDecoder(1 << 20)
    private parser = mqttPacket.parser({ protocolVersion: 4 })
    private parsed: any[] = []
    private errors: Error[] = []

    constructor() {
        this.parser.on("packet", (p: any) => this.parsed.push(p))
        this.parser.on("error", (e: Error) => this.errors.push(e))
    }

    /** Encodes a packet, reads it back both ways, returns our decoder's copy. */
    carry(packet: Packet): Packet {
        const bytes = encodePacket(packet)
        this.decoder.push(bytes)
        const result = this.decoder.next()
        assert.ok(result, "the decoder wants more bytes than a whole packet")
        if (result.error) assert.fail(`invalid bytes: ${(result as DecodeFailure).message}`)
        assert.equal(this.decoder.next(), null, "one packet, no trailing bytes")
        this.parser.parse(bytes)
        assert.deepEqual(this.errors, [])
        assert.equal(this.parsed.length, 1, "mqtt-packet read one packet")
        const reference = fromMqttPacket(this.parsed.pop())
        assert.deepEqual(plain(result.packet), plain(packet))
        assert.deepEqual(plain(reference), plain(packet))
        return result.packet
    }
}

interface Event {
    atMs: number
    action: Action
}

/**
 * Plays the client (src/mqtt/client.ts) and the broker's socket around a Session. Send
 * actions come back with a copy of the packet as decoded from the wire (the session later
 * flips DUP on the very objects it sent). A Close action closes the transport, which reports
 * onTransportClosed to the session, as the client does.
 */
class Driver {
    readonly session: Session
    nowMs = 1_000_000
    transportOpen = false
    /** Every action so far, with the time it happened. */
    readonly history: Event[] = []
    /** Off for the long id-cycling loops, where the wire checks would only cost time. */
    checkWire = true
    private outbound = new Wire()
    private inbound = new Wire()

    constructor(overrides: Partial<SessionOptions> = {}) {
        this.session = new Session(options(overrides))
    }

    run(actions: Action[]): Action[] {
        const out: Action[] = []
        for (const a of actions) {
            let copy = a
            if (a.kind === ActionKind.Send) {
                assert.ok(this.transportOpen, "sent on a closed transport")
                copy = {
                    ...a,
                    packet: this.checkWire ? this.outbound.carry(a.packet) : { ...a.packet },
                }
            }
            out.push(copy)
            this.history.push({ atMs: this.nowMs, action: copy })
            if (a.kind === ActionKind.Close && this.transportOpen) {
                this.transportOpen = false
                assert.deepEqual(this.session.onTransportClosed(), [])
            }
        }
        return out
    }

    /** The transport opened: returns the actions (CONNECT). */
    open(): Action[] {
        assert.ok(!this.transportOpen)
        this.transportOpen = true
        this.outbound = new Wire()
        this.inbound = new Wire()
        return this.run(this.session.onTransportOpen(this.nowMs))
    }

    receive(packet: Packet): Action[] {
        const p = this.checkWire ? this.inbound.carry(packet) : packet
        return this.run(this.session.onPacket(this.nowMs, p))
    }

    connack(sessionPresent = false, returnCode = 0): Action[] {
        return this.receive({
            type: PacketType.Connack,
            sessionPresent,
            returnCode,
        })
    }

    /** Opens the transport and accepts; returns the actions after CONNACK. */
    connect(sessionPresent = false): Action[] {
        this.open()
        return this.connack(sessionPresent)
    }

    puback(packetId: number): Action[] {
        return this.receive({ type: PacketType.Puback, packetId })
    }

    publish(label: string, qos = 1) {
        const actions: Action[] = []
        const token = this.session.publish(this.nowMs, "meters/node/reading", Buffer.from(label), qos, false, actions)
        return { token, actions: this.run(actions) }
    }

    tick(advanceMs = 0): Action[] {
        this.nowMs += advanceMs
        return this.run(this.session.onTick(this.nowMs))
    }

    /** Lets `ms` pass, ticking every `stepMs`; returns everything that happened. */
    idle(ms: number, stepMs = 100): Event[] {
        const from = this.history.length
        const end = this.nowMs + ms
        while (this.nowMs < end) this.tick(Math.min(stepMs, end - this.nowMs))
        return this.history.slice(from)
    }

    /** The link dropped under the session. */
    drop(): Action[] {
        assert.ok(this.transportOpen)
        this.transportOpen = false
        return this.run(this.session.onTransportClosed())
    }

    disconnect(): Action[] {
        return this.run(this.session.disconnect(this.nowMs))
    }
}

function kinds(actions: Action[]) {
    return actions.map(a => ActionKind[a.kind])
}

function sent(actions: Action[]): Packet[] {
    return actions.filter(a => a.kind === ActionKind.Send).map(a => a.packet)
}

function publishes(actions: Action[]): PublishPacket[] {
    return sent(actions).filter(p => p.type === PacketType.Publish) as PublishPacket[]
}

function delivered(actions: Action[]): number[] {
    return actions.filter(a => a.kind === ActionKind.Delivered).map(a => a.token)
}

function labels(packets: PublishPacket[]) {
    return packets.map(p => p.payload.toString())
}

function sendTimes(events: Event[], type: PacketType): number[] {
    return events.filter(e => e.action.kind === ActionKind.Send && e.action.packet.type === type).map(e => e.atMs)
}

function closes(events: Event[]): Event[] {
    return events.filter(e => e.action.kind === ActionKind.Close)
}

/** Publishes and acknowledges one message at a time; returns the ids used. */
function cycle(d: Driver, count: number): number[] {
    const ids: number[] = []
    for (let i = 0; i < count; ++i) {
        const p = publishes(d.publish(`cycle ${i}`).actions)
        assert.equal(p.length, 1)
        ids.push(p[0].packetId)
        d.puback(p[0].packetId)
    }
    return ids
}

describe("CONNECT", () => {
    test("carries client id, keepalive, clean session off, a QoS 1 retained will, user name and password", () => {
        const will = {
            topic: "meters/node/status",
            payload: Buffer.from('{"online":false}'),
            qos: 1,
            retain: true,
        }
        const d = new Driver({
            clientId: "meternode-n1",
            keepaliveS: 45,
            will,
            username: "meter",
            password: Buffer.from("s3cret"),
        })
        const actions = d.open()
        assert.deepEqual(kinds(actions), ["Send"])
        assert.deepEqual(plain(actions[0].packet), {
            type: PacketType.Connect,
            clientId: "meternode-n1",
            keepaliveS: 45,
            cleanSession: false,
            will,
            username: "meter",
            password: Buffer.from("s3cret"),
        })
        assert.equal(d.session.state, SessionState.Connecting)
        // Connect flags byte: user name, password, will retain, will QoS 1, will; clean session off.
        const bytes = encodePacket(actions[0].packet)
        assert.equal(bytes[9], 0x80 | 0x40 | 0x20 | (1 << 3) | 0x04)
        assert.equal(bytes.readUInt16BE(10), 45)
    })

    test("without will or credentials carries neither; clean session only when asked", () => {
        const bare = new Driver().open()[0].packet
        assert.deepEqual(plain(bare), {
            type: PacketType.Connect,
            clientId: "meternode-test",
            keepaliveS: 30,
            cleanSession: false,
        })
        assert.equal(encodePacket(bare)[9], 0x00)
        const clean = new Driver({ cleanSession: true }).open()[0].packet
        assert.equal(encodePacket(clean)[9], 0x02)
    })

    test("the session is Connected only once CONNACK accepts", () => {
        const d = new Driver()
        d.open()
        assert.equal(d.session.state, SessionState.Connecting)
        const actions = d.connack(false)
        assert.deepEqual(kinds(actions), ["Connected"])
        assert.equal(actions[0].sessionPresent, false)
        assert.equal(d.session.state, SessionState.Connected)
    })
})

describe("packet ids", () => {
    test("consecutive QoS 1 publishes get distinct, non-zero packet ids", () => {
        const d = new Driver({ inflightWindow: 8 })
        d.connect()
        const ids: number[] = []
        for (let i = 0; i < 8; ++i) ids.push(publishes(d.publish(`m${i}`).actions)[0].packetId)
        assert.deepEqual(ids, [1, 2, 3, 4, 5, 6, 7, 8])
        assert.equal(new Set(ids).size, ids.length)
    })

    test("ids run up to 65535, wrap to 1 and are never 0", () => {
        const d = new Driver({ inflightWindow: 1 })
        d.connect()
        d.checkWire = false
        const ids = cycle(d, MAX_PACKET_ID + 2)
        for (let i = 0; i < MAX_PACKET_ID; ++i) assert.equal(ids[i], i + 1)
        assert.deepEqual(ids.slice(MAX_PACKET_ID - 2), [65534, 65535, 1, 2])
        assert.ok(!ids.includes(0))
    })

    test("after wrapping, ids still in flight are skipped", () => {
        // Ids 1..3 are held by publishes the broker never acknowledges; the fourth slot of
        // the window cycles through every other id, wraps, and must not reuse 1, 2 or 3.
        const d = new Driver({ inflightWindow: 4 })
        d.connect()
        const held = [0, 1, 2].map(i => publishes(d.publish(`held ${i}`).actions)[0].packetId)
        assert.deepEqual(held, [1, 2, 3])
        d.checkWire = false
        const ids = cycle(d, MAX_PACKET_ID - 3 + 2)
        d.checkWire = true
        assert.equal(ids[0], 4)
        assert.equal(ids[MAX_PACKET_ID - 4], 65535)
        assert.deepEqual(ids.slice(MAX_PACKET_ID - 3), [4, 5])
        for (const id of held) assert.ok(!ids.includes(id))
        // The held publishes are still acknowledged by their own ids.
        assert.equal(delivered(d.puback(2)).length, 1)
        assert.equal(d.session.inflightCount(), 2)
    })

    test("the id of a SUBSCRIBE awaiting its SUBACK is not used by a publish", () => {
        const d = new Driver({
            inflightWindow: 1,
            subscriptions: [{ topic: "meters/node/cmd", qos: 1 }],
        })
        const subscribe = sent(d.connect())[0] as SubscribePacket
        assert.equal(subscribe.type, PacketType.Subscribe)
        assert.equal(subscribe.packetId, 1)
        d.checkWire = false
        const ids = cycle(d, MAX_PACKET_ID)
        assert.ok(!ids.includes(1))
        assert.deepEqual(ids.slice(-2), [65535, 2])
    })
})

describe("in-flight window", () => {
    test("with a window of 3, the 4th publish waits for a PUBACK; first sends keep submission order", () => {
        const d = new Driver({ inflightWindow: 3 })
        d.connect()
        const first: PublishPacket[] = []
        for (let i = 1; i <= 5; ++i) first.push(...publishes(d.publish(`m${i}`).actions))
        assert.deepEqual(labels(first), ["m1", "m2", "m3"])
        assert.equal(d.session.inflightCount(), 3)
        assert.equal(d.session.pendingCount(), 2)
        // Nothing moves without a PUBACK, however long we wait.
        assert.deepEqual(publishes(d.idle(5000).map(e => e.action)), [])
        // Acknowledging the middle one frees one slot: exactly one more goes out.
        const a = d.puback(first[1].packetId)
        assert.deepEqual(kinds(a), ["Delivered", "Send"])
        first.push(...publishes(a))
        assert.deepEqual(labels(first), ["m1", "m2", "m3", "m4"])
        first.push(...publishes(d.puback(first[0].packetId)))
        assert.deepEqual(labels(first), ["m1", "m2", "m3", "m4", "m5"])
        assert.equal(d.session.pendingCount(), 0)
        assert.equal(d.session.inflightCount(), 3)
        assert.ok(first.every(p => !p.dup && p.qos === 1))
    })

    test("QoS 0 publishes wait their turn behind QoS 1 and are Delivered when written", () => {
        const d = new Driver({ inflightWindow: 1 })
        d.connect()
        const q1 = d.publish("first", 1)
        const q0 = d.publish("second", 0)
        assert.deepEqual(labels(publishes(q1.actions)), ["first"])
        assert.deepEqual(q0.actions, [])
        const a = d.puback(publishes(q1.actions)[0].packetId)
        assert.deepEqual(kinds(a), ["Delivered", "Send", "Delivered"])
        assert.deepEqual(delivered(a), [q1.token, q0.token])
        const p = publishes(a)[0]
        assert.equal(p.qos, 0)
        assert.equal(p.packetId, undefined)
    })
})

describe("delivery", () => {
    test("Delivered comes only with the PUBACK carrying the publish's id, never at send time", () => {
        const d = new Driver()
        d.connect()
        const a = d.publish("a")
        const b = d.publish("b")
        assert.deepEqual(kinds(a.actions), ["Send"])
        assert.deepEqual(kinds(b.actions), ["Send"])
        const [idA] = publishes(a.actions).map(p => p.packetId)
        const [idB] = publishes(b.actions).map(p => p.packetId)
        assert.deepEqual(delivered(d.idle(10000).map(e => e.action)), [])
        assert.deepEqual(delivered(d.puback(idB)), [b.token])
        assert.deepEqual(delivered(d.puback(idA)), [a.token])
        assert.equal(d.session.inflightCount(), 0)
    })

    test("a PUBACK with an unknown id is logged and changes nothing", () => {
        const d = new Driver()
        d.connect()
        const a = d.publish("a")
        const id = publishes(a.actions)[0].packetId
        for (const unknown of [id + 1, 777, MAX_PACKET_ID]) {
            const actions = d.puback(unknown)
            assert.deepEqual(kinds(actions), ["Log"])
            assert.match(actions[0].reason, new RegExp(`\\b${unknown}\\b`))
            assert.equal(d.session.inflightCount(), 1)
            assert.equal(d.session.state, SessionState.Connected)
        }
        assert.deepEqual(delivered(d.puback(id)), [a.token])
        // The same PUBACK again is now unknown too: no second Delivered.
        assert.deepEqual(kinds(d.puback(id)), ["Log"])
    })
})

describe("reconnect", () => {
    test("publishes submitted while disconnected are sent after CONNACK", () => {
        const d = new Driver()
        const a = d.publish("offline 1")
        assert.deepEqual(a.actions, [])
        const opened = d.open()
        assert.deepEqual(
            sent(opened).map(p => p.type),
            [PacketType.Connect]
        )
        // Still connecting: queued, not sent.
        assert.deepEqual(d.publish("offline 2").actions, [])
        assert.equal(d.session.pendingCount(), 2)
        const after = d.connack(false)
        assert.equal(kinds(after)[0], "Connected")
        assert.deepEqual(labels(publishes(after)), ["offline 1", "offline 2"])
        assert.ok(publishes(after).every(p => !p.dup))
    })

    for (const sessionPresent of [true, false])
        test(`unacknowledged publishes are resent first, in order, DUP=1, same ids (session present: ${sessionPresent})`, () => {
            const d = new Driver({ inflightWindow: 8 })
            d.connect()
            const first = [1, 2, 3, 4].flatMap(i => publishes(d.publish(`m${i}`).actions))
            d.puback(first[1].packetId)
            first.push(...publishes(d.publish("m5").actions))
            d.drop()
            assert.equal(d.session.state, SessionState.Disconnected)
            d.publish("new 1")
            d.publish("new 2")
            d.open()
            const after = d.connack(sessionPresent)
            assert.equal(after[0].kind, ActionKind.Connected)
            assert.equal(after[0].sessionPresent, sessionPresent)
            const p = publishes(after)
            assert.deepEqual(labels(p), ["m1", "m3", "m4", "m5", "new 1", "new 2"])
            const resent = p.slice(0, 4)
            const expected = [first[0], first[2], first[3], first[4]]
            assert.deepEqual(
                resent.map(x => x.packetId),
                expected.map(x => x.packetId)
            )
            assert.ok(resent.every(x => x.dup))
            assert.ok(p.slice(4).every(x => !x.dup))
            // DUP is bit 3 of the fixed header: 0x3a is PUBLISH, DUP, QoS 1.
            assert.equal(encodePacket(resent[0])[0], 0x3a)
            assert.equal(encodePacket(p[4])[0], 0x32)
            // The resends are acknowledged by their original ids.
            assert.equal(delivered(d.puback(first[0].packetId)).length, 1)
        })

    test("a resend that is lost again is resent again, still with its first id", () => {
        const d = new Driver()
        d.connect()
        const id = publishes(d.publish("m").actions)[0].packetId
        for (let i = 0; i < 3; ++i) {
            d.drop()
            const p = publishes(d.connect(true))
            assert.deepEqual(
                p.map(x => [x.packetId, x.dup]),
                [[id, true]]
            )
        }
        assert.equal(delivered(d.puback(id)).length, 1)
    })

    test("packets arriving after the transport closed are ignored", () => {
        const d = new Driver()
        d.connect()
        const id = publishes(d.publish("m").actions)[0].packetId
        d.drop()
        assert.deepEqual(d.puback(id), [])
        assert.deepEqual(d.tick(100000), [])
        assert.equal(d.session.inflightCount(), 1)
    })
})

describe("CONNACK", () => {
    for (let code = 1; code <= 5; ++code)
        test(`refused with return code ${code} (${connectReturnCodeText(code)}): Refused, then Close, nothing published`, () => {
            const d = new Driver()
            d.publish("waiting")
            d.open()
            const actions = d.connack(false, code)
            assert.deepEqual(kinds(actions), ["Refused", "Close"])
            assert.equal(actions[0].code, code)
            assert.equal(actions[0].reason, connectReturnCodeText(code))
            assert.match(actions[1].reason, /refused/)
            assert.ok(actions[1].reason.includes(connectReturnCodeText(code)))
            assert.equal(d.session.state, SessionState.Disconnected)
            assert.deepEqual(d.idle(60000, 1000), [])
            // Kept for the next attempt.
            assert.equal(d.session.pendingCount(), 1)
            assert.deepEqual(labels(publishes(d.connect())), ["waiting"])
        })

    test("return codes have readable names", () => {
        assert.equal(connectReturnCodeText(ConnectReturnCode.NotAuthorized), "not authorized")
        assert.equal(connectReturnCodeText(6), "unknown return code 6")
    })

    const notConnack: [string, Packet][] = [
        [
            "PUBLISH",
            {
                type: PacketType.Publish,
                topic: "t",
                payload: Buffer.from("x"),
                qos: 0,
                dup: false,
                retain: false,
            },
        ],
        ["PUBACK", { type: PacketType.Puback, packetId: 1 }],
        ["SUBACK", { type: PacketType.Suback, packetId: 1, returnCodes: [0] }],
        ["PINGRESP", { type: PacketType.Pingresp }],
    ]
    for (const [name, packet] of notConnack)
        test(`a ${name} before CONNACK closes the connection with a reason`, () => {
            const d = new Driver()
            d.publish("waiting")
            d.open()
            const actions = d.receive(packet)
            assert.deepEqual(kinds(actions), ["Close"])
            assert.match(actions[0].reason, /MQTT-3\.2\.0-1.*CONNACK/)
            assert.equal(d.session.state, SessionState.Disconnected)
            assert.equal(d.session.pendingCount(), 1)
        })

    test("no CONNACK within the CONNACK timeout closes the connection", () => {
        const d = new Driver({ keepaliveS: 30 })
        const { connackTimeoutMs } = keepaliveTimers(30)
        assert.equal(connackTimeoutMs, 15000)
        const start = d.nowMs
        d.open()
        const events = d.idle(connackTimeoutMs + 1000)
        assert.deepEqual(
            events.map(e => [e.atMs - start, ActionKind[e.action.kind]]),
            [[connackTimeoutMs, "Close"]]
        )
        assert.match(events[0].action.reason, /no CONNACK within 15000 ms/)
        // No keepalive either: keepalive 0 still has a CONNACK timeout.
        assert.equal(keepaliveTimers(0).connackTimeoutMs, 2000)
    })
})

describe("a broker that stops acknowledging", () => {
    const K = 5
    const { pubackTimeoutMs, pingIdleMs } = keepaliveTimers(K)

    /** Lets `ms` pass as a broker that answers every PINGREQ at once would; returns what happened. */
    function idleAnsweringPings(d: Driver, ms: number): Event[] {
        const events: Event[] = []
        for (let t = 0; t < ms; t += 100) {
            const step = d.idle(100)
            events.push(...step)
            if (step.some(e => e.action.kind === ActionKind.Send && e.action.packet.type === PacketType.Pingreq))
                d.receive({ type: PacketType.Pingresp })
            if (closes(step).length) break
        }
        return events
    }

    test("the wait is 2 x keepalive, at least 20 s", () => {
        assert.equal(pubackTimeoutMs, 20000)
        assert.equal(keepaliveTimers(60).pubackTimeoutMs, 120000)
    })

    test("a publish unacknowledged for pubackTimeoutMs closes the connection, although PINGRESPs come", () => {
        const d = new Driver({ keepaliveS: K })
        d.connect()
        const start = d.nowMs
        d.publish("r1")
        const events = idleAnsweringPings(d, 3 * pubackTimeoutMs)
        assert.ok(sendTimes(events, PacketType.Pingreq).length >= 2, "PINGREQs went out and were answered")
        const closed = closes(events)
        assert.equal(closed.length, 1, "the connection was given up")
        assert.equal(closed[0].atMs - start, pubackTimeoutMs)
        assert.match(closed[0].action.reason, /no PUBACK within 20 s although the broker answers/)
        assert.ok(pingIdleMs < pubackTimeoutMs)
    })

    test("each PUBACK restarts the wait, so a slow but steady broker is never cut off", () => {
        const d = new Driver({ keepaliveS: K, inflightWindow: 4 })
        d.connect()
        for (let i = 0; i < 8; ++i) d.publish(`r${i}`)
        // One PUBACK every 15 s: each within the timeout of the previous one.
        for (let id = 1; id <= 8; ++id) {
            assert.deepEqual(closes(idleAnsweringPings(d, 15000)), [], `no close before PUBACK ${id}`)
            d.puback(id)
        }
        assert.equal(d.session.state, SessionState.Connected)
    })

    test("nothing in flight: no timeout however long the link is quiet", () => {
        const d = new Driver({ keepaliveS: K })
        d.connect()
        assert.deepEqual(closes(idleAnsweringPings(d, 10 * pubackTimeoutMs)), [])
    })
})

describe("keepalive", () => {
    const K = 20
    const { pingIdleMs, pingTimeoutMs } = keepaliveTimers(K)

    test("timers are 0.75 and 0.5 of the keepalive", () => {
        assert.equal(pingIdleMs, 15000)
        assert.equal(pingTimeoutMs, 10000)
    })

    test("a PINGREQ goes out after 0.75 x keepalive of idle", () => {
        const d = new Driver({ keepaliveS: K })
        d.connect()
        const start = d.nowMs
        const events = d.idle(pingIdleMs - 100)
        assert.deepEqual(events, [])
        const more = d.idle(100)
        assert.deepEqual(
            more.map(e => [e.atMs - start, e.action.packet.type]),
            [[pingIdleMs, PacketType.Pingreq]]
        )
    })

    test("no PINGRESP within 0.5 x keepalive closes the connection as half-open", () => {
        const d = new Driver({ keepaliveS: K })
        d.connect()
        const start = d.nowMs
        const events = d.idle(3 * K * 1000)
        assert.deepEqual(sendTimes(events, PacketType.Pingreq), [start + pingIdleMs])
        const c = closes(events)
        assert.equal(c.length, 1)
        assert.equal(c[0].atMs, start + pingIdleMs + pingTimeoutMs)
        assert.equal(pingIdleMs + pingTimeoutMs, 1.25 * K * 1000)
        assert.match(c[0].action.reason, /half-open/)
        assert.match(c[0].action.reason, /PINGRESP/)
        assert.equal(d.session.state, SessionState.Disconnected)
    })

    test("a PINGRESP clears the pending ping; the next one follows after another idle period", () => {
        const d = new Driver({ keepaliveS: K })
        d.connect()
        const start = d.nowMs
        d.idle(pingIdleMs + 2000)
        assert.deepEqual(d.receive({ type: PacketType.Pingresp }), [])
        // Measured from the PINGREQ, the last packet sent: idle in the sending direction.
        const next = d.idle(pingIdleMs)
        assert.deepEqual(sendTimes(next, PacketType.Pingreq), [start + 2 * pingIdleMs])
        assert.deepEqual(closes(next), [])
        // Answered just before the timeout: still alive.
        d.idle(start + 2 * pingIdleMs + pingTimeoutMs - 100 - d.nowMs)
        assert.deepEqual(d.receive({ type: PacketType.Pingresp }), [])
        assert.deepEqual(closes(d.idle(pingIdleMs - 100)), [])
        assert.equal(d.session.state, SessionState.Connected)
    })

    test("a live link that answers every PINGREQ is never closed", () => {
        const d = new Driver({ keepaliveS: K })
        d.connect()
        let pings = 0
        for (let t = 0; t < 600000; t += 250) {
            const a = d.tick(250)
            if (sent(a).some(p => p.type === PacketType.Pingreq)) {
                pings++
                d.nowMs += 40
                d.receive({ type: PacketType.Pingresp })
            }
        }
        assert.equal(d.session.state, SessionState.Connected)
        assert.ok(pings >= 600000 / pingIdleMs - 2, `${pings} pings`)
    })

    test("traffic in both directions postpones the ping", () => {
        const d = new Driver({ keepaliveS: K, inflightWindow: 64 })
        d.connect()
        for (let i = 0; i < 20; ++i) {
            d.idle(5000)
            const id = publishes(d.publish(`m${i}`).actions)[0].packetId
            d.puback(id)
        }
        assert.deepEqual(sendTimes(d.history, PacketType.Pingreq), [])
    })

    test("sending alone does not postpone the ping: silence from the broker is what counts", () => {
        const d = new Driver({ keepaliveS: K, inflightWindow: 64 })
        d.connect()
        const start = d.nowMs
        for (let i = 0; i < 4; ++i) {
            d.idle(5000)
            d.publish(`m${i}`)
        }
        assert.deepEqual(sendTimes(d.history, PacketType.Pingreq), [start + pingIdleMs])
    })

    test("receiving alone does not postpone the ping: the client must still send", () => {
        const d = new Driver({ keepaliveS: K })
        d.connect()
        const start = d.nowMs
        for (let i = 0; i < 4; ++i) {
            d.idle(5000)
            const a = d.receive({
                type: PacketType.Publish,
                topic: "cmd",
                payload: Buffer.from("x"),
                qos: 0,
                dup: false,
                retain: false,
            })
            assert.deepEqual(kinds(a), ["Message"])
        }
        assert.deepEqual(sendTimes(d.history, PacketType.Pingreq), [start + pingIdleMs])
    })

    test("keepalive 0 disables pings", () => {
        const d = new Driver({ keepaliveS: 0 })
        d.connect()
        assert.deepEqual(d.idle(24 * 3600 * 1000, 60000), [])
        assert.equal(d.session.state, SessionState.Connected)
    })

    // The bound verified: once the broker goes silent, the session closes the connection at
    // most 1.25 x keepalive after the last packet it received, plus two tick periods (it only
    // acts on ticks: one late tick for the PINGREQ, one for the timeout).
    test("a dead link is found at most 1.25 x keepalive after the last packet received", () => {
        const TICK_MS = 250
        const random = new SeededRandom(20240611)
        for (const keepaliveS of [5, 10, 30, 60, 300]) {
            for (let trial = 0; trial < 8; ++trial) {
                const d = new Driver({ keepaliveS, inflightWindow: 64 })
                d.checkWire = false
                d.nowMs += Math.floor(random.next() * TICK_MS)
                d.connect()
                let lastReceivedMs = d.nowMs
                const busy = trial % 2 === 1
                // A live phase: the broker answers everything, sometimes slowly.
                const liveUntil = d.nowMs + Math.floor(random.next() * 4 * keepaliveS * 1000)
                const unacked: number[] = []
                while (d.nowMs < liveUntil) {
                    const a = d.tick(TICK_MS)
                    assert.ok(!a.some(x => x.kind === ActionKind.Close))
                    if (busy && random.next() < 0.2)
                        unacked.push(...publishes(d.publish("r").actions).map(p => p.packetId))
                    const ping = sent(a).some(p => p.type === PacketType.Pingreq)
                    if (ping || (unacked.length && random.next() < 0.3)) {
                        d.nowMs += Math.floor(random.next() * TICK_MS)
                        if (unacked.length) d.puback(unacked.shift())
                        if (ping) d.receive({ type: PacketType.Pingresp })
                        lastReceivedMs = d.nowMs
                    }
                }
                // The broker goes silent; a busy node keeps publishing.
                let closedAt = -1
                while (closedAt < 0) {
                    if (busy) d.publish("r")
                    const a = d.tick(TICK_MS)
                    const c = a.find(x => x.kind === ActionKind.Close)
                    if (c) {
                        assert.match(c.reason, /half-open/)
                        closedAt = d.nowMs
                    }
                    assert.ok(d.nowMs - lastReceivedMs < 10 * keepaliveS * 1000)
                }
                const bound = 1.25 * keepaliveS * 1000 + 2 * TICK_MS
                assert.ok(
                    closedAt - lastReceivedMs <= bound,
                    `keepalive ${keepaliveS}: closed ${closedAt - lastReceivedMs} ms after the last packet, bound ${bound}`
                )
            }
        }
    })
})

describe("subscriptions", () => {
    const subscriptions = [
        { topic: "meters/node/cmd", qos: 1 },
        { topic: "meters/all/#", qos: 0 },
    ]

    test("SUBSCRIBE goes out after CONNACK when the broker has no session", () => {
        const d = new Driver({ subscriptions })
        const actions = d.connect(false)
        assert.deepEqual(kinds(actions), ["Connected", "Send"])
        const s = actions[1].packet as SubscribePacket
        assert.equal(s.type, PacketType.Subscribe)
        assert.ok(s.packetId > 0)
        assert.deepEqual(s.subscriptions, subscriptions)
        // SUBSCRIBE has the reserved flags 0010.
        assert.equal(encodePacket(s)[0], 0x82)
    })

    test("no SUBSCRIBE when the broker kept the session", () => {
        const d = new Driver({ subscriptions })
        const actions = d.connect(true)
        assert.deepEqual(kinds(actions), ["Connected"])
        assert.equal(actions[0].sessionPresent, true)
    })

    test("with clean session on, a broker claiming a session present is not believed", () => {
        const d = new Driver({ subscriptions, cleanSession: true })
        const actions = d.connect(true)
        assert.equal(actions[0].sessionPresent, false)
        assert.equal(sent(actions)[0].type, PacketType.Subscribe)
    })

    test("SUBSCRIBE comes again after every reconnect without a session", () => {
        const d = new Driver({ subscriptions })
        const s = sent(d.connect(false))[0] as SubscribePacket
        d.receive({
            type: PacketType.Suback,
            packetId: s.packetId,
            returnCodes: [1, 0],
        })
        d.drop()
        assert.deepEqual(kinds(d.connect(true)), ["Connected"])
        d.drop()
        assert.equal(sent(d.connect(false))[0].type, PacketType.Subscribe)
    })

    test("a SUBSCRIBE lost with the connection is sent again even if the broker reports a session", () => {
        // The broker creates the session at CONNECT; if the link drops before it reads
        // SUBSCRIBE, it reports a session present next time, without the subscriptions.
        const d = new Driver({ subscriptions })
        const s = sent(d.connect(false))[0] as SubscribePacket
        d.drop()
        const again = sent(d.connect(true))
        assert.deepEqual(plain(again), [plain(s)])
        d.receive({
            type: PacketType.Suback,
            packetId: s.packetId,
            returnCodes: [1, 0],
        })
        // Acknowledged: a kept session has it from now on.
        d.drop()
        assert.deepEqual(kinds(d.connect(true)), ["Connected"])
    })

    test("a SUBACK refusing a filter is an error naming it, and the subscription is asked for again", () => {
        const d = new Driver({ subscriptions, keepaliveS: 0 })
        const s = sent(d.connect(false))[0] as SubscribePacket
        const actions = d.receive({
            type: PacketType.Suback,
            packetId: s.packetId,
            returnCodes: [1, SUBACK_FAILURE],
        })
        assert.deepEqual(kinds(actions), ["Error"])
        assert.match(actions[0].reason, /meters\/all\/# refused by the broker/)
        assert.ok(!actions[0].reason.includes("meters/node/cmd"))
        assert.equal(d.session.state, SessionState.Connected)
        // Asked for again after RESUBSCRIBE_MS... (keepalive 0 still ticks the retry)
        const start = d.nowMs
        const again = d.idle(2 * RESUBSCRIBE_MS, 1000)
        const subscribes = sendTimes(again, PacketType.Subscribe)
        assert.deepEqual(subscribes, [start + RESUBSCRIBE_MS])
        // ...and once granted, never again.
        const retry = again.find(e => e.action.packet?.type === PacketType.Subscribe)!.action.packet as SubscribePacket
        assert.deepEqual(d.receive({ type: PacketType.Suback, packetId: retry.packetId, returnCodes: [1, 0] }), [])
        assert.deepEqual(sendTimes(d.idle(3 * RESUBSCRIBE_MS, 1000), PacketType.Subscribe), [])
    })

    test("a refused subscription is asked for at the next connection even when the session is kept", () => {
        const d = new Driver({ subscriptions })
        const s = sent(d.connect(false))[0] as SubscribePacket
        d.receive({ type: PacketType.Suback, packetId: s.packetId, returnCodes: [SUBACK_FAILURE, 0] })
        d.drop()
        assert.deepEqual(
            sent(d.connect(true)).map(p => p.type),
            [PacketType.Subscribe]
        )
    })

    test("a SUBACK granting everything is silent", () => {
        const d = new Driver({ subscriptions })
        const s = sent(d.connect(false))[0] as SubscribePacket
        assert.deepEqual(
            d.receive({
                type: PacketType.Suback,
                packetId: s.packetId,
                returnCodes: [1, 0],
            }),
            []
        )
    })
})

describe("inbound messages", () => {
    function inbound(qos: number, packetId?: number, dup = false): PublishPacket {
        return {
            type: PacketType.Publish,
            topic: "meters/node/cmd",
            payload: Buffer.from(`q${qos} ${packetId}`),
            qos,
            dup,
            retain: false,
            packetId,
        }
    }

    test("QoS 0 is delivered and not acknowledged", () => {
        const d = new Driver()
        d.connect()
        const actions = d.receive(inbound(0))
        assert.deepEqual(kinds(actions), ["Message"])
        assert.equal(actions[0].message.topic, "meters/node/cmd")
        assert.equal(actions[0].message.qos, 0)
    })

    test("QoS 1 is PUBACKed with the same id before it is delivered, so a crash while handling it cannot repeat", () => {
        const d = new Driver()
        d.connect()
        const actions = d.receive(inbound(1, 4321))
        assert.deepEqual(kinds(actions), ["Send", "Message"])
        assert.equal(actions[1].message.packetId, 4321)
        assert.deepEqual(actions[0].packet, {
            type: PacketType.Puback,
            packetId: 4321,
        })
    })

    test("QoS 2 is delivered once: a duplicate before PUBREL is only PUBREC'd again; PUBREL gets PUBCOMP", () => {
        const d = new Driver()
        d.connect()
        const first = d.receive(inbound(2, 7))
        assert.deepEqual(kinds(first), ["Send", "Message"])
        assert.deepEqual(first[0].packet, {
            type: PacketType.Pubrec,
            packetId: 7,
        })
        const dup = d.receive(inbound(2, 7, true))
        assert.deepEqual(kinds(dup), ["Send"])
        assert.deepEqual(dup[0].packet, {
            type: PacketType.Pubrec,
            packetId: 7,
        })
        const rel = d.receive({ type: PacketType.Pubrel, packetId: 7 })
        assert.deepEqual(kinds(rel), ["Send"])
        assert.deepEqual(rel[0].packet, {
            type: PacketType.Pubcomp,
            packetId: 7,
        })
        // The exchange is over: id 7 may now carry a new message.
        assert.deepEqual(kinds(d.receive(inbound(2, 7))), ["Send", "Message"])
        // A PUBREL for an id never seen still gets its PUBCOMP [MQTT-4.3.3].
        const stray = d.receive({ type: PacketType.Pubrel, packetId: 99 })
        assert.deepEqual(
            stray.map(a => a.packet),
            [{ type: PacketType.Pubcomp, packetId: 99 }]
        )
    })

    test("a QoS 2 message resent after a reconnect with the session kept is not delivered again", () => {
        // [MQTT-4.1]: QoS 2 messages received but not completely acknowledged are session state.
        const d = new Driver()
        d.connect()
        assert.deepEqual(kinds(d.receive(inbound(2, 11))), ["Send", "Message"])
        d.drop()
        d.connect(true)
        const again = d.receive(inbound(2, 11, true))
        assert.deepEqual(kinds(again), ["Send"])
        assert.equal(again[0].packet.type, PacketType.Pubrec)
        d.receive({ type: PacketType.Pubrel, packetId: 11 })
        // Without a session, the broker starts afresh: the same id is a new message.
        d.receive(inbound(2, 12))
        d.drop()
        d.connect(false)
        assert.deepEqual(kinds(d.receive(inbound(2, 12))), ["Send", "Message"])
    })

    test("the remembered QoS 2 ids stay bounded under a flood of distinct ids", () => {
        const d = new Driver()
        d.connect()
        d.checkWire = false
        for (let id = 1; id <= 20000; ++id) {
            const a = d.receive(inbound(2, id))
            assert.equal(a[1].kind, ActionKind.Message)
        }
        // Internal, but it is the memory a hostile broker could otherwise grow.
        const remembered = (d.session as unknown as { inboundQos2: number[] }).inboundQos2
        assert.ok(remembered.length <= 64, `${remembered.length} ids remembered`)
        // The newest ids are still recognised as duplicates, the oldest were forgotten.
        assert.deepEqual(kinds(d.receive(inbound(2, 20000, true))), ["Send"])
        assert.deepEqual(kinds(d.receive(inbound(2, 1, true))), ["Send", "Message"])
        assert.equal(d.session.state, SessionState.Connected)
    })

    test("unexpected PUBREC, PUBCOMP and UNSUBACK are logged and ignored", () => {
        const d = new Driver()
        d.connect()
        for (const type of [PacketType.Pubrec, PacketType.Pubcomp, PacketType.Unsuback]) {
            const a = d.receive({ type, packetId: 5 } as Packet)
            assert.deepEqual(kinds(a), ["Log"])
        }
        assert.equal(d.session.state, SessionState.Connected)
    })
})

describe("graceful disconnect", () => {
    test("while connected: DISCONNECT, then Close", () => {
        const d = new Driver()
        d.connect()
        d.publish("in flight")
        const actions = d.disconnect()
        assert.deepEqual(kinds(actions), ["Send", "Close"])
        assert.deepEqual(actions[0].packet, { type: PacketType.Disconnect })
        assert.equal(encodePacket(actions[0].packet).toString("hex"), "e000")
        assert.match(actions[1].reason, /disconnect/)
        assert.equal(d.session.state, SessionState.Disconnected)
        assert.deepEqual(d.idle(120000, 1000), [])
        // What was in flight stays for the next connection.
        assert.equal(d.session.inflightCount(), 1)
    })

    test("while disconnected: only Close", () => {
        const d = new Driver()
        assert.deepEqual(kinds(d.disconnect()), ["Close"])
    })

    test("while waiting for CONNACK: only Close", () => {
        const d = new Driver()
        d.open()
        assert.deepEqual(kinds(d.disconnect()), ["Close"])
        assert.equal(d.session.state, SessionState.Disconnected)
    })
})

describe("protocol violations by the broker", () => {
    const clientOnly: [string, Packet][] = [
        [
            "CONNECT",
            {
                type: PacketType.Connect,
                clientId: "x",
                keepaliveS: 10,
                cleanSession: true,
            },
        ],
        [
            "SUBSCRIBE",
            {
                type: PacketType.Subscribe,
                packetId: 1,
                subscriptions: [{ topic: "a", qos: 0 }],
            },
        ],
        ["UNSUBSCRIBE", { type: PacketType.Unsubscribe, packetId: 1, topics: ["a"] }],
        ["PINGREQ", { type: PacketType.Pingreq }],
        ["DISCONNECT", { type: PacketType.Disconnect }],
    ]
    for (const [name, packet] of clientOnly)
        test(`a broker sending ${name} is closed on, citing the spec`, () => {
            const d = new Driver()
            d.connect()
            d.publish("in flight")
            const actions = d.receive(packet)
            assert.deepEqual(kinds(actions), ["Close"])
            assert.match(actions[0].reason, /\[MQTT-4\.8\.0-1\]/)
            assert.match(actions[0].reason, new RegExp(`packet type ${packet.type}\\b`))
            assert.equal(d.session.state, SessionState.Disconnected)
            assert.equal(d.session.inflightCount(), 1)
        })

    test("a second CONNACK closes the connection", () => {
        const d = new Driver()
        d.connect()
        const actions = d.connack(false)
        assert.deepEqual(kinds(actions), ["Close"])
        assert.match(actions[0].reason, /\[MQTT-/)
    })
})

describe("random schedules", () => {
    /**
     * Seeded random mix of publishes (QoS 1, some QoS 0), PUBACKs in any order (some duplicated,
     * some for ids the session never used), time passing with pings answered or not, dropped
     * links, graceful disconnects, refused and missing CONNACKs, reconnects with and without a
     * session, and inbound messages; then a final drain. Invariants checked after every step.
     */
    function runSchedule(seed: number, steps: number) {
        const random = new SeededRandom(seed)
        const pick = (n: number) => Math.floor(random.next() * n)
        const chance = (p: number) => random.next() < p
        const window = 1 + pick(6)
        const d = new Driver({ inflightWindow: window, keepaliveS: 10 })
        const where = () => `seed ${seed}, window ${window}, step ${step}`

        const submitted: number[] = []
        const qosOf = new Map<number, number>()
        const tokenOf = new Map<string, number>()
        let firstSends = 0
        /** QoS 1 tokens sent and not yet Delivered, in first-transmission order. */
        const inflight: number[] = []
        const idOf = new Map<number, number>()
        const deliveredCount = new Map<number, number>()
        /** Ids the broker received on this connection and has not acknowledged yet. */
        let brokerUnacked: number[] = []
        let pingOutstanding = false
        let connected = false
        let step = 0
        /** The PUBACK being handled: the only time a QoS 1 publish may be Delivered. */
        let acking = false
        const stats = {
            reconnects: 0,
            resends: 0,
            unknownAcks: 0,
            duplicateAcks: 0,
            refused: 0,
            halfOpen: 0,
        }

        function observe(actions: Action[]) {
            const connectedHere = actions.findIndex(a => a.kind === ActionKind.Connected)
            let expectedResends: number[] = []
            for (let i = 0; i < actions.length; ++i) {
                const a = actions[i]
                switch (a.kind) {
                    case ActionKind.Connected:
                        connected = true
                        expectedResends = inflight.map(t => idOf.get(t))
                        stats.reconnects++
                        break
                    case ActionKind.Close:
                        if (/half-open/.test(a.reason)) stats.halfOpen++
                        connected = false
                        break
                    case ActionKind.Refused:
                        stats.refused++
                        break
                    case ActionKind.Delivered: {
                        const n = (deliveredCount.get(a.token) || 0) + 1
                        deliveredCount.set(a.token, n)
                        assert.equal(n, 1, `token ${a.token} Delivered twice, ${where()}`)
                        if (qosOf.get(a.token) === 1) {
                            assert.ok(acking, `QoS 1 Delivered without a PUBACK, ${where()}`)
                            const at = inflight.indexOf(a.token)
                            assert.ok(at >= 0, `Delivered a token not in flight, ${where()}`)
                            inflight.splice(at, 1)
                        }
                        break
                    }
                    case ActionKind.Send: {
                        const p = a.packet
                        if (p.type === PacketType.Pingreq) pingOutstanding = true
                        if (p.type !== PacketType.Publish) break
                        assert.ok(connected, `PUBLISH before CONNACK, ${where()}`)
                        const token = tokenOf.get(p.payload.toString())
                        if (p.dup) {
                            // Resends: right after CONNACK, before anything else, in order.
                            assert.ok(connectedHere >= 0 && i > connectedHere, where())
                            assert.equal(p.packetId, expectedResends.shift(), `resend order, ${where()}`)
                            assert.ok(
                                actions
                                    .slice(connectedHere + 1, i)
                                    .every(x => x.kind === ActionKind.Send && (x.packet as PublishPacket).dup),
                                `resends come first, ${where()}`
                            )
                            stats.resends++
                        } else {
                            assert.equal(expectedResends.length, 0, `new publish before the resends, ${where()}`)
                            assert.equal(token, submitted[firstSends++], `submission order, ${where()}`)
                            if (p.qos === 1) {
                                assert.ok(p.packetId >= 1 && p.packetId <= MAX_PACKET_ID, where())
                                const inUse = inflight.map(t => idOf.get(t))
                                assert.ok(!inUse.includes(p.packetId), `id ${p.packetId} reused in flight, ${where()}`)
                                idOf.set(token, p.packetId)
                                inflight.push(token)
                            }
                        }
                        if (p.qos === 1) brokerUnacked.push(p.packetId)
                        break
                    }
                }
            }
            assert.deepEqual(expectedResends, [], `missing resends, ${where()}`)
            assert.ok(inflight.length <= window, where())
            assert.equal(d.session.inflightCount(), inflight.length, where())
            const ids = inflight.map(t => idOf.get(t))
            assert.equal(new Set(ids).size, ids.length, where())
            assert.ok(!ids.includes(0), where())
        }

        function publish() {
            const qos = chance(0.1) ? 0 : 1
            const label = `msg ${submitted.length}`
            const { token, actions } = d.publish(label, qos)
            submitted.push(token)
            qosOf.set(token, qos)
            tokenOf.set(label, token)
            observe(actions)
        }

        function reconnect() {
            brokerUnacked = []
            pingOutstanding = false
            observe(d.open())
            const r = random.next()
            if (r < 0.05) observe(d.connack(false, 1 + pick(5)))
            else if (r < 0.1)
                return // no CONNACK: the timeout will close it
            else observe(d.connack(chance(0.5)))
        }

        function ack(id: number) {
            const known = inflight.find(t => idOf.get(t) === id)
            const actions = d.puback(id)
            acking = true
            const tokens = delivered(actions)
            if (known === undefined) {
                assert.deepEqual(kinds(actions), ["Log"], where())
            } else {
                // The acknowledged publish, then QoS 0 ones that the freed slot let out.
                assert.equal(tokens[0], known, `PUBACK ${id}, ${where()}`)
                assert.ok(
                    tokens.slice(1).every(t => qosOf.get(t) === 0),
                    where()
                )
            }
            observe(actions)
            acking = false
        }

        for (step = 0; step < steps; ++step) {
            const r = random.next()
            if (!d.transportOpen) {
                if (r < 0.3) publish()
                else if (r < 0.8) reconnect()
                else observe(d.tick(pick(3000)))
            } else if (!connected) {
                if (r < 0.3) publish()
                else if (r < 0.6) observe(d.connack(chance(0.5)))
                else observe(d.tick(pick(3000)))
            } else if (r < 0.35) {
                publish()
            } else if (r < 0.65) {
                if (brokerUnacked.length) {
                    const id = removeRandom(brokerUnacked, pick)
                    ack(id)
                    if (connected && chance(0.15)) {
                        stats.duplicateAcks++
                        ack(id)
                    }
                }
            } else if (r < 0.7) {
                const used = new Set(inflight.map(t => idOf.get(t)))
                let id = 1 + pick(MAX_PACKET_ID)
                while (used.has(id)) id = 1 + pick(MAX_PACKET_ID)
                stats.unknownAcks++
                ack(id)
            } else if (r < 0.85) {
                if (pingOutstanding && chance(0.6)) {
                    pingOutstanding = false
                    observe(d.receive({ type: PacketType.Pingresp }))
                }
                observe(d.tick(chance(0.2) ? pick(15000) : pick(3000)))
            } else if (r < 0.9) {
                const id = 1 + pick(MAX_PACKET_ID)
                observe(
                    d.receive({
                        type: PacketType.Publish,
                        topic: "cmd",
                        payload: Buffer.from("in"),
                        qos: 1,
                        dup: false,
                        retain: false,
                        packetId: id,
                    })
                )
            } else if (r < 0.97) {
                observe(d.drop())
                connected = false
            } else {
                observe(d.disconnect())
            }
        }

        // Drain: stay connected and acknowledge everything until nothing is left.
        for (let round = 0; d.session.inflightCount() + d.session.pendingCount() > 0; ++round) {
            assert.ok(round < 10000, where())
            if (!d.transportOpen) {
                brokerUnacked = []
                observe(d.open())
            }
            if (!connected) observe(d.connack(chance(0.5)))
            while (brokerUnacked.length) ack(brokerUnacked.shift())
        }
        for (const token of submitted)
            assert.equal(
                deliveredCount.get(token),
                1,
                `token ${token} delivered ${deliveredCount.get(token) || 0} times, ${where()}`
            )
        return stats
    }

    function removeRandom(items: number[], pick: (n: number) => number) {
        const i = pick(items.length)
        const value = items[i]
        items.splice(i, 1)
        return value
    }

    for (const seed of [1, 42, 2024, 65535, 987654])
        test(`seed ${seed}: every publish Delivered exactly once, ids unique, order and window kept`, () => {
            const stats = runSchedule(seed, 3000)
            assert.ok(stats.reconnects >= 20, JSON.stringify(stats))
            assert.ok(stats.resends >= 10, JSON.stringify(stats))
            assert.ok(stats.unknownAcks >= 20, JSON.stringify(stats))
            assert.ok(stats.duplicateAcks >= 10, JSON.stringify(stats))
            assert.ok(stats.refused >= 1, JSON.stringify(stats))
            assert.ok(stats.halfOpen >= 1, JSON.stringify(stats))
        })
})
