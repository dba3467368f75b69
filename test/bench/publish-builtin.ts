// Benchmark baseline (runs in the simulator): N publishes through DeviceScript's built-in MQTT
// client, fire and forget: publish() returns once the bytes are written. At QoS 1 the client
// still ignores the PUBACKs (it only logs them); at QoS 0 there are none.
import * as ds from "@devicescript/core"
import { startMQTTClient } from "@devicescript/net"
import { PublishBenchOptions } from "./publish-ours"

export async function benchBuiltin(o: PublishBenchOptions & { qos: number }) {
    const mqtt = await startMQTTClient({ host: o.host, port: o.port, proto: "tcp", clientId: "bench-builtin" })
    const payload = Buffer.alloc(o.payloadBytes)
    payload.fillAt(0, o.payloadBytes, 120)
    let accepted = 0
    const startMs = ds.millis()
    for (let i = 0; i < o.count; ++i) {
        if (await mqtt.publish(`bench/builtin${o.qos}`, payload, o.qos)) accepted++
        // A yield per publish: 200 back-to-back publishes exceed the VM's op budget.
        await ds.sleep(0)
    }
    const elapsedMs = ds.millis() - startMs
    console.log(`BENCH builtin qos=${o.qos} count=${o.count} accepted=${accepted} ms=${elapsedMs}`)
}
