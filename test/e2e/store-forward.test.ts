// Store and forward, end to end: the firmware in the simulator keeps readings in its flash queue
// while the broker is away, across power cuts (SIGKILL of the simulator), and delivers them all
// once the broker is back, in order, with the power cuts reported as gaps.
import { test, TestContext } from "node:test"
import assert from "node:assert/strict"
import { Broker } from "../../devs/lib/broker"
import { sleep } from "../../devs/lib/process"
import type { Settings } from "../../devs/lib/simulator"
import { assertFirstDeliveriesInOrder, moments, NodeUnderTest, readingSeqs, Recorder, until } from "./helpers"

const READING_SUFFIX = "/main/reading"

async function startRig(t: TestContext, nodeId: string, settings: Settings) {
    const broker = new Broker({ persistence: true })
    t.after(() => broker.dispose())
    await broker.start()
    console.log(`# broker: ${broker.describe()}`)
    const recorder = new Recorder(broker.url, `meters/${nodeId}/#`, { persistentSession: true })
    t.after(() => recorder.stop())
    await recorder.start()
    const node = new NodeUnderTest({
        MQTT_URL: broker.url,
        NODE_ID: nodeId,
        SIM_SEED: 11,
        KEEPALIVE_S: 10,
        READ_MS: 1000,
        ...settings,
    })
    t.after(() => node.dispose())
    await node.build()
    return { broker, recorder, node }
}

/** The last "flash: safe up to seq N" on the console: every reading up to N is in flash. */
function lastSafeSeq(lines: string[]) {
    let safe = -1
    for (const line of lines) {
        const m = line.match(/^flash: safe up to seq (\d+)/)
        if (m) safe = Number(m[1])
    }
    return safe
}

/**
 * The outage lasts until the firmware has written its queue to flash this many times while the
 * broker was away. At the default FLUSH_S (600 s) and a reading a second, what writes it is the
 * RAM stage's limit: two closed blocks waiting (about 150 readings each at this load), about every
 * 300 s. The power cuts below write it every FLUSH_S (5 s) onto blocks already in flash.
 * E2E_OUTAGE_WRITES=2: a 10-minute outage, about 600 readings, four blocks.
 */
const OUTAGE_WRITES = Math.max(1, Number(process.env.E2E_OUTAGE_WRITES ?? 1))
/** "reconnecting in N ms (attempt K)": from attempt 7 on, the delay is drawn from the 60 s cap. */
const CAPPED_ATTEMPT = 7

test(`broker down at one reading a second until the backlog was written to flash${OUTAGE_WRITES > 1 ? ` ${OUTAGE_WRITES} times` : ""}, past the reconnect backoff's cap: every reading delivered, in order, no seq reused`, async t => {
    const { broker, recorder, node } = await startRig(t, "e2e-outage", {})
    const sim = await node.start(true)
    await recorder.waitFor("3 readings", r => r.readings(READING_SUFFIX).length >= 3, 30_000)
    const disconnected = sim.waitForLine(/mqtt: disconnected/, 10_000)
    await broker.stop()
    await disconnected
    const downAt = Date.now()
    const downFrom = sim.lines.length
    const sinceDown = () => sim.lines.slice(downFrom)
    const writes = () => sinceDown().filter(l => l.startsWith("flash: safe up to seq"))
    const highestAttempt = () =>
        Math.max(
            0,
            ...sinceDown().map(l => Number(l.match(/^mqtt: reconnecting in \d+ ms \(attempt (\d+)\)/)?.[1] ?? 0))
        )
    // The outage's length is what happens in it, not a number of seconds.
    await until(
        `${OUTAGE_WRITES} writes of the queue to flash and a reconnect delay drawn at the backoff's cap`,
        () => writes().length >= OUTAGE_WRITES && highestAttempt() >= CAPPED_ATTEMPT,
        // About 300 s per write.
        OUTAGE_WRITES * 480_000
    )
    const createdWhileDown = readingSeqs(sinceDown()).length
    const writtenWhileDown = writes().map(l => l.replace("flash: safe up to ", ""))
    await broker.start()
    const upAt = Date.now()
    const created = readingSeqs(sim.lines)
    const target = created[created.length - 1]
    await recorder.waitFor(
        `every reading up to seq ${target}`,
        r => {
            const seen = new Set(r.readings(READING_SUFFIX).map(x => x.seq))
            return created.every(seq => seen.has(seq))
        },
        // The reconnect waits out the backoff (at most 60 s), then the backlog drains.
        120_000
    )
    const drainedMs = Date.now() - upAt
    const { seen, duplicates } = assertFirstDeliveriesInOrder(
        recorder.readings(READING_SUFFIX).map(r => r.seq as number)
    )
    for (const seq of created) assert.ok(seen.has(seq), `seq ${seq} delivered`)
    const all = recorder.readings(READING_SUFFIX)
    assert.ok(
        all.every(r => r.boot === 1),
        "no reboot: one boot, one seq range"
    )
    assert.equal(recorder.gaps(READING_SUFFIX).length, 0, "no gap without a power cut")
    // A long outage goes through flash: blocks fill up and are written.
    assert.ok(
        writtenWhileDown.length >= OUTAGE_WRITES,
        `the queue was written ${writtenWhileDown.length} times while the broker was away`
    )
    const firsts = new Map<number, any>()
    for (const r of all) if (!firsts.has(r.seq)) firsts.set(r.seq, r)
    const ordered = [...firsts.values()].sort((a, b) => a.seq - b.seq)
    for (let i = 1; i < ordered.length; i++) {
        assert.equal(ordered[i].start, ordered[i - 1].end, `intervals contiguous at seq ${ordered[i].seq}`)
        assert.equal(
            Math.round((ordered[i].total - ordered[i - 1].total) * 1000),
            Math.round(ordered[i].delta * 1000),
            `total continues at seq ${ordered[i].seq}`
        )
    }
    const messages = recorder.messages.filter(m => m.topic.endsWith(READING_SUFFIX))
    const largest = Math.max(...messages.map(m => Buffer.byteLength(m.payload)))
    assert.ok(largest < 1024, `largest message ${largest} bytes`)
    console.log(
        `# outage: ${Math.round((upAt - downAt) / 1000)} s down, ${createdWhileDown} readings taken meanwhile, ` +
            `written to flash ${writtenWhileDown.length} times (${writtenWhileDown.join(", ")}), reconnect attempt ${highestAttempt()} reached; after the broker came back, ` +
            `${created.length} readings (seq ${created[0]}..${target}) all delivered within ${drainedMs} ms ` +
            `(reconnect backoff included), ${messages.length} messages (largest ${largest} bytes), ${duplicates} duplicates`
    )
})

test("power cut at five random moments while offline: what was flushed is delivered, the loss is within FLUSH_S, each cut is a gap", async t => {
    const FLUSH_S = 5
    const { broker, recorder, node } = await startRig(t, "e2e-powercut", { FLUSH_S })
    let sim = await node.start(true)
    await recorder.waitFor("3 readings", r => r.readings(READING_SUFFIX).length >= 3, 30_000)
    const disconnected = sim.waitForLine(/mqtt: disconnected/, 10_000)
    await broker.stop()
    await disconnected
    const when = moments(20261122, 4000, 16000)
    const cuts: { boot: number; created: number[]; safe: number; afterMs: number }[] = []
    for (let i = 0; i < 5; i++) {
        const afterMs = when.next().value as number
        await sleep(afterMs)
        const lines = [...sim.lines]
        await node.kill()
        const boot = Number(lines.find(l => /^node: boot \d+, next seq/.test(l))!.match(/^node: boot (\d+)/)![1])
        cuts.push({ boot, created: readingSeqs(lines), safe: lastSafeSeq(lines), afterMs })
        sim = await node.start(false)
        await sim.waitForLine(/^node: boot/, 30_000)
    }
    // The last boot takes a few readings offline too.
    const lastBootFrom = sim.lines.length
    await until("3 readings of the last boot", () => readingSeqs(sim.lines.slice(lastBootFrom)).length >= 3, 30_000)
    await broker.start()
    // Everything the last boot created so far, and every cut's flushed readings and gap.
    const lastCreated = readingSeqs(sim.lines)
    await recorder.waitFor(
        "the flushed readings of every cut, and its gap",
        r => {
            const seen = new Set(r.readings(READING_SUFFIX).map(x => x.seq))
            const gapBoots = new Set(r.gaps(READING_SUFFIX).map(g => g.boot))
            return (
                cuts.every(c => c.created.every(seq => seq > c.safe || seen.has(seq)) && gapBoots.has(c.boot)) &&
                lastCreated.every(seq => seen.has(seq))
            )
        },
        120_000
    )
    assertFirstDeliveriesInOrder(recorder.readings(READING_SUFFIX).map(r => r.seq as number))
    const seen = new Set(recorder.readings(READING_SUFFIX).map(r => r.seq))
    const gaps = recorder.gaps(READING_SUFFIX)
    const report: string[] = []
    for (const c of cuts) {
        const lost = c.created.filter(seq => !seen.has(seq))
        assert.ok(c.safe >= 0 || c.created.length <= FLUSH_S + 1, `boot ${c.boot}: something was flushed`)
        for (const seq of lost)
            assert.ok(seq > c.safe, `boot ${c.boot}: seq ${seq} was flushed (safe up to ${c.safe}) but not delivered`)
        // Readings are flushed every FLUSH_S s: at most that many (and the one being taken) are lost.
        assert.ok(lost.length <= FLUSH_S + 1, `boot ${c.boot}: ${lost.length} readings lost, bound ${FLUSH_S + 1}`)
        const gap = gaps.find(g => g.boot === c.boot)
        assert.ok(gap, `boot ${c.boot} is reported as a gap`)
        assert.ok(
            gap.after_seq >= c.safe,
            `the gap of boot ${c.boot} starts after seq ${gap.after_seq}, at or after the last safe seq ${c.safe}`
        )
        for (const seq of lost)
            assert.ok(seq > gap.after_seq, `lost seq ${seq} is inside the gap after ${gap.after_seq}`)
        report.push(
            `boot ${c.boot} cut after ${(c.afterMs / 1000).toFixed(1)} s: ${c.created.length} taken, ${lost.length} lost, gap after seq ${gap.after_seq}`
        )
    }
    const all = recorder.readings(READING_SUFFIX).map(r => r.seq)
    const bootsOf = new Map<number, number>()
    for (const r of recorder.readings(READING_SUFFIX)) {
        const b = bootsOf.get(r.seq)
        assert.ok(b === undefined || b === r.boot, `seq ${r.seq} used in boots ${b} and ${r.boot}`)
        bootsOf.set(r.seq, r.boot)
    }
    console.log(`# power cuts (FLUSH_S ${FLUSH_S}): ${report.join("; ")}; ${new Set(all).size} readings delivered`)
})
