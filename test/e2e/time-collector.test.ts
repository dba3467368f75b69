// Wall-clock time and the reference collector, end to end: the firmware in the simulator, a real
// broker, and the collector (in this process) as the time source and CSV writer.
import { after, before, describe, test } from "node:test"
import assert from "node:assert/strict"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Broker } from "../../devs/lib/broker"
import { sleep } from "../../devs/lib/process"
import { Collector, COMBINED_HEADER, OED_HEADER } from "../../collector/collector"
import { MEMORY, openDatabase, type Database } from "../../collector/db"
import { NodeUnderTest, readingSeqs, Recorder, until } from "./helpers"

const READ_MS = 1000
/**
 * The collector session has three parts, each until this many readings were collected: before
 * the broker restart, between it and the power cut, and the boot after the cut.
 */
const PART_READINGS = Number(process.env.E2E_COLLECT_READINGS ?? 50)

describe("wall-clock time", () => {
    const NODE = "e2e-time"
    let broker: Broker
    let recorder: Recorder
    let collector: Collector
    let database: Database
    let node: NodeUnderTest
    const dir = mkdtempSync(join(tmpdir(), "meternode-time-"))

    before(async () => {
        broker = await new Broker({ persistence: false }).start()
        console.log(`# broker: ${broker.describe()}`)
        node = new NodeUnderTest({ MQTT_URL: broker.url, NODE_ID: NODE, READ_MS, KEEPALIVE_S: 10, SIM_SEED: 5 })
        await node.build()
        // Opened beforehand, so the collector is the time source as soon as the broker is back.
        database = await openDatabase({ dataDir: MEMORY })
    })

    after(async () => {
        await node?.dispose()
        await collector?.stop()
        await database?.close()
        await recorder?.stop()
        await broker?.dispose()
        rmSync(dir, { recursive: true, force: true })
    })

    test("readings queued before the time arrived and readings after it carry UTC intervals within 1 s of the collector's clock", async () => {
        // The node boots with the broker down: its first readings are taken with no clock.
        await broker.stop()
        const bootMs = Date.now()
        const sim = await node.start(true)
        // 8: the ones that end 2 s before the first delivery (the test's margin) are at least 4,
        // however soon the node reconnects and the time arrives.
        await until("8 readings taken without the broker", () => readingSeqs(sim.lines).length >= 8, 30_000)
        await broker.start()
        // The subscriber first: the node holds its readings for the time (3 s at most) once it
        // connects, and the collector publishes the time as soon as it is connected.
        recorder = await new Recorder(broker.url, `meters/${NODE}/#`).start()
        collector = await new Collector({
            broker: broker.url,
            out: join(dir, "time.csv"),
            timeEveryS: 2,
            database,
            log: () => {},
        }).start()
        await recorder.waitFor(
            "readings for 10 s after the node connected",
            r => {
                const at = r.readings().map(e => e.atMs)
                return at.length > 0 && Math.max(...at) - Math.min(...at) >= 10_000
            },
            90_000
        )
        const readings = recorder.readings()
        assert.ok(
            readings.every(r => r.time === "utc_ms"),
            `every reading in UTC: ${[...new Set(readings.map(r => r.time))]}`
        )
        for (let i = 1; i < readings.length; i++) {
            assert.equal(readings[i].seq, readings[i - 1].seq + 1)
            assert.equal(readings[i].start, readings[i - 1].end, "contiguous across the moment the time arrived")
            const lengthMs = readings[i].end - readings[i].start
            // A reading that starts late (the loop waited on a flash write) ends at the next whole second.
            assert.ok(
                lengthMs >= READ_MS && lengthMs % 1000 === 0,
                `seq ${readings[i].seq}: ${lengthMs} ms, whole seconds`
            )
        }
        const long = readings.filter(r => r.end - r.start > READ_MS).map(r => `seq ${r.seq}: ${r.end - r.start} ms`)
        if (long.length) console.log(`# longer readings: ${long.join(", ")}`)
        // Live: taken after the backlog went out (it goes out within a moment of the connection).
        const firstAt = Math.min(...readings.map(r => r.atMs))
        const queued = readings.filter(r => r.end < firstAt - 2000)
        assert.ok(queued.length >= 4, `${queued.length} readings were taken before the node had the time`)
        // The first reading starts at boot: the simulator started between bootMs and a few seconds later.
        assert.ok(
            readings[0].start >= bootMs - 1000 && readings[0].start <= bootMs + 5000,
            `first start ${readings[0].start - bootMs} ms after the simulator was started`
        )
        // A reading published as it is taken reaches the broker within a moment of its end.
        const live = readings.filter(r => r.atMs > firstAt + 4000)
        for (const r of live)
            assert.ok(
                Math.abs(r.atMs - r.end) <= 1000,
                `seq ${r.seq} ended ${r.atMs - r.end} ms before the collector received it`
            )
        console.log(
            `# ${queued.length} readings corrected after the time arrived, ${live.length} live; lag ${live.map(r => r.atMs - r.end).join(" ")} ms`
        )
        await recorder.waitFor(
            "a status with the clock set",
            r => r.messages.some(m => m.topic.endsWith("/status") && m.payload.includes('"clock":"set"')),
            10_000
        )
    })

    test("the time command reports the clock; a malformed one is refused and changes nothing", async () => {
        await recorder.publish(`meters/${NODE}/cmd/time`, JSON.stringify({ id: "q1" }))
        await recorder.publish(`meters/${NODE}/cmd/time`, JSON.stringify({ id: "bad", utc_ms: "noon" }))
        await recorder.publish(`meters/${NODE}/cmd/time`, JSON.stringify({ id: "q2" }))
        const replies = () =>
            recorder.messages
                .filter(m => m.topic === `meters/${NODE}/reply/time`)
                .map(m => ({ ...JSON.parse(m.payload), atMs: m.atMs }))
        await recorder.waitFor("three time replies", () => replies().length >= 3, 15_000)
        const [q1, bad, q2] = ["q1", "bad", "q2"].map(id => replies().find(r => r.id === id))
        assert.equal(q1.ok, true)
        assert.equal(q1.clock, "set")
        assert.ok(Math.abs(q1.utc_ms - q1.atMs) <= 1000, `node clock ${q1.utc_ms - q1.atMs} ms off`)
        assert.equal(bad.ok, false)
        assert.match(bad.error, /utc_ms/)
        assert.ok(Math.abs(q2.utc_ms - q2.atMs) <= 1000, "unchanged by the malformed command")
        // The status command answers with the status it publishes.
        await recorder.publish(`meters/${NODE}/cmd/status`, JSON.stringify({ id: "s1" }))
        await recorder.waitFor(
            "a status reply",
            r => r.messages.some(m => m.topic === `meters/${NODE}/reply/status`),
            15_000
        )
        const status = JSON.parse(recorder.messages.find(m => m.topic === `meters/${NODE}/reply/status`)!.payload)
        assert.equal(status.id, "s1")
        assert.equal(status.status.state, "online")
        assert.equal(status.status.clock, "set")
    })
})

describe("replay", () => {
    const NODE = "e2e-replay"
    let broker: Broker
    let recorder: Recorder
    let collector: Collector
    let node: NodeUnderTest
    const dir = mkdtempSync(join(tmpdir(), "meternode-replay-"))

    before(async () => {
        broker = await new Broker({ persistence: false }).start()
        console.log(`# broker: ${broker.describe()}`)
        collector = await new Collector({
            broker: broker.url,
            out: join(dir, "r.csv"),
            timeEveryS: 2,
            clientId: `replay-${process.pid}`,
            dataDir: MEMORY,
            log: () => {},
        }).start()
        recorder = await new Recorder(broker.url, `meters/${NODE}/#`).start()
        node = new NodeUnderTest({
            MQTT_URL: broker.url,
            NODE_ID: NODE,
            READ_MS,
            KEEPALIVE_S: 10,
            SIM_SEED: 11,
            HISTORY_BYTES: 2048,
        })
        await node.start(true)
    })

    after(async () => {
        await node?.dispose()
        await collector?.stop()
        await recorder?.stop()
        await broker?.dispose()
        rmSync(dir, { recursive: true, force: true })
    })

    const replies = () =>
        recorder.messages.filter(m => m.topic === `meters/${NODE}/reply/replay`).map(m => JSON.parse(m.payload))
    const replayed = (since: number) =>
        recorder.messages
            .filter(m => m.topic === `meters/${NODE}/main/replay` && m.atMs >= since)
            .flatMap(m => {
                const body = JSON.parse(m.payload)
                assert.equal(body.replay, true, "flagged as historical")
                return body.readings
            })

    test("replay of a 24-hour range returns exactly the history held for it; a sub-range exactly its readings", async () => {
        await recorder.waitFor("30 readings", r => r.readings().length >= 30, 90_000)
        const live = recorder.readings()
        const now = Date.now()
        const sentAt = Date.now()
        await recorder.publish(
            `meters/${NODE}/cmd/replay`,
            JSON.stringify({ id: "day", from: now - 86_400_000, to: now })
        )
        await recorder.waitFor("the replay's reply", () => replies().some(r => r.id === "day"), 60_000)
        const reply = replies().find(r => r.id === "day")
        assert.equal(reply.ok, true, JSON.stringify(reply))
        const day = replayed(sentAt)
        assert.equal(day.length, reply.count)
        // The history held: every reading taken since boot that overlaps the range, up to the
        // newest the node had when the replay ran (the one in progress at `now` may have ended by then).
        const bySeq = new Map(recorder.readings().map(r => [r.seq, r]))
        const maxSeq = Math.max(...day.map((r: any) => r.seq))
        const expected = recorder.readings().filter(r => r.seq <= maxSeq && r.start < now)
        assert.ok(maxSeq >= live.at(-1).seq, "nothing delivered before the request is missing")
        assert.deepEqual(
            day.map((r: any) => r.seq),
            expected.map(r => r.seq),
            "the same readings, in order"
        )
        for (const r of day) {
            const l = bySeq.get(r.seq)!
            assert.deepEqual(
                [r.start, r.end, r.delta, r.total],
                [l.start, l.end, l.delta, l.total],
                `seq ${r.seq} as delivered live`
            )
        }
        assert.ok(
            day.length >= live.length - 2,
            `${day.length} replayed of ${live.length} delivered before the request`
        )
        // A five-second range in the middle: the readings overlapping it, and no other.
        const mid = live[Math.floor(live.length / 2)]
        const from = mid.start
        const to = mid.start + 5000
        const subAt = Date.now()
        await recorder.publish(`meters/${NODE}/cmd/replay`, JSON.stringify({ id: "five", from, to }))
        await recorder.waitFor("the sub-range reply", () => replies().some(r => r.id === "five"), 30_000)
        const five = replayed(subAt)
        assert.deepEqual(
            five.map((r: any) => r.seq),
            live.filter(r => r.start < to && r.end > from).map(r => r.seq)
        )
        console.log(
            `# replay: ${day.length} readings in ${reply.messages} messages for the 24-hour range; ${five.length} for 5 s`
        )
    })

    test("a malformed replay is refused and changes nothing", async () => {
        const before = recorder.readings().length
        await recorder.publish(`meters/${NODE}/cmd/replay`, JSON.stringify({ id: "bad1", from: "yesterday", to: 5 }))
        await recorder.publish(`meters/${NODE}/cmd/replay`, JSON.stringify({ id: "bad2", from: 10, to: 5 }))
        await recorder.publish(
            `meters/${NODE}/cmd/replay`,
            JSON.stringify({ id: "bad3", from: 1, to: 5, meter: "water" })
        )
        await recorder.waitFor(
            "three refusals",
            () => ["bad1", "bad2", "bad3"].every(id => replies().some(r => r.id === id)),
            15_000
        )
        for (const id of ["bad1", "bad2", "bad3"]) assert.equal(replies().find(r => r.id === id).ok, false)
        assert.match(replies().find(r => r.id === "bad3").error, /unknown meter water/)
        await recorder.waitFor("readings continuing", r => r.readings().length >= before + 3, 15_000)
        const seqs = recorder.readings().map(r => r.seq)
        for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1] + 1, "same boot, no seq skipped")
        // The collector took the replayed readings as the duplicates they are.
        assert.ok(collector.duplicates > 0)
    })
})

describe("reference collector", () => {
    const NODE = "e2e-collect"
    let broker: Broker
    let collector: Collector | undefined
    let node: NodeUnderTest
    const dir = mkdtempSync(join(tmpdir(), "meternode-collect-"))
    const out = join(dir, "readings.csv")

    before(async () => {
        broker = await new Broker({ persistence: true }).start()
        console.log(`# broker: ${broker.describe()}`)
        node = new NodeUnderTest({
            MQTT_URL: broker.url,
            NODE_ID: NODE,
            READ_MS,
            KEEPALIVE_S: 10,
            SIM_SEED: 9,
            FLUSH_S: 5,
        })
        await node.build()
    })

    after(async () => {
        await node?.dispose()
        await collector?.stop()
        await broker?.dispose()
        rmSync(dir, { recursive: true, force: true })
    })

    test(`a session of ${3 * PART_READINGS} readings with a broker restart and a power cut: CSV without duplicates, energy adding up apart from reported gaps`, async () => {
        collector = await new Collector({
            broker: broker.url,
            out,
            timeEveryS: 2,
            clientId: `collector-${process.pid}`,
            dataDir: MEMORY,
            log: () => {},
        }).start()
        const collected = async (boot?: number) =>
            (await collector!.rows()).filter(
                r => r.node === NODE && !r.flags.includes("gap") && (boot === undefined || r.boot === boot)
            ).length
        const lostStatuses = () => (collector!.statuses.get(NODE) ?? []).filter(s => s.reason === "lost").length
        const sim = await node.start(true)
        await sim.waitForLine(/^node: boot/, 30_000)
        const startMs = Date.now()
        const at = () => `${Math.round((Date.now() - startMs) / 1000)} s`
        await until(
            `${PART_READINGS} readings collected`,
            async () => (await collected()) >= PART_READINGS,
            180_000,
            500
        )
        await broker.restart(5000)
        console.log(`# broker restarted at ${at()}`)
        const afterRestart = await collected()
        await until(
            `${PART_READINGS} more readings after the broker restart`,
            async () => (await collected()) >= afterRestart + PART_READINGS,
            180_000,
            500
        )
        await node.kill()
        // The power cut lasts 3 s.
        await sleep(3000)
        await node.start()
        console.log(`# power cut at ${at()}`)
        await until(
            `${PART_READINGS} readings of boot 2`,
            async () => (await collected(2)) >= PART_READINGS,
            180_000,
            500
        )
        const lostBefore = lostStatuses()
        await node.kill()
        const sessionS = (Date.now() - startMs) / 1000
        // The broker publishes the node's will once its connection is gone, after everything the
        // node published on it, and the collector stores messages in order: with the will stored,
        // so is every reading the broker took.
        await until("the will of the last boot", () => lostStatuses() > lostBefore, 30_000)
        const rows = await collector!.rows()
        const stopped = collector!
        collector = undefined
        // Stopping writes the database out as CSV files.
        await stopped.stop()

        const lines = readFileSync(out, "utf-8").trim().split("\n")
        assert.equal(lines[0], COMBINED_HEADER)
        const keys = rows.map(r => `${r.node}/${r.meter}/${r.seq}`)
        assert.equal(new Set(keys).size, keys.length, "no (node, meter, seq) twice")
        assert.equal(lines.length - 1, rows.length, "the file holds exactly the rows collected")
        const readings = rows.filter(r => !r.flags.includes("gap")).sort((a, b) => a.seq - b.seq)
        const gaps = rows.filter(r => r.flags.includes("gap"))
        assert.ok(readings.length >= sessionS * 0.8, `${readings.length} readings in ${sessionS.toFixed(0)} s`)
        assert.ok(gaps.length >= 1, "the power cut is reported as a gap")
        // Energy: between gaps, the deltas add up to the change of the meter's total, to the mWh.
        let runStart = 0
        const gapSeqs = gaps.map(g => g.seq)
        let runs = 0
        for (let i = 1; i <= readings.length; i++) {
            const endsRun =
                i === readings.length ||
                gapSeqs.some(g => g > readings[i - 1].seq && g < readings[i].seq) ||
                readings[i].seq !== readings[i - 1].seq + 1
            if (!endsRun) continue
            const run = readings.slice(runStart, i)
            const sum = run.reduce((s, r) => s + r.deltaWh!, 0)
            const change = run[run.length - 1].totalWh! - (run[0].totalWh! - run[0].deltaWh!)
            assert.ok(
                Math.abs(sum - change) < 0.001 * run.length,
                `seq ${run[0].seq}..${run.at(-1)!.seq}: deltas ${sum} Wh, total changed ${change} Wh`
            )
            runs++
            runStart = i
        }
        const missing = readings.at(-1)!.seq - readings[0].seq + 1 - readings.length - gaps.length
        console.log(
            `# ${readings.length} readings, ${gaps.length} gaps, ${runs} runs, ${missing} seqs inside reported gaps, ${stopped.duplicates} duplicates skipped`
        )
        // Open Energy Dashboard's file: UTC readings, contiguous within a boot.
        const oed = readFileSync(stopped.oedPath(NODE, "main"), "utf-8").trim().split("\n")
        assert.equal(oed[0], OED_HEADER)
        const oedRows = oed.slice(1).map(l => l.split(","))
        assert.equal(oedRows.length, readings.filter(r => r.time === "utc_ms").length)
        for (const [reading, start, end] of oedRows) {
            assert.match(start, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/)
            assert.ok(end > start, `${start} .. ${end}`)
            assert.ok(Number.isFinite(Number(reading)))
        }
        assert.ok(existsSync(out))
    })
})
