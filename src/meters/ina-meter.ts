// An energy meter on an INA219 or INA226: power sampled every sampleMs, integrated by the
// trapezoid rule. A failed sample (bus error, math overflow) is reported and leaves a hole that
// is not guessed: the reading of that interval is flagged estimated.
// Platform code: DeviceScript only.
import * as ds from "@devicescript/core"
import { InaDriver } from "./ina-driver"
import { EnergyIntegrator, INA219, INA226 } from "./ina2xx"
import { EnergyMeter, MeterReading } from "./meter"
import { MeterSpec } from "./meter-spec"

/** Errors reported at most this often, so a missing chip does not flood the console. */
const ERROR_REPORT_MS = 60000

export class InaEnergyMeter implements EnergyMeter {
    totalMilliWh: number
    private readonly integrator: EnergyIntegrator
    private readonly baseMilliWh: number
    private failedSinceRead = false
    private uncoveredAtRead = 0
    private lastReportMs = -ERROR_REPORT_MS

    constructor(
        readonly driver: InaDriver,
        totalMilliWh: number,
        readonly sampleMs: number,
        private readonly onError: (text: string) => void
    ) {
        this.totalMilliWh = totalMilliWh
        this.baseMilliWh = totalMilliWh
        // A gap of more than two sample periods is not bridged.
        this.integrator = new EnergyIntegrator(sampleMs * 2 + 50)
    }

    /**
     * Configures the chip, except in the simulator, which has no I2C devices (as I2CDriver.init()
     * of @devicescript/drivers does), then samples in a fiber of its own.
     */
    async start() {
        const name = this.driver.chip.name
        try {
            if (!ds.isSimulator()) await this.driver.configure()
        } catch (e) {
            // The chip's own answers (a wrong id, a calibration that does not stick) say enough.
            const text = (e as Error).message
            this.onError(
                "meter: " +
                    name +
                    ": " +
                    (text.indexOf(name) === 0 ? "" : "I2C device not found or malfunctioning: ") +
                    text
            )
            this.lastReportMs = ds.millis()
        }
        const self = this
        setTimeout(async () => {
            for (;;) {
                await self.sample(ds.millis())
                await ds.sleep(self.sampleMs)
            }
        }, 0)
    }

    /** One sample at nowMs (ms since boot). A failure is reported at most every ERROR_REPORT_MS. */
    async sample(nowMs: number) {
        try {
            const r = await this.driver.read()
            if (r.overflow) throw new Error("current or power overflowed: the shunt or INA_MAX_A does not fit the load")
            this.integrator.add(r.powerW, nowMs)
        } catch (e) {
            this.failedSinceRead = true
            const now = ds.millis()
            if (now - this.lastReportMs < ERROR_REPORT_MS) return
            this.lastReportMs = now
            const d = this.driver
            this.onError(`meter: ${d.chip.name} at I2C address ${d.address}: ${(e as Error).message}`)
        }
    }

    read(startMs: number, endMs: number): MeterReading {
        // Rounded, not floored: 3,600 additions of 27.77 mWh sum to 99,974.9999.
        const total = this.baseMilliWh + Math.round(this.integrator.milliWh)
        const delta = total - this.totalMilliWh
        this.totalMilliWh = total
        const estimated = this.failedSinceRead || this.integrator.uncoveredMs > this.uncoveredAtRead
        this.failedSinceRead = false
        this.uncoveredAtRead = this.integrator.uncoveredMs
        return { deltaMilliWh: delta, estimated }
    }
}

/** The driver of kinds ina219 and ina226: configures the chip and starts sampling. */
export async function startInaMeter(spec: MeterSpec, totalMilli: number, onError: (text: string) => void) {
    const driver = new InaDriver({
        chip: spec.kind === "ina219" ? INA219 : INA226,
        address: spec.address,
        shuntOhms: spec.shuntMicroOhm / 1000000,
        maxCurrentA: spec.maxMilliA / 1000,
    })
    const meter = new InaEnergyMeter(driver, totalMilli, spec.sampleMs, onError)
    await meter.start()
    return meter
}
