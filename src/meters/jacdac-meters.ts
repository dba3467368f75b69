// Meters on Jacdac services: an S0 pulse input as a button service (the board's native button
// server samples the pin every few ms in C; each `up` event carries how long the input was low),
// and any sensor service read as a level. Each binds to the role named by the meter's `input`.
// Platform code: DeviceScript only.
import * as ds from "@devicescript/core"
import { MeterSpec } from "./meter-spec"
import { EnergyMeter, MeterReading } from "./meter"
import { PulseMeter } from "./pulse-meter"
import { LevelAccumulator } from "./level"

/** Problems are reported at most this often, so a missing sensor does not flood the console. */
const REPORT_EVERY_MS = 60000

/** An S0 meter on a button role: each `up` says how long the input was low. */
export function startPulseMeter(spec: MeterSpec, totalMilli: number): PulseMeter {
    const meter = new PulseMeter(spec, totalMilli)
    const button = new ds.Button(spec.input)
    button.up.subscribe(heldMs => {
        meter.onRiseHeld(ds.millis(), heldMs)
    })
    return meter
}

/** The sensor client of a level kind, and the factor from its reading to the meter's unit. */
function sensorOf(kind: string, role: string): { sensor: ds.Sensor; scale: number } {
    if (kind === "temperature") return { sensor: new ds.Temperature(role), scale: 1 }
    if (kind === "humidity") return { sensor: new ds.Humidity(role), scale: 1 }
    if (kind === "dc-current") return { sensor: new ds.DcCurrentMeasurement(role), scale: 1 }
    if (kind === "dc-voltage") return { sensor: new ds.DcVoltageMeasurement(role), scale: 1 }
    // Water level is a ratio 0..1; readings say percent.
    return { sensor: new ds.WaterLevel(role), scale: 100 }
}

/** A Jacdac sensor read as a level: its streamed readings, min/mean/max per interval. */
export class SensorLevelMeter implements EnergyMeter {
    readonly totalMilliWh = 0
    private readonly accumulator = new LevelAccumulator()
    private readonly sensor: ds.Sensor
    private readonly scale: number
    private lastReportMs = -REPORT_EVERY_MS

    constructor(
        readonly spec: MeterSpec,
        private readonly onError: (text: string) => void
    ) {
        const s = sensorOf(spec.kind, spec.input)
        this.sensor = s.sensor
        this.scale = s.scale
    }

    /** Subscribes to the sensor's readings; the sensor streams them while the role is bound. */
    start() {
        const self = this
        const register = (this.sensor as any).reading as ds.Register<number>
        register.subscribe(value => {
            if (typeof value === "number" && !isNaN(value)) self.accumulator.add(value * self.scale, ds.millis())
        })
    }

    read(startMs: number, endMs: number): MeterReading {
        const closed = this.accumulator.close(endMs)
        if (!closed) {
            const now = ds.millis()
            if (now - this.lastReportMs >= REPORT_EVERY_MS) {
                this.lastReportMs = now
                this.onError(
                    "meter " +
                        this.spec.id +
                        ": no reading from a " +
                        this.spec.kind +
                        " sensor on role " +
                        this.spec.input +
                        " yet"
                )
            }
            return null
        }
        return { deltaMilliWh: 0, level: closed.summary, estimated: closed.estimated }
    }
}

/** The driver of the level kinds (temperature, humidity, dc-current, dc-voltage, water-level). */
export function startLevelMeter(spec: MeterSpec, totalMilli: number, onError: (text: string) => void) {
    const meter = new SensorLevelMeter(spec, onError)
    meter.start()
    return meter
}
