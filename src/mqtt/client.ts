// The MQTT client: the only code that uses the socket and the clock, both passed in as ports
// (src/mqtt/transport.ts). It carries out what the Session decides, and owns reconnecting with
// backoff. One fiber (the connection loop) reads the socket and runs the timers; sends happen from
// whichever fiber produced them (a socket write copies the bytes at once, so sends never
// interleave). New fibers are started with setTimeout(fn, 0), which both runtimes have.
//
// Pure core: imports nothing from @devicescript, so Node tests run it against a scripted broker.
import { copyInto, encodeClientPacket, encodePublishInto, remainingLengthSize, writeRemainingLength } from "./codec"
import { ClientPacketDecoder, DecodeFailure, MAX_TOPIC_BYTES, protocolErrorText } from "./decoder"
import { Action, ActionKind, ClientSession, SessionState } from "./session"
import { backoffDelayMs, jitter01, jitterSeed } from "./backoff"
import { nextParkMiller } from "../util/park-miller"
import { BrokerAddress } from "./url"
import { PacketType, PublishPacket, PublishProperties } from "./packets"
import { ClockPort, CLOSED_BY_BROKER, SocketPort } from "./transport"

/** Largest inbound packet accepted; larger ones are a protocol error (the node only receives commands). */
export const MAX_INBOUND_PACKET_BYTES = 4096
export const TICK_MS = 250
export const ACK_POLL_MS = 1
export const CONNECT_TIMEOUT_MS = 10000
const BACKOFF_BASE_MS = 1000
const BACKOFF_CAP_MS = 60000
/** After a refusal (bad credentials, not authorized) retrying sooner cannot help. */
export const REFUSED_FLOOR_MS = 30000
/**
 * A connection the broker closes this soon after accepting it, twice in a row, means another
 * client is connecting with our client id (each CONNECT takes the session over [MQTT-3.1.4-2]):
 * reconnecting at once would only take it back and flap, so the long floor applies.
 */
export const SHORT_CONNECTION_MS = 10000
const TAKEOVER_CLOSES = 2
/** Decoded packets handled before yielding, so a flood never hits the VM's op limit. */
const PACKETS_PER_YIELD = 16
/**
 * Outgoing packets are coalesced into sends of at most this many bytes (ESP32 TLS panics at 4 KB).
 * The simulator's socket has Nagle's algorithm on, so many small sends would each wait for the
 * previous one's ACK. A full segment is written as it is; a send of less is a copy of the
 * segment's bytes, and that copy needs a free block of its size: during a drain the fragmented
 * heap had no block of 1,400 bytes long before it ran out of bytes, and online, with 40 KB held,
 * none of 580. A reading message (at most 400 bytes and its topic) still fits in one.
 */
export const MAX_SEND_BYTES = 512

/**
 * The send segment, allocated when the module loads: a node has one client, and at the end of its
 * boot the heap is too fragmented for it (measured: with 40 KB held, no free block over 572 bytes).
 * Clients that run one after another (tests) take turns with it.
 */
const sendSegment = Buffer.alloc(MAX_SEND_BYTES)

type AsyncVoid = void | Promise<void>

export interface ClientEvents {
    onConnected?: (sessionPresent: boolean) => AsyncVoid
    onDisconnected?: (reason: string) => AsyncVoid
    /**
     * The publish of `token` is done: acknowledged (QoS 1) or written (QoS 0). In MQTT 5, with
     * `refusedCode` (a reason code from 0x80 up) it was not accepted: the broker refused it in its
     * PUBACK, or it was over the broker's Maximum Packet Size and never sent; an error says which.
     */
    onDelivered?: (token: number, refusedCode?: number) => AsyncVoid
    /** `receivedMs`: when the bytes of the message came off the socket, before any queueing in the VM. */
    onMessage?: (message: PublishPacket, receivedMs: number) => AsyncVoid
    onError?: (text: string) => void
}

/** @devsWhenUsed */
export class MqttClient {
    /** Whether the socket is open: connected, not yet closed by us. */
    private socketOpen = false
    private decoder = new ClientPacketDecoder(MAX_INBOUND_PACKET_BYTES, MAX_TOPIC_BYTES)
    private stopped = false
    private attempt = 0
    /** The reconnect jitter's generator; 0 until the first reconnect. */
    private jitterState = 0
    private refused = false
    private connectedAtMs = 0
    /** Consecutive connections the broker closed within SHORT_CONNECTION_MS. */
    private shortClosures = 0
    private closeReason = ""
    /**
     * Packets are encoded straight into `segment` until the next one does not fit; the segment's
     * bytes are then written, one send, and it fills again from the start.
     */
    private segment = sendSegment
    private segmentBytes = 0
    private flushScheduled = false
    private chunkReceivedMs = 0
    /** Connections made, for the status message and benchmarks. */
    connects = 0
    /** Traffic counters, for benchmarks: chunks and packets received, sends and bytes written. */
    chunksReceived = 0
    packetsReceived = 0
    sends = 0
    bytesSent = 0

    /**
     * `session` decides what is sent: a Session speaks MQTT 3.1.1; MQTT 5's (src/mqtt/mqtt5-session.ts)
     * is passed in rather than chosen here, so that an image that speaks only 3.1.1 does not carry it.
     */
    constructor(
        readonly broker: BrokerAddress,
        readonly session: ClientSession,
        /** Set by the owner once it exists (null: nothing reported until then). */
        public events: ClientEvents,
        private readonly socket: SocketPort,
        private readonly clock: ClockPort
    ) {}

    isConnected() {
        return this.session.state === SessionState.Connected
    }

    /** Starts the connection loop in its own fiber. */
    start() {
        // A timer callback runs in a fiber of its own: the connection loop lives there.
        // (DeviceScript closures cannot capture `this`, hence `self`.)
        const self = this
        setTimeout(async () => await self.connectionLoop(), 0)
    }

    /**
     * Queues a publish and returns at once the token later reported to onDelivered: the caller
     * holds it before any acknowledgement can arrive. The bytes go out when the calling fiber
     * yields, together with whatever else was published meanwhile (a full segment at once).
     */
    publish(topic: string, payload: Buffer, qos: number, retain: boolean, properties?: PublishProperties) {
        const actions: Action[] = []
        const token = this.session.publish(this.clock.millis(), topic, payload, qos, retain, actions, properties)
        // A publish is sent (or waits in the session); QoS 0 is delivered as it is written, and
        // the caller hears of it from a fiber of its own, after it has its token (so does the
        // caller of a publish MQTT 5 does not send: see Mqtt5Session.transmit).
        if (actions.length && actions[0].kind === ActionKind.Send) this.sendPacket(actions.shift())
        if (actions.length) this.spawnExecute(actions)
        this.scheduleFlush()
        return token
    }

    /**
     * Publishes at QoS 0 a payload given in parts, copied one after another into the send segment
     * (a full segment is written as it is, the packet going on in the next): no buffer of the
     * whole payload or packet exists, so a payload of several hundred bytes needs no large free
     * block (a Home Assistant config is about 480 bytes; on a fragmented heap no block that size
     * may be left). QoS 0 needs nothing of the session; a payload lost with the connection must
     * be one that is published again after every connection. Returns false when not connected,
     * or when the packet is over the MQTT 5 broker's Maximum Packet Size: the broker would close
     * the connection for it [MQTT-3.1.2-24], and the node would reconnect and send it again.
     */
    publishParts(topic: string, parts: string[], retain: boolean) {
        if (!this.isConnected()) return false
        const topicBytes = Buffer.from(topic)
        const payload: Buffer[] = []
        // The topic with its length field, then the parts: a QoS 0 PUBLISH has no packet id
        // [MQTT-3.3.2-2]; in MQTT 5 an empty property block (its length, 0) comes before them.
        const v5 = this.session.mqtt5 ? 1 : 0
        let length = 2 + topicBytes.length + v5
        for (const part of parts) {
            const b = Buffer.from(part)
            payload.push(b)
            length += b.length
        }
        // Mqtt5Session's limit, read by name: a 3.1.1 session has none (the property is undefined).
        const max = (this.session as any).brokerMaxPacketBytes
        if (max > 0 && 1 + remainingLengthSize(length) + length > max) {
            this.reportError(`mqtt: a message to ${topic} not sent: over the broker's Maximum Packet Size, ${max}`)
            return false
        }
        const header = Buffer.alloc(1 + remainingLengthSize(length) + 2)
        header[0] = (PacketType.Publish << 4) | (retain ? 1 : 0)
        const at = writeRemainingLength(header, 1, length)
        header[at] = topicBytes.length >> 8
        header[at + 1] = topicBytes.length & 0xff
        this.append(header)
        this.append(topicBytes)
        if (v5) this.append(Buffer.alloc(1))
        for (const b of payload) this.append(b)
        this.scheduleFlush()
        return true
    }

    /** Copies `bytes` into the segment, writing it each time it fills. */
    private append(bytes: Buffer) {
        let from = 0
        while (from < bytes.length) {
            const room = MAX_SEND_BYTES - this.segmentBytes
            const n = bytes.length - from < room ? bytes.length - from : room
            copyInto(this.segment, this.segmentBytes, bytes, from, n)
            this.segmentBytes += n
            from += n
            if (this.segmentBytes === MAX_SEND_BYTES) this.flush()
        }
    }

    private spawnExecute(actions: Action[]) {
        const self = this
        setTimeout(async () => await self.execute(actions), 0)
    }

    /** Graceful stop: DISCONNECT (so the will does not fire), then close. */
    async stop() {
        this.stopped = true
        await this.execute(this.session.disconnect(this.clock.millis()))
        this.flush()
        await this.clock.sleep(50)
        this.closeSocket()
    }

    private async connectionLoop() {
        while (!this.stopped) {
            await this.runOneConnection()
            if (this.stopped) break
            const delayMs = backoffDelayMs(
                this.attempt,
                BACKOFF_BASE_MS,
                BACKOFF_CAP_MS,
                this.refused || this.shortClosures >= TAKEOVER_CLOSES ? REFUSED_FLOOR_MS : 0,
                this.nextJitter()
            )
            this.attempt++
            console.log(`mqtt: reconnecting in ${delayMs} ms (attempt ${this.attempt})`)
            await this.clock.sleep(delayMs)
        }
    }

    /** Uniform in [0, 1), different on every node (see jitterSeed). */
    private nextJitter() {
        this.jitterState = this.jitterState
            ? nextParkMiller(this.jitterState)
            : jitterSeed(this.session.options.clientId, this.clock.millis())
        return jitter01(this.jitterState, Math.random())
    }

    private async runOneConnection() {
        const b = this.broker
        this.closeReason = ""
        console.log(`mqtt: connecting to ${b.tls ? "tls" : "tcp"}://${b.host}:${b.port}`)
        const socket = this.socket
        const error = socket.open(b.host, b.port, b.tls)
        if (!error && !socket.opened && !socket.ended) await socket.wait(CONNECT_TIMEOUT_MS)
        // A TLS handshake fails after the TCP connection opened: its error comes right after the open.
        if (socket.opened) await this.clock.sleep(0)
        if (!socket.opened || socket.ended) {
            if (!error && !socket.ended) socket.close()
            const why = error ? `error ${error}` : socket.ended || `no connection within ${CONNECT_TIMEOUT_MS} ms`
            this.reportError(`mqtt: cannot reach ${b.host}:${b.port}: ${why}`)
            return
        }
        this.socketOpen = true
        this.connects++
        this.decoder.reset()
        const session = this.session
        await this.execute(session.onTransportOpen(this.clock.millis()))
        // The session chose the protocol version of this connection with its CONNECT.
        this.decoder.mqtt5 = session.mqtt5
        this.flush()
        while (this.socketOpen && !this.stopped) {
            const chunk = socket.received.shift()
            if (chunk) await this.handleChunk(chunk)
            else if (socket.ended) {
                if (!this.closeReason) this.closeReason = socket.ended
                break
            }
            // While acknowledgements are due, wake often: the simulator hands socket data to the
            // VM only at its next timer, so a long wait here would add latency to every PUBACK.
            else await socket.wait(this.session.inflightCount() ? ACK_POLL_MS : TICK_MS)
            if (this.socketOpen) await this.execute(this.session.onTick(this.clock.millis()))
            this.flush()
        }
        const wasConnected = session.state === SessionState.Connected
        const closed = session.onTransportClosed()
        this.closeSocket()
        // What the session makes of the loss (MQTT 5's version fallback logs it).
        await this.execute(closed)
        if (!this.stopped) {
            const reason = this.closeReason || "connection lost"
            console.log(`mqtt: disconnected: ${reason}`)
            if (this.events.onDisconnected) await this.events.onDisconnected(reason)
            if (wasConnected) this.noteClosure(reason === CLOSED_BY_BROKER)
        }
    }

    /** Tells a client take-over (the broker closes us right after every CONNACK) from other losses. */
    private noteClosure(byBroker: boolean) {
        const lastedMs = this.clock.millis() - this.connectedAtMs
        if (!byBroker || lastedMs >= SHORT_CONNECTION_MS) {
            this.shortClosures = 0
            return
        }
        this.shortClosures++
        const id = this.session.options.clientId
        if (this.shortClosures >= TAKEOVER_CLOSES)
            this.reportError(
                `mqtt: client take-over: the broker closed ${this.shortClosures} connections in a row within ${SHORT_CONNECTION_MS} ms of accepting them; another client is using the client id ${id}. Retrying no sooner than ${REFUSED_FLOOR_MS} ms`
            )
        else
            console.log(
                `mqtt: the broker closed the connection ${lastedMs} ms after accepting it (another client with id ${id}, or a broker restart)`
            )
    }

    private async handleChunk(chunk: Buffer) {
        this.chunksReceived++
        this.chunkReceivedMs = this.clock.millis()
        const decoder = this.decoder
        const session = this.session
        decoder.push(chunk)
        // The PUBACKs of a burst share one action list, carried out before any other packet.
        let acks: Action[] = []
        let handled = 0
        for (;;) {
            const packetId = session.state === SessionState.Connected ? decoder.nextPuback() : 0
            if (packetId) {
                session.onPuback(this.chunkReceivedMs, packetId, acks)
            } else {
                if (acks.length) {
                    await this.execute(acks)
                    acks = []
                    if (!this.socketOpen) return
                }
                const result = decoder.next()
                if (!result) break
                if (result.error) {
                    // No narrowing here: DeviceScript compiles without strictNullChecks.
                    const failure = result as DecodeFailure
                    this.reportError(
                        `mqtt: protocol error from broker: ${protocolErrorText(failure.error)}: ${failure.message}`
                    )
                    this.closeReason = "protocol error"
                    this.closeSocket()
                    return
                }
                await this.execute(session.onPacket(this.clock.millis(), result.packet))
                if (!this.socketOpen) return
                // A message's handling can be long (a command, a status publish): the VM stops a
                // fiber after ~128K operations without a real suspension, so a burst of messages
                // must not run back to back.
                if (result.packet.type === PacketType.Publish) await this.clock.sleep(0)
            }
            this.packetsReceived++
            if (++handled % PACKETS_PER_YIELD === 0) {
                if (acks.length) {
                    await this.execute(acks)
                    acks = []
                    if (!this.socketOpen) return
                }
                await this.clock.sleep(0)
            }
        }
    }

    private async execute(actions: Action[]) {
        // onConnected runs after the batch: the batch holds the resends of the session, which
        // must reach the wire before anything the callback publishes [MQTT-4.6.0-1].
        let connected = false
        let sessionPresent = false
        for (const a of actions) {
            switch (a.kind) {
                case ActionKind.Send:
                    this.sendPacket(a)
                    break
                case ActionKind.Close:
                    if (!this.closeReason) this.closeReason = a.reason
                    // What the session sent just before closing (a DISCONNECT) must still go out.
                    this.flush()
                    this.closeSocket()
                    break
                case ActionKind.Connected:
                    this.attempt = 0
                    this.refused = false
                    this.connectedAtMs = this.clock.millis()
                    console.log(`mqtt: connected (session present: ${a.sessionPresent})`)
                    connected = true
                    sessionPresent = a.sessionPresent
                    break
                case ActionKind.Refused:
                    this.refused = true
                    this.reportError(`mqtt: broker refused the connection: ${a.reason}`)
                    break
                case ActionKind.Delivered:
                    if (this.events.onDelivered) await this.events.onDelivered(a.token, a.code)
                    break
                case ActionKind.Message:
                    // Its acknowledgement reaches the wire first (see Session.onInboundPublish).
                    this.flush()
                    if (this.events.onMessage) await this.events.onMessage(a.message, this.chunkReceivedMs)
                    break
                case ActionKind.Log:
                    console.log(`mqtt: ${a.reason}`)
                    break
                case ActionKind.Error:
                    this.reportError(a.reason)
                    break
            }
        }
        if (connected && this.events.onConnected) await this.events.onConnected(sessionPresent)
    }

    /**
     * Encodes a packet into the segment; a full segment is written at once, what is left waits
     * for the scheduled flush, so that sends stay segment-sized. No await in here: the packets of
     * one batch of actions (the resends after a CONNACK) go out together, before any other
     * fiber's publish.
     */
    private sendPacket(a: Action) {
        if (!this.socketOpen) return
        const packet = a.packet
        const mqtt5 = this.session.mqtt5
        let bytes: Buffer
        if (packet.type === PacketType.Publish) {
            // The packet a node sends most is encoded in place: no buffer of its own, no copy.
            let end = encodePublishInto(packet, this.segment, this.segmentBytes, mqtt5)
            if (end < 0 && this.segmentBytes) {
                this.flush()
                end = encodePublishInto(packet, this.segment, 0, mqtt5)
            }
            if (end >= 0) {
                this.segmentBytes = end
                return
            }
            // Larger than a segment: a send of its own.
            bytes = Buffer.alloc(-end)
            encodePublishInto(packet, bytes, 0, mqtt5)
        } else bytes = encodeClientPacket(packet, mqtt5)
        if (this.segmentBytes + bytes.length > MAX_SEND_BYTES) this.flush()
        if (bytes.length > MAX_SEND_BYTES) return this.write(bytes)
        copyInto(this.segment, this.segmentBytes, bytes, 0, bytes.length)
        this.segmentBytes += bytes.length
    }

    private scheduleFlush() {
        if (this.flushScheduled || !this.segmentBytes) return
        this.flushScheduled = true
        const self = this
        setTimeout(() => {
            self.flushScheduled = false
            self.flush()
        }, 0)
    }

    /**
     * Writes what the segment holds, so that it fills again from the start. The write gets a copy
     * (slice copies in the VM; in Node it is a view, and the port copies before returning).
     */
    private flush() {
        const bytes = this.segmentBytes
        this.segmentBytes = 0
        // A full segment needs no copy of its own: the port copies what it is given.
        if (bytes === MAX_SEND_BYTES) this.write(this.segment)
        else if (bytes) this.write(this.segment.slice(0, bytes))
    }

    /** One send; a failed one closes the socket. */
    private write(data: Buffer) {
        if (!this.socketOpen) return
        this.sends++
        this.bytesSent += data.length
        const error = this.socket.write(data)
        if (error) {
            if (!this.closeReason) this.closeReason = `send failed: error ${error}`
            this.closeSocket()
        }
    }

    /**
     * Closes the socket (if we still have it open) and drops what waits to be sent or read.
     * Nothing in there is lost: unacknowledged publishes stay in the session and are resent.
     */
    private closeSocket() {
        const socket = this.socket
        if (this.socketOpen && !socket.ended) socket.close()
        this.socketOpen = false
        socket.received = []
        this.segmentBytes = 0
    }

    private reportError(text: string) {
        console.log(text)
        if (this.events.onError) this.events.onError(text)
    }
}
