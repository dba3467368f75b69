// A hostile MQTT broker for fault tests: it accepts CONNECT with a CONNACK, then sends a burst of
// malformed packets (reserved types, wrong flags, remaining lengths past any limit, truncated
// packets, random bytes) and waits for the client to give up on the connection.
import { createServer, Server, Socket } from "node:net"

export class HostileBroker {
    server?: Server
    port = 0
    packetsSent = 0
    connections = 0
    private sockets = new Set<Socket>()

    /** `perConnection` malformed packets after each CONNACK; `random` in [0, 1) picks them. */
    constructor(
        readonly perConnection: number,
        private readonly random: () => number
    ) {}

    malformed(): Buffer {
        const kind = Math.floor(this.random() * 6)
        switch (kind) {
            case 0:
                return Buffer.from([this.random() < 0.5 ? 0x00 : 0xf0, 0x00]) // reserved packet type
            case 1:
                return Buffer.from([0x42, 0x02, 0x00, 0x01]) // PUBACK with flags set
            case 2:
                return Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f]) // a 256 MB PUBLISH
            case 3:
                return Buffer.from([0x32, 0x0a, 0x00, 0x03, 0x61]) // truncated PUBLISH
            case 4:
                return Buffer.from([0x90, 0x03, 0x00, 0x00, 0x03]) // SUBACK id 0, bad code
            default: {
                const b = Buffer.alloc(1 + Math.floor(this.random() * 64))
                for (let i = 0; i < b.length; i++) b[i] = Math.floor(this.random() * 256)
                return b
            }
        }
    }

    async start() {
        this.server = createServer(socket => {
            this.connections++
            this.sockets.add(socket)
            socket.on("error", () => {})
            socket.on("close", () => this.sockets.delete(socket))
            socket.once("data", () => {
                const parts: Buffer[] = [Buffer.from([0x20, 0x02, 0x00, 0x00])]
                for (let i = 0; i < this.perConnection; i++) parts.push(this.malformed())
                this.packetsSent += this.perConnection
                socket.write(Buffer.concat(parts))
            })
        })
        await new Promise<void>(r => this.server!.listen(0, "127.0.0.1", () => r()))
        this.port = (this.server.address() as { port: number }).port
        return this
    }

    async stop() {
        for (const s of this.sockets) s.destroy()
        await new Promise<void>(r => this.server?.close(() => r()))
    }
}
