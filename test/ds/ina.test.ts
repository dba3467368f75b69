// The INA219 and INA226 drivers in the VM, against a fake I2C bus that models the chips at
// register level (the arithmetic of ina2xx.ts, checked against the datasheets in Node).
import * as ds from "@devicescript/core"
import { describe, test, expect } from "@devicescript/test"
import { InaDriver } from "../../src/meters/ina-driver"
import {
    chipCurrentRegister,
    chipPowerRegister,
    decodeReading,
    EnergyIntegrator,
    INA219,
    INA226,
    InaChip,
} from "../../src/meters/ina2xx"
import { InaEnergyMeter } from "../../src/meters/ina-meter"

/** A chip on a bus: 16-bit registers, a register pointer, current and power computed on read. */
class FakeInaBus {
    regs: number[] = []

    /** Every register as the datasheet decodes it; `flagsReg` holds the ready and overflow flags. */
    decodeAll(chip: InaChip, currentLsbA: number, flagsReg: number) {
        const r = this.regs
        return decodeReading(chip, currentLsbA, r[1], r[2], r[4], r[3], r[flagsReg])
    }

    pointer = 0
    failNext = false
    overflow = false
    transactions = 0

    constructor(
        readonly chip: InaChip,
        readonly address: number
    ) {
        for (let i = 0; i < 256; ++i) this.regs.push(0)
        this.regs[0xfe] = 0x5449
        this.regs[0xff] = 0x2260
    }

    /** What the chip measured: the raw shunt register and the bus voltage in its LSBs. */
    measure(shuntReg: number, busCounts: number) {
        this.regs[1] = shuntReg
        this.regs[2] = this.chip === INA219 ? (busCounts << 3) | 0x02 | (this.overflow ? 1 : 0) : busCounts
        this.regs[6] = 0x08 | (this.overflow ? 0x04 : 0)
        const current = chipCurrentRegister(this.chip, shuntReg, this.regs[5])
        this.regs[4] = current < 0 ? current + 0x10000 : current
        this.regs[3] = chipPowerRegister(this.chip, this.regs[4], this.regs[2])
    }

    /** One transaction (an I2CTransaction): its status, as the VM's. */
    async transfer(devAddr: number, writeBuf: Buffer, read?: Buffer): Promise<number> {
        this.transactions++
        if (devAddr !== this.address) return ds.I2CStatus.NAckAddr
        if (this.failNext) {
            this.failNext = false
            return ds.I2CStatus.NAckData
        }
        if (writeBuf.length) this.pointer = writeBuf[0]
        if (writeBuf.length === 3) {
            let v = writeBuf[1] * 256 + writeBuf[2]
            // INA219: bit 0 of the calibration register is void.
            if (this.pointer === 5 && this.chip === INA219) v = v - (v % 2)
            this.regs[this.pointer] = v
        }
        if (read) {
            const v = this.regs[this.pointer]
            read[0] = (v >> 8) & 0xff
            read[1] = v & 0xff
        }
        return ds.I2CStatus.OK
    }

    /** The bus as the driver takes it. */
    transaction() {
        const self = this
        return async (address: number, write: Buffer, read?: Buffer) => await self.transfer(address, write, read)
    }
}

describe("INA drivers on a fake I2C bus", () => {
    test("INA226: configuration, calibration 2560, and the datasheet example read as 10 A, 11.98 V, 119.8 W", async () => {
        const bus = new FakeInaBus(INA226, 0x40)
        // Current_LSB = max / 2^15: 32.768 A gives exactly 1 mA, as in the datasheet example.
        const d = new InaDriver({ chip: INA226, shuntOhms: 0.002, maxCurrentA: 32.768, bus: bus.transaction() })
        await d.configure()
        expect(bus.regs[0]).toBe(0x4527)
        expect(bus.regs[5]).toBe(2560)
        bus.measure(0x1f40, 0x2570)
        expect(bus.regs[4]).toBe(0x2710)
        expect(bus.regs[3]).toBe(0x12b8)
        const r = await d.read()
        // The driver reads the power alone; the chip's other registers decode as the datasheet says.
        const all = bus.decodeAll(INA226, d.currentLsbA, 6)
        expect(Math.abs(all.currentA - 10) < 1e-9).toBe(true)
        expect(Math.abs(all.busV - 11.98) < 1e-9).toBe(true)
        expect(Math.abs(r.powerW - 119.8) < 1e-9).toBe(true)
        expect(r.overflow).toBe(false)
    })

    test("INA219: calibration 4096 for 0.1 Ohm, 1.5 A at 12 V reads as 18 W; overflow is flagged", async () => {
        const bus = new FakeInaBus(INA219, 0x41)
        const d = new InaDriver({
            chip: INA219,
            address: 0x41,
            shuntOhms: 0.1,
            maxCurrentA: 3.2768,
            bus: bus.transaction(),
        })
        await d.configure()
        expect(bus.regs[5]).toBe(4096)
        bus.measure(15000, 3000)
        const r = await d.read()
        const all = bus.decodeAll(INA219, d.currentLsbA, 2)
        expect(Math.abs(all.currentA - 1.5) < 1e-9).toBe(true)
        expect(Math.abs(all.busV - 12) < 1e-9).toBe(true)
        expect(Math.abs(r.powerW - 18) < 1e-9).toBe(true)
        bus.overflow = true
        bus.measure(15000, 3000)
        expect((await d.read()).overflow).toBe(true)
    })

    test("a bus error is an error the caller catches, and the next read works", async () => {
        const bus = new FakeInaBus(INA226, 0x40)
        const d = new InaDriver({ chip: INA226, shuntOhms: 0.002, maxCurrentA: 32.768, bus: bus.transaction() })
        await d.configure()
        bus.measure(0x1f40, 0x2570)
        bus.failNext = true
        let error = ""
        try {
            await d.read()
        } catch (e) {
            error = (e as Error).message
        }
        expect(error.indexOf("I2C error 2 ") === 0).toBe(true)
        expect(Math.abs((await d.read()).powerW - 119.8) < 1e-9).toBe(true)
    })

    test("a chip that is not an INA226 is refused by its manufacturer id; a wrong address by the bus", async () => {
        const bus = new FakeInaBus(INA226, 0x40)
        bus.regs[0xfe] = 0x1234
        let error = ""
        try {
            await new InaDriver({
                chip: INA226,
                shuntOhms: 0.002,
                maxCurrentA: 32.768,
                bus: bus.transaction(),
            }).configure()
        } catch (e) {
            error = (e as Error).message
        }
        expect(error.indexOf("manufacturer id") > 0).toBe(true)
        let noDevice = ""
        try {
            await new InaDriver({
                chip: INA226,
                address: 0x45,
                shuntOhms: 0.002,
                maxCurrentA: 32.768,
                bus: bus.transaction(),
            }).configure()
        } catch (e) {
            noDevice = (e as Error).message
        }
        expect(noDevice.indexOf("I2C error 1 (1: no answer at the address") === 0).toBe(true)
    })

    test("100 W for an hour of one-second samples through the driver integrates to 100 Wh within 0.1 %", async () => {
        const bus = new FakeInaBus(INA226, 0x40)
        const d = new InaDriver({ chip: INA226, shuntOhms: 0.002, maxCurrentA: 32.768, bus: bus.transaction() })
        await d.configure()
        // 100 W at 12 V: 8.333 A, 16.67 mV across 2 mOhm = 6667 x 2.5 uV; 12 V = 9600 x 1.25 mV.
        bus.measure(6667, 9600)
        const integrator = new EnergyIntegrator(5000)
        for (let s = 0; s <= 3600; ++s) {
            integrator.add((await d.read()).powerW, s * 1000)
            if (s % 50 === 0) await ds.sleep(0)
        }
        const wh = integrator.milliWh / 1000
        console.log("    100 W for 3600 s: " + wh + " Wh")
        expect(Math.abs(wh - 100) < 0.1).toBe(true)
    })

    test("the INA energy meter: an hour at 100 W reads 99.975 Wh; a failed sample is reported and flags its interval", async () => {
        const bus = new FakeInaBus(INA226, 0x40)
        const driver = new InaDriver({ chip: INA226, shuntOhms: 0.002, maxCurrentA: 32.768, bus: bus.transaction() })
        await driver.configure()
        bus.measure(6667, 9600)
        const errors: string[] = []
        const meter = new InaEnergyMeter(driver, 5000000, 1000, text => errors.push(text))
        for (let s = 0; s <= 3600; ++s) {
            await meter.sample(s * 1000)
            if (s % 50 === 0) await ds.sleep(0)
        }
        const hour = meter.read(0, 3600000)
        expect(hour.deltaMilliWh).toBe(99975)
        expect(hour.estimated).toBe(false)
        expect(meter.totalMilliWh).toBe(5099975)
        bus.failNext = true
        for (let s = 3601; s <= 3660; ++s) await meter.sample(s * 1000)
        const minute = meter.read(3600000, 3660000)
        expect(minute.estimated).toBe(true)
        expect(errors.length).toBe(1)
        expect(errors[0].indexOf("INA226 at I2C address 64: I2C error 2 ") >= 0).toBe(true)
        // One missing sample is bridged: the minute still holds its 60 s of energy.
        expect(Math.abs(minute.deltaMilliWh - 1666) <= 1).toBe(true)
        expect(meter.read(3660000, 3660000).estimated).toBe(false)
    })
})
