// What an image carries beyond the core: the drivers of the meter kinds it can read, Home
// Assistant discovery and replay history. The entry point composes them (devs/lib/compose.ts
// writes one per configuration), so an image holds the code of what its board uses and nothing
// else: the VM's code section is limited to 64 KB.
//
// Pure core: imports nothing from @devicescript.
import { EnergyMeter } from "./meters/meter"
import { MeterLabel, MeterSpec } from "./meters/meter-spec"
import { ReadingRecord } from "./storage/records"

/** Starts meter `spec` with the total it continues from; throws with the reason it cannot run. */
export type MeterStarter = (
    spec: MeterSpec,
    totalMilli: number,
    onError: (text: string) => void
) => EnergyMeter | Promise<EnergyMeter>

/** Retained Home Assistant configs for `labels`, and empty ones clearing ids announced before. */
export type DiscoveryMessages = (
    haPrefix: string,
    prefix: string,
    nodeId: string,
    labels: MeterLabel[],
    announced: string[]
) => { topic: string; payload: string }[]

/** Recent readings in RAM, for the replay command. */
export interface ReplayHistory {
    add(r: ReadingRecord): void
    replay(
        range: { fromMs: number; toMs: number },
        utcOffsetS: (boot: number) => number,
        send: (records: ReadingRecord[]) => Promise<void>
    ): Promise<{ untimed: number }>
}

export interface HistoryFeature {
    /** Opens a history of `bytes` of RAM. */
    open(bytes: number): Promise<ReplayHistory>
    /** Why a replay request's range is unusable, or "". */
    rangeError(request: any): string
}

export interface Features {
    /** Drivers by meter kind. A configured kind without one is reported by name and left out. */
    meters: { [kind: string]: MeterStarter }
    discovery?: DiscoveryMessages
    history?: HistoryFeature
}
