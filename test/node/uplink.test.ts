// Store and forward under random interleavings: the uplink (src/uplink.ts) over the durable queue
// on the model of the Settings store, with a store that answers after a random number of event
// loop turns and a broker that acknowledges at random moments and drops the link at others.
// Whatever the schedule, every reading taken must reach the broker (at least once), oldest first,
// with its energy exact, and leave the queue only once acknowledged.
import { energyLabel } from "../../src/reading"
import { describe, test } from "node:test"
import assert from "node:assert/strict"
import { FakeSettingsStore } from "../fixtures/fake-kv"
import { queueStats } from "../fixtures/queue-stats"
import { KeyValueStore } from "../../src/storage/kv"
import { DurableQueue } from "../../src/storage/durable-queue"
import { energyRecord, ReadingRecord } from "../../src/storage/records"
import { SimulatedEnergyMeter } from "../../src/meters/simulated"
import { MAX_MESSAGE_BYTES_OUT, REFUSED_RETRY_MS, Uplink, UplinkClient } from "../../src/uplink"

class Random {
    constructor(private state: number) {}
    next() {
        this.state = (this.state * 48271) % 2147483647
        return this.state / 2147483647
    }
    below(n: number) {
        return Math.floor(this.next() * n)
    }
}

const turn = () => new Promise<void>(resolve => setImmediate(resolve))

async function turns(n: number) {
    for (let i = 0; i < n; i++) await turn()
}

/** The Settings store model, answering after 0..3 event loop turns so that fibers interleave. */
class SlowStore implements KeyValueStore {
    constructor(
        readonly inner: FakeSettingsStore,
        private readonly random: Random
    ) {}
    async get(key: string) {
        await turns(this.random.below(4))
        return await this.inner.get(key)
    }
    async set(key: string, value: Buffer) {
        await turns(this.random.below(4))
        await this.inner.set(key, value)
    }
}

interface Sent {
    token: number
    payload: string
    acked: boolean
}

/** The client and the broker in one: it keeps what was published until the test acknowledges it. */
class FakeBroker implements UplinkClient {
    connected = true
    sent: Sent[] = []
    /** Payloads in the order the broker received them, resends included. */
    received: string[] = []
    private nextToken = 1
    constructor(private readonly random: Random) {}
    isConnected() {
        return this.connected
    }
    publish(_topic: string, payload: Buffer, qos: number) {
        assert.equal(qos, 1)
        assert.ok(payload.length <= MAX_MESSAGE_BYTES_OUT, `message of ${payload.length} bytes`)
        const s = { token: this.nextToken++, payload: payload.toString(), acked: false }
        this.sent.push(s)
        if (this.connected) this.received.push(s.payload)
        return s.token
    }
    /** The oldest unacknowledged message, as the session would resend it after a reconnect. */
    oldestUnacked() {
        return this.sent.find(s => !s.acked)
    }
}

/** `outagePerMille`: chance per step that the link goes down or comes back; low = long outages. */
async function runSchedule(seed: number, steps: number, budgetBytes: number, outagePerMille: number) {
    const random = new Random(seed)
    const store = new SlowStore(new FakeSettingsStore(8192, 2048), random)
    const queue = new DurableQueue(store, budgetBytes)
    assert.equal(await queue.open(), "")
    const broker = new FakeBroker(random)
    const errors: string[] = []
    /** What onAcknowledged was told, each checked against what the broker had acknowledged then. */
    const told: number[] = []
    const ackedSeqs = () => {
        let highest = 0
        for (const m of broker.sent)
            if (m.acked) for (const e of JSON.parse(m.payload).readings) highest = Math.max(highest, e.seq)
        return highest
    }
    const uplink = new Uplink(
        queue,
        [energyLabel("main")],
        ["meters/n/main/reading"],
        8,
        3_600_000,
        {
            reportError: text => errors.push(text),
            onAcknowledged: async r => {
                assert.ok(r.seq <= ackedSeqs(), `told seq ${r.seq} acknowledged; the broker had up to ${ackedSeqs()}`)
                assert.ok(!told.length || r.seq > told[told.length - 1], "told in order, each once")
                told.push(r.seq)
                // As a flash write: the fiber waits (the seeded schedule's random numbers untouched).
                await turns(2)
            },
        },
        {
            millis: () => Date.now(),
            // Event loop turns, not timers: the schedule depends on the seed alone, never on the machine's load.
            sleep: async ms => await turns(ms > 0 ? 3 : 1),
            spawn: fn => {
                setImmediate(() => void fn())
            },
        }
    )
    uplink.attach(broker)
    const meter = new SimulatedEnergyMeter(seed, 800, 1_000_000)
    const startTotal = meter.totalMilliWh
    const taken: ReadingRecord[] = []
    const running: Promise<unknown>[] = []
    let seq = 0
    for (let step = 0; step < steps; step++) {
        const dice = random.below(1000)
        if (dice < 450) {
            const i = seq
            const r = meter.read(i * 60_000, (i + 1) * 60_000)
            const record = energyRecord(0, ++seq, 1, i * 60_000, (i + 1) * 60_000, r.deltaMilliWh, meter.totalMilliWh)
            taken.push(record)
            running.push(uplink.append(record))
        } else if (dice < 750) {
            // The broker acknowledges the oldest message in flight (MQTT acknowledges in order).
            const s = broker.oldestUnacked()
            if (broker.connected && s) {
                s.acked = true
                uplink.onDelivered(s.token)
            }
        } else if (dice < 800) {
            running.push(uplink.flush())
        } else if (dice < 800 + outagePerMille) {
            broker.connected = !broker.connected
            if (broker.connected) {
                // The session resends what is unacknowledged, then the node is told it is connected.
                for (const s of broker.sent) if (!s.acked) broker.received.push(s.payload)
                uplink.kick()
            }
        }
        if (random.below(4) === 0) await turns(1 + random.below(3))
    }
    // The broker comes back for good and acknowledges everything, as it arrives.
    broker.connected = true
    for (const s of broker.sent) if (!s.acked) broker.received.push(s.payload)
    uplink.kick()
    await Promise.all(running)
    for (let rounds = 0; rounds < 100_000 && (uplink.size() > 0 || broker.oldestUnacked()); rounds++) {
        const s = broker.oldestUnacked()
        if (s) {
            s.acked = true
            uplink.onDelivered(s.token)
        }
        await turn()
    }
    await uplink.flush()
    // The mark's last write may still be under way (each takes turns, as a flash write would).
    for (let rounds = 0; rounds < 100 && told[told.length - 1] !== taken.length; rounds++) await turn()
    return { taken, broker, queue, uplink, errors, told, startTotal, endTotal: meter.totalMilliWh }
}

/** The readings the broker received, first copies only, in order of first arrival. */
function firstDeliveries(received: string[]) {
    const out: any[] = []
    const seen = new Set<number>()
    for (const payload of received)
        for (const e of JSON.parse(payload).readings) {
            if (seen.has(e.seq)) continue
            seen.add(e.seq)
            out.push(e)
        }
    return out
}

describe("uplink: a queue too small for an outage", () => {
    // Seed 2 in a 1,100-byte budget (3 blocks): the messages out for delivery pin the oldest
    // blocks, the rest cannot be merged small enough, and the oldest unpinned block is dropped.
    // Which schedules force a drop in 3 blocks depends on how many readings a message carries:
    // of seeds 1 to 24 at this budget, 2, 5 and 20 do (the others are below).
    test("drops only as a last resort, says so, and delivers every reading it kept, in order", async () => {
        const run = await runSchedule(2, 4000, 1100, 1)
        const delivered = firstDeliveries(run.broker.received)
        const dropped = queueStats(run.queue).droppedReadings
        assert.ok(dropped > 0, "this schedule overflows the budget")
        assert.ok(
            run.errors.some(e => e.includes(`dropped the`) && e.includes("QUEUE_BYTES")),
            `the drop is reported: ${run.errors.join("; ")}`
        )
        let covered = 0
        let last = 0
        for (const e of delivered) {
            const first = e.first_seq ?? e.seq
            assert.ok(first > last, "in order")
            covered += e.seq - first + 1
            last = e.seq
        }
        assert.equal(covered + dropped, run.taken.length, "every reading taken was delivered or counted as dropped")
        console.log(`  seed 2: ${covered} readings delivered, ${dropped} dropped and reported`)
    })
})

describe("uplink: store and forward under random interleavings", () => {
    // Short outages with the default budget; long outages in small budgets, so that the queue
    // merges while messages are out for delivery.
    for (const [seed, budget, outage] of [
        [1, 4608, 30],
        [2, 4608, 30],
        [3, 1600, 2],
        [9, 1100, 2],
        [8, 1100, 1],
        [6, 1100, 1],
        [7, 1100, 1],
        [11, 1100, 1],
        [12, 1100, 1],
        [13, 1100, 1],
        [16, 1100, 1],
    ] as const) {
        test(`seed ${seed}, queue budget ${budget} bytes, link flips ${outage}/1000 steps: every reading delivered, in order, energy exact`, async () => {
            const run = await runSchedule(seed, 4000, budget, outage)
            const { taken, broker, queue, uplink } = run
            assert.equal(uplink.size(), 0, "the queue is empty once everything is acknowledged")
            assert.equal(queue.size(), 0)
            const delivered = firstDeliveries(broker.received)
            // Merged readings stand for first_seq..seq: together they cover every seq taken, once.
            let next = 1
            let energy = 0
            for (const e of delivered) {
                const first = e.first_seq ?? e.seq
                assert.equal(
                    first,
                    next,
                    `reading ${first}..${e.seq} follows ${next - 1} (queue stats: ${JSON.stringify(queueStats(queue))}, errors: ${run.errors.slice(0, 3).join("; ")})`
                )
                next = e.seq + 1
                energy += Math.round(e.delta * 1000)
            }
            assert.equal(next - 1, taken.length, "the last reading taken was delivered")
            assert.equal(run.told[run.told.length - 1], taken.length, "the mark reached the last reading")
            assert.equal(energy, run.endTotal - run.startTotal, "delivered energy equals the meter's change")
            const stats = queueStats(queue)
            assert.equal(stats.droppedReadings, 0)
            const merged = delivered.filter(e => e.first_seq !== undefined).length
            console.log(
                `  seed ${seed}: ${taken.length} readings in ${delivered.length} elements (${merged} merged), ` +
                    `${broker.sent.length} messages, ${broker.received.length - broker.sent.length} resends, ${stats.merges} merge steps`
            )
        })
    }
})

/** A clock the test moves: sleep(ms) ends once the clock has moved ms on (0: at the next turn). */
class TestClock {
    nowMs = 0
    private sleepers: { untilMs: number; wake: () => void }[] = []
    millis = () => this.nowMs
    sleep = (ms: number) =>
        new Promise<void>(resolve => {
            if (ms > 0) this.sleepers.push({ untilMs: this.nowMs + ms, wake: resolve })
            else setImmediate(resolve)
        })
    async advance(ms: number) {
        this.nowMs += ms
        const due = this.sleepers.filter(s => s.untilMs <= this.nowMs)
        this.sleepers = this.sleepers.filter(s => s.untilMs > this.nowMs)
        for (const s of due) s.wake()
        await turns(20)
    }
}

/**
 * An uplink on the Settings-store model with `readings` readings queued while the link was down,
 * then the link up: the first messages of the backlog are out, none acknowledged yet.
 * `gate`, while set, holds the next message in beforePublish (the node's ceiling check).
 */
async function backlogOut(readings: number) {
    const clock = new TestClock()
    const queue = new DurableQueue(new FakeSettingsStore(8192, 2048), 4608)
    assert.equal(await queue.open(), "")
    const broker = new FakeBroker(new Random(1))
    broker.connected = false
    const told: number[] = []
    const state = { gate: null as Promise<void> | null }
    const uplink = new Uplink(
        queue,
        [energyLabel("main")],
        ["meters/n/main/reading"],
        8,
        3_600_000,
        {
            reportError: text => assert.fail(text),
            onAcknowledged: async r => {
                told.push(r.seq)
                await turns(2)
            },
            beforePublish: async () => {
                if (state.gate) await state.gate
            },
        },
        { millis: clock.millis, sleep: clock.sleep, spawn: fn => setImmediate(() => void fn()) }
    )
    uplink.attach(broker)
    const meter = new SimulatedEnergyMeter(7, 800, 1_000_000)
    const startTotal = meter.totalMilliWh
    const taken: ReadingRecord[] = []
    const take = async () => {
        const i = taken.length
        const r = meter.read(i * 60_000, (i + 1) * 60_000)
        const record = energyRecord(0, i + 1, 1, i * 60_000, (i + 1) * 60_000, r.deltaMilliWh, meter.totalMilliWh)
        taken.push(record)
        await uplink.append(record)
    }
    for (let i = 0; i < readings; i++) await take()
    broker.connected = true
    uplink.kick()
    await turns(20)
    /** The broker answers the message `s`: accepts it, or refuses it with `code`. */
    const answer = (s: Sent, code = 0) => {
        s.acked = true
        return uplink.onDelivered(s.token, code)
    }
    /** The broker accepts every message as it comes, until the uplink has nothing left. */
    const acceptAll = async () => {
        for (let rounds = 0; rounds < 10_000 && (uplink.size() > 0 || broker.oldestUnacked()); rounds++) {
            const s = broker.oldestUnacked()
            if (s) answer(s)
            await turn()
        }
        for (let rounds = 0; rounds < 100 && told[told.length - 1] !== taken.length; rounds++) await turn()
    }
    return { clock, queue, broker, uplink, told, taken, take, answer, acceptAll, state, startTotal, meter }
}

const readingsOf = (messages: Sent[]) => messages.flatMap(s => JSON.parse(s.payload).readings)
const seqsOf = (s: Sent) => readingsOf([s]).map(e => e.seq)

/** `elements` are the readings `taken[from - 1 ..]` exactly as taken, in order, none merged. */
function assertExactly(elements: any[], taken: ReadingRecord[], from: number) {
    const expected = taken.slice(from - 1)
    assert.deepEqual(
        elements.map(e => e.seq),
        expected.map(r => r.seq),
        "every reading from seq " + from + ", in order"
    )
    for (let i = 0; i < expected.length; i++) {
        const e = elements[i]
        const r = expected[i]
        assert.equal(e.first_seq, undefined, `seq ${r.seq} not merged`)
        assert.equal(e.start, r.startS, `seq ${r.seq}: start`)
        assert.equal(e.end, r.startS + r.durationS, `seq ${r.seq}: end`)
        assert.equal(Math.round(e.delta * 1000), r.deltaMilliWh, `seq ${r.seq}: energy`)
        assert.equal(Math.round(e.total * 1000), r.totalMilliWh, `seq ${r.seq}: total`)
    }
}

describe("uplink: a reading message the broker refuses (MQTT 5 PUBACK from 0x80)", () => {
    test("refused (0x87): its readings stay queued, none is reported acknowledged, and after the retry delay they go out again, exactly as taken", async () => {
        const run = await backlogOut(24)
        const { broker, uplink, told, taken } = run
        const out = broker.sent.slice()
        assert.equal(out.length, 4, "the window: 4 messages out")
        run.answer(out[0], 0x87)
        // The messages after it, accepted: their records stay queued too (FIFO), and go out again.
        for (const s of out.slice(1)) run.answer(s)
        await turns(20)
        assert.equal(uplink.size(), 24, "the refused readings and those after them are still queued")
        assert.deepEqual(told, [], "nothing reported acknowledged")
        // A reading taken meanwhile is queued but not published: publishing is held after a refusal.
        await run.take()
        await run.clock.advance(REFUSED_RETRY_MS - 1000)
        uplink.kick()
        await turns(20)
        assert.equal(broker.sent.length, 4, "nothing published during the retry delay")
        assert.deepEqual(told, [])
        assert.equal(uplink.size(), 25)
        await run.clock.advance(1000)
        assert.ok(broker.sent.length > 4, "published again after the retry delay")
        assert.equal(seqsOf(broker.sent[4])[0], 1, "the oldest reading first")
        await run.acceptAll()
        assert.equal(uplink.size(), 0, "accepted, they leave the queue")
        assert.equal(run.queue.size(), 0)
        assertExactly(readingsOf(broker.sent.slice(4)), taken, 1)
        assert.equal(told[told.length - 1], 25, "the mark reached the last reading")
        let energy = 0
        for (const e of readingsOf(broker.sent.slice(4))) energy += Math.round(e.delta * 1000)
        assert.equal(energy, run.meter.totalMilliWh - run.startTotal, "delivered energy equals the meter's change")
    })

    test("refused (0x97) in the middle of the window: the accepted ones before it leave the queue, it and the later ones go out again", async () => {
        const run = await backlogOut(24)
        const { broker, uplink, told, taken } = run
        const [m1, m2, m3] = broker.sent
        run.answer(m1)
        run.answer(m2)
        await turns(20)
        const acceptedUpTo = seqsOf(m2)[seqsOf(m2).length - 1]
        assert.equal(uplink.size(), 24 - acceptedUpTo, "the two accepted messages left the queue")
        assert.equal(told[told.length - 1], acceptedUpTo)
        // The window refilled behind m3; the broker refuses m3 and accepts all after it.
        const sentBefore = broker.sent.length
        assert.ok(sentBefore > 4, "more went out as the first two were accepted")
        run.answer(m3, 0x97)
        for (const s of broker.sent.slice(3)) if (!s.acked) run.answer(s)
        await turns(20)
        assert.equal(uplink.size(), 24 - acceptedUpTo, "the refused message and those after it stay queued")
        assert.equal(told[told.length - 1], acceptedUpTo, "nothing after the accepted ones reported acknowledged")
        await run.clock.advance(REFUSED_RETRY_MS - 1000)
        assert.equal(broker.sent.length, sentBefore, "nothing published during the retry delay")
        assert.equal(told[told.length - 1], acceptedUpTo)
        await run.clock.advance(1000)
        assert.equal(seqsOf(broker.sent[sentBefore])[0], acceptedUpTo + 1, "sent again from the refused one's first")
        await run.acceptAll()
        assert.equal(uplink.size(), 0)
        assertExactly(readingsOf([m1, m2, ...broker.sent.slice(sentBefore)]), taken, 1)
        assert.equal(told[told.length - 1], 24, "the mark reached the last reading")
    })

    test("refused while the next message is being built: that message is not sent, and no reading is skipped", async () => {
        const run = await backlogOut(24)
        const { broker, uplink, taken } = run
        const [m1, m2] = broker.sent
        let open: () => void = () => {}
        run.state.gate = new Promise<void>(resolve => (open = resolve))
        // Accepting m1 frees a slot: the next message is built and waits in beforePublish.
        run.answer(m1)
        await turns(20)
        run.answer(m2, 0x87)
        run.state.gate = null
        open()
        await turns(20)
        assert.equal(broker.sent.length, 4, "the message built meanwhile was not sent")
        const acceptedUpTo = seqsOf(m1)[seqsOf(m1).length - 1]
        assert.equal(uplink.size(), 24 - acceptedUpTo)
        await run.clock.advance(REFUSED_RETRY_MS)
        await run.acceptAll()
        assert.equal(uplink.size(), 0)
        assertExactly(readingsOf([m1, ...broker.sent.slice(4)]), taken, 1)
    })
})
