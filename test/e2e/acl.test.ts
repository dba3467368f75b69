// The node under the access control docs/examples/mosquitto/acl ships: it delivers its readings,
// status and replies, an operator's command works, and a client without the right to command
// (another node, or a stranger with an account) can neither command the node nor set its time.
// No password appears in any console line of the run.
import { after, before, describe, test } from "node:test"
import assert from "node:assert/strict"
import { spawnSync } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import mqtt from "mqtt"
import { Broker } from "../../devs/lib/broker"
import { PROJECT_ROOT } from "../../devs/lib/simulator"
import { NodeUnderTest, Recorder, until } from "./helpers"

const NODE = "e2e-acl"
const PASSWORDS: Record<string, string> = {
    [NODE]: "node-Pa55-a1c",
    collector: "collector-Pa55-a1c",
    operator: "operator-Pa55-a1c",
    "e2e-other": "other-Pa55-a1c",
}

describe("access control", () => {
    const dir = mkdtempSync(join(tmpdir(), "meternode-acl-"))
    let broker: Broker
    let recorder: Recorder
    let node: NodeUnderTest
    const clients: mqtt.MqttClient[] = []

    async function login(user: string) {
        const c = await mqtt.connectAsync(broker.url, {
            clientId: `${user}-${process.pid}`,
            username: user,
            password: PASSWORDS[user],
            reconnectPeriod: 0,
        })
        clients.push(c)
        return c
    }

    before(async () => {
        const passwordFile = join(dir, "passwd")
        writeFileSync(passwordFile, "")
        for (const [user, password] of Object.entries(PASSWORDS)) {
            const r = spawnSync("mosquitto_passwd", ["-b", passwordFile, user, password], { encoding: "utf-8" })
            assert.equal(r.status, 0, `mosquitto_passwd: ${r.stderr}`)
        }
        broker = await new Broker({
            persistence: false,
            extraConfig: [
                "allow_anonymous false",
                `password_file ${passwordFile}`,
                `acl_file ${join(PROJECT_ROOT, "docs", "examples", "mosquitto", "acl")}`,
            ],
        }).start()
        console.log(`# broker: ${broker.describe()}`)
        recorder = await new Recorder(broker.url, `meters/${NODE}/#`, {
            username: "collector",
            password: PASSWORDS.collector,
        }).start()
        node = new NodeUnderTest({
            MQTT_URL: broker.url,
            MQTT_USER: NODE,
            MQTT_PASS: PASSWORDS[NODE],
            NODE_ID: NODE,
            READ_MS: 1000,
            KEEPALIVE_S: 5,
            TIME_TOPIC: "meters/time",
        })
        await node.build()
        await node.start(true)
    })

    after(async () => {
        for (const c of clients) await c.endAsync(true)
        await node?.dispose()
        await recorder?.stop()
        await broker?.dispose()
        rmSync(dir, { recursive: true, force: true })
    })

    test("under the ACL the node delivers readings and its status, and subscribes without refusal", async () => {
        await recorder.waitFor("3 readings", r => r.readings().length >= 3, 30_000)
        await recorder.waitFor("the status", r => r.messages.some(m => m.topic.endsWith("/status")), 10_000)
        const lines = node.simulator!.lines
        assert.deepEqual(
            lines.filter(l => /refused|not authorized/.test(l)),
            [],
            "the broker granted every subscription and publish"
        )
    })

    test("an operator's command is carried out and answered", async () => {
        const operator = await login("operator")
        await operator.publishAsync(`meters/${NODE}/cmd/status`, JSON.stringify({ id: "op1" }), { qos: 1 })
        await recorder.waitFor(
            "the reply",
            r => r.messages.some(m => m.topic === `meters/${NODE}/reply/status` && m.payload.includes('"op1"')),
            10_000
        )
    })

    test("another node and a collector account can neither command the node nor set its time", async () => {
        const since = node.simulator!.lines.length
        const other = await login("e2e-other")
        const collector = await login("collector")
        for (const c of [other, collector]) {
            // Mosquitto answers an unauthorized publish with a PUBACK and drops the message (MQTT 3.1.1).
            await c.publishAsync(`meters/${NODE}/cmd/restart`, JSON.stringify({ id: "evil" }), { qos: 1 })
            await c.publishAsync(`meters/${NODE}/cmd/time`, JSON.stringify({ id: "t", utc_ms: 4102444800000 }), {
                qos: 1,
            })
        }
        await other.publishAsync("meters/time", JSON.stringify({ utc_ms: 4102444800000 }), { qos: 1, retain: true })
        // A command that gets through afterwards proves the earlier ones had time to arrive.
        const operator = await login("operator")
        await operator.publishAsync(`meters/${NODE}/cmd/status`, JSON.stringify({ id: "marker" }), { qos: 1 })
        await until(
            "the marker command",
            () => node.simulator!.lines.slice(since).some(l => l.startsWith("command: status")),
            10_000
        )
        const after = node.simulator!.lines.slice(since)
        assert.deepEqual(
            after.filter(l => /^command: (restart|time)/.test(l) || /^time: /.test(l)),
            [],
            "no unauthorized command or time reached the node"
        )
        assert.equal(
            recorder.messages.filter(m => m.topic.endsWith("/reply/restart")).length,
            0,
            "the node never answered a restart"
        )
    })

    test("no password appears in any console line", () => {
        const lines = node.simulator!.lines.join("\n")
        for (const password of Object.values(PASSWORDS)) assert.ok(!lines.includes(password), "a password was printed")
    })
})
