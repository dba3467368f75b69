// INA219 / INA226 over I2C: takes its bus as a parameter (a fake one in tests), writes the
// configuration and the calibration computed from the shunt and the maximum current, reads it
// back, and reads a measurement once the chip reports a conversion ready. The arithmetic is in
// ina2xx.ts. It talks to @devicescript/i2c directly rather than extending @devicescript/drivers'
// I2CDriver: that package brings SPI and GPIO into the image, about 1.2 KB of code.
// Platform code: DeviceScript only.
import * as ds from "@devicescript/core"
import { i2c, I2C } from "@devicescript/i2c"
import {
    calibrationValue,
    decodeReading,
    INA226,
    InaChip,
    InaReading,
    minimumCurrentLsb,
    REG_BUS_VOLTAGE,
    REG_CALIBRATION,
    REG_CONFIG,
    REG_CURRENT,
    REG_MANUFACTURER_ID,
    REG_MASK_ENABLE,
    REG_POWER,
    REG_SHUNT_VOLTAGE,
    TI_MANUFACTURER_ID,
} from "./ina2xx"

/** Polls for conversion ready before reading anyway (INA226 at 16 averages: about 36 ms). */
const READY_POLLS = 25
const READY_POLL_MS = 2

export interface InaDriverOptions {
    chip: InaChip
    /** 7-bit address; 0x40 with A0 and A1 to GND. */
    address?: number
    shuntOhms: number
    /** The largest current expected, A: sets the current LSB (Current_LSB = max / 2^15). */
    maxCurrentA: number
    /** The bus; default the board's I2C. */
    client?: I2C
}

export class InaDriver {
    readonly chip: InaChip
    readonly address: number
    readonly client: I2C
    readonly currentLsbA: number
    readonly calibration: number

    constructor(o: InaDriverOptions) {
        this.chip = o.chip
        this.address = o.address === undefined ? 0x40 : o.address
        this.client = o.client || i2c
        this.currentLsbA = minimumCurrentLsb(o.maxCurrentA)
        const cal = calibrationValue(o.chip, this.currentLsbA, o.shuntOhms)
        if (typeof cal === "string") throw new Error(cal as string)
        this.calibration = cal as number
    }

    /**
     * Configures the chip, except in the simulator, which has no I2C devices (as I2CDriver.init()
     * of @devicescript/drivers does). Throws with what went wrong.
     */
    async init() {
        if (ds.isSimulator()) return
        try {
            await this.configure()
        } catch (e) {
            // The chip's own answers (a wrong id, a calibration that does not stick) say enough.
            const text = (e as Error).message
            if (text.indexOf(this.chip.name) === 0) throw e
            throw new Error("I2C device not found or malfunctioning: " + text)
        }
    }

    /** Configures the chip and checks it: tests with a fake bus call this directly. */
    async configure() {
        const chip = this.chip
        if (chip === INA226) {
            const id = await this.readWord(REG_MANUFACTURER_ID)
            if (id !== TI_MANUFACTURER_ID)
                throw new Error(chip.name + ": manufacturer id " + id + ", expected " + TI_MANUFACTURER_ID)
        }
        await this.writeWord(REG_CONFIG, chip.config)
        await this.writeWord(REG_CALIBRATION, this.calibration)
        const back = await this.readWord(REG_CALIBRATION)
        if (back !== this.calibration)
            throw new Error(chip.name + ": calibration reads back " + back + ", wrote " + this.calibration)
    }

    async readWord(reg: number) {
        const b = await this.client.readRegBuf(this.address, reg, 2)
        return b[0] * 256 + b[1]
    }

    async writeWord(reg: number, value: number) {
        await this.client.writeRegBuf(this.address, reg, Buffer.from([(value >> 8) & 0xff, value & 0xff]))
    }

    /**
     * One measurement. Waits (bounded) for a conversion: the INA219 flags it in the bus voltage
     * register (CNVR), the INA226 in Mask/Enable (CVRF). Throws I2CError on a bus error; a math
     * overflow is in the result's `overflow`.
     */
    async read(): Promise<InaReading> {
        const ina219 = this.chip.busShift > 0
        let flags = 0
        for (let i = 0; i < READY_POLLS; ++i) {
            flags = await this.readWord(ina219 ? REG_BUS_VOLTAGE : REG_MASK_ENABLE)
            if (flags & (ina219 ? 0x02 : 0x08)) break
            await ds.sleep(READY_POLL_MS)
        }
        const shunt = await this.readWord(REG_SHUNT_VOLTAGE)
        const bus = await this.readWord(REG_BUS_VOLTAGE)
        const current = await this.readWord(REG_CURRENT)
        // Reading the power register clears the INA219's CNVR for the next conversion.
        const power = await this.readWord(REG_POWER)
        return decodeReading(this.chip, this.currentLsbA, shunt, bus, current, power, ina219 ? bus : flags)
    }
}
