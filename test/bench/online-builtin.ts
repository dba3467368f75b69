// Benchmark baseline (runs in the simulator): a reading a second through DeviceScript's built-in
// MQTT client, one JSON reading per QoS 1 message, fire and forget, as a node built on it would
// publish. Each publish is logged ("PUB n") so the host can time it to its arrival at a subscriber.
import * as ds from "@devicescript/core"
import { startMQTTClient } from "@devicescript/net"

export interface OnlineBenchOptions {
    host: string
    port: number
    count: number
    intervalMs: number
}

export async function onlineBuiltin(o: OnlineBenchOptions) {
    const mqtt = await startMQTTClient({ host: o.host, port: o.port, proto: "tcp", clientId: "bench-online-builtin" })
    let total = 0
    for (let i = 1; i <= o.count; ++i) {
        await ds.sleep(o.intervalMs)
        total += 222
        const payload =
            '{"meter":"main","quantity":"energy","unit":"Wh","time":"uptime_s","readings":[{"seq":' +
            i +
            ',"boot":1,"start":' +
            (i - 1) +
            ',"end":' +
            i +
            ',"delta":0.222,"total":' +
            total / 1000 +
            "}]}"
        console.log("PUB " + i)
        await mqtt.publish("meters/bench-builtin/main/reading", Buffer.from(payload), 1)
    }
    console.log("BENCH online count=" + o.count)
}
