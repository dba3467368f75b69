// INA219 / INA226 over I2C, in the shape of @devicescript/drivers: an I2CDriver that takes its
// bus as a parameter (a fake one in tests), writes the configuration and the calibration
// computed from the shunt and the maximum current, reads it back, and reads a measurement once
// the chip reports a conversion ready. The arithmetic is in ina2xx.ts.
// Platform code: DeviceScript only.
import * as ds from "@devicescript/core"
import { DriverError, I2CDriver } from "@devicescript/drivers"
import { I2C } from "@devicescript/i2c"
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

export class InaDriver extends I2CDriver {
    readonly chip: InaChip
    readonly currentLsbA: number
    readonly calibration: number

    constructor(o: InaDriverOptions) {
        super(o.address === undefined ? 0x40 : o.address, { client: o.client })
        this.chip = o.chip
        this.currentLsbA = minimumCurrentLsb(o.maxCurrentA)
        const cal = calibrationValue(o.chip, this.currentLsbA, o.shuntOhms)
        if (typeof cal === "string") throw new DriverError(cal as string)
        this.calibration = cal as number
    }

    /** Configures the chip. I2CDriver.init() skips this in the simulator; tests with a fake bus call it. */
    async configure() {
        await this.initDriver()
    }

    protected override async initDriver() {
        const chip = this.chip
        if (chip === INA226) {
            const id = await this.readWord(REG_MANUFACTURER_ID)
            if (id !== TI_MANUFACTURER_ID)
                throw new DriverError(chip.name + ": manufacturer id " + id + ", expected " + TI_MANUFACTURER_ID)
        }
        await this.writeWord(REG_CONFIG, chip.config)
        await this.writeWord(REG_CALIBRATION, this.calibration)
        const back = await this.readWord(REG_CALIBRATION)
        if (back !== this.calibration)
            throw new DriverError(chip.name + ": calibration reads back " + back + ", wrote " + this.calibration)
    }

    async readWord(reg: number) {
        const b = await this.readRegBuf(reg, 2)
        return b[0] * 256 + b[1]
    }

    async writeWord(reg: number, value: number) {
        await this.writeRegBuf(reg, Buffer.from([(value >> 8) & 0xff, value & 0xff]))
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
