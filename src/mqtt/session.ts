// The MQTT 3.1.1 client session as a pure state machine: every input is an event with the
// current time, every output is a list of actions for the client to carry out (send a packet,
// close the transport, report an acknowledgement or an inbound message). It never touches the
// transport or the clock, so Node tests can drive it packet by packet.
//
// Pure core: imports nothing from @devicescript.
import {
    ConnackPacket,
    ConnectReturnCode,
    Mqtt5Codec,
    Packet,
    PacketType,
    PublishPacket,
    PublishProperties,
    SUBACK_FAILURE,
    Subscription,
    Will,
} from "./packets"
import { removeAt } from "../util/arrays"

export const MAX_PACKET_ID = 65535

export enum SessionState {
    Disconnected,
    /** CONNECT sent, waiting for CONNACK. */
    Connecting,
    Connected,
}

export interface SessionOptions {
    clientId: string
    keepaliveS: number
    /** Off by default: the broker keeps our subscriptions and queued messages across reconnects. */
    cleanSession: boolean
    will?: Will
    username?: string
    password?: Buffer
    /** How many QoS 1 publishes may wait for their PUBACK at once. */
    inflightWindow: number
    /** Filters subscribed after every CONNACK that reports no session, or while a SUBSCRIBE is unacknowledged. */
    subscriptions: Subscription[]
    /**
     * Subscribe after every CONNACK, even when the broker kept the session: a SUBSCRIBE makes the
     * broker send the retained messages again [MQTT-3.8.4-3] (the node's time topic).
     */
    subscribeOnEveryConnect?: boolean
}

export enum ActionKind {
    Send,
    Close,
    /** CONNACK accepted; `sessionPresent` says whether the broker kept our session. */
    Connected,
    /** CONNACK refused with `code`, `reason` its name; the transport is closed after it. */
    Refused,
    /**
     * A publish with this token was acknowledged (QoS 1) or written (QoS 0); in MQTT 5, with `code`
     * a reason code from 0x80 up, the broker refused it or it was not sent (see src/mqtt/mqtt5-session.ts).
     */
    Delivered,
    /** An inbound application message. */
    Message,
    Log,
    /** Something the user must hear of (a refused subscription): `reason` goes to the status. */
    Error,
}

export interface Action {
    kind: ActionKind
    packet?: Packet
    token?: number
    reason?: string
    code?: number
    sessionPresent?: boolean
    message?: PublishPacket
}

/**
 * A publish the session holds until it is delivered. It is also the Send action that sends it,
 * and sends it again after a reconnect: one object per publish instead of two.
 */
export interface OutboundPublish extends Action {
    kind: ActionKind.Send
    packet: PublishPacket
    token: number
    /** Value of the id counter's step when this publish got its packet id (see allocatePacketId). */
    idStep: number
}

/** Seen inbound QoS 2 ids, kept until PUBREL; bounded so a hostile broker cannot grow it. */
const MAX_INBOUND_QOS2 = 32

export const CONNECT_RETURN_CODE_TEXT = [
    "accepted",
    "unacceptable protocol version",
    "identifier rejected",
    "server unavailable",
    "bad user name or password",
    "not authorized",
]

export function connectReturnCodeText(code: number) {
    return CONNECT_RETURN_CODE_TEXT[code] || `unknown return code ${code}`
}

/**
 * Timers, all derived from the keepalive [MQTT-3.1.2-23]: a PINGREQ goes out once the link has
 * been idle in either direction for 3/4 of it; no PINGRESP within 1/2 of it means the link is
 * half-open. So a dead link is found at most 1.25 x keepalive after the last packet received.
 */
export function keepaliveTimers(keepaliveS: number) {
    const keepaliveMs = keepaliveS * 1000
    return {
        pingIdleMs: Math.floor(keepaliveMs * 0.75),
        pingTimeoutMs: Math.floor(keepaliveMs * 0.5),
        connackTimeoutMs: Math.max(2000, Math.floor(keepaliveMs * 0.5)),
        // A broker that answers PINGREQ but acknowledges nothing would leave the queue growing
        // on a link that looks alive: reconnecting makes it resend, and says so.
        pubackTimeoutMs: Math.max(PUBACK_TIMEOUT_MIN_MS, keepaliveMs * 2),
    }
}

/** How long after a refused subscription it is asked for again. */
export const RESUBSCRIBE_MS = 60000

/** The shortest wait for a PUBACK before the connection is given up (see keepaliveTimers). */
export const PUBACK_TIMEOUT_MIN_MS = 20000

/**
 * What the client (src/mqtt/client.ts) uses of its session: a Session, which speaks MQTT 3.1.1, or
 * MQTT 5's (Mqtt5Session of src/mqtt/mqtt5-session.ts), which wraps one. The client is handed the
 * session, so that an image that speaks only 3.1.1 carries none of MQTT 5's code.
 */
export interface ClientSession {
    readonly options: SessionOptions
    state: SessionState
    /** The MQTT 5 codec while the connection speaks MQTT 5 (the encoder and decoder take it); null: 3.1.1. */
    mqtt5: Mqtt5Codec
    inflightCount(): number
    onTransportOpen(nowMs: number): Action[]
    onTransportClosed(): Action[]
    /** `properties` are sent in MQTT 5 only (a reply's Correlation Data). */
    publish(
        nowMs: number,
        topic: string,
        payload: Buffer,
        qos: number,
        retain: boolean,
        actions: Action[],
        properties?: PublishProperties
    ): number
    onTick(nowMs: number): Action[]
    onPacket(nowMs: number, packet: Packet): Action[]
    onPuback(nowMs: number, packetId: number, actions: Action[]): void
    disconnect(nowMs: number): Action[]
}

/**
 * The MQTT 3.1.1 session. Members that are not private are also what MQTT 5's session
 * (src/mqtt/mqtt5-session.ts) works on, around this one: the DeviceScript compiler has no super
 * calls, so it wraps a Session rather than extending it.
 * @devsWhenUsed
 */
export class Session implements ClientSession {
    state = SessionState.Disconnected
    mqtt5: Mqtt5Codec = null
    /** How many QoS 1 publishes may wait for their PUBACK at once: the node's, or less in MQTT 5. */
    window: number
    /** Publishes sent and waiting for PUBACK, in the order they were first sent. */
    inflight: OutboundPublish[] = []
    /** Publishes not yet sent because the window is full or the link is down. */
    pending: OutboundPublish[] = []
    private nextPacketId = 1
    /** Packet id candidates issued so far: an id recurs only every MAX_PACKET_ID steps. */
    private idSteps = 0
    nextToken = 1
    subscribeId = 0
    private inboundQos2: number[] = []
    private lastSentMs = 0
    lastReceivedMs = 0
    private pingSentMs = -1
    private connectSentMs = 0
    /** When a refused subscription is asked for again; 0: none refused. */
    resubscribeAtMs = 0
    /** When the oldest publish in flight started waiting: its send, the last PUBACK, or the CONNACK. */
    private ackWaitSinceMs = 0
    /** The keepalive's timers: the node's own, or in MQTT 5 those of the Server Keep Alive. */
    timers: {
        pingIdleMs: number
        pingTimeoutMs: number
        connackTimeoutMs: number
        pubackTimeoutMs: number
    }

    constructor(readonly options: SessionOptions) {
        this.timers = keepaliveTimers(options.keepaliveS)
        this.window = options.inflightWindow
    }

    inflightCount() {
        return this.inflight.length
    }

    pendingCount() {
        return this.pending.length
    }

    /** The transport just opened: send CONNECT (MQTT 5's session adds to the packet). */
    onTransportOpen(nowMs: number): Action[] {
        const o = this.options
        this.state = SessionState.Connecting
        this.connectSentMs = nowMs
        this.lastReceivedMs = nowMs
        this.pingSentMs = -1
        return [
            this.send(nowMs, {
                type: PacketType.Connect,
                clientId: o.clientId,
                keepaliveS: o.keepaliveS,
                cleanSession: o.cleanSession,
                will: o.will,
                username: o.username,
                password: o.password,
            }),
        ]
    }

    /** The transport closed (either side). Unacknowledged publishes stay, to be resent. */
    onTransportClosed(): Action[] {
        this.state = SessionState.Disconnected
        this.pingSentMs = -1
        return []
    }

    /**
     * Queues a publish; returns its token, reported in a Delivered action once the broker
     * acknowledged it (QoS 1) or it was written (QoS 0). Messages go out in submission order.
     */
    publish(
        nowMs: number,
        topic: string,
        payload: Buffer,
        qos: number,
        retain: boolean,
        actions: Action[],
        properties?: PublishProperties
    ) {
        const token = this.nextToken++
        // Every field set from the start (packetId too): adding one later grows the object in the VM.
        const packet: PublishPacket = {
            type: PacketType.Publish,
            topic,
            payload,
            qos,
            retain,
            dup: false,
            packetId: undefined,
            properties,
        }
        const entry: OutboundPublish = { kind: ActionKind.Send, packet, token, idStep: 0 }
        if (this.pending.length === 0 && this.state === SessionState.Connected && this.inflight.length < this.window)
            this.transmit(nowMs, entry, actions)
        else this.pending.push(entry)
        return token
    }

    /** Periodic check of the keepalive and CONNACK timers. */
    onTick(nowMs: number): Action[] {
        const actions: Action[] = []
        const t = this.timers
        if (this.state === SessionState.Connecting) {
            if (nowMs - this.connectSentMs >= t.connackTimeoutMs)
                this.close(actions, `no CONNACK within ${t.connackTimeoutMs} ms`)
            return actions
        }
        if (this.state !== SessionState.Connected) return actions
        // Compared with 0: in the VM, a number past 2^31 (ms after 24.8 days) is false in a truth test.
        if (this.resubscribeAtMs > 0 && nowMs >= this.resubscribeAtMs && !this.subscribeId)
            this.subscribe(nowMs, actions)
        // Keepalive 0 turns the timers off [MQTT-3.1.2-10].
        if (t.pingIdleMs === 0) return actions
        if (this.inflight.length && nowMs - this.ackWaitSinceMs >= t.pubackTimeoutMs) {
            this.close(
                actions,
                `no PUBACK within ${t.pubackTimeoutMs / 1000} s although the broker answers: it stopped acknowledging`
            )
            return actions
        }
        if (this.pingSentMs >= 0) {
            if (nowMs - this.pingSentMs >= t.pingTimeoutMs)
                this.close(actions, `no PINGRESP within ${t.pingTimeoutMs} ms: connection half-open`)
        } else if (nowMs - this.lastSentMs >= t.pingIdleMs || nowMs - this.lastReceivedMs >= t.pingIdleMs) {
            this.pingSentMs = nowMs
            actions.push(this.send(nowMs, { type: PacketType.Pingreq }))
        }
        return actions
    }

    /** A packet arrived from the broker. */
    onPacket(nowMs: number, packet: Packet): Action[] {
        const actions: Action[] = []
        this.lastReceivedMs = nowMs
        if (this.state === SessionState.Connecting) {
            if (packet.type !== PacketType.Connack) {
                this.close(actions, `[MQTT-3.2.0-1] expected CONNACK, got packet type ${packet.type}`)
                return actions
            }
            this.onConnack(nowMs, packet as ConnackPacket, actions)
            return actions
        }
        if (this.state !== SessionState.Connected) return actions
        switch (packet.type) {
            case PacketType.Puback:
                this.onPuback(nowMs, packet.packetId, actions)
                break
            case PacketType.Pingresp:
                this.pingSentMs = -1
                break
            case PacketType.Publish:
                this.onInboundPublish(nowMs, packet, actions)
                break
            case PacketType.Pubrel:
                removeAt(this.inboundQos2, this.inboundQos2.indexOf(packet.packetId))
                actions.push(this.send(nowMs, { type: PacketType.Pubcomp, packetId: packet.packetId }))
                break
            case PacketType.Suback:
                if (packet.packetId === this.subscribeId) {
                    this.subscribeId = 0
                    const subs = this.options.subscriptions
                    for (let i = 0; i < packet.returnCodes.length; ++i)
                        if (packet.returnCodes[i] >= SUBACK_FAILURE) {
                            // An ACL changed on the broker can grant it later: asked again, not given up.
                            this.resubscribeAtMs = nowMs + RESUBSCRIBE_MS
                            actions.push({
                                kind: ActionKind.Error,
                                reason: `mqtt: subscription to ${subs[i] ? subs[i].topic : "?"} refused by the broker (not authorized?); asking again in ${RESUBSCRIBE_MS / 1000} s`,
                            })
                        }
                }
                break
            case PacketType.Unsuback:
            case PacketType.Pubrec:
            case PacketType.Pubcomp:
                // We never send QoS 2 or UNSUBSCRIBE: an unexpected acknowledgement, harmless.
                actions.push({
                    kind: ActionKind.Log,
                    reason: `ignored unexpected packet type ${packet.type} id ${packet.packetId}`,
                })
                break
            default:
                this.close(actions, `[MQTT-4.8.0-1] a broker must not send packet type ${packet.type}`)
        }
        return actions
    }

    /** Graceful stop: DISCONNECT, so the broker discards the will [MQTT-3.14.4-3]. */
    disconnect(nowMs: number): Action[] {
        const actions: Action[] = []
        if (this.state === SessionState.Connected) actions.push(this.send(nowMs, { type: PacketType.Disconnect }))
        this.close(actions, "disconnect requested")
        return actions
    }

    private onConnack(nowMs: number, connack: ConnackPacket, actions: Action[]) {
        if (connack.returnCode !== ConnectReturnCode.Accepted) {
            const reason = connectReturnCodeText(connack.returnCode)
            actions.push({ kind: ActionKind.Refused, code: connack.returnCode, reason })
            this.close(actions, `connection refused: ${reason}`)
            return
        }
        this.state = SessionState.Connected
        const sessionPresent = connack.sessionPresent && !this.options.cleanSession
        actions.push({ kind: ActionKind.Connected, sessionPresent })
        // QoS 2 ids awaiting PUBREL are session state [MQTT-4.1]: kept only with the session.
        if (!sessionPresent) this.inboundQos2 = []
        // A SUBSCRIBE still unacknowledged is sent again even if a session is present: the
        // broker creates the session at CONNECT and may have lost the link before reading it.
        const resubscribe =
            !sessionPresent ||
            this.subscribeId !== 0 ||
            this.resubscribeAtMs !== 0 ||
            this.options.subscribeOnEveryConnect
        if (resubscribe && this.options.subscriptions.length) this.subscribe(nowMs, actions)
        // [MQTT-4.4.0-1]: resend every unacknowledged PUBLISH, in the original order, with DUP set.
        this.ackWaitSinceMs = nowMs
        for (const p of this.inflight) {
            p.packet.dup = true
            this.lastSentMs = nowMs
            actions.push(p)
        }
        this.pump(nowMs, actions)
    }

    /**
     * A PUBACK arrived while connected: what onPacket does with one, adding to `actions`. The
     * client's fast path calls it for each PUBACK of a burst, which then share one action list.
     */
    onPuback(nowMs: number, packetId: number, actions: Action[]) {
        this.lastReceivedMs = nowMs
        this.ackWaitSinceMs = nowMs
        // Brokers acknowledge in order [MQTT-4.6.0-2]: the oldest is almost always the one, found
        // first and removed with shift(), a native move in the VM where a removal by index is a loop.
        const inflight = this.inflight
        let index = 0
        while (index < inflight.length && inflight[index].packet.packetId !== packetId) index++
        if (index >= inflight.length) {
            actions.push({ kind: ActionKind.Log, reason: `PUBACK for unknown packet id ${packetId} ignored` })
            return
        }
        const done = index ? inflight[index] : inflight.shift()
        if (index) removeAt(inflight, index)
        actions.push({ kind: ActionKind.Delivered, token: done.token })
        if (this.pending.length) this.pump(nowMs, actions)
    }

    /**
     * The acknowledgement goes before the message: a message whose handling crashes the program
     * must not come back from the persistent session at the next boot and crash it again. A
     * message is therefore handled at most once, which is what a command wants.
     */
    private onInboundPublish(nowMs: number, packet: PublishPacket, actions: Action[]) {
        if (packet.qos === 1) actions.push(this.send(nowMs, { type: PacketType.Puback, packetId: packet.packetId }))
        else if (packet.qos === 2) {
            actions.push(this.send(nowMs, { type: PacketType.Pubrec, packetId: packet.packetId }))
            // Method A of [MQTT-4.3.3]: deliver on first receipt, remember the id until PUBREL.
            if (this.inboundQos2.indexOf(packet.packetId) >= 0) return
            if (this.inboundQos2.length >= MAX_INBOUND_QOS2) this.inboundQos2.shift()
            this.inboundQos2.push(packet.packetId)
        }
        actions.push({ kind: ActionKind.Message, message: packet })
    }

    /** Moves pending publishes into the window while connected. */
    private pump(nowMs: number, actions: Action[]) {
        if (this.state !== SessionState.Connected) return
        while (this.pending.length && this.inflight.length < this.window)
            this.transmit(nowMs, this.pending.shift(), actions)
    }

    /** Sends a publish the window has room for: QoS 1 gets its packet id and waits for its PUBACK. */
    private transmit(nowMs: number, p: OutboundPublish, actions: Action[]) {
        const packet = p.packet
        if (packet.qos > 0) {
            packet.packetId = this.allocatePacketId()
            p.idStep = this.idSteps
            if (!this.inflight.length) this.ackWaitSinceMs = nowMs
            this.inflight.push(p)
        }
        this.lastSentMs = nowMs
        actions.push(p)
        if (packet.qos === 0) actions.push({ kind: ActionKind.Delivered, token: p.token })
    }

    /** Sends SUBSCRIBE for every subscription (again, under the same id, when one is unacknowledged). */
    private subscribe(nowMs: number, actions: Action[]) {
        this.resubscribeAtMs = 0
        if (this.subscribeId === 0) this.subscribeId = this.allocatePacketId()
        actions.push(
            this.send(nowMs, {
                type: PacketType.Subscribe,
                packetId: this.subscribeId,
                subscriptions: this.options.subscriptions,
            })
        )
    }

    /** Ids run 1..65535 and wrap, never 0 [MQTT-2.3.1-1], skipping ids still in flight. */
    private allocatePacketId() {
        for (let attempts = 0; attempts < MAX_PACKET_ID; ++attempts) {
            const id = this.nextPacketId
            this.nextPacketId = id >= MAX_PACKET_ID ? 1 : id + 1
            this.idSteps++
            if (id === this.subscribeId) continue
            // The oldest publish in flight got its id less than MAX_PACKET_ID steps ago, so none
            // can hold this one: the usual case, decided without a call.
            const oldest = this.inflight[0]
            if (!oldest || this.idSteps - oldest.idStep < MAX_PACKET_ID || !this.isInflight(id)) return id
        }
        throw new Error("no free packet id")
    }

    /**
     * Whether the candidate of the current step is held by a publish in flight. The counter gives
     * an id out again only MAX_PACKET_ID steps later, and the window is ordered by step, so only
     * the publishes at its front that are at least that old can hold it: usually none is.
     */
    private isInflight(id: number) {
        for (const p of this.inflight) {
            if (this.idSteps - p.idStep < MAX_PACKET_ID) return false
            if (p.packet.packetId === id) return true
        }
        return false
    }

    send(nowMs: number, packet: Packet): Action {
        this.lastSentMs = nowMs
        return { kind: ActionKind.Send, packet }
    }

    close(actions: Action[], reason: string) {
        this.state = SessionState.Disconnected
        this.pingSentMs = -1
        actions.push({ kind: ActionKind.Close, reason })
    }
}
