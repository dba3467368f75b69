// The metering node: reads its configuration, restores its persistent state and its queue of
// readings from flash, takes readings on schedule and hands them to the uplink, which keeps
// each one (in RAM, then in flash) until the broker acknowledged it.
import * as ds from "@devicescript/core"
import { describeConfig, NodeConfig, parseConfig, SETTINGS } from "./config"
import { MqttClient } from "./mqtt/client"
import { SequenceAllocator } from "./sequence"
import { SimulatedEnergyMeter } from "./meters/simulated"
import { EnergyMeter } from "./meters/meter"
import { InaDriver } from "./meters/ina-driver"
import { INA219, INA226 } from "./meters/ina2xx"
import { InaEnergyMeter } from "./meters/ina-meter"
import { readingTopic, statusPayload, statusTopic, WILL_PAYLOAD } from "./reading"
import { PublishPacket } from "./mqtt/packets"
import { readJsonSetting, readSettings, writeVerified } from "./platform/settings-store"
import { gapRecord, initialState, lastKnown, NodeState, STATE_KEY, stateFromJson, stateToJson } from "./node-state"
import { DurableQueue } from "./storage/durable-queue"
import { SettingsKeyValueStore } from "./storage/settings-kv"
import { energyRecord, FLAG_ESTIMATED, ReadingRecord } from "./storage/records"
import { Uplink } from "./uplink"

/** How long a planned stop waits for its offline status to be acknowledged before going anyway. */
const SHUTDOWN_ACK_TIMEOUT_MS = 5000
/** The one meter of this version: index 0 in the queue's records. */
const METER_INDEX = 0

async function loadState(): Promise<NodeState> {
    const raw = await readJsonSetting(STATE_KEY, undefined)
    const s = stateFromJson(raw)
    if (s) return s
    if (raw !== undefined) console.log(`flash: ${STATE_KEY} unreadable, starting from zero`)
    return initialState()
}

/** Lets other fibers run inside long queue operations: the VM stops a fiber after ~128K operations. */
async function pause() {
    await ds.sleep(0)
}

class Node {
    private client: MqttClient
    private uplink: Uplink
    private lastError = ""
    private sequence: SequenceAllocator
    /** Null when the meter's configuration is unusable: the node stays up and says why. */
    private meter: EnergyMeter = null
    private readonly boot: number
    private stopping = false
    /** Emits the token of every acknowledged publish, for code that waits on one. */
    private delivered = ds.emitter<number>()
    /** Built once: the reading topic is used for every publish and every acknowledgement. */
    private readonly readingTopic: string
    private readonly statusTopic: string
    /** As last written to flash. */
    private state: NodeState
    /** The newest reading taken, for the mark a planned stop writes. */
    private newest: ReadingRecord = null

    constructor(
        readonly config: NodeConfig,
        private readonly previous: NodeState,
        private readonly queue: DurableQueue
    ) {
        this.readingTopic = readingTopic(config.topicPrefix, config.nodeId, config.meterId)
        this.statusTopic = statusTopic(config.topicPrefix, config.nodeId)
        this.boot = previous.boot + 1
        this.sequence = new SequenceAllocator(previous.seq)
        this.state = previous
    }

    async start(errors: string[]) {
        const c = this.config
        for (const e of errors) this.reportError(e)
        const self = this
        this.uplink = new Uplink(
            this.queue,
            [c.meterId],
            [this.readingTopic],
            c.inflightWindow,
            c.flushIntervalMs,
            {
                onError: text => self.reportError(text),
                onFlushed: async (newest, inFlash) => await self.markSafe(newest, inFlash),
            },
            {
                millis: () => ds.millis(),
                sleep: async ms => await ds.sleep(ms),
                spawn: fn => {
                    setTimeout(fn, 0)
                },
            }
        )
        const newestQueued = this.queue.size() ? (await this.queue.peek(1, this.queue.size() - 1))[0] : null
        const known = lastKnown(this.previous, newestQueued)
        this.meter = await this.createMeter(known.totalMilliWh)
        // The new boot count and the first seq reservation in one write, before any seq is used.
        this.state = {
            boot: this.boot,
            seq: this.previous.seq,
            total: known.totalMilliWh,
            markSeq: known.seq,
            markEndS: 0,
            clean: false,
        }
        await this.persistReservation(true)
        const gap = gapRecord(this.previous, known, METER_INDEX, this.sequence.peek())
        if (gap) {
            this.sequence.take()
            this.reportError(`node: boot ${this.previous.boot} did not stop as planned: readings after seq ${known.seq} (second ${known.endS} of that boot) are unaccounted for, reported as a gap`)
            await this.uplink.append(gap)
            await this.uplink.flush()
        }
        if (c.simBacklog && c.meterKind === "sim" && !this.queue.size()) await this.queueHistory(c.simBacklog)
        const total = this.meter ? this.meter.totalMilliWh : known.totalMilliWh
        console.log(`node: boot ${this.boot}, next seq ${this.sequence.peek()}, total ${total} mWh, queued ${this.uplink.size()}`)
        this.client = new MqttClient(
            c.broker,
            {
                clientId: `meternode-${c.nodeId}`,
                keepaliveS: c.keepaliveS,
                cleanSession: false,
                will: { topic: this.statusTopic, payload: Buffer.from(WILL_PAYLOAD), qos: 1, retain: true },
                username: c.username || undefined,
                password: c.password ? Buffer.from(c.password) : undefined,
                inflightWindow: c.inflightWindow,
                subscriptions: [{ topic: `${c.topicPrefix}/${c.nodeId}/cmd/+`, qos: 1 }],
            },
            {
                onConnected: async () => {
                    await self.publishStatus()
                    self.uplink.kick()
                },
                onDelivered: token => {
                    self.delivered.emit(token)
                    self.uplink.onDelivered(token)
                },
                onMessage: async message => await self.onCommand(message),
                onError: text => {
                    self.lastError = text
                },
            }
        )
        this.uplink.attach(this.client)
        this.client.start()
        if (this.meter) setTimeout(async () => await self.readingLoop(), 0)
        setTimeout(async () => await self.uplink.flushLoop(), 0)
    }

    /** The configured meter, started; null (and the reason reported) when it cannot be built. */
    private async createMeter(totalMilliWh: number): Promise<EnergyMeter> {
        const c = this.config
        if (c.meterKind === "sim") return new SimulatedEnergyMeter(c.simSeed, c.simMeanW, totalMilliWh)
        const self = this
        try {
            const driver = new InaDriver({
                chip: c.meterKind === "ina219" ? INA219 : INA226,
                address: c.inaAddress,
                shuntOhms: c.inaShuntMicroOhm / 1000000,
                maxCurrentA: c.inaMaxMilliA / 1000,
            })
            const meter = new InaEnergyMeter(driver, totalMilliWh, c.sampleMs, text => self.reportError(text))
            await meter.start()
            return meter
        } catch (e) {
            this.reportError("meter " + c.meterId + " (" + c.meterKind + "): " + (e as Error).message + "; no readings until the configuration is fixed")
            return null
        }
    }

    /**
     * Simulated history for drain benchmarks: `count` one-minute readings of the previous boot,
     * queued and flushed before the link comes up, as after a day without a broker.
     */
    private async queueHistory(count: number) {
        const historyBoot = this.boot - 1
        for (let i = 0; i < count; ++i) {
            const r = await this.meter.read(i * 60000, (i + 1) * 60000)
            await this.persistReservation(false)
            const seq = this.sequence.take()
            await this.uplink.append(energyRecord(METER_INDEX, seq, historyBoot, i * 60000, (i + 1) * 60000, r.deltaMilliWh, this.meter.totalMilliWh))
            if (i % 16 === 15) await ds.sleep(0)
        }
        await this.uplink.flush()
        const last = this.sequence.peek() - 1
        console.log(`node: queued ${count} readings of simulated history, seq ${last - count + 1}..${last}`)
    }

    private async publishStatus() {
        const q = this.queue.stats()
        const payload = statusPayload({
            online: true,
            boot: this.boot,
            uptimeS: ds.millis() / 1000,
            queued: this.uplink.size(),
            dropped: q.droppedReadings,
            merged: q.mergedRecords,
            lastError: this.lastError,
        })
        await this.client.publish(this.statusTopic, Buffer.from(payload), 1, true)
    }

    /**
     * Commands arrive on <prefix>/<node>/cmd/<name>; the reply goes to <prefix>/<node>/reply/<name>
     * with the request's `id`. A malformed or unknown command gets an error reply and changes nothing.
     */
    private async onCommand(message: PublishPacket) {
        const c = this.config
        const base = `${c.topicPrefix}/${c.nodeId}/cmd/`
        if (message.topic.indexOf(base) !== 0) return
        const name = message.topic.slice(base.length)
        let request: any = {}
        let error = ""
        if (message.retain) error = "retained commands are ignored: publish commands without the retain flag"
        else if (message.payload.length) {
            try {
                request = JSON.parse(message.payload.toString())
            } catch (e) {
                error = "payload is not JSON"
            }
            if (!error && (request === null || typeof request !== "object")) error = "payload must be a JSON object"
        }
        if (!error && name !== "restart") error = `unknown command ${name}`
        const id = request && request.id !== undefined ? request.id : null
        const reply = error ? { id, ok: false, error } : { id, ok: true }
        console.log(`command: ${name}: ${error || "accepted"}`)
        await this.client.publish(`${c.topicPrefix}/${c.nodeId}/reply/${name}`, Buffer.from(JSON.stringify(reply)), 1, false)
        if (!error && name === "restart") {
            // In a fiber of its own: this handler runs on the fiber that reads the socket, and the
            // command's PUBACK and the offline status's PUBACK must get through before the stop.
            const self = this
            setTimeout(async () => await self.stopGracefully("restart", true), 0)
        }
    }

    /**
     * A planned stop: the retained status says offline with the reason, the queue goes to flash
     * and the state is marked clean (no gap at the next boot), then DISCONNECT, so the broker
     * discards the will and no consumer reads "lost".
     */
    async stopGracefully(reason: string, restart: boolean) {
        if (this.stopping) return
        this.stopping = true
        const payload = statusPayload({ online: false, reason, boot: this.boot, uptimeS: 0, queued: 0, dropped: 0, merged: 0, lastError: "" })
        const token = await this.client.publish(this.statusTopic, Buffer.from(payload), 1, true)
        const deadline = ds.millis() + SHUTDOWN_ACK_TIMEOUT_MS
        while (ds.millis() < deadline) {
            const acked = await ds.wait(this.delivered, deadline - ds.millis())
            if (acked === token) break
        }
        await this.uplink.flush()
        const s = this.nextState()
        if (this.newest) this.markAt(s, this.newest)
        s.clean = true
        await this.writeState(s)
        await this.client.stop()
        console.log(`node: stopped (${reason})`)
        if (restart) ds.restart()
    }

    private nextState(): NodeState {
        const s = this.state
        return { boot: s.boot, seq: s.seq, total: s.total, markSeq: s.markSeq, markEndS: s.markEndS, clean: s.clean }
    }

    private async writeState(s: NodeState) {
        const error = await writeVerified(STATE_KEY, stateToJson(s))
        if (error) this.reportError(error)
        // Kept even if the write failed: a reading is worth more than a seq gap, and the error is
        // on the status topic for a human to act on.
        this.state = s
        return !error
    }

    /**
     * Called after a flush: `newest` and every reading before it is in flash or acknowledged.
     * While the queue in flash still holds `newest`, the next boot finds it there: no write.
     */
    private async markSafe(newest: ReadingRecord, inFlash: boolean) {
        const s = this.nextState()
        if (newest.seq <= s.markSeq) return
        if (inFlash) {
            console.log(`flash: safe up to seq ${newest.seq}`)
            return
        }
        this.markAt(s, newest)
        if (await this.writeState(s)) console.log(`flash: safe up to seq ${s.markSeq}`)
    }

    /** Makes `r` the last safe reading of state `s`. */
    private markAt(s: NodeState, r: ReadingRecord) {
        s.markSeq = r.seq
        // A gap record belongs to the previous boot: this boot has accounted for nothing yet.
        s.markEndS = r.boot === this.boot ? r.startS + r.durationS : 0
        s.total = r.totalMilliWh
    }

    /** Persists a new seq reservation when the current one is used up (or `force`: the boot write). */
    private async persistReservation(force: boolean) {
        const upTo = this.sequence.reservationNeeded()
        if (upTo < 0 && !force) return
        const s = this.nextState()
        if (upTo >= 0) s.seq = upTo
        await this.writeState(s)
        if (upTo >= 0) this.sequence.reserved(upTo)
    }

    private async readingLoop() {
        const c = this.config
        let startMs = ds.millis()
        let nextMs = startMs + c.readingIntervalMs
        while (!this.stopping) {
            const waitMs = nextMs - ds.millis()
            if (waitMs > 0) await ds.sleep(waitMs)
            if (this.stopping) break
            const endMs = ds.millis()
            nextMs += c.readingIntervalMs
            // After a long stall, skip the missed slots rather than firing a burst.
            if (nextMs <= endMs) nextMs = endMs + c.readingIntervalMs
            const r = await this.meter.read(startMs, endMs)
            await this.persistReservation(false)
            const record = energyRecord(METER_INDEX, this.sequence.take(), this.boot, startMs, endMs, r.deltaMilliWh, this.meter.totalMilliWh)
            if (r.estimated) record.flags |= FLAG_ESTIMATED
            startMs = endMs
            this.newest = record
            await this.uplink.append(record)
            console.log(`reading: seq ${record.seq}, queued ${this.uplink.size()}`)
        }
    }

    private reportError(text: string) {
        console.log(text)
        this.lastError = text
    }
}

/**
 * Boots the node. `provisioned` holds settings built into the image (the simulator runner's);
 * they take precedence over the Settings store, which takes precedence over defaults.
 */
export async function startNode(provisioned: Record<string, any>) {
    const keys = SETTINGS.map(s => s.key)
    const raw = await readSettings(keys)
    for (const key of Object.keys(provisioned)) raw[key] = provisioned[key]
    const { config, errors } = parseConfig(raw, ds.deviceIdentifier("self"))
    console.log(`meternode: ${describeConfig(config)}`)
    const previous = await loadState()
    const queue = new DurableQueue(new SettingsKeyValueStore(), config.queueBytes, { pause })
    const lost = await queue.open()
    const node = new Node(config, previous, queue)
    const problems: string[] = []
    for (const e of errors) problems.push(`config: ${e}`)
    if (lost) problems.push(lost)
    await node.start(problems)
}
