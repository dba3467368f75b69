// INA219 and INA226 arithmetic against the datasheets: calibration, register decoding, what the
// chip computes, and energy integrated from sampled power.
import { describe, test } from "node:test"
import assert from "node:assert/strict"
import {
    calibrationValue,
    chipCurrentRegister,
    chipPowerRegister,
    decodeReading,
    EnergyIntegrator,
    INA219,
    INA226,
    minimumCurrentLsb,
    voltageLsbs,
} from "../../src/meters/ina2xx"

const close = (actual: number, expected: number, tolerance: number, what: string) =>
    assert.ok(Math.abs(actual - expected) <= tolerance, `${what}: ${actual}, expected ${expected} +- ${tolerance}`)

describe("INA226 (SBOS547, Table 1 on page 16: 10 A, 2 mOhm, 12 V)", () => {
    test("calibration 2560 for a 1 mA current LSB and 2 mOhm", () => {
        assert.equal(calibrationValue(INA226, 0.001, 0.002), 2560)
    })
    test("the chip's current and power registers: 0x2710 and 0x12B8", () => {
        const current = chipCurrentRegister(INA226, 0x1f40, 2560)
        assert.equal(current, 0x2710)
        assert.equal(chipPowerRegister(INA226, current, 0x2570), 0x12b8)
    })
    test("decoded: 20 mV shunt, 11.98 V bus, 10 A, 119.8 W", () => {
        const r = decodeReading(INA226, 0.001, 0x1f40, 0x2570, 0x2710, 0x12b8, 0x0008)
        close(r.shuntV, 0.02, 1e-12, "shunt V")
        close(r.busV, 11.98, 1e-9, "bus V")
        close(r.currentA, 10, 1e-12, "current")
        close(r.powerW, 119.8, 1e-9, "power")
        assert.equal(r.overflow, false)
    })
    test("negative current, and the math overflow flag (Mask/Enable bit 2)", () => {
        const r = decodeReading(INA226, 0.001, 0xe0c0, 0x2570, 0xd8f0, 0x12b8, 0x0004)
        close(r.shuntV, -0.02, 1e-12, "shunt V")
        close(r.currentA, -10, 1e-12, "current")
        assert.equal(r.overflow, true)
    })
})

describe("INA219 (SBOS448G, 8.5.1 Equations 1 to 5)", () => {
    test("calibration 4096 for 100 uA and 0.1 Ohm (a 3.2 A range)", () => {
        assert.equal(calibrationValue(INA219, 0.0001, 0.1), 4096)
        close(minimumCurrentLsb(3.2), 0.0000977, 1e-7, "minimum LSB for 3.2 A")
    })
    test("1.5 A at 12 V: shunt 15000, bus 3000 << 3 with CNVR, current 15000, power 9000 = 18 W", () => {
        const current = chipCurrentRegister(INA219, 15000, 4096)
        assert.equal(current, 15000)
        const bus = (3000 << 3) | 0x02
        const power = chipPowerRegister(INA219, current, bus)
        assert.equal(power, 9000)
        const r = decodeReading(INA219, 0.0001, 15000, bus, current, power, bus)
        close(r.shuntV, 0.15, 1e-12, "shunt V")
        close(r.busV, 12, 1e-12, "bus V")
        close(r.currentA, 1.5, 1e-12, "current")
        close(r.powerW, 18, 1e-12, "power")
        assert.equal(r.overflow, false)
        assert.equal(decodeReading(INA219, 0.0001, 15000, bus | 0x01, current, power, bus | 0x01).overflow, true)
    })
    test("an odd calibration is rounded down to even (bit 0 is void)", () => {
        assert.equal(calibrationValue(INA219, 0.0001, 0.0999), 4100)
    })
    test("ranges the register cannot hold are refused by name", () => {
        assert.match(String(calibrationValue(INA219, 0.000001, 0.001)), /INA219: calibration .* out of/)
        assert.match(String(calibrationValue(INA226, 0.001, 0)), /shunt resistance/)
    })
})

describe("energy from sampled power", () => {
    test("100 W for one hour, read through an INA226's registers every ~1 s with jitter: 100 Wh within 0.1 %", () => {
        const integrator = new EnergyIntegrator(5000)
        const lsb = 0.001
        const cal = calibrationValue(INA226, lsb, 0.002) as number
        // 100 W at 12 V: 8.333 A, 16.67 mV across 2 mOhm.
        const shuntReg = Math.round(((100 / 12) * 0.002) / voltageLsbs(INA226).shuntV) // 6667
        const busReg = Math.round(12 / voltageLsbs(INA226).busV)
        const sample = (at: number) => {
            const current = chipCurrentRegister(INA226, shuntReg, cal)
            const power = chipPowerRegister(INA226, current, busReg)
            integrator.add(decodeReading(INA226, lsb, shuntReg, busReg, current, power, 0x08).powerW, at)
        }
        let seed = 3
        for (let t = 0; t < 3_600_000;) {
            sample(t)
            seed = (seed * 48271) % 2147483647
            t += 900 + Math.floor((seed / 2147483647) * 200)
        }
        sample(3_600_000)
        close(integrator.milliWh / 1000, 100, 0.1, "energy over one hour, Wh")
        assert.equal(integrator.uncoveredMs, 0)
    })
    test("a gap longer than maxGapMs is not bridged but counted", () => {
        const integrator = new EnergyIntegrator(5000)
        integrator.add(100, 0)
        integrator.add(100, 1000)
        integrator.add(100, 61_000)
        close(integrator.milliWh, 100 / 3.6, 1e-9, "mWh")
        assert.equal(integrator.uncoveredMs, 60_000)
    })
})
