// The node's pure core outside MQTT: configuration, sequence numbers, payloads, the persistent
// state and gaps, the simulated meter, broker URLs, backoff.
import { describe, test } from "node:test"
import assert from "node:assert/strict"
import { describeConfig, isValidId, parseConfig } from "../../src/config"
import { SequenceAllocator } from "../../src/sequence"
import {
    formatMilli,
    MAX_READING_MESSAGE_BYTES,
    readingMessage,
    statusPayload,
    WILL_PAYLOAD,
    energyLabel,
} from "../../src/reading"
import {
    energyRecord,
    FLAG_ESTIMATED,
    newRecord,
    FLAG_NON_ADDITIVE,
    FLAG_CLOCK_NOT_SET,
    ReadingRecord,
} from "../../src/storage/records"
import {
    ackMarkFromJson,
    ackMarkToJson,
    gapRecord,
    initialState,
    lastKnown,
    stateFromJson,
    stateToJson,
} from "../../src/node-state"
import { SeededRandom, SimulatedEnergyMeter } from "../../src/meters/simulated"
import { maskUrl, parseBrokerUrl } from "../../src/mqtt/url"
import { backoffDelayMs, jitter01, jitterSeed } from "../../src/mqtt/backoff"
import { nextParkMiller } from "../../src/util/park-miller"
import { removeAt } from "../../src/util/arrays"

describe("configuration", () => {
    test("defaults apply when nothing is set", () => {
        const { config, errors } = parseConfig({})
        assert.deepEqual(errors, [])
        assert.equal(config.nodeId, "", "no NODE_ID: the device id, filled in at boot")
        assert.equal(config.topicPrefix, "meters")
        assert.equal(config.readingIntervalMs, 60000)
        assert.deepEqual(config.broker, { host: "127.0.0.1", port: 1883, tls: false })
    })

    test("values from .env files arrive as strings and are parsed", () => {
        const { config, errors } = parseConfig({
            READ_MS: "1000",
            KEEPALIVE_S: "10",
            MQTT_URL: "mqtts://broker.lan:8884",
        })
        assert.deepEqual(errors, [])
        assert.equal(config.readingIntervalMs, 1000)
        assert.equal(config.keepaliveS, 10)
        assert.deepEqual(config.broker, { host: "broker.lan", port: 8884, tls: true })
    })

    test("each invalid setting is reported by name and replaced by its default", () => {
        const { config, errors } = parseConfig({
            READ_MS: "fast",
            KEEPALIVE_S: 1,
            MQTT_URL: "http://x",
            NODE_ID: "a/b",
            METER_KIND: "laser",
            TOPIC_PREFIX: "a/#",
            BOGUS: 1,
        })
        const named = (key: string) => errors.some(e => e.startsWith(`setting ${key}:`))
        for (const key of ["READ_MS", "KEEPALIVE_S", "MQTT_URL", "NODE_ID", "TOPIC_PREFIX", "BOGUS"])
            assert.ok(named(key), `${key} reported in ${JSON.stringify(errors)}`)
        // A meter has no default to fall back on: it is off, named with the settings that configure it.
        assert.ok(
            errors.some(e => e.startsWith("meter main (METER_ID/METER_KIND/METER_OPTS): unknown meter kind laser")),
            JSON.stringify(errors)
        )
        assert.equal(config.meters[0], null)
        assert.equal(config.readingIntervalMs, 60000)
        assert.equal(config.keepaliveS, 30)
        assert.equal(config.nodeId, "", "an invalid NODE_ID falls back to the device id, filled in at boot")
        assert.equal(config.topicPrefix, "meters")
        assert.equal(config.broker.port, 1883)
    })

    test("ids are safe topic levels", () => {
        for (const ok of ["a", "demo", "node-1_B", "x".repeat(32)]) assert.ok(isValidId(ok), ok)
        for (const bad of ["", "a/b", "a+b", "#", "é", "x".repeat(33), "a b"]) assert.ok(!isValidId(bad), bad)
    })

    test("the logged configuration never shows the password", () => {
        const { config } = parseConfig({ MQTT_USER: "u", MQTT_PASS: "s3cret" })
        const text = describeConfig(config)
        assert.ok(!text.includes("s3cret"))
        assert.ok(text.includes("password ***"))
    })
})

describe("sequence numbers", () => {
    test("a new device reserves a block before handing out seq 1", () => {
        const s = new SequenceAllocator(0, 100)
        assert.equal(s.reservationNeeded(), 100)
        assert.throws(() => s.take(), /reservation/)
        s.reserved(100)
        assert.equal(s.reservationNeeded(), -1)
        assert.equal(s.take(), 1)
    })

    test("one reservation per block, and a reboot continues above the reservation", () => {
        const s = new SequenceAllocator(0, 10)
        let writes = 0
        let last = 0
        for (let i = 0; i < 35; i++) {
            const need = s.reservationNeeded()
            if (need >= 0) {
                s.reserved(need)
                writes++
            }
            const seq = s.take()
            assert.equal(seq, last + 1)
            last = seq
        }
        assert.equal(writes, 4)
        // Power cut now: the flash says 40, 35 were used. The next boot starts at 41: a gap, no reuse.
        const after = new SequenceAllocator(40, 10)
        after.reserved(after.reservationNeeded())
        assert.equal(after.take(), 41)
    })
})

describe("payloads", () => {
    test("thousandths format exactly", () => {
        const cases: [number, string][] = [
            [0, "0"],
            [1, "0.001"],
            [10, "0.01"],
            [1234, "1.234"],
            [1000, "1"],
            [-1500, "-1.5"],
            [123456789, "123456.789"],
        ]
        for (const [milli, text] of cases) assert.equal(formatMilli(milli), text)
    })

    test("a reading message is JSON with the documented fields", () => {
        const r = energyRecord(0, 7, 2, 1000, 61000, 125, 5125)
        const m = readingMessage([r], [energyLabel("main")])
        assert.equal(m.count, 1)
        assert.deepEqual(JSON.parse(m.payload), {
            meter: "main",
            quantity: "energy",
            unit: "Wh",
            time: "uptime_s",
            readings: [{ seq: 7, boot: 2, start: 1, end: 61, delta: 0.125, total: 5.125 }],
        })
    })

    test("merged, estimated, level and gap records say so", () => {
        const merged = energyRecord(0, 20, 2, 0, 3600_000, 50_000, 90_000)
        merged.firstSeq = 11
        merged.flags |= FLAG_ESTIMATED
        const level = newRecord()
        level.flags = FLAG_NON_ADDITIVE | FLAG_CLOCK_NOT_SET
        Object.assign(level, {
            seq: 3,
            firstSeq: 3,
            boot: 1,
            startS: 60,
            durationS: 60,
            minMilli: -500,
            meanMilli: 1250,
            maxMilli: 4000,
        })
        const prev = {
            ...initialState(),
            boot: 4,
            seq: 2000,
            totals: [77_000],
            markSeq: 1500,
            markEndS: 3600,
            clean: false,
        }
        const gap = gapRecord(prev, lastKnown(prev, null), 0, 2001)!
        assert.deepEqual(JSON.parse(readingMessage([merged], [energyLabel("m")]).payload).readings[0], {
            seq: 20,
            first_seq: 11,
            boot: 2,
            start: 0,
            end: 3600,
            delta: 50,
            total: 90,
            estimated: true,
        })
        assert.deepEqual(JSON.parse(readingMessage([level], [energyLabel("m")]).payload).readings[0], {
            seq: 3,
            boot: 1,
            start: 60,
            end: 120,
            min: -0.5,
            mean: 1.25,
            max: 4,
        })
        assert.deepEqual(JSON.parse(readingMessage([gap], [energyLabel("m")]).payload).readings[0], {
            seq: 2001,
            gap: true,
            boot: 4,
            start: 3600,
            after_seq: 1500,
            total: 77,
        })
    })

    test("a backlog goes out in messages under 1 KB, in order, one meter and time base per message", () => {
        const records: ReadingRecord[] = []
        let total = 123_456_789_000
        for (let i = 0; i < 40; i++) {
            total += 99_999
            records.push(energyRecord(i < 30 ? 0 : 1, 1000 + i, 65535, i * 60_000, (i + 1) * 60_000, 99_999, total))
        }
        const sent: number[] = []
        let rest = records
        const sizes: number[] = []
        while (rest.length) {
            const m = readingMessage(rest, [energyLabel("a"), energyLabel("b")])
            const body = JSON.parse(m.payload)
            assert.ok(m.payload.length <= MAX_READING_MESSAGE_BYTES, `${m.payload.length} bytes`)
            assert.equal(body.meter, ["a", "b"][rest[0].meter])
            assert.equal(body.readings.length, m.count)
            for (const e of body.readings) sent.push(e.seq)
            sizes.push(m.count)
            rest = rest.slice(m.count)
        }
        assert.deepEqual(
            sent,
            records.map(r => r.seq)
        )
        // The meter changes after 30 records: no message mixes them.
        let at = 0
        for (const n of sizes) {
            assert.ok(at >= 30 || at + n <= 30, "a message holds one meter")
            at += n
        }
        assert.ok(sizes[0] > 1, "a backlog is batched")
    })

    test("status and will", () => {
        const online = JSON.parse(
            statusPayload({
                online: true,
                boot: 3,
                uptimeS: 12.7,
                queued: 2,
                dropped: 1,
                merged: 4,
                lastError: 'a "quoted" error',
            })
        )
        assert.equal(online.state, "online")
        assert.equal(online.uptime_s, 12)
        assert.equal(online.error, 'a "quoted" error')
        assert.equal(online.merged, 4)
        assert.deepEqual(JSON.parse(WILL_PAYLOAD), { state: "offline", reason: "lost" })
        assert.deepEqual(
            JSON.parse(
                statusPayload({
                    online: false,
                    reason: "shutdown",
                    boot: 3,
                    uptimeS: 0,
                    queued: 0,
                    dropped: 0,
                    merged: 0,
                    lastError: "",
                })
            ),
            {
                state: "offline",
                reason: "shutdown",
                boot: 3,
            }
        )
    })
})

describe("persistent state and gaps", () => {
    test("the state round-trips through its flash form, which stays small; damage reads as none", () => {
        const offsets = [0, 1, 2, 3].map(i => ({ boot: 65532 + i, offsetS: 4_102_444_800 - i }))
        const s = {
            boot: 65535,
            seq: 4_294_967_295,
            totals: [281_474_976_710_655],
            markSeq: 4_294_967_000,
            markEndS: 4_102_444_800,
            markUtc: true,
            offsets,
            clean: true,
        }
        assert.deepEqual(stateFromJson(JSON.parse(JSON.stringify(stateToJson(s)))), s)
        // The Settings store takes values up to about 218 bytes; the largest state stays well under.
        assert.ok(JSON.stringify(stateToJson(s)).length < 200, `${JSON.stringify(stateToJson(s)).length} bytes`)
        // A state written before the clock existed reads with no offsets.
        assert.deepEqual(stateFromJson({ b: 1, s: 2, t: 3, ms: 1, me: 5, c: 0 })!.offsets, [])
        assert.equal(stateFromJson({ b: 1, s: "x" }), null)
        assert.equal(stateFromJson(null), null)
    })

    test("a boot after a planned stop reports no gap; after a power cut, one from the last safe reading", () => {
        const clean = { ...initialState(), boot: 3, seq: 3000, totals: [10], markSeq: 2500, markEndS: 900, clean: true }
        assert.equal(gapRecord(clean, lastKnown(clean, null), 0, 3001), null)
        assert.equal(
            gapRecord(initialState(), lastKnown(initialState(), null), 0, 1),
            null,
            "a new device has nothing to miss"
        )
        const cut = { ...clean, clean: false }
        // The queue holds readings newer than the mark: the gap starts after the newest of them.
        const queued = energyRecord(0, 2600, 3, 900_000, 960_000, 5, 25)
        const known = lastKnown(cut, queued)
        assert.deepEqual(known, { boot: 3, seq: 2600, endS: 960, endUtc: false, totals: [25] })
        const gap = gapRecord(cut, known, 0, 3001)!
        assert.equal(gap.firstSeq, 2601)
        assert.equal(gap.seq, 3001)
        assert.equal(gap.startS, 960)
        assert.equal(gap.totalMilliWh, 25)
    })

    test("after a power cut online, the acknowledgement mark places the gap and lifts each total to its ceiling", () => {
        const cut = {
            ...initialState(),
            boot: 3,
            seq: 3000,
            totals: [10, 7],
            markSeq: 2500,
            markEndS: 900,
            clean: false,
        }
        const mark = { boot: 3, seq: 2650, endS: 1_796_280_000, endUtc: true, totals: [40, 5] }
        const back = ackMarkFromJson(JSON.parse(JSON.stringify(ackMarkToJson(mark))))
        assert.deepEqual(back, mark)
        assert.equal(ackMarkFromJson([3, 2650, "x"]), null, "damage reads as no mark")
        // Acknowledged past the newest queued record: the gap starts after it, in UTC; a meter's
        // total is the higher of its ceiling and what the state and the queue say.
        const queued = energyRecord(0, 2600, 3, 900_000, 960_000, 5, 25)
        const known = lastKnown(cut, queued, undefined, back!)
        assert.deepEqual(known, { boot: 3, seq: 2650, endS: 1_796_280_000, endUtc: true, totals: [40, 7] })
        assert.equal(gapRecord(cut, known, 0, 3001)!.firstSeq, 2651)
        // A mark of an older boot (its gap record acknowledged): no time of this boot to start from.
        const older = lastKnown(cut, null, undefined, { ...mark, boot: 2 })
        assert.deepEqual([older.seq, older.endS, older.endUtc], [2650, 0, false])
        // After a planned stop the state's totals are exact: a ceiling would be energy never metered.
        assert.deepEqual(lastKnown({ ...cut, clean: true }, null, undefined, back!).totals, [10, 7])
        // Behind the queue, it moves nothing but the totals.
        const behind = lastKnown(cut, queued, undefined, { ...mark, seq: 2550 })
        assert.deepEqual([behind.seq, behind.endS, behind.totals], [2600, 960, [40, 7]])
    })
})

describe("simulated meter", () => {
    test("the same seed gives the same readings; totals are the exact sum of deltas", () => {
        const a = new SimulatedEnergyMeter(42, 800, 1000)
        const b = new SimulatedEnergyMeter(42, 800, 1000)
        let sum = 0
        for (let t = 0; t < 3600_000; t += 60_000) {
            const ra = a.read(t, t + 60_000)
            assert.deepEqual(ra, b.read(t, t + 60_000))
            assert.ok(Number.isInteger(ra.deltaMilliWh) && ra.deltaMilliWh > 0)
            sum += ra.deltaMilliWh
        }
        assert.equal(a.totalMilliWh, 1000 + sum)
    })

    test("a day averages near the configured mean power", () => {
        const m = new SimulatedEnergyMeter(3, 1000, 0)
        for (let t = 0; t < 86_400_000; t += 60_000) m.read(t, t + 60_000)
        const meanW = m.totalMilliWh / 1000 / 24
        assert.ok(meanW > 700 && meanW < 1300, `mean ${meanW} W`)
    })

    test("the generator stays in [0, 1)", () => {
        const r = new SeededRandom(1)
        for (let i = 0; i < 10000; i++) {
            const v = r.next()
            assert.ok(v >= 0 && v < 1)
        }
    })
})

describe("broker URL", () => {
    test("accepted forms", () => {
        assert.deepEqual(parseBrokerUrl("mqtt://h"), { host: "h", port: 1883, tls: false })
        assert.deepEqual(parseBrokerUrl("mqtts://h"), { host: "h", port: 8883, tls: true })
        assert.deepEqual(parseBrokerUrl("mqtt://10.0.0.2:1884/"), { host: "10.0.0.2", port: 1884, tls: false })
    })
    test("rejected forms name the problem", () => {
        assert.match(parseBrokerUrl("tcp://h") as string, /must start with/)
        assert.match(parseBrokerUrl("mqtt://h:0") as string, /invalid port/)
        assert.match(parseBrokerUrl("mqtt://h:99999") as string, /invalid port/)
        assert.match(parseBrokerUrl("mqtt://:1883") as string, /no host/)
        assert.match(parseBrokerUrl("") as string, /empty/)
    })
    test("credentials in the URL are refused, and the password never appears in the error", () => {
        const error = parseBrokerUrl("mqtt://meter:s3cret@broker.lan:1883") as string
        assert.match(error, /holds credentials: put them in MQTT_USER and MQTT_PASS/)
        assert.ok(!error.includes("s3cret"), error)
        assert.ok(!(parseBrokerUrl("ftp://u:s3cret@h") as string).includes("s3cret"))
        const { config, errors } = parseConfig({ MQTT_URL: "mqtts://meter:s3cret@broker.lan" })
        assert.equal(config.brokerUrl, "mqtt://127.0.0.1:1883", "the default replaces it")
        assert.ok(!JSON.stringify(errors).includes("s3cret"))
        assert.ok(!describeConfig(config).includes("s3cret"))
    })
    test("maskUrl hides a password and leaves everything else", () => {
        assert.equal(maskUrl("mqtt://u:pw@h:1883"), "mqtt://u:***@h:1883")
        assert.equal(maskUrl("postgres://app:pa:ss@db/x"), "postgres://app:***@db/x")
        assert.equal(maskUrl("mqtt://h:1883"), "mqtt://h:1883")
        assert.equal(maskUrl("mqtt://u@h"), "mqtt://u@h")
    })
})

describe("reconnect backoff", () => {
    test("full jitter below an exponential, capped ceiling", () => {
        for (let attempt = 0; attempt < 40; attempt++) {
            const ceiling = Math.min(60000, 1000 * 2 ** attempt)
            assert.equal(backoffDelayMs(attempt, 1000, 60000, 0, 0.999999), Math.floor(0.999999 * ceiling))
            assert.equal(backoffDelayMs(attempt, 1000, 60000, 0, 0), 0)
        }
    })
    test("a refused connection never retries sooner than the floor", () => {
        for (let attempt = 0; attempt < 10; attempt++)
            assert.ok(backoffDelayMs(attempt, 1000, 60000, 30000, Math.random()) >= 30000)
    })
    test("five nodes with the same Math.random sequence and the same uptime still wait different delays", () => {
        // The simulator's Math.random repeats one sequence on every run: model it as one fixed sequence.
        const sameRandom = [0.1, 0.7, 0.3, 0.9, 0.5, 0.2, 0.8, 0.4]
        const delays = ["a", "b", "c", "d", "e"].map(n => {
            let state = 0
            return sameRandom.map((r, attempt) => {
                state = state ? nextParkMiller(state) : jitterSeed(`meternode-node-${n}`, 5321)
                return backoffDelayMs(attempt, 1000, 60000, 0, jitter01(state, r))
            })
        })
        for (let attempt = 1; attempt < sameRandom.length; attempt++) {
            const at = delays.map(d => d[attempt])
            assert.equal(new Set(at).size, 5, `attempt ${attempt}: ${at.join(", ")} ms`)
        }
        for (const d of delays.flat()) assert.ok(d >= 0 && d <= 60000)
        // Spread, not a shift: over many draws the values fill [0, 1).
        let state = jitterSeed("x", 1)
        const draws = Array.from({ length: 1000 }, () => jitter01((state = nextParkMiller(state)), 0.5))
        assert.ok(Math.min(...draws) < 0.05 && Math.max(...draws) > 0.95)
    })
})

test("removeAt keeps the order of the rest", () => {
    const a = [1, 2, 3, 4]
    removeAt(a, 1)
    assert.deepEqual(a, [1, 3, 4])
    removeAt(a, 5)
    assert.deepEqual(a, [1, 3, 4])
    removeAt(a, 2)
    assert.deepEqual(a, [1, 3])
})
