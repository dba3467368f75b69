// A TCP proxy on 127.0.0.1 between the firmware and the broker that injects network faults on
// demand: resets, a connection dying in the middle of a packet, a half-open link, a slow broker,
// refused connections. It also parses both byte streams with mqtt-packet, so tests can assert on
// the packets the firmware actually sent (packet ids, DUP flags) rather than on what it logged.
//
// Used in-process by the tests. Every buffer is bounded: forwarding follows the sockets' back
// pressure, delayed data pauses the broker side beyond a limit, and the packet record keeps the
// newest packets only.
import { createServer, connect, Server, Socket } from "node:net"
import mqttPacket from "mqtt-packet"

export type Direction = "client->broker" | "broker->client"

export interface RecordedPacket {
    /** ProxyConnection.id of the connection it travelled on. */
    connection: number
    direction: Direction
    atMs: number
    /**
     * False when the proxy swallowed the packet or part of it (black hole, cut, data still
     * delayed when the connection died): the receiver never got it whole.
     */
    forwarded: boolean
    packet: mqttPacket.Packet
}

export interface ProxyConnection {
    id: number
    openedAtMs: number
    closedAtMs?: number
    /** Why the proxy side ended: "client closed", "broker closed", "cut", "refused", ... */
    closeReason?: string
    clientToBrokerBytes: number
    brokerToClientBytes: number
    /** Bytes the proxy swallowed (black hole, cut, delayed data lost with the connection). */
    droppedBytes: number
}

export interface CutReport {
    connection: number
    chunkBytes: number
    forwardedBytes: number
}

export interface FaultProxyOptions {
    /** The broker's port on 127.0.0.1; read at each new connection, so it may change. */
    targetPort: number
    /** Newest packets kept in the record (older ones are discarded and counted). */
    maxRecordedPackets?: number
    /** Delayed broker->client bytes held per connection before the broker side is paused. */
    maxDelayedBytes?: number
    /** The MQTT version the packet record parses (4, 3.1.1, by default; 5 for a node that speaks 5). */
    protocolVersion?: 4 | 5
}

/** Bytes a parser may hold without completing a packet before it gives up on the stream. */
const MAX_PARSER_PENDING_BYTES = 1 << 20

interface Pipe {
    info: ProxyConnection
    client: Socket
    broker: Socket
    brokerConnected: boolean
    /** Client bytes received before the broker side connected (bounded by pausing the client). */
    early: Buffer[]
    /** A link that went dark stays dark: forwarding after a gap would corrupt both streams. */
    blackholed: boolean
    delayed: { dueMs: number; data: Buffer }[]
    delayedBytes: number
    delayTimer?: NodeJS.Timeout
    parsers: Record<Direction, StreamRecorder>
    closed: boolean
    /** Broker bytes not yet forming a whole packet, while PUBACKs are being dropped (or after). */
    framing?: Buffer
}

/** The length of the whole MQTT packet at the start of `b`, or 0 when `b` does not hold it yet. */
function wholePacketBytes(b: Buffer) {
    let length = 0
    let multiplier = 1
    for (let i = 1; i < 5 && i < b.length; i++) {
        length += (b[i] & 0x7f) * multiplier
        multiplier *= 128
        if (!(b[i] & 0x80)) return b.length >= 1 + i + length ? 1 + i + length : 0
    }
    return 0
}

/** Parses one direction of one connection and appends the packets to the shared record. */
class StreamRecorder {
    private parser: ReturnType<typeof mqttPacket.parser>
    private broken = false
    private forwarded = true
    /** MQTT 5 topic aliases of this direction of the connection: alias -> topic [MQTT-3.3.2.3.4]. */
    private aliases = new Map<number, string>()

    constructor(
        readonly proxy: FaultProxy,
        readonly connection: number,
        readonly direction: Direction
    ) {
        this.parser = mqttPacket.parser({ protocolVersion: proxy.options.protocolVersion ?? 4 })
        this.parser.on("packet", packet => {
            this.resolveAlias(packet)
            this.proxy.record(this.connection, this.direction, this.forwarded, packet)
        })
        this.parser.on("error", error => {
            this.broken = true
            this.proxy.parseErrors.push(`connection ${this.connection} ${this.direction}: ${error.message}`)
        })
    }

    /**
     * An MQTT 5 PUBLISH that carries a topic alias is recorded under its topic, as its receiver
     * resolves it, so that what the record is searched for by topic does not depend on aliases.
     */
    private resolveAlias(packet: mqttPacket.Packet) {
        if (packet.cmd !== "publish") return
        const alias = packet.properties?.topicAlias
        if (alias === undefined) return
        if (packet.topic) this.aliases.set(alias, packet.topic)
        else packet.topic = this.aliases.get(alias) ?? ""
    }

    push(data: Buffer, forwarded: boolean) {
        if (this.broken || !data.length) return
        this.forwarded = forwarded
        const pending = this.parser.parse(data)
        if (pending > MAX_PARSER_PENDING_BYTES) {
            this.broken = true
            this.proxy.parseErrors.push(
                `connection ${this.connection} ${this.direction}: ${pending} bytes without a complete packet`
            )
        }
    }
}

export class FaultProxy {
    port = 0
    /** Every connection accepted, in order (including refused ones). */
    readonly connections: ProxyConnection[] = []
    /** Parsed packets in both directions, oldest first, at most maxRecordedPackets. */
    readonly packets: RecordedPacket[] = []
    /** Packets discarded from the front of the record to keep it bounded. */
    discardedPackets = 0
    readonly parseErrors: string[] = []
    private server?: Server
    private pipes = new Set<Pipe>()
    private nextId = 1
    private blackholing = false
    private refusing = false
    private connackRefusal: number | null = null
    private delayMs = 0
    private droppingPubacks = false
    /** PUBACKs the proxy swallowed (dropPubacks). */
    pubacksDropped = 0
    private pendingCut?: {
        filter: (chunk: Buffer) => boolean
        resolve: (r: CutReport) => void
    }
    private readonly maxRecordedPackets: number
    private readonly maxDelayedBytes: number

    constructor(readonly options: FaultProxyOptions) {
        this.maxRecordedPackets = options.maxRecordedPackets ?? 20_000
        this.maxDelayedBytes = options.maxDelayedBytes ?? 1 << 20
    }

    get url() {
        return `mqtt://127.0.0.1:${this.port}`
    }

    get bytesClientToBroker() {
        return this.connections.reduce((n, c) => n + c.clientToBrokerBytes, 0)
    }

    get bytesBrokerToClient() {
        return this.connections.reduce((n, c) => n + c.brokerToClientBytes, 0)
    }

    get bytesDropped() {
        return this.connections.reduce((n, c) => n + c.droppedBytes, 0)
    }

    get openConnections() {
        return this.pipes.size
    }

    async start(): Promise<this> {
        const server = createServer(socket => this.accept(socket))
        server.on("error", () => {})
        await new Promise<void>((resolve, reject) => {
            server.once("error", reject)
            server.listen(this.port, "127.0.0.1", () => resolve())
        })
        const address = server.address()
        this.port = typeof address === "object" && address ? address.port : 0
        this.server = server
        return this
    }

    async stop() {
        for (const pipe of [...this.pipes]) this.close(pipe, "proxy stopped", true)
        const server = this.server
        this.server = undefined
        if (server) await new Promise<void>(resolve => server.close(() => resolve()))
    }

    /** Resets every open connection (RST to both peers). */
    cutAll() {
        for (const pipe of [...this.pipes]) this.close(pipe, "cut", true)
    }

    /**
     * Arms a cut: the next client->broker chunk that `filter` accepts is forwarded only in part
     * (its first half, at least one byte withheld), then both sides are reset, so the broker sees
     * the connection die in the middle of a packet. Resolves once the cut happened.
     */
    cutMidPacket(filter: (chunk: Buffer) => boolean = () => true): Promise<CutReport> {
        return new Promise(resolve => (this.pendingCut = { filter, resolve }))
    }

    /**
     * On: every open and every new connection stops forwarding in both directions while staying
     * open, like a link that silently died. Off: new connections work again; the ones that went
     * dark stay dark until a peer gives up on them (or the proxy stops).
     */
    blackhole(on: boolean) {
        this.blackholing = on
        if (on)
            for (const pipe of this.pipes) {
                pipe.blackholed = true
                this.dropDelayed(pipe)
            }
    }

    /** Holds broker->client data for `ms` before forwarding it (order kept); 0 turns it off. */
    delayBrokerToClient(ms: number) {
        this.delayMs = Math.max(0, ms)
    }

    /** On: new connections are closed as soon as they are accepted. */
    /**
     * A broker that stops acknowledging: every PUBACK from the broker is swallowed while on; all
     * else (PINGRESP included) goes through, so the link looks alive.
     */
    dropPubacks(on: boolean) {
        this.droppingPubacks = on
    }

    refuse(on: boolean) {
        this.refusing = on
    }

    /**
     * A return code 1..5 (a reason code from 0x80 when the record parses MQTT 5): the proxy
     * answers each new connection's CONNECT itself with a CONNACK refusing it with that code,
     * then closes, as a broker that rejects the node's credentials
     * or client id does [MQTT-3.2.2-5]. null: connections reach the broker again.
     */
    refuseWithConnack(returnCode: number | null) {
        this.connackRefusal = returnCode
    }

    /** Parsed packets the firmware sent (client->broker), optionally only those of one type. */
    clientPackets(cmd?: mqttPacket.PacketCmd) {
        return this.packets.filter(p => p.direction === "client->broker" && (!cmd || p.packet.cmd === cmd))
    }

    /** Parsed packets the broker sent (broker->client), optionally only those of one type. */
    brokerPackets(cmd?: mqttPacket.PacketCmd) {
        return this.packets.filter(p => p.direction === "broker->client" && (!cmd || p.packet.cmd === cmd))
    }

    /** @internal Called by the stream parsers. */
    record(connection: number, direction: Direction, forwarded: boolean, packet: mqttPacket.Packet) {
        this.packets.push({
            connection,
            direction,
            atMs: Date.now(),
            forwarded,
            packet,
        })
        if (this.packets.length > this.maxRecordedPackets) {
            const excess = this.packets.length - Math.floor(this.maxRecordedPackets / 2)
            this.packets.splice(0, excess)
            this.discardedPackets += excess
        }
    }

    private accept(client: Socket) {
        const info: ProxyConnection = {
            id: this.nextId++,
            openedAtMs: Date.now(),
            clientToBrokerBytes: 0,
            brokerToClientBytes: 0,
            droppedBytes: 0,
        }
        this.connections.push(info)
        if (this.connections.length > 10_000) this.connections.splice(0, 5_000)
        client.on("error", () => {})
        if (this.refusing) {
            info.closedAtMs = Date.now()
            info.closeReason = "refused"
            client.destroy()
            return
        }
        if (this.connackRefusal !== null) {
            const code = this.connackRefusal
            client.once("data", () => {
                // In MQTT 5 a reason code and an empty property block; 3.1.1 has a return code only.
                client.end(
                    Buffer.from(
                        this.options.protocolVersion === 5 ? [0x20, 0x03, 0x00, code, 0x00] : [0x20, 0x02, 0x00, code]
                    )
                )
                info.closedAtMs = Date.now()
                info.closeReason = `CONNACK refused (${code})`
            })
            return
        }
        const broker = connect(this.options.targetPort, "127.0.0.1")
        broker.on("error", () => {})
        const pipe: Pipe = {
            info,
            client,
            broker,
            brokerConnected: false,
            early: [],
            blackholed: this.blackholing,
            delayed: [],
            delayedBytes: 0,
            parsers: {
                "client->broker": new StreamRecorder(this, info.id, "client->broker"),
                "broker->client": new StreamRecorder(this, info.id, "broker->client"),
            },
            closed: false,
        }
        this.pipes.add(pipe)
        client.setNoDelay(true)
        broker.setNoDelay(true)

        broker.on("connect", () => {
            pipe.brokerConnected = true
            for (const chunk of pipe.early.splice(0)) this.fromClient(pipe, chunk)
            client.resume()
        })
        client.on("data", chunk => {
            if (pipe.brokerConnected) this.fromClient(pipe, chunk)
            else {
                pipe.early.push(chunk)
                client.pause()
            }
        })
        broker.on("data", chunk => this.fromBroker(pipe, chunk))
        // A black-holed link must not carry a close either: each peer has to find out on its own.
        client.on("close", () => {
            if (!pipe.blackholed) this.close(pipe, "client closed", false)
            else if (broker.destroyed) this.close(pipe, "both peers gave up on the dead link", false)
        })
        broker.on("close", () => {
            const reason = pipe.brokerConnected ? "broker closed" : "broker unreachable"
            if (!pipe.blackholed) this.close(pipe, reason, true)
            else if (client.destroyed) this.close(pipe, "both peers gave up on the dead link", false)
        })
    }

    private fromClient(pipe: Pipe, chunk: Buffer) {
        if (pipe.closed) return
        const parser = pipe.parsers["client->broker"]
        if (pipe.blackholed) {
            pipe.info.droppedBytes += chunk.length
            parser.push(chunk, false)
            return
        }
        const cut = this.pendingCut
        if (cut && cut.filter(chunk)) {
            this.pendingCut = undefined
            const keep = Math.floor(chunk.length / 2)
            const head = chunk.subarray(0, keep)
            parser.push(head, true)
            parser.push(chunk.subarray(keep), false)
            pipe.info.clientToBrokerBytes += keep
            pipe.info.droppedBytes += chunk.length - keep
            const report = {
                connection: pipe.info.id,
                chunkBytes: chunk.length,
                forwardedBytes: keep,
            }
            // Reset only once the head has reached the kernel, or the broker would not see it.
            pipe.broker.write(head, () => {
                this.close(pipe, "cut", true)
                cut.resolve(report)
            })
            pipe.client.pause()
            return
        }
        pipe.info.clientToBrokerBytes += chunk.length
        parser.push(chunk, true)
        if (!pipe.broker.write(chunk)) {
            pipe.client.pause()
            pipe.broker.once("drain", () => pipe.client.resume())
        }
    }

    private fromBroker(pipe: Pipe, chunk: Buffer) {
        if (pipe.closed) return
        if (this.droppingPubacks || pipe.framing) {
            chunk = this.withoutPubacks(pipe, chunk)
            if (!chunk.length) return
        }
        if (pipe.blackholed) {
            pipe.info.droppedBytes += chunk.length
            pipe.parsers["broker->client"].push(chunk, false)
            return
        }
        if (this.delayMs > 0 || pipe.delayed.length) {
            const last = pipe.delayed.length ? pipe.delayed[pipe.delayed.length - 1].dueMs : 0
            pipe.delayed.push({
                dueMs: Math.max(last, Date.now() + this.delayMs),
                data: chunk,
            })
            pipe.delayedBytes += chunk.length
            if (pipe.delayedBytes > this.maxDelayedBytes) pipe.broker.pause()
            this.scheduleDelayed(pipe)
            return
        }
        this.toClient(pipe, chunk)
    }

    /** The whole packets of `chunk` (after what was held back), PUBACKs left out while dropping them. */
    private withoutPubacks(pipe: Pipe, chunk: Buffer) {
        let rest = pipe.framing ? Buffer.concat([pipe.framing, chunk]) : chunk
        const keep: Buffer[] = []
        for (let n = wholePacketBytes(rest); n > 0; n = wholePacketBytes(rest)) {
            const packet = rest.subarray(0, n)
            rest = rest.subarray(n)
            if (this.droppingPubacks && packet[0] >> 4 === 4) {
                this.pubacksDropped++
                pipe.info.droppedBytes += n
                pipe.parsers["broker->client"].push(packet, false)
            } else keep.push(packet)
        }
        pipe.framing = rest.length ? Buffer.from(rest) : undefined
        return Buffer.concat(keep)
    }

    private toClient(pipe: Pipe, chunk: Buffer) {
        pipe.info.brokerToClientBytes += chunk.length
        pipe.parsers["broker->client"].push(chunk, true)
        if (!pipe.client.write(chunk)) {
            pipe.broker.pause()
            pipe.client.once("drain", () => {
                if (pipe.delayedBytes <= this.maxDelayedBytes) pipe.broker.resume()
            })
        }
    }

    private scheduleDelayed(pipe: Pipe) {
        if (pipe.delayTimer || !pipe.delayed.length) return
        const waitMs = Math.max(0, pipe.delayed[0].dueMs - Date.now())
        pipe.delayTimer = setTimeout(() => {
            pipe.delayTimer = undefined
            while (!pipe.closed && pipe.delayed.length && pipe.delayed[0].dueMs <= Date.now()) {
                const { data } = pipe.delayed.shift()!
                pipe.delayedBytes -= data.length
                this.toClient(pipe, data)
            }
            if (pipe.delayedBytes <= this.maxDelayedBytes) pipe.broker.resume()
            this.scheduleDelayed(pipe)
        }, waitMs)
    }

    /** Discards delayed data: it never reaches the client. */
    private dropDelayed(pipe: Pipe) {
        if (pipe.delayTimer) clearTimeout(pipe.delayTimer)
        pipe.delayTimer = undefined
        for (const { data } of pipe.delayed) {
            pipe.info.droppedBytes += data.length
            pipe.parsers["broker->client"].push(data, false)
        }
        pipe.delayed = []
        pipe.delayedBytes = 0
    }

    private close(pipe: Pipe, reason: string, reset: boolean) {
        if (pipe.closed) return
        pipe.closed = true
        this.pipes.delete(pipe)
        this.dropDelayed(pipe)
        pipe.info.closedAtMs = Date.now()
        pipe.info.closeReason = reason
        for (const socket of [pipe.client, pipe.broker]) {
            if (reset && !socket.destroyed && socket.readyState === "open") socket.resetAndDestroy()
            else socket.destroy()
        }
    }
}
