// INA219 / INA226 over I2C: takes its bus as a parameter (a fake one in tests), writes the
// configuration and the calibration computed from the shunt and the maximum current, reads it
// back, and reads the power once the chip reports a conversion ready. The arithmetic is in
// ina2xx.ts. It makes the VM's I2C transactions itself rather than through @devicescript/i2c
// (or @devicescript/drivers' I2CDriver, which brings SPI and GPIO too): a 16-bit register read
// or write is one transaction, and the package's classes cost about 0.7 KB of code.
// Platform code: DeviceScript only.
import * as ds from "@devicescript/core"
import {
    calibrationValue,
    decodePower,
    INA226,
    InaChip,
    InaPower,
    minimumCurrentLsb,
    REG_BUS_VOLTAGE,
    REG_CALIBRATION,
    REG_CONFIG,
    REG_MANUFACTURER_ID,
    REG_MASK_ENABLE,
    REG_POWER,
    TI_MANUFACTURER_ID,
} from "./ina2xx"

/** Polls for conversion ready before reading anyway (INA226 at 16 averages: about 36 ms). */
const READY_POLLS = 25
const READY_POLL_MS = 2

/**
 * One I2C transaction with the 7-bit `address`: writes `write`, then reads `read.length` bytes
 * into `read` when given. Resolves to the bus status, 0 on success (ds.I2CStatus).
 */
export type I2CTransaction = (address: number, write: Buffer, read?: Buffer) => Promise<number>

/** The VM's own transaction: not in the core's typings, which @devicescript/i2c wraps. */
type DsI2C = typeof ds & { _i2cTransaction: I2CTransaction }

export interface InaDriverOptions {
    chip: InaChip
    /** 7-bit address; 0x40 with A0 and A1 to GND. */
    address?: number
    shuntOhms: number
    /** The largest current expected, A: sets the current LSB (Current_LSB = max / 2^15). */
    maxCurrentA: number
    /** The bus; default the board's I2C. */
    bus?: I2CTransaction
}

export class InaDriver {
    readonly chip: InaChip
    readonly address: number
    readonly bus: I2CTransaction
    readonly currentLsbA: number
    readonly calibration: number

    constructor(o: InaDriverOptions) {
        this.chip = o.chip
        this.address = o.address === undefined ? 0x40 : o.address
        this.bus = o.bus
        this.currentLsbA = minimumCurrentLsb(o.maxCurrentA)
        const cal = calibrationValue(o.chip, this.currentLsbA, o.shuntOhms)
        if (typeof cal === "string") throw new Error(cal as string)
        this.calibration = cal as number
    }

    /** Configures the chip and checks it. Throws with what went wrong. */
    async configure() {
        const chip = this.chip
        if (chip === INA226) {
            const id = await this.register(REG_MANUFACTURER_ID)
            if (id !== TI_MANUFACTURER_ID)
                throw new Error(`${chip.name}: manufacturer id ${id}, expected ${TI_MANUFACTURER_ID}`)
        }
        await this.register(REG_CONFIG, chip.config)
        await this.register(REG_CALIBRATION, this.calibration)
        const back = await this.register(REG_CALIBRATION)
        if (back !== this.calibration)
            throw new Error(`${chip.name}: calibration reads back ${back}, wrote ${this.calibration}`)
    }

    /** Reads the 16-bit register `reg`, or writes `value` to it (big-endian). Throws on a bus error. */
    async register(reg: number, value?: number) {
        const writing = value !== undefined
        const read = writing ? undefined : Buffer.alloc(2)
        const write = writing ? Buffer.from([reg, (value >> 8) & 0xff, value & 0xff]) : Buffer.from([reg])
        const status = this.bus
            ? await this.bus(this.address, write, read)
            : await (ds as DsI2C)._i2cTransaction(this.address, write, read)
        if (status)
            throw new Error("I2C error " + status + " (1: no answer at the address, 2: data refused, 3: no I2C bus)")
        return writing ? value : read[0] * 256 + read[1]
    }

    /**
     * One measurement of the power. Waits (bounded) for a conversion: the INA219 flags it in the
     * bus voltage register (CNVR), the INA226 in Mask/Enable (CVRF); the same registers carry the
     * math overflow flag. Throws on a bus error; an overflow is in the result's `overflow`.
     */
    async read(): Promise<InaPower> {
        const ina219 = this.chip.busShift > 0
        let flags = 0
        for (let i = 0; i < READY_POLLS; ++i) {
            flags = await this.register(ina219 ? REG_BUS_VOLTAGE : REG_MASK_ENABLE)
            if (flags & (ina219 ? 0x02 : 0x08)) break
            await ds.sleep(READY_POLL_MS)
        }
        // Reading the power register clears the INA219's CNVR for the next conversion.
        return decodePower(this.chip, this.currentLsbA, await this.register(REG_POWER), flags)
    }
}
