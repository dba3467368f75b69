// The MQTT client under network and broker faults: firmware in the simulator, a real Mosquitto,
// and where needed the fault-injecting proxy in between. Each test asserts on what the broker
// delivered to a subscriber and on the packets the firmware actually put on the wire.
import { test, TestContext } from "node:test"
import assert from "node:assert/strict"
import mqtt from "mqtt"
import { spawnSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Broker, BrokerOptions } from "../../devs/lib/broker"
import { FaultProxy, RecordedPacket } from "../../devs/lib/fault-proxy"
import { HostileBroker } from "../../devs/lib/hostile-broker"
import type { Settings, Simulator } from "../../devs/lib/simulator"
import { sleep } from "../../devs/lib/process"
import { assertFirstDeliveriesInOrder, NodeUnderTest, Recorder, RecorderOptions, until } from "./helpers"

const READING_SUFFIX = "/main/reading"

interface Rig {
    broker: Broker
    proxy?: FaultProxy
    recorder: Recorder
    node: NodeUnderTest
}

/**
 * Starts a broker, optionally the proxy in front of it, a recorder subscribed to the node's
 * topics (directly on the broker) and the firmware (through the proxy when there is one).
 * Everything is torn down after the test, whether it passed or not.
 */
async function startRig(
    t: TestContext,
    nodeId: string,
    settings: Settings,
    options: {
        broker?: BrokerOptions
        proxy?: boolean
        recorder?: RecorderOptions
    } = {}
): Promise<Rig> {
    const cleanups: (() => Promise<void>)[] = []
    t.after(async () => {
        for (const cleanup of cleanups.reverse()) await cleanup().catch(e => console.log(`# cleanup: ${e}`))
    })
    const broker = new Broker(options.broker ?? {})
    cleanups.push(() => broker.dispose())
    await broker.start()
    console.log(`# broker: ${broker.describe()}`)
    let proxy: FaultProxy | undefined
    if (options.proxy) {
        proxy = new FaultProxy({ targetPort: broker.port })
        cleanups.push(() => proxy!.stop())
        await proxy.start()
    }
    const recorder = new Recorder(broker.url, `meters/${nodeId}/#`, options.recorder)
    cleanups.push(() => recorder.stop())
    await recorder.start()
    const node = new NodeUnderTest({
        MQTT_URL: (proxy ?? broker).url,
        NODE_ID: nodeId,
        SIM_SEED: 3,
        ...settings,
    })
    cleanups.push(() => node.dispose())
    await node.build()
    const booted = (await node.start(true)).waitForLine(/^node: boot/, 30_000)
    await booted
    const configErrors = node.simulator!.lines.filter(l => l.startsWith("config: "))
    assert.deepEqual(configErrors, [], "the firmware accepted every setting")
    return { broker, proxy, recorder, node }
}

/** The first console line since the simulator started that matches, or the next one to come. */
function lineSinceBoot(sim: Simulator, pattern: RegExp, timeoutMs: number) {
    for (const line of sim.lines) {
        const m = line.match(pattern)
        if (m) return Promise.resolve(m)
    }
    return sim.waitForLine(pattern, timeoutMs)
}

function deliveredSeqs(recorder: Recorder) {
    return recorder.readings(READING_SUFFIX).map(r => r.seq as number)
}

/** Seqs of the readings the firmware created (simulated history included), from its console. */
function createdSeqs(node: NodeUnderTest) {
    const seqs: number[] = []
    for (const line of node.simulator!.lines) {
        const m = line.match(/^reading: seq (\d+)\b/)
        if (m) seqs.push(Number(m[1]))
        const h = line.match(/^node: queued \d+ readings of simulated history, seq (\d+)\.\.(\d+)/)
        if (h) for (let seq = Number(h[1]); seq <= Number(h[2]); seq++) seqs.push(seq)
    }
    return seqs
}

function hasEverySeq(recorder: Recorder, from: number, to: number) {
    const seen = new Set(deliveredSeqs(recorder))
    for (let seq = from; seq <= to; seq++) if (!seen.has(seq)) return false
    return true
}

/** Waits until the firmware has created `more` readings after the current last one, and all were delivered. */
async function waitForReadingsBeyond(rig: Rig, more: number, timeoutMs: number) {
    const created = createdSeqs(rig.node)
    const target = created[created.length - 1] + more
    try {
        await rig.recorder.waitFor(
            `every reading from seq ${created[0]} to ${target}`,
            r => hasEverySeq(r, created[0], target),
            timeoutMs
        )
    } catch (e) {
        const seen = new Set(deliveredSeqs(rig.recorder))
        const missing: number[] = []
        for (let seq = created[0]; seq <= target; seq++) if (!seen.has(seq)) missing.push(seq)
        throw new Error(`${(e as Error).message}; missing seq ${missing.slice(0, 40).join(" ")}`)
    }
}

/**
 * At-least-once, in order: every reading the firmware created up to the last one delivered was
 * delivered, each seq's first delivery comes after every lower seq's, and duplicates (same seq
 * again) are the only repetition.
 */
function assertDeliveredInOrder(rig: Rig) {
    const delivered = deliveredSeqs(rig.recorder)
    const created = createdSeqs(rig.node)
    assert.ok(delivered.length > 0, "readings were delivered")
    const { seen, duplicates, highest } = assertFirstDeliveriesInOrder(delivered)
    const first = Math.min(...seen)
    assert.equal(first, created[0], "the first reading of the boot was delivered")
    for (let seq = first; seq <= highest; seq++) assert.ok(seen.has(seq), `seq ${seq} was never delivered`)
    return { readings: seen.size, duplicates, first, last: highest }
}

interface SentReading {
    connection: number
    packetId: number
    dup: boolean
    /** The first reading the message carries, and all of them. */
    seq: number
    seqs: number[]
    forwarded: boolean
    atMs: number
}

/** The reading PUBLISHes the firmware sent (each carries one or more readings), as the proxy parsed them. */
function sentReadings(proxy: FaultProxy): SentReading[] {
    return proxy
        .clientPackets("publish")
        .filter(p => (p.packet as any).topic.endsWith(READING_SUFFIX))
        .map((p: RecordedPacket) => {
            const packet = p.packet as any
            return {
                connection: p.connection,
                packetId: packet.messageId,
                dup: !!packet.dup,
                seq: JSON.parse(packet.payload.toString()).readings[0].seq,
                seqs: JSON.parse(packet.payload.toString()).readings.map((e: any) => e.seq),
                forwarded: p.forwarded,
                atMs: p.atMs,
            }
        })
}

/**
 * Every DUP=1 publish resends, on a later connection and with the same packet id, a reading
 * first sent without DUP; and on each connection the resends go out before any new reading, in
 * the order of the original sends [MQTT-4.4.0-1, MQTT-4.6.0-1].
 */
function assertResends(proxy: FaultProxy) {
    const sent = sentReadings(proxy)
    const resends = sent.filter(s => s.dup)
    for (const r of resends) {
        const original = sent.find(s => s.seq === r.seq && !s.dup)
        assert.ok(original, `the resend of seq ${r.seq} has an original send`)
        assert.ok(original.connection < r.connection, `seq ${r.seq} is resent on a later connection`)
        assert.equal(r.packetId, original.packetId, `seq ${r.seq} is resent with its original packet id`)
    }
    for (const connection of new Set(resends.map(r => r.connection))) {
        const onConnection = sent.filter(s => s.connection === connection)
        const firstNew = onConnection.findIndex(s => !s.dup)
        const lastResend = onConnection.findLastIndex(s => s.dup)
        assert.ok(
            firstNew < 0 || lastResend < firstNew,
            `connection ${connection}: resends go out before new readings (sent: ${onConnection
                .map(s => `${s.seq}${s.dup ? "d" : ""}`)
                .join(" ")})`
        )
        const resentSeqs = onConnection.filter(s => s.dup).map(s => s.seq)
        assert.deepEqual(
            resentSeqs,
            [...resentSeqs].sort((a, b) => a - b),
            "resends in the original order"
        )
    }
    return resends
}

/**
 * QoS 1 publishes the firmware sent whose PUBACK has not reached it yet (broker->client packets
 * are recorded as the proxy forwards them), now and at most at once so far.
 */
function publishesInFlight(proxy: FaultProxy) {
    const inFlight = new Set<string>()
    let most = 0
    for (const p of proxy.packets) {
        const packet = p.packet as any
        const key = `${p.connection}/${packet.messageId}`
        if (p.direction === "client->broker" && packet.cmd === "publish" && packet.qos === 1) {
            inFlight.add(key)
            most = Math.max(most, inFlight.size)
        } else if (p.direction === "broker->client" && packet.cmd === "puback") inFlight.delete(key)
    }
    return { now: inFlight.size, most }
}

function assertNoProtocolErrors(rig: Rig) {
    const errors = rig.node.simulator!.lines.filter(l => /protocol error|PUBACK for unknown/.test(l))
    assert.deepEqual(errors, [], "no protocol errors on either side")
    if (rig.proxy) assert.deepEqual(rig.proxy.parseErrors, [], "the proxy parsed every stream")
}

test("consecutive QoS 1 publishes carry distinct, nonzero packet ids, never reused while in flight", async t => {
    const rig = await startRig(
        t,
        "e2e-ids",
        // A backlog to drain: many publishes, several in flight at once.
        { READ_MS: 1000, KEEPALIVE_S: 10, SIM_BACKLOG: 300 },
        { proxy: true }
    )
    const proxy = rig.proxy!
    await rig.recorder.waitFor("6 readings", r => r.readings(READING_SUFFIX).length >= 6, 30_000)
    // A slow broker keeps several publishes waiting for their PUBACK at once.
    proxy.delayBrokerToClient(900)
    await until("3 publishes awaiting their PUBACK at once", () => publishesInFlight(proxy).now >= 3, 15_000)
    proxy.delayBrokerToClient(0)
    await waitForReadingsBeyond(rig, 3, 15_000)

    const publishes = proxy.clientPackets("publish").map(p => p.packet as any)
    const ids = publishes.filter(p => p.qos === 1).map(p => p.messageId as number)
    assert.ok(ids.length >= 20, `${ids.length} QoS 1 publishes recorded`)
    assert.ok(
        ids.every(id => Number.isInteger(id) && id >= 1 && id <= 65535),
        `every id is in 1..65535 [MQTT-2.3.1-1]`
    )
    for (let i = 1; i < ids.length; i++)
        assert.notEqual(ids[i], ids[i - 1], `publishes ${i - 1} and ${i} share id ${ids[i]}`)

    // Walk both directions in order: an id is free again only after its PUBACK.
    const inFlight = new Set<number>()
    let mostInFlight = 0
    for (const p of proxy.packets) {
        const packet = p.packet as any
        if (p.direction === "client->broker" && packet.cmd === "publish" && packet.qos === 1) {
            assert.ok(!inFlight.has(packet.messageId), `id ${packet.messageId} reused while awaiting its PUBACK`)
            inFlight.add(packet.messageId)
            mostInFlight = Math.max(mostInFlight, inFlight.size)
        } else if (p.direction === "broker->client" && packet.cmd === "puback") inFlight.delete(packet.messageId)
    }
    assert.ok(mostInFlight >= 3, `${mostInFlight} publishes were in flight at once`)
    assert.ok(
        publishes.every(p => !p.dup),
        "no DUP without a reconnect"
    )
    const stats = assertDeliveredInOrder(rig)
    assertNoProtocolErrors(rig)
    console.log(
        `# ids: ${ids.length} QoS 1 publishes, ids ${ids[0]}..${ids[ids.length - 1]}, up to ${mostInFlight} in flight; ${stats.readings} readings, ${stats.duplicates} duplicates`
    )
})

test("broker killed and restarted with persistence: every reading delivered in order, resends flagged DUP", async t => {
    const rig = await startRig(
        t,
        "e2e-crash",
        { READ_MS: 1000, KEEPALIVE_S: 10 },
        {
            broker: { persistence: true },
            proxy: true,
            recorder: { persistentSession: true },
        }
    )
    const { broker, recorder, node } = rig
    const proxy = rig.proxy!
    const sim = node.simulator!
    // Mosquitto saves its database every second: give it the recorder's session first. A slow
    // broker (PUBACKs held back) keeps publishes in flight at the moment of the crash.
    await recorder.waitFor("8 readings", r => r.readings(READING_SUFFIX).length >= 8, 30_000)
    proxy.delayBrokerToClient(2500)
    await until("2 publishes awaiting their PUBACK", () => publishesInFlight(proxy).now >= 2, 15_000)
    const createdBeforeKill = createdSeqs(node).length
    const disconnected = sim.waitForLine(/mqtt: disconnected: (.*)/, 10_000)
    await broker.kill()
    const reason = (await disconnected)[1]
    await until(
        "6 readings taken while the broker is down",
        () => createdSeqs(node).length - createdBeforeKill >= 6,
        20_000
    )
    const createdWhileDown = createdSeqs(node).length - createdBeforeKill
    const reconnected = sim.waitForLine(/mqtt: connected \(session present: (\w+)\)/, 75_000)
    await broker.start()
    const restartedAt = Date.now()
    const sessionPresent = (await reconnected)[1]
    const reconnectMs = Date.now() - restartedAt
    assert.equal(sessionPresent, "true", "the broker restored the node's session from its persistence file")
    await waitForReadingsBeyond(rig, 4, 20_000)

    const stats = assertDeliveredInOrder(rig)
    const resends = assertResends(proxy)
    assert.ok(resends.length >= 1, "the publishes in flight at the crash were resent")
    assert.ok(createdWhileDown >= 5, `${createdWhileDown} readings queued while the broker was down`)
    assertNoProtocolErrors(rig)
    // The status tells the present: once the backlog is through, a newer status says so, with the
    // connection error of the outage cleared (at most STATUS_MIN_INTERVAL_MS, 10 s, later).
    proxy.delayBrokerToClient(0)
    const statusTopic = `meters/${node.settings.NODE_ID}/status`
    const current = () => {
        const s = recorder.messages.filter(m => m.topic === statusTopic).at(-1)
        return s ? JSON.parse(s.payload) : undefined
    }
    await until(
        "a status with nothing queued and no error",
        () => current()?.state === "online" && current()?.queued === 0 && current()?.error === "",
        40_000
    )
    console.log(
        `# crash: disconnected (${reason}); ${createdWhileDown} readings created while down; reconnected ${reconnectMs} ms after the restart; ` +
            `${stats.readings} readings (seq ${stats.first}..${stats.last}), ${stats.duplicates} duplicates delivered, ` +
            `${resends.length} DUP resends (seq ${resends.map(r => r.seq).join(" ")})`
    )
})

test("connection cut in the middle of a PUBLISH: the reading is resent with DUP and delivered in order", async t => {
    const rig = await startRig(t, "e2e-cut", { READ_MS: 1000, KEEPALIVE_S: 10 }, { proxy: true })
    const { recorder, node } = rig
    const proxy = rig.proxy!
    const sim = node.simulator!
    await recorder.waitFor("5 readings", r => r.readings(READING_SUFFIX).length >= 5, 30_000)
    const reconnected = sim.waitForLine(/mqtt: connected/, 30_000)
    const isPublish = (chunk: Buffer) => chunk[0] >> 4 === 3 && chunk.includes(Buffer.from(READING_SUFFIX))
    let noPublish: NodeJS.Timeout | undefined
    const cut = await Promise.race([
        proxy.cutMidPacket(isPublish),
        new Promise<never>((_, reject) => {
            noPublish = setTimeout(() => reject(new Error("no PUBLISH to cut within 10 s")), 10_000)
        }),
    ]).finally(() => clearTimeout(noPublish))
    await reconnected
    await waitForReadingsBeyond(rig, 4, 20_000)

    const cutReading = sentReadings(proxy).find(s => s.connection === cut.connection && !s.forwarded)
    assert.ok(cutReading, "the proxy recorded the PUBLISH it cut")
    const stats = assertDeliveredInOrder(rig)
    const resends = assertResends(proxy)
    assert.ok(
        resends.some(r => r.seq === cutReading.seq),
        `seq ${cutReading.seq}, cut after ${cut.forwardedBytes} of ${cut.chunkBytes} bytes, was resent with DUP`
    )
    assertNoProtocolErrors(rig)
    console.log(
        `# cut: seq ${cutReading.seq} cut after ${cut.forwardedBytes}/${cut.chunkBytes} bytes; ${stats.readings} readings ` +
            `(seq ${stats.first}..${stats.last}), ${stats.duplicates} duplicates delivered, ${resends.length} DUP resends ` +
            `(seq ${resends.map(r => r.seq).join(" ")})`
    )
})

test("half-open link: detected within 1.5 x keepalive, then delivery resumes with no seq missing", async t => {
    // The smallest keepalive the configuration accepts.
    const KEEPALIVE_S = 5
    const rig = await startRig(t, "e2e-halfopen", { READ_MS: 1000, KEEPALIVE_S }, { proxy: true })
    const { recorder, node } = rig
    const proxy = rig.proxy!
    const sim = node.simulator!
    await recorder.waitFor("5 readings", r => r.readings(READING_SUFFIX).length >= 5, 30_000)
    const disconnected = sim.waitForLine(/mqtt: disconnected: (.*)/, KEEPALIVE_S * 3000)
    const blackholedAt = Date.now()
    proxy.blackhole(true)
    const reason = (await disconnected)[1]
    const detectionMs = Date.now() - blackholedAt
    const reconnected = sim.waitForLine(/mqtt: connected/, 30_000)
    proxy.blackhole(false)
    await reconnected
    await waitForReadingsBeyond(rig, 4, 20_000)

    console.log(
        `# half-open: detected after ${detectionMs} ms (keepalive ${KEEPALIVE_S * 1000} ms, limit ${KEEPALIVE_S * 1500} ms): ${reason}`
    )
    assert.ok(detectionMs <= KEEPALIVE_S * 1500, `detected after ${detectionMs} ms, more than 1.5 x keepalive`)
    assert.match(reason, /PINGRESP|half-open/)
    const stats = assertDeliveredInOrder(rig)
    const resends = assertResends(proxy)
    assert.ok(resends.length >= 1, "readings sent into the dead link were resent")
    assertNoProtocolErrors(rig)
    console.log(
        `# half-open: ${stats.readings} readings (seq ${stats.first}..${stats.last}), ${stats.duplicates} duplicates delivered, ` +
            `${resends.length} DUP resends (seq ${resends.map(r => r.seq).join(" ")})`
    )
})

test("a broker that answers PINGREQ but stops acknowledging: left within 2 x keepalive (20 s), then no seq missing", async t => {
    const KEEPALIVE_S = 5
    const rig = await startRig(t, "e2e-stuck", { READ_MS: 1000, KEEPALIVE_S }, { proxy: true })
    const { recorder, node } = rig
    const proxy = rig.proxy!
    const sim = node.simulator!
    await recorder.waitFor("3 readings", r => r.readings(READING_SUFFIX).length >= 3, 30_000)
    const disconnected = sim.waitForLine(/mqtt: disconnected: (.*)/, 60_000)
    const stuckAt = Date.now()
    proxy.dropPubacks(true)
    const reason = (await disconnected)[1]
    const detectionMs = Date.now() - stuckAt
    const pings = proxy
        .clientPackets("pingreq")
        .filter(p => p.atMs >= stuckAt && p.atMs <= stuckAt + detectionMs).length
    proxy.dropPubacks(false)
    await sim.waitForLine(/mqtt: connected/, 75_000)
    await waitForReadingsBeyond(rig, 4, 20_000)
    console.log(
        `# stuck broker: ${proxy.pubacksDropped} PUBACKs swallowed, ${pings} PINGREQs answered meanwhile, left after ${detectionMs} ms: ${reason}`
    )
    assert.match(reason, /no PUBACK within 20 s although the broker answers/)
    // The first reading after the broker got stuck starts the wait: at most one reading interval
    // (1 s) and a tick later than the bound.
    assert.ok(detectionMs >= 20_000 && detectionMs <= 23_000, `left after ${detectionMs} ms`)
    assert.ok(pings >= 2, "the link looked alive: PINGREQs went out and were answered")
    assertDeliveredInOrder(rig)
    assertNoProtocolErrors(rig)
})

test("bad credentials: the refusal is named, retries are 30 s apart, the password is never printed; the right one connects", async t => {
    const USER = "meter-e2e"
    const PASSWORD = "Wrong-Pa55-7e1f"
    const dir = mkdtempSync(join(tmpdir(), "meternode-passwd-"))
    t.after(() => rmSync(dir, { recursive: true, force: true }))
    const passwordFile = join(dir, "passwd")
    const setPassword = (user: string, password: string, create: boolean) => {
        const args = [...(create ? ["-c"] : []), "-b", passwordFile, user, password]
        const r = spawnSync("mosquitto_passwd", args, { encoding: "utf-8" })
        assert.equal(r.status, 0, `mosquitto_passwd: ${r.stderr}`)
    }
    // The broker knows the node's user with another password than the firmware's. The recorder
    // has a user of its own: Mosquitto disconnects clients whose credentials a reload changed.
    setPassword("recorder", "recorder-pass", true)
    setPassword(USER, "the-right-one", false)
    const rig = await startRig(
        t,
        "e2e-auth",
        { READ_MS: 1000, KEEPALIVE_S: 10, MQTT_USER: USER, MQTT_PASS: PASSWORD },
        {
            broker: {
                extraConfig: ["allow_anonymous false", `password_file ${passwordFile}`],
            },
            proxy: true,
            recorder: { username: "recorder", password: "recorder-pass" },
        }
    )
    const { broker, recorder, node } = rig
    const proxy = rig.proxy!
    const sim = node.simulator!
    const refusal = (await lineSinceBoot(sim, /^mqtt: broker refused the connection: (.*)/, 20_000))[1]
    const delayMs = Number((await lineSinceBoot(sim, /^mqtt: reconnecting in (\d+) ms/, 5000))[1])
    assert.match(refusal, /bad user name or password|not authorized/)
    assert.ok(delayMs >= 30_000, `reconnect delay after a refusal ${delayMs} ms, expected >= 30000`)

    // Give the broker the firmware's password (SIGHUP reloads the password file): the next
    // attempt, no sooner than 30 s after the first, succeeds.
    setPassword(USER, PASSWORD, false)
    process.kill(broker.pid!, "SIGHUP")
    await sim.waitForLine(/mqtt: connected/, 75_000)
    await recorder.waitFor("3 readings", r => r.readings(READING_SUFFIX).length >= 3, 15_000)

    const attempts = proxy.connections.map(c => c.openedAtMs)
    assert.ok(attempts.length >= 2, `${attempts.length} connection attempts`)
    const gapMs = attempts[1] - attempts[0]
    assert.ok(gapMs >= 30_000, `second attempt ${gapMs} ms after the first, expected >= 30000`)
    const leaked = sim.lines.filter(l => l.includes(PASSWORD))
    assert.deepEqual(leaked, [], "the password never appears on the console")
    const stats = assertDeliveredInOrder(rig)
    console.log(
        `# auth: refused (${refusal}); printed delay ${delayMs} ms; attempts ${gapMs} ms apart; ` +
            `then connected and delivered ${stats.readings} readings; ${sim.lines.length} console lines without the password`
    )
})

test("a graceful stop (restart command) sends DISCONNECT and leaves the retained will unfired", async t => {
    const KEEPALIVE_S = 5
    const NODE_ID = "e2e-stop"
    const rig = await startRig(t, NODE_ID, { READ_MS: 1000, KEEPALIVE_S }, { proxy: true })
    const { recorder, node } = rig
    const proxy = rig.proxy!
    const sim = node.simulator!
    const statusTopic = `meters/${NODE_ID}/status`
    const isPacket = (p: RecordedPacket, direction: string, cmd: string, messageId?: number) =>
        p.direction === direction &&
        p.packet.cmd === cmd &&
        (messageId === undefined || p.packet.messageId === messageId)
    await recorder.waitFor("3 readings", r => r.readings(READING_SUFFIX).length >= 3, 30_000)
    // The open connection carries on; the restarted node cannot come back until allowed, so the
    // retained status after the stop can be read after the broker's keepalive would have expired.
    proxy.refuse(true)
    const stopped = sim.waitForLine(/^node: stopped \((.*)\)/, 15_000)
    const sentAt = Date.now()
    await recorder.publish(`meters/${NODE_ID}/cmd/restart`, JSON.stringify({ id: "stop-1" }))
    assert.equal((await stopped)[1], "restart")
    await sleep(KEEPALIVE_S * 1500 + 1000)

    const first = proxy.connections[0]
    const onFirst = proxy.packets.filter(p => p.connection === first.id)
    const lastSent = onFirst.filter(p => p.direction === "client->broker").at(-1)!
    assert.equal(lastSent.packet.cmd, "disconnect", "the last packet the node sent is DISCONNECT")
    assert.ok(lastSent.forwarded, "the DISCONNECT reached the broker")
    const offline = onFirst.findLast(
        p => isPacket(p, "client->broker", "publish") && (p.packet as any).topic === statusTopic
    )!
    assert.deepEqual(JSON.parse((offline.packet as any).payload.toString()), {
        state: "offline",
        reason: "restart",
        boot: 1,
    })
    assert.ok((offline.packet as any).retain, "the offline status is retained")
    const offlineAck = onFirst.find(p => isPacket(p, "broker->client", "puback", offline.packet.messageId))
    assert.ok(offlineAck && offlineAck.atMs <= lastSent.atMs, "the offline status was acknowledged before DISCONNECT")

    assert.ok(
        !recorder.messages.some(m => m.topic === statusTopic && m.payload.includes('"lost"')),
        "the will never fired"
    )
    const late = await new Recorder(rig.broker.url, statusTopic).start()
    try {
        await late.waitFor("the retained status", r => r.messages.length > 0, 5000)
        assert.equal(late.messages[0].retain, true)
        assert.deepEqual(JSON.parse(late.messages[0].payload), {
            state: "offline",
            reason: "restart",
            boot: 1,
        })
    } finally {
        await late.stop()
    }
    const refusedAttempts = proxy.connections.filter(c => c.closeReason === "refused").length

    proxy.refuse(false)
    await recorder.waitFor(
        "online again with the next boot",
        r =>
            r.messages.some(
                m => m.topic === statusTopic && m.atMs >= sentAt && JSON.parse(m.payload).state === "online"
            ),
        75_000
    )
    const online = recorder.messages.find(
        m => m.topic === statusTopic && m.atMs >= sentAt && JSON.parse(m.payload).state === "online"
    )!
    const bootAfter = JSON.parse(online.payload).boot
    assert.ok(bootAfter >= 2, `online again as boot ${bootAfter}`)
    // Delivery goes on after the reconnect: readings of the new boot, and still no will.
    await recorder.waitFor(
        "2 readings of the new boot",
        r => r.readings(READING_SUFFIX).filter(e => e.boot === bootAfter).length >= 2,
        15_000
    )
    assert.ok(
        !recorder.messages.some(m => m.topic === statusTopic && m.payload.includes('"lost"')),
        "the will never fired"
    )

    const command = onFirst.find(
        p => isPacket(p, "broker->client", "publish") && (p.packet as any).topic.endsWith("/cmd/restart")
    )!
    assert.ok(command, "the broker delivered the command")
    const commandAck = onFirst.find(p => isPacket(p, "client->broker", "puback", command.packet.messageId))
    const stopMs = lastSent.atMs - command.atMs
    const runs = sim.lines.filter(l => /^command: restart: accepted/.test(l)).length
    console.log(
        `# graceful stop: DISCONNECT ${stopMs} ms after the command arrived, ${lastSent.atMs - offlineAck!.atMs} ms ` +
            `after the offline status's PUBACK; retained status still offline (restart) ${KEEPALIVE_S * 1500 + 1000} ms ` +
            `later; ${refusedAttempts} refused reconnects meanwhile; first online again as boot ${bootAfter}; command PUBACK ` +
            `${commandAck ? "sent" : "never sent"}; command ran ${runs} time(s)`
    )

    // The stop runs in a fiber of its own: the command is acknowledged before the node goes, so the
    // persistent session does not redeliver it after the restart (which would restart again), and
    // the offline status's PUBACK is read as soon as it arrives.
    await t.test("the restart command is acknowledged before the node stops", () => {
        assert.ok(commandAck && commandAck.atMs <= lastSent.atMs, "a PUBACK for the command precedes DISCONNECT")
    })
    await t.test("the restart command runs once", () => {
        assert.equal(runs, 1, "an unacknowledged command is redelivered to the persistent session and runs again")
    })
    await t.test("the stop does not wait out its timeout once the offline status is acknowledged", () => {
        assert.ok(lastSent.atMs - offlineAck!.atMs < 1000, "DISCONNECT soon after the offline status's PUBACK")
    })
})

test("client take-over: another client with the same id is reported by name and does not make the node flap", async t => {
    const rig = await startRig(t, "e2e-takeover", { READ_MS: 1000, KEEPALIVE_S: 10 })
    const { broker, recorder, node } = rig
    const sim = node.simulator!
    await recorder.waitFor("2 readings", r => r.readings(READING_SUFFIX).length >= 2, 30_000)
    // A second device configured with the same node id: it reconnects whenever it is kicked out.
    const impostor = mqtt.connect(broker.url, { clientId: "meternode-e2e-takeover", reconnectPeriod: 300, clean: true })
    t.after(() => new Promise<void>(r => impostor.end(true, {}, () => r())))
    const named = await sim.waitForLine(/^mqtt: client take-over: .*meternode-e2e-takeover/, 30_000)
    const namedAt = Date.now()
    // The delay is printed right after the take-over line, possibly in the same output chunk.
    let delay: RegExpMatchArray | null = null
    for (let waited = 0; !delay && waited < 5000; waited += 50) {
        const index = sim.lines.lastIndexOf(named[0])
        delay =
            sim.lines
                .slice(index)
                .map(l => l.match(/^mqtt: reconnecting in (\d+) ms/))
                .find(m => m) ?? null
        if (!delay) await sleep(50)
    }
    assert.ok(delay, "a reconnect delay is printed after the take-over")
    assert.ok(Number(delay[1]) >= 30_000, `after a take-over the node waits ${delay[1]} ms, at least 30 s`)
    const connectsBefore = sim.lines.filter(l => /^mqtt: connected/.test(l)).length
    // The impostor leaves; the node comes back on its own and delivers again.
    await new Promise<void>(r => impostor.end(true, {}, () => r()))
    await sim.waitForLine(/^mqtt: connected/, 70_000)
    const connectsDuringTakeover = connectsBefore
    const readingsBefore = recorder.readings(READING_SUFFIX).length
    await recorder.waitFor("readings again", r => r.readings(READING_SUFFIX).length > readingsBefore, 10_000)
    console.log(
        `# take-over named after ${connectsDuringTakeover} connections; next attempt ${delay[1]} ms later; back ${Math.round((Date.now() - namedAt) / 1000)} s after it was named: ${named[0].slice(0, 80)}...`
    )
    assertDeliveredInOrder(rig)
})

test("a hostile broker: 10,000 malformed packets over reconnects, no crash, the status does not pile up, no reading lost", async t => {
    const rig = await startRig(
        t,
        "e2e-hostile",
        { READ_MS: 1000, KEEPALIVE_S: 5, FLUSH_S: 5 },
        { proxy: true, recorder: { persistentSession: true } }
    )
    const { proxy, recorder, node } = rig
    await recorder.waitFor("3 readings", r => r.readings(READING_SUFFIX).length >= 3, 30_000)
    let seed = 11
    const hostile = await new HostileBroker(250, () => (seed = (seed * 48271) % 2147483647) / 2147483647).start()
    t.after(() => hostile.stop())
    const real = proxy!.options.targetPort
    proxy!.options.targetPort = hostile.port
    proxy!.cutAll()
    const deadline = Date.now() + 240_000
    while (hostile.packetsSent < 10_000 && Date.now() < deadline) await sleep(250)
    proxy!.options.targetPort = real
    proxy!.cutAll()
    assert.ok(hostile.packetsSent >= 10_000, `${hostile.packetsSent} malformed packets sent`)
    // Every CONNACK from the hostile broker was followed by a birth status that never got its
    // PUBACK: the node must not queue one per connection.
    await waitForReadingsBeyond(rig, 3, 60_000)
    const lines = node.simulator!.lines
    assert.deepEqual(
        lines.filter(l => /Exception|OutOfMemory|PANIC/.test(l)),
        [],
        "no exception in the firmware"
    )
    assert.equal(lines.filter(l => /^node: boot \d+, next seq/.test(l)).length, 1, "the program never restarted")
    const errors = lines.filter(l => l.startsWith("mqtt: protocol error from broker:"))
    assert.ok(errors.length >= 10, `${errors.length} protocol errors named`)
    assertDeliveredInOrder(rig)
    const births = recorder.messages.filter(m => m.topic.endsWith("/status") && m.payload.includes('"online"'))
    console.log(
        `# hostile broker: ${hostile.packetsSent} malformed packets over ${hostile.connections} connections, ${errors.length} protocol errors named, e.g. "${errors[0]}"; ${births.length} birth statuses delivered`
    )
})
