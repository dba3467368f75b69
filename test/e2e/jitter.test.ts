// Five nodes lose the same broker at the same moment. DeviceScript's Math.random repeats one
// sequence on every run in the simulator, so with it alone every node would wait the same delays
// and come back in lockstep. Each node seeds its jitter from its own id: their delays differ, and
// they reconnect at distinct times.
import { after, before, describe, test } from "node:test"
import assert from "node:assert/strict"
import { Broker } from "../../devs/lib/broker"
import { Simulator } from "../../devs/lib/simulator"
import { NodeUnderTest, until } from "./helpers"

const NODES = 5
const OUTAGE_MS = 12_000

describe("reconnect jitter across a fleet", () => {
    let broker: Broker
    const nodes: NodeUnderTest[] = []
    const sims: Simulator[] = []
    /** Per node: when each "mqtt: connected" line was seen. */
    const connectedAt: number[][] = []

    before(async () => {
        broker = await new Broker({ persistence: false }).start()
        console.log(`# broker: ${broker.describe()}`)
        for (let i = 0; i < NODES; i++) {
            const node = new NodeUnderTest({
                MQTT_URL: broker.url,
                NODE_ID: `e2e-jitter-${i}`,
                READ_MS: 5000,
                KEEPALIVE_S: 30,
                TIME_TOPIC: "-",
                HA_PREFIX: "-",
            })
            nodes.push(node)
            await node.build()
        }
        for (let i = 0; i < NODES; i++) {
            connectedAt.push([])
            const sim = new Simulator({
                bytecode: nodes[i].runDir + "/firmware.devs",
                runDir: nodes[i].runDir,
                mode: "device",
                clearFlash: true,
                onLine: line => {
                    if (line.startsWith("mqtt: connected")) connectedAt[i].push(Date.now())
                },
            })
            sims.push(sim)
            await sim.start()
        }
    })

    after(async () => {
        for (const sim of sims) await sim.kill()
        for (const node of nodes) await node.dispose()
        await broker?.dispose()
    })

    test("after one broker outage, five nodes wait different delays and reconnect at distinct times", async () => {
        await until("every node connected", () => connectedAt.every(c => c.length >= 1), 60_000)
        await broker.stop()
        const downAt = Date.now()
        await new Promise(r => setTimeout(r, OUTAGE_MS))
        await broker.start()
        const upAt = Date.now()
        await until("every node connected again", () => connectedAt.every(c => c.length >= 2), 75_000)
        const delays = sims.map(sim =>
            sim.lines
                .map(l => l.match(/^mqtt: reconnecting in (\d+) ms/))
                .filter(m => m)
                .map(m => Number(m![1]))
        )
        const back = connectedAt.map(c => c[1] - upAt)
        for (let i = 0; i < NODES; i++)
            console.log(`# node ${i}: delays ${delays[i].join(", ")} ms; back ${back[i]} ms after the broker`)
        // Not in lockstep: no two nodes waited the same sequence of delays.
        const sequences = new Set(delays.map(d => d.slice(0, 4).join(",")))
        assert.equal(sequences.size, NODES, "each node's first delays are its own")
        // Reconnects spread out rather than arriving together.
        const sorted = [...back].sort((a, b) => a - b)
        for (let i = 1; i < NODES; i++)
            assert.ok(sorted[i] - sorted[i - 1] >= 20, `reconnects ${sorted.join(", ")} ms after the broker came back`)
        assert.ok(downAt < upAt)
    })
})
