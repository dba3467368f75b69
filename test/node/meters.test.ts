// Several meters per node: their configuration (one setting per meter, each invalid one named
// while the others run), S0 pulse constants converted exactly, the pulse meter with the time a
// button `up` reports, levels summarised over an interval, and the per-meter totals of the state.
import { describe, test } from "node:test"
import assert from "node:assert/strict"
import { parseConfig } from "../../src/config"
import { milliToPulses, parsePulseConstant, pulsesToMilli, MeterSpec } from "../../src/meters/meter-spec"
import { PulseMeter, pulseRate } from "../../src/meters/pulse-meter"
import { LevelAccumulator } from "../../src/meters/level"
import { discoveryMessages } from "../../src/discovery"
import { readingMessage } from "../../src/reading"
import { energyRecord, FLAG_NON_ADDITIVE } from "../../src/storage/records"
import { PULSE_WIDTH_TABLE } from "../fixtures/pulse-table"
import { expandHomeAssistantConfig } from "../fixtures/home-assistant"
import { gapRecord, initialState, lastKnown, stateFromJson, stateToJson } from "../../src/node-state"

function meters(settings: Record<string, any>) {
    return parseConfig(settings)
}

describe("meter configuration", () => {
    test("the first meter from METER_ID/METER_KIND/METER_OPTS, more from METER2..METER4, each in its slot", () => {
        const { config, errors } = meters({
            METER_ID: "grid",
            METER_KIND: "s0",
            METER_OPTS: "imp=1000/kWh min_pulse_ms=20",
            METER2: "water s0 imp=1/10L every=900",
            METER4: "boiler temperature input=boilerTemp every=60",
        })
        assert.deepEqual(errors, [])
        const [grid, water, none, boiler] = config.meters
        assert.equal(none, null)
        assert.deepEqual(
            [grid!.id, grid!.kind, grid!.quantity, grid!.unit, grid!.input, grid!.minPulseMs, grid!.readMs],
            ["grid", "s0", "energy", "Wh", "s0a", 20, 60000]
        )
        assert.deepEqual(
            [water!.slot, water!.quantity, water!.unit, water!.input, water!.readMs],
            [1, "water", "L", "s0b", 900000]
        )
        assert.deepEqual(
            [boiler!.slot, boiler!.quantity, boiler!.unit, boiler!.additive, boiler!.input],
            [3, "temperature", "°C", false, "boilerTemp"]
        )
    })

    test("an invalid meter is named with its setting and left out; the others keep their slots", () => {
        const { config, errors } = meters({
            METER2: "water s0",
            METER3: "gas s0 imp=100/m3 colour=red",
            METER4: "main sim",
        })
        assert.equal(config.meters[0]!.id, "main")
        assert.equal(config.meters[1], null)
        assert.equal(config.meters[2], null)
        assert.equal(config.meters[3], null)
        assert.equal(errors.length, 3, JSON.stringify(errors))
        assert.match(
            errors[0],
            /^meter water \(METER2\): imp: expected the pulse constant printed on the meter.*this meter is off, the others run$/
        )
        assert.match(errors[1], /^meter gas \(METER3\): option colour=red: expected name=value/)
        assert.match(errors[2], /^meter main \(METER4\): id main is already used by another meter/)
    })

    test("numeric options out of range, unknown kinds, reserved ids and a missing kind are refused", () => {
        const { config, errors } = meters({ METER2: "a sim every=0", METER3: "cmd sim", METER4: "lonely" })
        assert.deepEqual(config.meters.slice(1), [null, null, null])
        assert.match(errors[0], /every: 0 is not a whole number in 1\.\.86400/)
        assert.match(errors[1], /id cmd must be 1\.\.32 of .*and not cmd or reply/)
        assert.match(errors[2], /METER4.*expected "<id> <kind> \[option=value \.\.\.\]"/)
        assert.match(
            meters({ METER2: "x laser" }).errors[0],
            /unknown meter kind laser \(known: sim, ina219, ina226, s0, temperature, humidity, dc-current, dc-voltage, water-level\)/
        )
    })
})

describe("S0 pulse constants", () => {
    test("as printed on meters: per kWh, per litres, per cubic metre", () => {
        assert.deepEqual(parsePulseConstant("1000/kWh"), {
            milliNum: 1_000_000,
            den: 1000,
            unit: "Wh",
            quantity: "energy",
        })
        assert.deepEqual(parsePulseConstant("1/10L"), { milliNum: 10_000, den: 1, unit: "L", quantity: "water" })
        assert.deepEqual(parsePulseConstant("100/m3"), { milliNum: 1000, den: 100, unit: "m3", quantity: "gas" })
        for (const bad of ["", "1000", "0/kWh", "1000/MWh", "x/kWh", "1000/0L"])
            assert.equal(typeof parsePulseConstant(bad), "string", bad)
    })

    test("totals are exact for any constant, and a persisted total gives back its pulse count", () => {
        for (const imp of ["375/kWh", "800/kWh", "1000/kWh", "10000/kWh", "1/10L", "100/m3", "3/Wh"]) {
            const spec = { ...meters({ METER_KIND: "s0", METER_OPTS: "imp=" + imp }).config.meters[0]! }
            let previous = 0
            let sumOfDeltas = 0
            for (let pulses = 0; pulses <= 5000; pulses += 7) {
                const total = pulsesToMilli(spec, pulses)
                sumOfDeltas += total - previous
                previous = total
                assert.equal(milliToPulses(spec, total), pulses, `${imp}: ${pulses} pulses`)
            }
            assert.equal(sumOfDeltas, pulsesToMilli(spec, 4998), imp)
        }
    })
})

describe("S0 pulse meter", () => {
    const spec = (opts: string) => meters({ METER_KIND: "s0", METER_OPTS: opts }).config.meters[0] as MeterSpec

    test("counts button up events, starts from the persisted total, and reads deltas that sum to it", () => {
        const m = new PulseMeter(spec("imp=800/kWh"), 2_500_000) // 2.5 kWh = 2000 pulses
        for (let i = 0; i < 9; i++) m.onRiseHeld(1050 + i * 100, 50)
        const r = m.read(0, 2000)
        assert.equal(m.count, 9)
        assert.equal(r.deltaMilliWh, 11_250) // 9 x 1.25 Wh
        assert.equal(m.totalMilliWh, 2_511_250)
        assert.equal(m.read(2000, 3000).deltaMilliWh, 0)
    })

    for (const c of PULSE_WIDTH_TABLE)
        test(c.name, () => {
            const m = new PulseMeter(spec("imp=1000/kWh"), 0)
            let t = 1000
            for (const w of c.lowMs) m.onRiseHeld((t += 1000), w)
            assert.deepEqual([m.count, m.glitches], [c.pulses, c.glitches])
        })

    test("10,000 pulses at 20 Hz with bounce on every edge are counted exactly, whatever their arrival times", () => {
        const m = new PulseMeter(spec("imp=1000/kWh min_pulse_ms=15"), 0)
        let seed = 7
        const random = () => (seed = (seed * 48271) % 2147483647) / 2147483647
        let t = 0
        for (let i = 0; i < 10_000; i++) {
            // Events arrive in batches: several ups in one VM turn share an arrival time.
            if (random() < 0.7) t += 50
            for (let b = Math.floor(random() * 3); b > 0; b--) m.onRiseHeld(t, 1 + Math.floor(random() * 5))
            m.onRiseHeld(t, 25)
        }
        assert.equal(m.count, 10_000)
        assert.equal(m.read(0, t).deltaMilliWh, 10_000_000)
    })

    test("power from the pulse period, decaying once pulses stop, zero after an hour", () => {
        const m = new PulseMeter(spec("imp=1000/kWh"), 0)
        assert.equal(pulseRate(m, 0), 0)
        for (let i = 0; i < 3; i++) m.onRiseHeld(1000 + i * 3600 + 40, 40) // a pulse every 3.6 s: 1 Wh each
        const last = 1000 + 2 * 3600
        assert.equal(pulseRate(m, last + 100), 1000) // 1 Wh / 3.6 s = 1000 W
        assert.equal(pulseRate(m, last + 7200), 500)
        assert.equal(pulseRate(m, last + 3_600_000), 0)
    })
})

describe("levels", () => {
    test("min, time-weighted mean and max; the value at the start of an interval counts", () => {
        const a = new LevelAccumulator()
        assert.equal(a.close(0), null, "no value yet: nothing to say")
        a.add(20, 0)
        a.add(30, 750) // 20 for 750 ms, then 30 for 250 ms
        assert.deepEqual(a.close(1000), {
            summary: { minMilli: 20000, meanMilli: 22500, maxMilli: 30000 },
            estimated: false,
        })
        a.add(10, 1500) // 30 carried over for 500 ms, then 10
        assert.deepEqual(a.close(2000), {
            summary: { minMilli: 10000, meanMilli: 20000, maxMilli: 30000 },
            estimated: false,
        })
        assert.deepEqual(a.close(3000), {
            summary: { minMilli: 10000, meanMilli: 10000, maxMilli: 10000 },
            estimated: true,
        })
    })

    test("a level reading message carries the meter's quantity and unit", () => {
        const r = energyRecord(1, 5, 1, 0, 60000, 0, 0)
        r.flags |= FLAG_NON_ADDITIVE
        r.minMilli = 21500
        r.meanMilli = 21750
        r.maxMilli = 22000
        const labels = [null as any, { id: "boiler", quantity: "temperature", unit: "°C" }]
        const body = JSON.parse(readingMessage([r], labels).payload)
        assert.deepEqual([body.meter, body.quantity, body.unit], ["boiler", "temperature", "°C"])
        assert.deepEqual(body.readings[0], { seq: 5, boot: 1, start: 0, end: 60, min: 21.5, mean: 21.75, max: 22 })
    })

    test("Home Assistant: water and gas are total_increasing amounts, a temperature a measurement of its mean", () => {
        const m = discoveryMessages(
            "ha",
            "meters",
            "n1",
            [
                { id: "water", quantity: "water", unit: "L" },
                { id: "gas", quantity: "gas", unit: "m3" },
                { id: "boiler", quantity: "temperature", unit: "°C" },
                { id: "tank", quantity: "level", unit: "%" },
            ],
            ["water:water", "old:temperature", "main"]
        )
        assert.deepEqual(
            m.map(x => x.topic),
            [
                "ha/sensor/meternode_n1_old_temperature/config",
                "ha/sensor/meternode_n1_main_energy/config",
                "ha/sensor/meternode_n1_water_water/config",
                "ha/sensor/meternode_n1_gas_gas/config",
                "ha/sensor/meternode_n1_boiler_temperature/config",
                "ha/sensor/meternode_n1_tank_level/config",
            ]
        )
        const [water, gas, boiler, tank] = m.slice(2).map(x => expandHomeAssistantConfig(x.payload.join("")))
        assert.deepEqual(
            [water.device_class, water.state_class, water.unit_of_measurement],
            ["water", "total_increasing", "L"]
        )
        assert.deepEqual([gas.device_class, gas.unit_of_measurement], ["gas", "m³"])
        assert.deepEqual(
            [boiler.device_class, boiler.state_class, boiler.value_template],
            ["temperature", "measurement", "{{ value_json.readings[-1].mean }}"]
        )
        assert.equal(tank.device_class, undefined)
    })
})

describe("per-meter totals in the state", () => {
    test("a state written by a single-meter version reads as meter 0's total", () => {
        assert.deepEqual(stateFromJson({ b: 2, s: 1000, t: 4242, ms: 10, me: 50, c: 1 })!.totals, [4242])
        const s = { ...initialState(), boot: 2, totals: [10, 0, 30] }
        assert.deepEqual(stateFromJson(JSON.parse(JSON.stringify(stateToJson(s))))!.totals, [10, 0, 30])
        assert.equal(stateFromJson({ b: 2, s: 1, t: [1, "x"], ms: 0, me: 0 }), null)
    })

    test("each meter continues from the larger of the mark's total and its newest queued reading; each gets its gap", () => {
        const prev = {
            ...initialState(),
            boot: 3,
            seq: 3000,
            totals: [100, 7000],
            markSeq: 2500,
            markEndS: 900,
            clean: false,
        }
        const water = energyRecord(1, 2510, 3, 900_000, 960_000, 500, 7500)
        const known = lastKnown(prev, water, [null, water])
        assert.deepEqual(known.totals, [100, 7500])
        assert.equal(gapRecord(prev, known, 0, 3001)!.totalMilliWh, 100)
        assert.equal(gapRecord(prev, known, 1, 3002)!.totalMilliWh, 7500)
        assert.equal(gapRecord(prev, known, 1, 3002)!.meter, 1)
    })
})
