// Shared pieces of the end-to-end tests: a broker, the firmware in the simulator, and a
// subscriber that records what the broker delivered.
import mqtt from "mqtt"
import assert from "node:assert/strict"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Broker, BrokerOptions } from "../../devs/lib/broker"
import { buildFirmware, Simulator } from "../../devs/lib/simulator"
import type { Settings } from "../../devs/lib/simulator"
import { sleep } from "../../devs/lib/process"
import { schemaViolation } from "./schemas"

/** A console line that says the VM crashed, panicked or ran out of memory or operations. */
export const CRASH = /OutOfMemory|InfiniteLoop|PANIC|Unhandled exception|memory access out of bounds|stack overflow/i

export interface Received {
    topic: string
    payload: string
    qos: number
    retain: boolean
    dup: boolean
    atMs: number
}

export interface RecorderOptions {
    /** A persistent session (clean: false, fixed client id) misses nothing across a broker restart. */
    persistentSession?: boolean
    username?: string
    password?: string
    /** CA certificate for an mqtts:// broker with a self-signed certificate. */
    ca?: Buffer
}

/** A QoS 1 subscriber (MQTT.js) that records every message the broker delivers. */
export class Recorder {
    readonly messages: Received[] = []
    /** Messages that break docs/asyncapi.yaml: stop() fails the test with them. */
    readonly violations: string[] = []
    private client?: mqtt.MqttClient

    constructor(
        readonly url: string,
        readonly filter: string,
        readonly options: RecorderOptions = {}
    ) {}

    async start() {
        const clean = !this.options.persistentSession
        const { username, password } = this.options
        this.client = mqtt.connect(this.url, {
            clientId: `recorder-${process.pid}-${Date.now()}`,
            reconnectPeriod: 200,
            clean,
            username,
            password,
            ca: this.options.ca,
        })
        this.client.on("message", (topic, payload, packet) => {
            const violation = schemaViolation(topic, payload.toString())
            if (violation) this.violations.push(violation)
            this.messages.push({
                topic,
                payload: payload.toString(),
                qos: packet.qos,
                retain: !!packet.retain,
                dup: !!packet.dup,
                atMs: Date.now(),
            })
        })
        await new Promise<void>((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error("recorder could not connect")), 10_000)
            this.client!.once("connect", () => {
                this.client!.subscribe(this.filter, { qos: 1 }, err => {
                    clearTimeout(timer)
                    err ? reject(err) : resolve()
                })
            })
        })
        return this
    }

    /**
     * The readings delivered, in order, one entry per element of each message's `readings`
     * array, with the message's meter, quantity, unit and time base; gaps left out.
     */
    readings(meterTopicSuffix = "/reading") {
        return this.elements(meterTopicSuffix).filter(e => !e.gap)
    }

    /** The gap elements delivered. */
    gaps(meterTopicSuffix = "/reading") {
        return this.elements(meterTopicSuffix).filter(e => e.gap)
    }

    private elements(meterTopicSuffix: string) {
        const out: any[] = []
        for (const m of this.messages) {
            if (!m.topic.endsWith(meterTopicSuffix)) continue
            const { readings, ...header } = JSON.parse(m.payload)
            for (const e of readings) out.push({ ...header, ...e, atMs: m.atMs })
        }
        return out
    }

    /** Waits until `predicate` holds over the messages; fails with `what` after timeoutMs. */
    async waitFor(what: string, predicate: (r: Recorder) => boolean, timeoutMs: number) {
        await until(what, () => predicate(this), timeoutMs)
    }

    /** Publishes as this client (commands to the node), at QoS 1. */
    async publish(topic: string, payload: string, retain = false) {
        await this.client!.publishAsync(topic, payload, { qos: 1, retain })
    }

    async stop() {
        await new Promise<void>(resolve => (this.client ? this.client.end(true, {}, () => resolve()) : resolve()))
        const checked = this.messages.length
        assert.deepEqual(this.violations, [], `payloads that break docs/asyncapi.yaml (of ${checked} received)`)
    }
}

/** One node under test: its firmware build, its run directory (flash) and its simulator. */
export class NodeUnderTest {
    readonly runDir = mkdtempSync(join(tmpdir(), "meternode-e2e-"))
    simulator?: Simulator
    private bytecode?: string

    constructor(
        readonly settings: Settings,
        /** Extra environment for the simulator process (NODE_EXTRA_CA_CERTS for TLS). */
        readonly env: Record<string, string> = {}
    ) {}

    async build() {
        this.bytecode = await buildFirmware(this.settings, this.runDir, `e2e-${process.pid}`)
        return this
    }

    /** Builds again with some settings changed; the flash (run directory) stays, as after a reconfiguration. */
    async reconfigure(changes: Settings) {
        Object.assign(this.settings, changes)
        return await this.build()
    }

    /** Starts (or restarts after a kill) the simulator; flash persists in runDir. */
    async start(clearFlash = false) {
        if (!this.bytecode) await this.build()
        this.simulator = new Simulator({
            bytecode: this.bytecode!,
            runDir: this.runDir,
            mode: "device",
            clearFlash,
            env: this.env,
            onLine: process.env.E2E_VERBOSE ? line => console.log(`[node] ${line}`) : undefined,
        })
        await this.simulator.start()
        return this.simulator
    }

    async kill() {
        await this.simulator?.kill()
    }

    async dispose() {
        await this.simulator?.kill()
        rmSync(this.runDir, { recursive: true, force: true })
    }
}

/**
 * Waits until `predicate` holds, checking every `pollMs`; fails with `what` after timeoutMs. For
 * events the tests observe by polling (console lines, packets through the proxy, rows collected).
 */
export async function until(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs: number, pollMs = 50) {
    const deadline = Date.now() + timeoutMs
    while (!(await predicate())) {
        if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
        await sleep(pollMs)
    }
}

/** Deterministic moments in [fromMs, toMs), so that a failure can be replayed: a Park-Miller sequence from a seed. */
export function* moments(seed: number, fromMs: number, toMs: number) {
    let state = seed
    for (;;) {
        state = (state * 48271) % 2147483647
        yield fromMs + Math.floor((state / 2147483647) * (toMs - fromMs))
    }
}

/** Seqs of the readings the firmware took, in order, from its console lines ("reading: seq N"). */
export function readingSeqs(lines: string[]) {
    const seqs: number[] = []
    for (const line of lines) {
        const m = line.match(/^reading: seq (\d+)\b/)
        if (m) seqs.push(Number(m[1]))
    }
    return seqs
}

export async function withBroker<T>(options: BrokerOptions, fn: (broker: Broker) => Promise<T>) {
    const broker = await new Broker(options).start()
    try {
        return await fn(broker)
    } finally {
        await broker.dispose()
    }
}

/**
 * At-least-once, in order: over the seqs in the order they were delivered, each seq's first
 * delivery comes after every lower seq's, and a repeat (a duplicate QoS 1 allows) is counted.
 */
export function assertFirstDeliveriesInOrder(delivered: number[]) {
    const seen = new Set<number>()
    let highest = -1
    let duplicates = 0
    for (const seq of delivered) {
        if (seen.has(seq)) {
            duplicates++
            continue
        }
        assert.ok(
            seq > highest,
            `seq ${seq} first delivered after seq ${highest}: out of order (${delivered.join(" ")})`
        )
        highest = seq
        seen.add(seq)
    }
    return { seen, duplicates, highest }
}
