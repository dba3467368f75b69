// The pure core, run in the DeviceScript VM: the same files the Node tests exercise must compile
// and give the same results here (number formatting, string handling and arithmetic differ
// between the runtimes in places).
import * as ds from "@devicescript/core"
import { describe, test, expect } from "@devicescript/test"
import { isValidId, parseConfig, describeConfig } from "../../src/config"
import { SequenceAllocator } from "../../src/sequence"
import { formatMilli, readingMessage, energyLabel } from "../../src/reading"
import { energyRecord } from "../../src/storage/records"
import { gapRecord, lastKnown, stateFromJson, stateToJson } from "../../src/node-state"
import { SeededRandom, SimulatedEnergyMeter } from "../../src/meters/simulated"
import { parseBrokerUrl, BrokerAddress } from "../../src/mqtt/url"
import { backoffDelayMs, jitter01 } from "../../src/mqtt/backoff"
import { nextParkMiller } from "../../src/util/park-miller"
import { removeAt } from "../../src/util/arrays"
import { PulseFilter } from "../../src/meters/pulse-filter"
import { nextBoundaryMs, parseTimePayload, recordInUtc, WallClock } from "../../src/clock"
import { discoveryMessages } from "../../src/discovery"
import { PULSE_OPTIONS, PULSE_TABLE, PULSE_WIDTH_TABLE } from "../fixtures/pulse-table"
import { parsePulseConstant, pulsesToMilli, milliToPulses, PulseConstant } from "../../src/meters/meter-spec"
import { PulseMeter } from "../../src/meters/pulse-meter"
import { LevelAccumulator } from "../../src/meters/level"
import { FLAG_NON_ADDITIVE } from "../../src/storage/records"

describe("core in the VM", () => {
    test("configuration parses .env strings and reports bad settings by name", () => {
        const good = parseConfig({ READ_MS: "1000", MQTT_URL: "mqtt://10.0.0.2:1884", NODE_ID: "node-7" })
        expect(good.errors.length).toBe(0)
        expect(good.config.readingIntervalMs).toBe(1000)
        expect(good.config.broker.port).toBe(1884)
        expect(good.config.nodeId).toBe("node-7")
        const bad = parseConfig({ READ_MS: "fast", NODE_ID: "a/b" })
        expect(bad.errors.length).toBe(2)
        expect(bad.errors[0].indexOf("setting READ_MS:")).toBe(0)
        expect(bad.config.nodeId).toBe("")
        expect(describeConfig(parseConfig({ MQTT_PASS: "s3cret" }).config).indexOf("s3cret")).toBe(-1)
    })

    test("several meters: settings parse in the VM, an invalid meter is named and its slot left empty", () => {
        const r = parseConfig({
            METER_KIND: "s0",
            METER_OPTS: "imp=800/kWh",
            METER2: "water s0 imp=1/10L every=900",
            METER3: "gas s0 imp=0/m3",
            METER4: "boiler temperature",
        })
        expect(r.errors.length).toBe(1)
        expect(r.errors[0].indexOf("meter gas (METER3): imp:")).toBe(0)
        expect(r.config.meters[0].input).toBe("s0a")
        expect(r.config.meters[1].input).toBe("s0b")
        expect(r.config.meters[1].readMs).toBe(900000)
        expect(r.config.meters[2]).toBe(null)
        expect(r.config.meters[3].additive).toBe(false)
        const water = r.config.meters[1]
        expect(water.unit).toBe("L")
        // 12,345 pulses of 10 L, converted back and forth exactly.
        expect(pulsesToMilli(water, 12345)).toBe(123450000)
        expect(milliToPulses(water, 123450000)).toBe(12345)
        const c = parsePulseConstant("375/kWh") as PulseConstant
        expect(c.milliNum).toBe(1000000)
        expect(c.den).toBe(375)
    })

    test("an S0 meter counts up events by their low time, glitches left out, deltas summing to the total", () => {
        const spec = parseConfig({ METER_KIND: "s0", METER_OPTS: "imp=800/kWh" }).config.meters[0]
        for (const c of PULSE_WIDTH_TABLE) {
            const t = new PulseMeter(spec, 0)
            let at = 1000
            for (const w of c.lowMs) t.onRiseHeld((at += 1000), w)
            if (t.count !== c.pulses || t.glitches !== c.glitches)
                throw new Error(c.name + ": " + t.count + " pulses, " + t.glitches + " glitches")
        }
        const m = new PulseMeter(spec, 2500000)
        let t = 0
        // 200 pulses: the test mode's GC stress makes each call costly, and a test may not yield.
        for (let i = 0; i < 200; i++) {
            m.onRiseHeld((t += 50), 3)
            m.onRiseHeld(t, 40)
        }
        expect(m.count).toBe(200)
        expect(m.glitches).toBe(200)
        expect(m.read(0, t).deltaMilliWh).toBe(250000)
        expect(m.totalMilliWh).toBe(2750000)
    })

    test("a level: min, time-weighted mean and max; a unit outside ASCII reaches the message intact", () => {
        const a = new LevelAccumulator()
        a.add(20, 0)
        a.add(30, 750)
        const closed = a.close(1000)
        expect(closed.summary.meanMilli).toBe(22500)
        expect(closed.summary.maxMilli).toBe(30000)
        const r = energyRecord(0, 3, 1, 0, 1000, 0, 0)
        r.flags |= FLAG_NON_ADDITIVE
        r.minMilli = closed.summary.minMilli
        r.meanMilli = closed.summary.meanMilli
        r.maxMilli = closed.summary.maxMilli
        const payload = readingMessage([r], [{ id: "boiler", quantity: "temperature", unit: "°C" }]).payload
        const body = JSON.parse(payload)
        expect(body.unit).toBe("°C")
        expect(body.readings[0].mean).toBe(22.5)
        expect(Buffer.from(payload).length <= 1000).toBe(true)
        const ha = JSON.parse(
            discoveryMessages("ha", "meters", "n1", [{ id: "gas", quantity: "gas", unit: "m3" }], [])[0].payload.join(
                ""
            )
        )
        expect(ha.unit_of_meas).toBe("m³")
    })

    test("ids are checked by character code", () => {
        expect(isValidId("demo_1-x")).toBe(true)
        expect(isValidId("a/b")).toBe(false)
        expect(isValidId("")).toBe(false)
    })

    test("thousandths format exactly", () => {
        expect(formatMilli(1234)).toBe("1.234")
        expect(formatMilli(10)).toBe("0.01")
        expect(formatMilli(1000)).toBe("1")
        expect(formatMilli(-1500)).toBe("-1.5")
        expect(formatMilli(123456789)).toBe("123456.789")
    })

    test("a reading message is valid JSON in the VM too, gaps included", () => {
        const r = energyRecord(0, 7, 2, 1000, 61000, 125, 5125)
        const prev = {
            boot: 1,
            seq: 1000,
            totals: [5000],
            markSeq: 6,
            markEndS: 30,
            markUtc: false,
            offsets: [{ boot: 1, offsetS: 1763802000 }],
            clean: false,
        }
        const gap = gapRecord(prev, lastKnown(prev, null), 0, 1001)
        const body = JSON.parse(readingMessage([r, gap], [energyLabel("main")]).payload)
        expect(body.meter).toBe("main")
        expect(body.readings[0].seq).toBe(7)
        expect(body.readings[0].delta).toBe(0.125)
        expect(body.readings[0].total).toBe(5.125)
        expect(body.readings[0].start).toBe(1)
        expect(body.readings[1].gap).toBe(true)
        expect(body.readings[1].after_seq).toBe(6)
        // A meter no longer configured (past the end of the labels) is named by its index.
        const orphan = JSON.parse(readingMessage([r], []).payload)
        expect(orphan.meter).toBe("meter" + r.meter)
        expect(orphan.quantity).toBe("energy")
        expect(orphan.unit).toBe("Wh")
        const back = stateFromJson(JSON.parse(JSON.stringify(stateToJson(prev))))
        expect(back.markEndS).toBe(30)
        expect(back.clean).toBe(false)
        expect(back.offsets[0].offsetS).toBe(1763802000)
    })

    test("the wall clock in the VM: offset, UTC grid, uptime readings converted", () => {
        // 2026-11-22T09:00:00Z; beyond 2^31 in ms, where the VM's integers end.
        const nineAm = 1763802000000
        expect(parseTimePayload('{"utc_ms":1763802000000}').utcMs).toBe(nineAm)
        expect(parseTimePayload("noon").error.length > 0).toBe(true)
        const c = new WallClock()
        expect(c.apply(100000, nineAm + 450000, "t", false)).toBe(true)
        // 09:07:30 at uptime 100 s: the next quarter hour is 09:15:00.
        const next = nextBoundaryMs(100000, 900000, c)
        expect((Math.round(next / 1000) + c.offsetS) * 1000).toBe(nineAm + 900000)
        const r = recordInUtc(energyRecord(0, 5, 1, 40000, 100000, 10, 20), c.bootOffsetS)
        const body = JSON.parse(readingMessage([r], [energyLabel("main")]).payload)
        expect(body.time).toBe("utc_ms")
        expect(body.readings[0].end).toBe(nineAm + 450000)
        expect(body.readings[0].end - body.readings[0].start).toBe(60000)
    })

    test("Home Assistant discovery payloads are JSON in the VM", () => {
        const m = discoveryMessages("homeassistant", "meters", "n1", [energyLabel("grid")], ["main"])
        expect(m.length).toBe(2)
        expect(m[0].payload.length).toBe(0)
        // The parts, as the client writes them one after another.
        const config = JSON.parse(m[1].payload.join(""))
        expect(config.dev_cla).toBe("energy")
        expect(config["~"]).toBe("meters/n1")
        expect(config.stat_t).toBe("~/grid/reading")
    })

    test("sequence numbers continue above the reservation after a reboot", () => {
        const s = new SequenceAllocator(40, 10)
        expect(s.reservationNeeded()).toBe(50)
        s.reserved(50)
        expect(s.take()).toBe(41)
    })

    test("the seeded generator matches the Park-Miller reference", () => {
        // Minimal standard generator: from seed 1 the first state is 48271.
        const r = new SeededRandom(1)
        expect(r.next()).toBe(48270 / 2147483646)
        // Past the first step the products leave 32 bits, where the VM's arithmetic wraps.
        const expected = [182605794, 1291394886, 1914720637, 2078669041, 407355683]
        for (const x of expected) expect(r.next()).toBe((x - 1) / 2147483646)
        const m = new SimulatedEnergyMeter(5, 800, 0)
        let sum = 0
        for (let i = 0; i < 60; i++) sum += m.read(i * 60000, (i + 1) * 60000).deltaMilliWh
        expect(m.totalMilliWh).toBe(sum)
    })

    test("broker URLs and backoff", () => {
        const a = parseBrokerUrl("mqtts://h:8884") as BrokerAddress
        expect(a.tls).toBe(true)
        expect(a.port).toBe(8884)
        expect(typeof parseBrokerUrl("mqtt://h:0")).toBe("string")
        expect(backoffDelayMs(3, 1000, 60000, 0, 0.5)).toBe(4000)
        expect(backoffDelayMs(30, 1000, 60000, 30000, 0)).toBe(30000)
    })

    test("the reconnect jitter's generator gives the exact Park-Miller sequence in the VM", async () => {
        // From Node with exact integer arithmetic: products reach 1e14, past 32 bits.
        const expected = [48271, 182605794, 1291394886, 1914720637, 2078669041, 407355683]
        let state = 1
        for (const x of expected) {
            state = nextParkMiller(state)
            expect(state).toBe(x)
        }
        for (let i = 0; i < 50; i++) {
            state = nextParkMiller(state)
            const v = jitter01(state, 0.25)
            expect(v >= 0 && v < 1).toBe(true)
        }
        // The VM stops a fiber after ~128K operations without a suspension: the next tests need theirs.
        await ds.sleep(0)
    })

    test("the S0 pulse filter's truth table gives the same counts in the VM", () => {
        for (const c of PULSE_TABLE) {
            const f = new PulseFilter(PULSE_OPTIONS)
            for (const e of c.edges) {
                if (e[1] === "v") f.onFall(e[0])
                else f.onRise(e[0])
            }
            if (c.pollMs >= 0) f.poll(c.pollMs)
            if (f.count !== c.pulses || f.glitches !== c.glitches)
                throw new Error(c.name + ": " + f.count + " pulses, " + f.glitches + " glitches")
        }
    })

    test("removeAt", () => {
        const a = [1, 2, 3]
        removeAt(a, 0)
        expect(a.length).toBe(2)
        expect(a[0]).toBe(2)
    })
})
