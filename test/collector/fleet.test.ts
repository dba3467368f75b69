// The fleet simulator (npm run fleet) against the collector through Mosquitto: every reading of
// every simulated node stored once, messages published twice absorbed, --verify reporting it.
// And the collector as the nodes' time source (--time-every).
import { after, before, describe, test } from "node:test"
import assert from "node:assert/strict"
import mqtt from "mqtt"
import { Broker } from "../../devs/lib/broker"
import { Collector } from "../../collector/collector"
import type { Database } from "../../collector/db"
import { disposeBroker, energyRecords, payloads, startFleet, variants } from "./helpers"

describe("fleet simulator", () => {
    const pglite = variants()[0]
    let broker: Broker
    let db: Database
    let collector: Collector

    before(async () => {
        broker = await new Broker({ persistence: false }).start()
        db = await pglite.open()
        collector = await new Collector({
            broker: broker.url,
            database: db,
            clientId: `fleet-test-${process.pid}`,
            protocolVersion: broker.kind === "mosquitto" ? 5 : 4,
            httpPort: 0,
            log: () => {},
        }).start()
    })

    after(async () => {
        await collector?.stop()
        await db?.close()
        await pglite.dispose()
        await disposeBroker(broker)
    })

    test("20 nodes, 10 readings each, a fifth of the messages twice: 200 readings stored once, verified", async () => {
        const args = ["--broker", broker.url, "--nodes", "20", "--rate", "400", "--readings", "10", "--repeat", "0.2"]
        const fleet = startFleet([...args, "--verify", `http://127.0.0.1:${collector.httpPort}`])
        const code = await fleet.exited
        const output = fleet.output
        assert.equal(code, 0, output)
        assert.match(output, /^20 nodes connected/m)
        assert.match(output, /^published \d+ messages \(200 readings\)/m)
        assert.match(output, /^all 200 readings stored after/m)
        console.log(output.trim().replace(/^/gm, "# "))
        const [r] = await db.query(
            "SELECT count(*) AS n, count(DISTINCT node) AS nodes, sum(delta) AS wh FROM readings"
        )
        assert.deepEqual([r.n, r.nodes], [200, 20])
        assert.ok(r.wh > 200 * 1 && r.wh < 200 * 33, `${r.wh} Wh: 1 to 33 Wh a reading`)
        const repeated = Number(output.match(/^published 200 messages \(200 readings\), (\d+) of them twice/m)![1])
        assert.equal(collector.stats.duplicates, repeated, "every message sent twice absorbed")
        assert.ok(collector.stats.duplicates > 0)
        assert.equal(collector.stats.conflicts, 0)
        // The nodes said goodbye: their last status is the planned stop.
        const statuses = await db.query("SELECT status FROM nodes")
        assert.equal(statuses.length, 20)
        await new Promise(r => setTimeout(r, 500))
        const last = await db.query("SELECT status->>'state' AS state, status->>'reason' AS reason FROM nodes")
        assert.ok(
            last.every(s => s.state === "offline" && s.reason === "shutdown"),
            JSON.stringify(last)
        )
    })

    test("a reading published at QoS 0 is stored too (nothing to acknowledge)", async () => {
        const node = await mqtt.connectAsync(broker.url, { clientId: `qos0-node-${process.pid}`, clean: true })
        try {
            const [m] = payloads(energyRecords(1, { seed: 5 }))
            await node.publishAsync("meters/qos0-node/main/reading", m, { qos: 0 })
            const deadline = Date.now() + 10_000
            let n = 0
            while (n === 0 && Date.now() < deadline) {
                n = (await db.query("SELECT count(*) AS n FROM readings WHERE node = 'qos0-node'"))[0].n
                await new Promise(r => setTimeout(r, 50))
            }
            assert.equal(n, 1)
        } finally {
            await node.endAsync()
        }
    })

    test("--time-every: the time, retained, every period; cleared when the collector stops", async () => {
        const source = await new Collector({
            broker: broker.url,
            database: db,
            clientId: `time-source-${process.pid}`,
            protocolVersion: broker.kind === "mosquitto" ? 5 : 4,
            timeEveryS: 1,
            log: () => {},
        }).start()
        const node = await mqtt.connectAsync(broker.url, { clientId: `time-node-${process.pid}`, clean: true })
        const times: { utc_ms: number; atMs: number; retained: boolean }[] = []
        let cleared = false
        node.on("message", (_topic, payload, packet) => {
            if (!payload.length) cleared = true
            else times.push({ ...JSON.parse(payload.toString()), atMs: Date.now(), retained: packet.retain })
        })
        try {
            await node.subscribeAsync("meters/time", { qos: 1 })
            const deadline = Date.now() + 10_000
            while (times.length < 3 && Date.now() < deadline) await new Promise(r => setTimeout(r, 50))
            assert.ok(times.length >= 3, `${times.length} times in 10 s`)
            for (const t of times) assert.ok(Math.abs(t.atMs - t.utc_ms) < 1000, `${t.atMs - t.utc_ms} ms off`)
            // A node that subscribes later gets the last one, retained.
            const late = await mqtt.connectAsync(broker.url, { clientId: `time-late-${process.pid}`, clean: true })
            const retained = new Promise<Buffer>(resolve => late.on("message", (_t, p) => resolve(p)))
            await late.subscribeAsync("meters/time", { qos: 1 })
            assert.ok(Math.abs(JSON.parse((await retained).toString()).utc_ms - Date.now()) < 2000)
            await late.endAsync()
            await source.stop()
            const until = Date.now() + 5000
            while (!cleared && Date.now() < until) await new Promise(r => setTimeout(r, 50))
            assert.ok(cleared, "an empty retained time once the source stopped")
        } finally {
            await node.endAsync()
            await source.stop()
        }
    })
})
