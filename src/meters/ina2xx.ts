// The arithmetic of TI's INA219 and INA226 shunt power monitors: register addresses, LSBs, the
// calibration value and the decoding of the measurement registers, as the datasheets give them.
// The I2C side is in ina-driver.ts.
//
// INA219: datasheet SBOS448G (December 2015): calibration in 8.5.1 "Programming the Calibration
// Register" (Equations 1 to 5, pages 12-13), registers in 8.6 "Register Maps".
// INA226: datasheet SBOS547 (June 2011): calibration on page 14 (Equations 1 and 2), current and
// power on pages 15-16 (Equations 3 and 4) with the worked example of Table 1 (page 16: 10 A
// through 2 mOhm at 12 V), registers in "Register Maps".
//
// Pure core: imports nothing from @devicescript.

/** Registers both chips share (16 bits, big-endian on the wire). */
export const REG_CONFIG = 0x00
export const REG_SHUNT_VOLTAGE = 0x01
export const REG_BUS_VOLTAGE = 0x02
export const REG_POWER = 0x03
export const REG_CURRENT = 0x04
export const REG_CALIBRATION = 0x05
/** INA226 only: Mask/Enable (conversion ready CVRF = bit 3, math overflow OVF = bit 2), and the ids. */
export const REG_MASK_ENABLE = 0x06
export const REG_MANUFACTURER_ID = 0xfe
export const REG_DIE_ID = 0xff
export const TI_MANUFACTURER_ID = 0x5449
export const INA226_DIE_ID = 0x2260

export interface InaChip {
    name: string
    /** The bus voltage sits this many bits up in its register (INA219: bits 15..3, see voltageLsbs). */
    busShift: number
    /** Calibration = trunc(calNumerator / (Current_LSB x R_shunt)). */
    calNumerator: number
    /** Power LSB = powerLsbRatio x Current_LSB. */
    powerLsbRatio: number
    /** The largest calibration value the register holds. */
    maxCalibration: number
    /** The configuration the driver writes. */
    config: number
}

/**
 * INA219: shunt LSB 10 uV, bus LSB 4 mV in bits 15..3 with CNVR (bit 1) and OVF (bit 0),
 * Cal = trunc(0.04096 / (Current_LSB x R_shunt)) (Equation 1; bit 0 of the register is void and
 * reads 0), Power_LSB = 20 Current_LSB (Equation 3). Config 0x399F: 32 V bus range, PGA /8
 * (+-320 mV), 12-bit conversions, shunt and bus continuous (the power-on default).
 */
export const INA219: InaChip = {
    name: "INA219",
    busShift: 3,
    calNumerator: 0.04096,
    powerLsbRatio: 20,
    maxCalibration: 0xfffe,
    config: 0x399f,
}

/**
 * INA226: shunt LSB 2.5 uV, bus LSB 1.25 mV (Table 2), CAL = 0.00512 / (Current_LSB x R_shunt)
 * (Equation 1, 15 bits), Power_LSB = 25 Current_LSB (page 14). Config 0x4527: averages of 16,
 * 1.1 ms conversions, shunt and bus continuous.
 */
export const INA226: InaChip = {
    name: "INA226",
    busShift: 0,
    calNumerator: 0.00512,
    powerLsbRatio: 25,
    maxCalibration: 0x7fff,
    config: 0x4527,
}

/**
 * The shunt voltage register's LSB and the bus voltage register's (after shifting right by
 * busShift), V, as given above. Apart from the chips: the driver reads only the power, and the
 * chips' fields are built in every image that has the driver.
 */
export function voltageLsbs(chip: InaChip) {
    return chip === INA219 ? { shuntV: 0.00001, busV: 0.004 } : { shuntV: 0.0000025, busV: 0.00125 }
}

/** The 16-bit register value as a signed number (the shunt voltage and current registers). */
export function signed16(v: number) {
    return v >= 0x8000 ? v - 0x10000 : v
}

/** Smallest Current_LSB for a maximum expected current, A (INA226 Equation 2; INA219 Equation 2). */
export function minimumCurrentLsb(maxCurrentA: number) {
    return maxCurrentA / 32768
}

/**
 * The calibration register value, or an error text when the shunt and current range do not fit
 * the chip (a value of 0 or beyond the register).
 */
export function calibrationValue(chip: InaChip, currentLsbA: number, shuntOhms: number): number | string {
    if (!(shuntOhms > 0)) return chip.name + ": shunt resistance must be above 0 ohm"
    if (!(currentLsbA > 0)) return chip.name + ": current LSB must be above 0 A"
    // The tiny epsilon keeps exact quotients exact: 0.00512 / (0.001 * 0.002) is 2559.9999999999995 in doubles.
    let cal = Math.floor(chip.calNumerator / (currentLsbA * shuntOhms) + 1e-9)
    // INA219: bit 0 is void and reads 0.
    if (chip.busShift) cal -= cal % 2
    if (cal < 1 || cal > chip.maxCalibration)
        return `${chip.name}: calibration ${cal} out of 1..${chip.maxCalibration} for ${shuntOhms} ohm and a current LSB of ${currentLsbA} A`
    return cal
}

export interface InaPower {
    powerW: number
    /** The chip's power or current arithmetic overflowed: current and power are not valid. */
    overflow: boolean
}

export interface InaReading extends InaPower {
    shuntV: number
    busV: number
    currentA: number
}

/**
 * The power register in W, and the overflow flag of `flagsReg`: for the INA219 the bus voltage
 * register (its OVF bit), for the INA226 the Mask/Enable register (its OVF bit).
 */
export function decodePower(chip: InaChip, currentLsbA: number, powerReg: number, flagsReg: number): InaPower {
    return {
        powerW: powerReg * chip.powerLsbRatio * currentLsbA,
        overflow: (flagsReg & (chip.busShift ? 0x01 : 0x04)) !== 0,
    }
}

/**
 * Decodes every measurement register, as the datasheets give them. The driver reads the power
 * alone (decodePower); the rest checks the chip model of the tests against the datasheets.
 */
export function decodeReading(
    chip: InaChip,
    currentLsbA: number,
    shuntReg: number,
    busReg: number,
    currentReg: number,
    powerReg: number,
    flagsReg: number
): InaReading {
    const r = decodePower(chip, currentLsbA, powerReg, flagsReg) as InaReading
    const lsb = voltageLsbs(chip)
    r.shuntV = signed16(shuntReg) * lsb.shuntV
    r.busV = (busReg >> chip.busShift) * lsb.busV
    r.currentA = signed16(currentReg) * currentLsbA
    return r
}

function trunc(x: number) {
    return x < 0 ? Math.ceil(x) : Math.floor(x)
}

/** What the chip computes, for fake buses in tests: Current (Eq. 4 / Eq. 3) and Power (Eq. 5 / Eq. 4) registers. */
export function chipCurrentRegister(chip: InaChip, shuntReg: number, calibration: number) {
    const divisor = chip.busShift ? 4096 : 2048
    return trunc((signed16(shuntReg) * calibration) / divisor)
}

export function chipPowerRegister(chip: InaChip, currentReg: number, busReg: number) {
    const divisor = chip.busShift ? 5000 : 20000
    return trunc((Math.abs(signed16(currentReg)) * (busReg >> chip.busShift)) / divisor)
}

/**
 * Energy from sampled power, by the trapezoid rule, in mWh. Samples further apart than
 * `maxGapMs` are not bridged: the gap is reported instead of guessed.
 */
export class EnergyIntegrator {
    /** Energy so far, mWh, unrounded. */
    milliWh = 0
    /** Time not covered because samples were too far apart, ms. */
    uncoveredMs = 0
    private lastMs = -1
    private lastW = 0

    constructor(readonly maxGapMs: number) {}

    add(powerW: number, atMs: number) {
        if (this.lastMs >= 0 && atMs > this.lastMs) {
            const dtMs = atMs - this.lastMs
            if (dtMs <= this.maxGapMs) this.milliWh += ((this.lastW + powerW) / 2) * (dtMs / 3600)
            else this.uncoveredMs += dtMs
        }
        this.lastMs = atMs
        this.lastW = powerW
    }
}
