// What an image carries beyond the core: the drivers of the meter kinds it can read, Home
// Assistant discovery and replay history. The entry point composes them (devs/lib/compose.ts
// writes one per configuration), so an image holds the code of what its board uses and nothing
// else: the VM's code section is limited to 64 KB.
//
// Pure core: imports nothing from @devicescript.
import { EnergyMeter } from "./meters/meter"
import { MeterLabel, MeterSpec } from "./meters/meter-spec"
import { ReadingRecord } from "./storage/records"
import { NodeConfig } from "./config"
import { ClientSession, SessionOptions } from "./mqtt/session"

/** Starts meter `spec` with the total it continues from; throws with the reason it cannot run. */
export type MeterStarter = (
    spec: MeterSpec,
    totalMilli: number,
    onError: (text: string) => void
) => EnergyMeter | Promise<EnergyMeter>

/** Retained Home Assistant configs for `labels` (each in parts), and empty ones clearing ids announced before. */
export type DiscoveryMessages = (
    haPrefix: string,
    prefix: string,
    nodeId: string,
    labels: MeterLabel[],
    announced: string[]
) => { topic: string; payload: string[] }[]

/** Recent readings in RAM, for the replay command. */
export interface ReplayHistory {
    add(r: ReadingRecord): void
    replay(
        range: { fromMs: number; toMs: number },
        utcOffsetS: (boot: number) => number,
        send: (records: ReadingRecord[]) => Promise<void>
    ): Promise<{ untimed: number }>
}

/** What a replay needs of the node: its meters, its topics, publishing and acknowledgements. */
export interface ReplayPort {
    /** By slot; null where no meter is configured. */
    labels: MeterLabel[]
    topicPrefix: string
    nodeId: string
    utcOffsetS: (boot: number) => number
    /** Publishes at QoS 1; returns the token its acknowledgement reports. */
    publish: (topic: string, payload: string) => number
    waitForAck: (token: number, timeoutMs: number) => Promise<boolean>
    /** Runs `fn` soon, in a fiber of its own. */
    spawn: (fn: () => Promise<void>) => void
}

export interface HistoryFeature {
    /** Opens a history of `bytes` of RAM. */
    open(bytes: number): Promise<ReplayHistory>
    /**
     * Starts the replay command `request` (with its `id`) over `history`: "" once started, the
     * replay then replies itself; otherwise why it cannot start.
     */
    start(history: ReplayHistory, request: any, id: any, node: ReplayHost): string
}

/** The node as the history feature sees it: the feature makes its ReplayPort of it. */
export interface ReplayHost {
    readonly labels: MeterLabel[]
    readonly config: { topicPrefix: string; nodeId: string }
    readonly client: { publish(topic: string, payload: Buffer, qos: number, retain: boolean): number }
    utcOffsetS(boot: number): number
    waitForAck(token: number, timeoutMs: number): Promise<boolean>
}

/** What the simulated backlog (SIM_BACKLOG) needs of the node. */
export interface BacklogHost {
    readonly boot: number
    /** By slot; the backlog is the first meter's. */
    readonly meters: EnergyMeter[]
    /** Its flash state (src/node/flash-state.ts): takeSeq() is the next seq, its reservation persisted first. */
    readonly flash: { takeSeq(): Promise<number> }
    readonly uplink: { append(r: ReadingRecord): Promise<void>; flush(): Promise<void> }
}

/**
 * The client session of an image that speaks MQTT 5 (src/platform/mqtt5-feature.ts), made from the
 * node's session options and its configuration.
 */
export type Mqtt5Feature = (options: SessionOptions, c: NodeConfig) => Promise<ClientSession>

export interface Features {
    /** Drivers by meter kind. A configured kind without one is reported by name and left out. */
    meters: { [kind: string]: MeterStarter }
    discovery?: DiscoveryMessages
    history?: HistoryFeature
    /** Absent: the image speaks MQTT 3.1.1 only. */
    mqtt5?: Mqtt5Feature
    /** Queues SIM_BACKLOG readings of simulated history at boot (benchmarks only). */
    backlog?: (node: BacklogHost, count: number) => Promise<void>
}
