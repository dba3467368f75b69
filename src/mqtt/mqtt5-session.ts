// MQTT 5 for the client session: a Session (src/mqtt/session.ts) that speaks MQTT 5, or, under
// MQTT_VERSION auto, falls back to 3.1.1 when the broker refuses MQTT 5. The client is handed it
// instead of a plain Session, so that an image that speaks only 3.1.1 carries none of this code
// (nor the MQTT 5 codec, src/mqtt/mqtt5.ts): the VM's code section is budgeted.
//
// What the node tells the broker in CONNECT, and why:
// - Maximum Packet Size: the client's real inbound limit (MAX_INBOUND_PACKET_BYTES). The broker
//   then drops larger messages instead of sending them [MQTT-3.1.2-24].
// - Receive Maximum 1: the node handles one inbound message at a time and acknowledges it first.
//   Each chunk the socket reads is one block of the VM's heap (docs/platform-notes.md): with
//   Mosquitto's max_inflight_messages 1 a command flood gave no chunk over 2 KB, with 5 chunks of
//   22 KB, which the node's fragmented heap cannot hold.
// - Session Expiry Interval: see DEFAULT_SESSION_EXPIRY_S. Will Delay Interval: DEFAULT_WILL_DELAY_S.
//   Both are settings (MQTT_EXPIRY_S, WILL_DELAY_S in src/config.ts), these their defaults.
//
// What the CONNACK says is used: Receive Maximum bounds the window of QoS 1 publishes, Maximum
// Packet Size each publish (one over it is not sent: Delivered with reason 0x95 and an error),
// Server Keep Alive replaces the node's keepalive, an Assigned Client Identifier becomes the
// client id. A broker without QoS 1 or without retained messages cannot carry the node's data and
// status: a configuration error. Reason codes and reason strings become the session's errors.
//
// Pure core: imports nothing from @devicescript.
// Spec: https://docs.oasis-open.org/mqtt/mqtt/v5.0/os/mqtt-v5.0-os.html
import { MAX_INBOUND_PACKET_BYTES } from "./client"
import { remainingLengthSize } from "./codec"
import { hexByte } from "./decoder"
import { MQTT5 } from "./mqtt5"
import { CLOSED_BY_BROKER } from "./transport"
import { BrokerAddress } from "./url"
import { NodeConfig } from "../config"
import {
    ConnackPacket,
    ConnackProperties,
    ConnectPacket,
    Mqtt5Codec,
    Packet,
    PacketType,
    ProtocolVersion,
    PublishPacket,
    PublishProperties,
    ReasonCode,
    ReasonProperties,
    SubackPacket,
} from "./packets"
import {
    Action,
    ActionKind,
    ClientSession,
    keepaliveTimers,
    OutboundPublish,
    RESUBSCRIBE_MS,
    Session,
    SessionOptions,
    SessionState,
} from "./session"

/** MQTT_VERSION auto: MQTT 5, or 3.1.1 when the broker refuses it. */
export const MQTT_VERSION_AUTO = 0

/**
 * Receive Maximum the node announces: inbound QoS 1 and 2 messages unacknowledged at once (see the
 * head of this file).
 */
export const INBOUND_RECEIVE_MAXIMUM = 1

/**
 * The default Session Expiry Interval: the broker keeps the node's subscriptions and the commands
 * sent to it for as long as the flash queue keeps its readings, so that a node back from the
 * longest outage it can report on also gets what was sent to it meanwhile. The queue never drops
 * a reading while it can merge (src/storage/durable-queue.ts): at one reading a minute, the
 * default QUEUE_BYTES (4,608) first dropped one after 1,049 days, the largest (8,928, ESP32) after
 * 2,167 days (measured with the queue against the model of the Settings store). 2,200 days:
 * 190,080,000 s, within the Four Byte Integer. Brokers may cap it (the CONNACK then says so).
 */
export const DEFAULT_SESSION_EXPIRY_S = 2200 * 86400

/**
 * The default Will Delay Interval: the broker publishes the will ("offline", "lost") only when the
 * node has not reconnected within it [MQTT-3.1.3-9]. A crash, a watchdog reset or a short power
 * or Wi-Fi loss then does not flap the retained status to offline and back: a reboot and
 * reconnect takes a few seconds (Wi-Fi association, the first backoff of at most 1 s, CONNECT),
 * and 30 s also covers the next backoff steps (2, 4, 8 s). A real loss is still announced within
 * 30 s of the broker noticing it (at once for a closed connection; after 1.5 x keepalive, 45 s
 * by default, for a silent one).
 */
export const DEFAULT_WILL_DELAY_S = 30

/** The longest part of a reason string from the broker that goes into an error (hostile input). */
export const MAX_REASON_CHARS = 80

export interface Mqtt5Settings {
    /** MQTT_VERSION: ProtocolVersion.Mqtt5, ProtocolVersion.Mqtt311 or MQTT_VERSION_AUTO. */
    version: number
    sessionExpiryS: number
    willDelayS: number
    /** Under auto, the version remembered for this broker (rememberedVersionOf); 0: none. */
    remembered: number
}

/** The settings of a node that speaks MQTT 5 only where the broker does, with the defaults. */
export function defaultMqtt5Settings(): Mqtt5Settings {
    return {
        version: MQTT_VERSION_AUTO,
        sessionExpiryS: DEFAULT_SESSION_EXPIRY_S,
        willDelayS: DEFAULT_WILL_DELAY_S,
        remembered: 0,
    }
}

/** The version a connection tries under `setting`: the fixed one, or under auto the one remembered, else 5. */
export function versionToTry(setting: number, remembered: number): number {
    return setting || remembered || ProtocolVersion.Mqtt5
}

/**
 * What auto remembers after a connection of version `tried` was accepted (`accepted`) or refused
 * for its protocol version: the accepted version; after a refusal of MQTT 5, 3.1.1 (tried next);
 * after a refusal of 3.1.1, nothing, so MQTT 5 is tried again (the broker may have been upgraded).
 */
export function versionToRemember(tried: number, accepted: boolean): number {
    if (accepted) return tried
    return tried === ProtocolVersion.Mqtt5 ? ProtocolVersion.Mqtt311 : 0
}

/** The text the node stores for broker `host`:`port` and version `version` (0: nothing to store). */
export function versionRecord(host: string, port: number, version: number): string {
    return `${host}:${port} ${version}`
}

/** The version versionRecord stored for this broker; 0 for another broker's, or nothing stored. */
export function rememberedVersionOf(record: string, host: string, port: number): number {
    const prefix = `${host}:${port} `
    if (!record || record.indexOf(prefix) !== 0) return 0
    const version = parseInt(record.slice(prefix.length))
    return version === ProtocolVersion.Mqtt5 || version === ProtocolVersion.Mqtt311 ? version : 0
}

/**
 * The session of an image composed to speak MQTT 5 (the Mqtt5Feature of src/features.ts): under
 * MQTT_VERSION auto it starts from the version `stored` says worked with this broker.
 */
export function mqtt5Session(options: SessionOptions, c: NodeConfig, stored: string): Mqtt5Session {
    stored = typeof stored === "string" ? stored : ""
    const session = new Mqtt5Session(options, {
        version: c.mqttVersion,
        sessionExpiryS: c.sessionExpiryS,
        willDelayS: c.willDelayS,
        remembered: rememberedVersionOf(stored, c.broker.host, c.broker.port),
    })
    session.broker = c.broker
    session.storedRecord = stored
    return session
}

/** "5" or "3.1.1". */
export function versionName(version: number) {
    return version === ProtocolVersion.Mqtt5 ? "5" : "3.1.1"
}

/**
 * The reason codes' names [MQTT-2.4], a line each: the code as hexByte writes it, a space, the name.
 * One literal searched with the native indexOf, rather than code (see PROTOCOL_ERROR_TEXTS).
 */
const REASON_NAMES = `
0x00 success
0x01 granted QoS 1
0x02 granted QoS 2
0x04 disconnect with will message
0x10 no matching subscribers
0x11 no subscription existed
0x18 continue authentication
0x19 re-authenticate
0x80 unspecified error
0x81 malformed packet
0x82 protocol error
0x83 implementation specific error
0x84 unsupported protocol version
0x85 client identifier not valid
0x86 bad user name or password
0x87 not authorized
0x88 server unavailable
0x89 server busy
0x8a banned
0x8b server shutting down
0x8c bad authentication method
0x8d keep alive timeout
0x8e session taken over
0x8f topic filter invalid
0x90 topic name invalid
0x91 packet identifier in use
0x92 packet identifier not found
0x93 receive maximum exceeded
0x94 topic alias invalid
0x95 packet too large
0x96 message rate too high
0x97 quota exceeded
0x98 administrative action
0x99 payload format invalid
0x9a retain not supported
0x9b QoS not supported
0x9c use another server
0x9d server moved
0x9e shared subscriptions not supported
0x9f connection rate exceeded
0xa0 maximum connect time
0xa1 subscription identifiers not supported
0xa2 wildcard subscriptions not supported
`

/**
 * A reason code in hex with its name, and the reason string the broker gave, cut to
 * MAX_REASON_CHARS: "0x87 not authorized (reason: ...)".
 */
export function reasonText(code: number, properties?: ReasonProperties): string {
    const at = REASON_NAMES.indexOf("\n" + hexByte(code) + " ")
    let text =
        at < 0 ? hexByte(code) + " unknown reason code" : REASON_NAMES.slice(at + 1, REASON_NAMES.indexOf("\n", at + 1))
    const why = properties ? properties.reasonString : ""
    if (why) text += " (reason: " + (why.length > MAX_REASON_CHARS ? why.slice(0, MAX_REASON_CHARS) + "..." : why) + ")"
    return text
}

/**
 * The session of a client that speaks MQTT 5 (or, under auto, falls back to 3.1.1): a Session
 * (`session`) that speaks 3.1.1, and around it what MQTT 5 adds. It wraps the Session rather than
 * extending it because the DeviceScript compiler has no `super` calls of methods.
 * @devsWhenUsed
 */
export class Mqtt5Session implements ClientSession {
    readonly session: Session
    state = SessionState.Disconnected
    mqtt5: Mqtt5Codec = null
    /** The protocol version of the connection (the last one tried while none is up). */
    protocolVersion = ProtocolVersion.Mqtt5
    /**
     * Under auto: the version to try next, and what to store for the broker (versionRecord), 0 for
     * nothing; it changes when a connection is accepted or refused for its protocol version.
     */
    rememberedVersion: number
    /**
     * Under auto: the version to try next comes from a connection closed before its CONNACK, not
     * from the broker's answer, so its acceptance is neither remembered nor stored (see onTransportClosed).
     */
    guessed = false
    /** The broker's Maximum Packet Size; 0: none given (the protocol's limit). */
    brokerMaxPacketBytes = 0
    /** The broker's Topic Alias Maximum: how many topic aliases the node may use; 0: none. */
    topicAliasMaximum = 0
    /** The topics that have an alias on this connection: alias 1 is the first. */
    private aliases: string[] = []
    /** The broker, for the version record (set by mqtt5Session). */
    broker: BrokerAddress = null
    /** Under auto, the version record as stored, and who stores a new one (src/platform/mqtt5-feature.ts). */
    storedRecord = ""
    onRemembered: (record: string) => void = null

    constructor(
        readonly options: SessionOptions,
        readonly settings: Mqtt5Settings
    ) {
        this.session = new Session(options)
        this.rememberedVersion = settings.remembered
        // Encoded in MQTT 5 only: a 3.1.1 will has no properties.
        if (options.will)
            options.will.properties = { willDelayInterval: settings.willDelayS, contentType: "application/json" }
    }

    inflightCount() {
        return this.session.inflightCount()
    }

    /** Under auto, what to store for the next boot (versionRecord); "" under a fixed version. */
    versionRecord() {
        const b = this.broker
        return this.settings.version || !b ? "" : versionRecord(b.host, b.port, this.rememberedVersion)
    }

    onTransportOpen(nowMs: number): Action[] {
        const s = this.session
        const version = versionToTry(this.settings.version, this.rememberedVersion)
        this.protocolVersion = version
        this.mqtt5 = version === ProtocolVersion.Mqtt5 ? MQTT5 : null
        // What the last CONNACK granted holds for its connection only.
        s.window = this.options.inflightWindow
        s.timers = keepaliveTimers(this.options.keepaliveS)
        this.brokerMaxPacketBytes = 0
        this.topicAliasMaximum = 0
        this.aliases = []
        const actions = s.onTransportOpen(nowMs)
        if (this.mqtt5)
            (actions[0].packet as ConnectPacket).properties = {
                sessionExpiryInterval: this.settings.sessionExpiryS,
                receiveMaximum: INBOUND_RECEIVE_MAXIMUM,
                maximumPacketSize: MAX_INBOUND_PACKET_BYTES,
            }
        return this.sync(actions)
    }

    onTransportClosed(): Action[] {
        const actions: Action[] = []
        // Closed after CONNECT without a CONNACK: how a broker may refuse a protocol level it
        // does not know [MQTT-3.1.4-2], but also what a proxy or load balancer does while the
        // broker behind it is down. So it is taken for a refusal only while the broker has not
        // answered: a version it accepted or refused stays, rather than an outage leaving the
        // node on 3.1.1 with a broker that speaks 5.
        if (this.state === SessionState.Connecting && (!this.rememberedVersion || this.guessed))
            this.guessed = this.versionRefused(actions, "the broker closed the connection before its CONNACK")
        this.session.onTransportClosed()
        return this.sync(actions)
    }

    /** As Session.publish; in MQTT 5 a publish over the broker's Maximum Packet Size is not sent (see tooLarge). */
    publish(
        nowMs: number,
        topic: string,
        payload: Buffer,
        qos: number,
        retain: boolean,
        actions: Action[],
        properties?: PublishProperties
    ) {
        const s = this.session
        if (
            this.state === SessionState.Connected &&
            this.tooLarge(topic, payload, qos, s.nextToken, actions, properties)
        )
            return s.nextToken++
        const from = actions.length
        const token = s.publish(nowMs, topic, payload, qos, retain, actions, properties)
        this.useAliases(actions, from)
        return token
    }

    onTick(nowMs: number): Action[] {
        return this.sync(this.session.onTick(nowMs))
    }

    onPuback(nowMs: number, packetId: number, actions: Action[]) {
        const from = actions.length
        this.session.onPuback(nowMs, packetId, actions)
        this.useAliases(actions, from)
    }

    disconnect(nowMs: number): Action[] {
        return this.sync(this.session.disconnect(nowMs))
    }

    onPacket(nowMs: number, packet: Packet): Action[] {
        const s = this.session
        const type = packet.type
        const state = this.state
        const actions: Action[] = []
        if (state === SessionState.Connecting && type === PacketType.Connack) {
            if (this.onConnack(packet as ConnackPacket, actions)) return this.sync(actions)
            for (const a of s.onPacket(nowMs, packet)) actions.push(a)
            this.useAliases(actions, 0)
            return this.sync(actions)
        }
        if (type === PacketType.Auth && state !== SessionState.Disconnected) {
            // The node sent no Authentication Method, so the broker must not send AUTH [MQTT-4.12.0-6].
            this.refuse(
                actions,
                ReasonCode.ProtocolError,
                "AUTH from the broker refused: the node does not use enhanced authentication"
            )
            return this.sync(actions)
        }
        if (state === SessionState.Connected && this.mqtt5) {
            s.lastReceivedMs = nowMs
            if (type === PacketType.Disconnect) {
                const reason = reasonText(packet.reasonCode || 0, packet.properties)
                actions.push({ kind: ActionKind.Error, reason: "mqtt: disconnected by the broker: " + reason })
                // As when a 3.1.1 broker hangs up: the session stays connected until the client
                // reports the transport closed, so the client tells a take-over (another client
                // with our id, 0x8e) by how soon after the CONNACK the broker closed.
                actions.push({ kind: ActionKind.Close, reason: CLOSED_BY_BROKER })
                return this.sync(actions)
            }
            if (type === PacketType.Publish && packet.properties && packet.properties.topicAlias) {
                // The node announced no Topic Alias Maximum, so 0: the broker may use none [MQTT-3.3.2-9].
                this.refuse(
                    actions,
                    ReasonCode.TopicAliasInvalid,
                    "a topic alias from the broker refused: the node allows none"
                )
                return this.sync(actions)
            }
            if (type === PacketType.Suback) {
                this.onSuback(nowMs, packet, actions)
                return actions
            }
            if (type === PacketType.Puback && packet.reasonCode >= ReasonCode.UnspecifiedError) {
                let topic = "?"
                for (const p of s.inflight) if (p.packet.packetId === packet.packetId) topic = p.packet.topic
                this.onPuback(nowMs, packet.packetId, actions)
                // The first Delivered is this PUBACK's; any after it are QoS 0 publishes it let out.
                for (const a of actions)
                    if (a.kind === ActionKind.Delivered) {
                        a.code = packet.reasonCode
                        break
                    }
                actions.push({
                    kind: ActionKind.Error,
                    reason:
                        "mqtt: the broker refused a message to " +
                        topic +
                        ": " +
                        reasonText(packet.reasonCode, packet.properties),
                })
                return actions
            }
        }
        return this.sync(this.useAliases(s.onPacket(nowMs, packet), 0))
    }

    /**
     * Topic aliases [MQTT-3.3.2.3.4], while the broker allows them: the PUBLISH packets of
     * actions[from..] are sent as copies that carry the alias of their topic, alias 1..N given
     * to topics in the order they are first published on the connection: the topic and its alias
     * the first time, an empty topic and the alias after. The session keeps its packets with their
     * topics, for a resend on another connection, where aliases start again.
     */
    private useAliases(actions: Action[], from: number) {
        if (!this.topicAliasMaximum || !this.mqtt5) return actions
        const aliases = this.aliases
        for (let i = from; i < actions.length; i++) {
            const a = actions[i]
            const packet = a.packet
            // A publish with properties of its own (a reply to a request) keeps its topic.
            if (a.kind !== ActionKind.Send || packet.type !== PacketType.Publish || packet.properties) continue
            let alias = aliases.indexOf(packet.topic) + 1
            let topic = ""
            if (!alias) {
                if (aliases.length >= this.topicAliasMaximum) continue
                aliases.push(packet.topic)
                alias = aliases.length
                topic = packet.topic
            }
            actions[i] = {
                kind: ActionKind.Send,
                packet: {
                    type: PacketType.Publish,
                    topic,
                    payload: packet.payload,
                    qos: packet.qos,
                    retain: packet.retain,
                    dup: packet.dup,
                    packetId: packet.packetId,
                    properties: { topicAlias: alias },
                },
            }
        }
        return actions
    }

    /** The wrapped session's state is this one's. */
    private sync(actions: Action[]) {
        this.state = this.session.state
        return actions
    }

    /**
     * Whether a publish is over the broker's Maximum Packet Size; if so it is not sent
     * [MQTT-3.1.2-24], and `actions` report it done (Delivered) with reason 0x95, and an error.
     */
    private tooLarge(
        topic: string,
        payload: Buffer,
        qos: number,
        token: number,
        actions: Action[],
        properties?: PublishProperties
    ) {
        const max = this.brokerMaxPacketBytes
        // Compared with 0: the VM gets `!x` wrong for a Four Byte Integer from 2^31 up.
        if (max === 0 || !this.mqtt5) return false
        // Topic, packet id, the property block (empty but for a reply's), payload [MQTT-3.3.2].
        const block = properties ? this.mqtt5.propertyBlock(properties).length : 1
        const length = 2 + Buffer.from(topic).length + (qos ? 2 : 0) + block + payload.length
        const size = 1 + remainingLengthSize(length) + length
        if (size <= max) return false
        actions.push({ kind: ActionKind.Delivered, token, code: ReasonCode.PacketTooLarge })
        actions.push({
            kind: ActionKind.Error,
            reason: `mqtt: a message of ${size} bytes to ${topic} not sent: the broker's Maximum Packet Size is ${max}`,
        })
        return true
    }

    /** Publishes of `list` that are not tooLarge, reporting the others. */
    private withinMaximum(list: OutboundPublish[], actions: Action[]) {
        const kept: OutboundPublish[] = []
        for (const p of list) {
            const packet = p.packet
            if (!this.tooLarge(packet.topic, packet.payload, packet.qos, p.token, actions, packet.properties))
                kept.push(p)
        }
        return kept
    }

    /**
     * A CONNACK: returns true when handled here (refused, or unusable), false when the wrapped
     * session goes on with it (accepted: subscribe, resend, publish).
     */
    private onConnack(connack: ConnackPacket, actions: Action[]): boolean {
        const s = this.session
        const v5 = !!this.mqtt5
        // A 3.1.1 broker's refusal of MQTT 5 (return code 1, see decodeServerPacketBody) is MQTT 5's 0x84.
        const code = v5 && connack.returnCode === 1 ? ReasonCode.UnsupportedProtocolVersion : connack.returnCode
        if (
            code === (v5 ? ReasonCode.UnsupportedProtocolVersion : 1) &&
            this.versionRefused(actions, "the broker refused it")
        ) {
            this.guessed = false
            s.close(actions, `MQTT ${versionName(this.protocolVersion)} refused`)
            return true
        }
        if (!code && this.guessed) {
            // A guess accepted: the close that led to it may have been an outage, so the next
            // connection tries MQTT 5 again, and nothing is stored.
            this.guessed = false
            this.rememberedVersion = 0
        } else if (!code) {
            this.rememberedVersion = versionToRemember(this.protocolVersion, true)
            const record = this.versionRecord()
            if (record && record !== this.storedRecord && this.onRemembered) {
                this.storedRecord = record
                this.onRemembered(record)
            }
        }
        if (!v5) return false
        const p: ConnackProperties = connack.properties || {}
        if (code) {
            const reason = reasonText(code, p)
            actions.push({ kind: ActionKind.Refused, code, reason })
            s.close(actions, "connection refused: " + reason)
            return true
        }
        // What the node cannot work without: its readings are QoS 1, its status is retained.
        const unusable =
            p.maximumQoS === 0
                ? "Maximum QoS 0 (the node publishes at QoS 1)"
                : p.retainAvailable === 0
                  ? "Retain Available 0 (the node's status is retained)"
                  : ""
        if (unusable) {
            const reason = "configuration error: the broker allows " + unusable
            actions.push(s.send(0, { type: PacketType.Disconnect, reasonCode: ReasonCode.ImplementationSpecificError }))
            actions.push({ kind: ActionKind.Refused, code, reason })
            s.close(actions, reason)
            return true
        }
        if (p.receiveMaximum && p.receiveMaximum < s.window) s.window = p.receiveMaximum
        // Compared, not tested for truth: the VM takes a number that is not a 32-bit integer for false.
        this.brokerMaxPacketBytes = p.maximumPacketSize > 0 ? p.maximumPacketSize : 0
        this.topicAliasMaximum = p.topicAliasMaximum || 0
        if (p.serverKeepAlive != null) s.timers = keepaliveTimers(p.serverKeepAlive)
        // The broker named the session: the next CONNECT must use the name to resume it.
        if (p.assignedClientIdentifier) this.options.clientId = p.assignedClientIdentifier
        // What waits, in flight or not yet sent, must fit the broker's limits.
        s.inflight = this.withinMaximum(s.inflight, actions)
        s.pending = this.withinMaximum(s.pending, actions)
        // Publishes in flight beyond the broker's window go out again as new ones, after the rest.
        while (s.inflight.length > s.window) {
            const back = s.inflight.pop()
            back.packet.dup = false
            s.pending.unshift(back)
        }
        return false
    }

    /**
     * Under auto, after a refusal of the protocol version: remembers what to try next, says so
     * (returns true). Under a fixed version there is nothing to learn (returns false).
     */
    private versionRefused(actions: Action[], how: string): boolean {
        if (this.settings.version) return false
        const tried = this.protocolVersion
        this.rememberedVersion = versionToRemember(tried, false)
        const next = versionToTry(MQTT_VERSION_AUTO, this.rememberedVersion)
        actions.push({
            kind: ActionKind.Log,
            reason: `MQTT ${versionName(tried)}: ${how}; trying MQTT ${versionName(next)} next`,
        })
        return true
    }

    private onSuback(nowMs: number, packet: SubackPacket, actions: Action[]) {
        const s = this.session
        if (packet.packetId !== s.subscribeId) return
        s.subscribeId = 0
        const subs = this.options.subscriptions
        const codes = packet.returnCodes
        for (let i = 0; i < codes.length; ++i)
            if (codes[i] >= ReasonCode.UnspecifiedError) {
                s.resubscribeAtMs = nowMs + RESUBSCRIBE_MS
                actions.push({
                    kind: ActionKind.Error,
                    reason: `mqtt: subscription to ${subs[i] ? subs[i].topic : "?"} refused by the broker: ${reasonText(codes[i], packet.properties)}; asking again in ${RESUBSCRIBE_MS / 1000} s`,
                })
            }
    }

    /** Sends DISCONNECT with `code` and closes: the broker broke the protocol [MQTT-4.13.2]. */
    private refuse(actions: Action[], code: number, reason: string) {
        const s = this.session
        actions.push(s.send(0, { type: PacketType.Disconnect, reasonCode: code }))
        actions.push({ kind: ActionKind.Error, reason: "mqtt: " + reason })
        s.close(actions, reason)
    }
}
