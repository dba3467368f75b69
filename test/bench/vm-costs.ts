// Profiling program (runs in the simulator): what the pieces of the publish path cost in the VM,
// in microseconds per message. `npm run bench -- --vm-costs` prints it. Figures are rough: the
// VM's clock has 1 ms resolution, so each piece runs 2,000 times.
import * as ds from "@devicescript/core"
import { encodePacket, PacketDecoder } from "../fixtures/mqtt-codec"
import { PacketType, Packet } from "../../src/mqtt/packets"
import { Session, Action } from "../../src/mqtt/session"
import { MqttClient } from "../../src/mqtt/client"
import { SocketPort } from "../../src/mqtt/transport"
import { runtimeClock } from "../../src/platform/native-socket"

async function nothing() {
    return 1
}
function plain() {
    return 1
}

export async function vmCosts(o: any) {
    const N = 2000
    const payload = Buffer.alloc(100)
    let t = ds.millis()
    for (let i = 0; i < N; i++) {
        encodePacket({
            type: PacketType.Publish,
            topic: "bench/ours",
            payload,
            qos: 1,
            dup: false,
            retain: false,
            packetId: 1 + (i % 100),
        })
        if (i % 50 === 0) await ds.sleep(0)
    }
    console.log(`COST encode publish us=${(1000 * (ds.millis() - t)) / N}`)
    const d = new PacketDecoder(4096)
    const ack = encodePacket({ type: PacketType.Puback, packetId: 5 })
    const many = Buffer.alloc(4 * 50)
    for (let k = 0; k < 50; k++) many.set(ack, 4 * k)
    t = ds.millis()
    for (let i = 0; i < N / 50; i++) {
        d.push(many)
        // As the client drains: the PUBACK fast path first.
        for (;;) {
            if (d.nextPuback()) continue
            const r = d.next()
            if (!r) break
        }
        await ds.sleep(0)
    }
    console.log(`COST decode puback us=${(1000 * (ds.millis() - t)) / N}`)
    const s = new Session({ clientId: "x", keepaliveS: 60, cleanSession: true, inflightWindow: 32, subscriptions: [] })
    s.onTransportOpen(0)
    s.onPacket(0, { type: PacketType.Connack, sessionPresent: false, returnCode: 0 })
    const ids: number[] = []
    t = ds.millis()
    for (let i = 0; i < N; i++) {
        const a: Action[] = []
        s.publish(0, "bench/ours", payload, 1, false, a)
        ids.push((a[0].packet as any).packetId)
        if (ids.length >= 32) {
            for (const id of ids) s.onPacket(0, { type: PacketType.Puback, packetId: id })
            while (ids.length) ids.pop()
        }
        if (i % 50 === 0) await ds.sleep(0)
    }
    console.log(`COST session publish+puback (window 32) us=${(1000 * (ds.millis() - t)) / N}`)
    t = ds.millis()
    for (let i = 0; i < N; i++) {
        await nothing()
        if (i % 200 === 0) await ds.sleep(0)
    }
    console.log(`COST await async fn us=${(1000 * (ds.millis() - t)) / N}`)
    t = ds.millis()
    for (let i = 0; i < N; i++) {
        plain()
        if (i % 200 === 0) await ds.sleep(0)
    }
    console.log(`COST plain call us=${(1000 * (ds.millis() - t)) / N}`)
    t = ds.millis()
    for (let i = 0; i < N; i++) {
        Buffer.alloc(100)
        if (i % 200 === 0) await ds.sleep(0)
    }
    console.log(`COST alloc100 us=${(1000 * (ds.millis() - t)) / N}`)
    t = ds.millis()
    for (let i = 0; i < N; i++) {
        const x = { a: 1, b: 2, c: [1] }
        if (i % 200 === 0) await ds.sleep(0)
    }
    console.log(`COST object us=${(1000 * (ds.millis() - t)) / N}`)
    t = ds.millis()
    for (let i = 0; i < 200; i++) {
        await ds.sleep(0)
    }
    console.log(`COST sleep0 us=${(1000 * (ds.millis() - t)) / 200}`)
    let delivered = 0
    let sent = 0
    // A socket that counts what is written; the client is driven below without connecting.
    const socket: SocketPort = {
        open: () => 1,
        write: (b: Buffer) => {
            sent += b.length
            return 0
        },
        close: () => {},
        wait: async ms => await ds.sleep(ms),
        received: [],
        opened: true,
        ended: "",
    }
    const client = new MqttClient(
        { host: "x", port: 1, tls: false },
        new Session({ clientId: "x", keepaliveS: 60, cleanSession: true, inflightWindow: 64, subscriptions: [] }),
        {
            onDelivered: () => {
                delivered++
            },
        },
        socket,
        runtimeClock
    )
    const c: any = client
    c.socketOpen = true
    client.session.onTransportOpen(0)
    client.session.onPacket(0, { type: PacketType.Connack, sessionPresent: false, returnCode: 0 })
    t = ds.millis()
    for (let i = 0; i < N; i++) {
        client.publish("bench/ours", payload, 1, false)
        if (i % 50 === 0) {
            await c.flush()
            await ds.sleep(0)
        }
        if (client.session.inflightCount() >= 64) {
            // acknowledge all in one chunk
            const n = client.session.inflightCount()
            const acks = Buffer.alloc(4 * n)
            const first = c.session.inflight[0].packet.packetId
            for (let k = 0; k < n; k++) {
                const id = c.session.inflight[k].packet.packetId
                acks[4 * k] = 0x40
                acks[4 * k + 1] = 2
                acks[4 * k + 2] = id >> 8
                acks[4 * k + 3] = id & 255
            }
            await c.handleChunk(acks)
        }
    }
    console.log(`COST client publish+ack us=${(1000 * (ds.millis() - t)) / N} delivered=${delivered} sent=${sent}`)
    console.log("COST done")
}
