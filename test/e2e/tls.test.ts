// TLS: the firmware in the simulator publishes to Mosquitto over mqtts:// with a self-signed CA,
// which the simulator trusts through NODE_EXTRA_CA_CERTS (on an ESP32 the CA must be in the
// firmware's built-in bundle; the Pico W has no TLS).
import { after, before, describe, test } from "node:test"
import assert from "node:assert/strict"
import { readFileSync, rmSync } from "node:fs"
import { Broker, findMosquitto } from "../../devs/lib/broker"
import { makeTestCertificates, TestCertificates } from "../../devs/lib/certs"
import { NodeUnderTest, Recorder } from "./helpers"

const NODE = "e2e-tls"

describe("TLS", { skip: findMosquitto() ? false : "needs Mosquitto for a TLS listener" }, () => {
    let certs: TestCertificates
    let broker: Broker
    let recorder: Recorder
    let node: NodeUnderTest
    let url: string

    before(async () => {
        certs = makeTestCertificates()
        broker = await new Broker({
            kind: "mosquitto",
            extraConfig: [`cafile ${certs.caFile}`, `certfile ${certs.certFile}`, `keyfile ${certs.keyFile}`],
        }).start()
        url = `mqtts://127.0.0.1:${broker.port}`
        recorder = await new Recorder(url, `meters/${NODE}/#`, { ca: readFileSync(certs.caFile) }).start()
    })

    after(async () => {
        await node?.dispose()
        await recorder?.stop()
        await broker?.dispose()
        if (certs) rmSync(certs.dir, { recursive: true, force: true })
    })

    test("readings arrive over mqtts:// when the simulator trusts the broker's CA", async () => {
        node = new NodeUnderTest({ MQTT_URL: url, NODE_ID: NODE, READ_MS: 1000 }, { NODE_EXTRA_CA_CERTS: certs.caFile })
        await node.start(true)
        await recorder.waitFor("3 readings over TLS", r => r.readings().length >= 3, 30_000)
        const seqs = recorder.readings().map(r => r.seq)
        assert.deepEqual(seqs.slice(0, 3), [seqs[0], seqs[0] + 1, seqs[0] + 2])
        assert.ok(
            node.simulator!.lines.some(l => l.includes(`tls://127.0.0.1:${broker.port}`)),
            "the socket was TLS"
        )
    })

    test("without the CA the connection fails with a named error and nothing is published", async () => {
        await node.kill()
        const before = recorder.readings().length
        const untrusting = new NodeUnderTest({ MQTT_URL: url, NODE_ID: NODE, READ_MS: 1000 })
        try {
            const sim = await untrusting.start(true)
            const line = await sim.waitForLine(/mqtt: cannot reach 127\.0\.0\.1:\d+: .+/, 30_000)
            assert.match(line[0], /certificate|self.signed|verify|TLS|tls/i)
            // The next attempt fails the same way, and nothing was published meanwhile.
            const again = await sim.waitForLine(/mqtt: cannot reach 127\.0\.0\.1:\d+: .+/, 30_000)
            assert.match(again[0], /certificate|self.signed|verify|TLS|tls/i)
            assert.equal(recorder.readings().length, before)
        } finally {
            await untrusting.dispose()
        }
    })
})
