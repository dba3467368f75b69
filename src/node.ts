// The metering node: reads its configuration, restores its persistent state, takes readings on
// schedule and hands them to the uplink, which publishes them at QoS 1 and forgets a reading only
// once the broker acknowledged it.
import * as ds from "@devicescript/core"
import { readSetting } from "@devicescript/settings"
import { describeConfig, NodeConfig, parseConfig, SETTINGS } from "./config"
import { MqttClient } from "./mqtt/client"
import { SequenceAllocator } from "./sequence"
import { SimulatedEnergyMeter } from "./meters/simulated"
import { readingPayload, readingTopic, statusPayload, statusTopic, WILL_PAYLOAD } from "./reading"
import { PublishPacket } from "./mqtt/packets"
import { readSettings, writeVerified } from "./platform/settings-store"
import { removeAt } from "./util/arrays"

/** Settings key of the node's persistent state: boot count, seq reservation, meter total. */
const STATE_KEY = "mn_state"
/** Readings kept in RAM while the broker is unreachable; the oldest is dropped (and counted) beyond. */
export const MAX_RAM_READINGS = 120
/** How long a planned stop waits for its offline status to be acknowledged before going anyway. */
const SHUTDOWN_ACK_TIMEOUT_MS = 5000
/** Publishes handed to the client in one go before yielding (the VM's op limit). */
const SUBMITS_PER_YIELD = 8

interface PersistentState {
    boot: number
    /** Every seq up to this one may have been published. */
    seq: number
    /** Meter total in mWh at the time of the last write. */
    total: number
}

interface QueuedReading {
    seq: number
    payload: string
    /** 0 while not yet handed to the client. */
    token: number
}

function isWholeNumber(v: any) {
    return typeof v === "number" && !isNaN(v) && Math.floor(v) === v && v >= 0
}

async function loadState(): Promise<PersistentState> {
    const s = await readSetting<any>(STATE_KEY, undefined)
    if (s && isWholeNumber(s.boot) && isWholeNumber(s.seq) && isWholeNumber(s.total)) return s
    if (s !== undefined) console.log(`flash: ${STATE_KEY} unreadable, starting from zero`)
    return { boot: 0, seq: 0, total: 0 }
}

class Node {
    private client: MqttClient
    private queue: QueuedReading[] = []
    private dropped = 0
    private lastError = ""
    private sequence: SequenceAllocator
    private meter: SimulatedEnergyMeter
    private boot: number
    private stopping = false
    /** Emits the token of every acknowledged publish, for code that waits on one. */
    private delivered = ds.emitter<number>()
    /** Built once: the reading topic is used for every publish and every acknowledgement. */
    private readonly readingTopic: string
    private readonly statusTopic: string

    constructor(
        readonly config: NodeConfig,
        state: PersistentState
    ) {
        this.readingTopic = readingTopic(config.topicPrefix, config.nodeId, config.meterId)
        this.statusTopic = statusTopic(config.topicPrefix, config.nodeId)
        this.boot = state.boot
        this.sequence = new SequenceAllocator(state.seq)
        this.meter = new SimulatedEnergyMeter(config.simSeed, config.simMeanW, state.total)
    }

    async start(configErrors: string[]) {
        const c = this.config
        for (const e of configErrors) this.reportError(`config: ${e}`)
        // Reserve the first block of sequence numbers together with the new boot count: one write.
        await this.persistReservation()
        console.log(`node: boot ${this.boot}, next seq ${this.sequence.peek()}, total ${this.meter.totalMilliWh} mWh`)
        // DeviceScript closures cannot capture `this`: they capture `self`.
        const self = this
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
                onConnected: async () => await self.publishStatus(),
                onDelivered: async token => await self.onDelivered(token),
                onMessage: async message => await self.onCommand(message),
                onError: text => {
                    self.lastError = text
                },
            }
        )
        this.client.start()
        setTimeout(async () => await self.readingLoop(), 0)
    }

    private async publishStatus() {
        const payload = statusPayload({
            online: true,
            boot: this.boot,
            uptimeS: ds.millis() / 1000,
            queued: this.queue.length,
            dropped: this.dropped,
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
     * A planned stop: the retained status says offline with the reason, then DISCONNECT, so the
     * broker discards the will and no consumer reads "lost".
     */
    async stopGracefully(reason: string, restart: boolean) {
        if (this.stopping) return
        this.stopping = true
        const payload = statusPayload({ online: false, reason, boot: this.boot, uptimeS: 0, queued: 0, dropped: 0, lastError: "" })
        const token = await this.client.publish(this.statusTopic, Buffer.from(payload), 1, true)
        const deadline = ds.millis() + SHUTDOWN_ACK_TIMEOUT_MS
        while (ds.millis() < deadline) {
            const acked = await ds.wait(this.delivered, deadline - ds.millis())
            if (acked === token) break
        }
        await this.client.stop()
        console.log(`node: stopped (${reason})`)
        if (restart) ds.restart()
    }

    private async persistReservation() {
        const upTo = this.sequence.reservationNeeded()
        if (upTo < 0) return
        const error = await writeVerified(STATE_KEY, { boot: this.boot, seq: upTo, total: this.meter.totalMilliWh })
        if (error) this.reportError(error)
        // Even if the write failed the numbers are used: a reading is worth more than a seq gap,
        // and the error is on the status topic for a human to act on.
        this.sequence.reserved(upTo)
    }

    private async readingLoop() {
        const c = this.config
        let startMs = ds.millis()
        let nextMs = startMs + c.readingIntervalMs
        while (!this.stopping) {
            const waitMs = nextMs - ds.millis()
            if (waitMs > 0) await ds.sleep(waitMs)
            const endMs = ds.millis()
            nextMs += c.readingIntervalMs
            // After a long stall, skip the missed slots rather than firing a burst.
            if (nextMs <= endMs) nextMs = endMs + c.readingIntervalMs
            const r = this.meter.read(startMs, endMs)
            await this.persistReservation()
            const seq = this.sequence.take()
            const payload = readingPayload({
                meterId: c.meterId,
                seq,
                boot: this.boot,
                startMs,
                endMs,
                deltaMilliWh: r.deltaMilliWh,
                totalMilliWh: this.meter.totalMilliWh,
                powerW: r.powerW,
            })
            startMs = endMs
            this.enqueue({ seq, payload, token: 0 })
            console.log(`reading: seq ${seq} ${payload.length} bytes, queued ${this.queue.length}`)
            await this.submit()
        }
    }

    private enqueue(r: QueuedReading) {
        this.queue.push(r)
        while (this.queue.length > MAX_RAM_READINGS) {
            // Only readings not yet handed to the client can be dropped; those in flight are the client's.
            let i = 0
            while (i < this.queue.length && this.queue[i].token) i++
            if (i >= this.queue.length) break
            const lost = this.queue[i]
            removeAt(this.queue, i)
            this.dropped++
            this.reportError(`queue: RAM queue full, dropped reading seq ${lost.seq}`)
        }
    }

    /** Hands queued readings to the client, oldest first, while its window has room. */
    private async submit() {
        if (this.stopping) return
        let submitted = 0
        for (;;) {
            const s = this.client.session
            if (s.inflightCount() + s.pendingCount() >= this.config.inflightWindow) break
            // Searched afresh each time: the queue can change while this fiber yields.
            let next: QueuedReading = null
            for (const r of this.queue)
                if (!r.token) {
                    next = r
                    break
                }
            if (!next) break
            next.token = await this.client.publish(this.readingTopic, Buffer.from(next.payload), 1, false)
            if (++submitted % SUBMITS_PER_YIELD === 0) await ds.sleep(0)
        }
    }

    private async onDelivered(token: number) {
        this.delivered.emit(token)
        for (let i = 0; i < this.queue.length; ++i)
            if (this.queue[i].token === token) {
                removeAt(this.queue, i)
                break
            }
        await this.submit()
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
    const state = await loadState()
    state.boot++
    const node = new Node(config, state)
    await node.start(errors)
}
