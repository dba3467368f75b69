// Benchmark program (runs in the simulator): N QoS 1 publishes through meternode's client, each
// counted only once the broker acknowledged it. Like the node's uplink, it tops the window up
// from the acknowledgement callback.
import * as ds from "@devicescript/core"
import { MqttClient } from "../../src/mqtt/client"
import { Session } from "../../src/mqtt/session"
import { nativeSocket, runtimeClock } from "../../src/platform/native-socket"

export interface PublishBenchOptions {
    host: string
    port: number
    count: number
    payloadBytes: number
    window: number
}

export async function benchOurs(o: PublishBenchOptions) {
    let delivered = 0
    let submitted = 0
    const payload = Buffer.alloc(o.payloadBytes)
    payload.fillAt(0, o.payloadBytes, 120)
    const finished = ds.emitter<number>()
    let client: MqttClient = null
    const topUp = async () => {
        while (submitted < o.count && submitted - delivered < o.window) {
            client.publish("bench/ours", payload, 1, false)
            // Yield now and then: a long synchronous run trips the VM's op limit.
            if (++submitted % 16 === 0) await ds.sleep(0)
        }
    }
    client = new MqttClient(
        { host: o.host, port: o.port, tls: false },
        new Session({
            clientId: "bench-ours",
            keepaliveS: 60,
            cleanSession: true,
            inflightWindow: o.window,
            subscriptions: [],
        }),
        {
            onDelivered: async () => {
                if (++delivered === o.count) finished.emit(delivered)
                else await topUp()
            },
        },
        nativeSocket,
        runtimeClock
    )
    client.start()
    while (!client.isConnected()) await ds.sleep(10)
    const startMs = ds.millis()
    await topUp()
    while (delivered < o.count) await ds.wait(finished, 1000)
    const elapsedMs = ds.millis() - startMs
    // Assembled in pieces: the compiler fails on a template literal with many substitutions.
    let line = `BENCH ours count=${o.count} acked=${delivered} ms=${elapsedMs}`
    line += ` connects=${client.connects} chunks=${client.chunksReceived}`
    line += ` packets=${client.packetsReceived} sends=${client.sends}`
    line += ` bytes=${client.bytesSent}`
    console.log(line)
}
