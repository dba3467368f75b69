// The metering node: reads its configuration, restores its persistent state and its queue of
// readings from flash, takes readings on schedule and hands them to the uplink, which keeps
// each one (in RAM, then in flash) until the broker acknowledged it.
//
// This file builds the node, starts it and routes the events of the MQTT client and the uplink;
// each of its jobs is a module of src/node/, which says what it needs of the node in an
// interface (its "host"), and the node is all of them:
//   status.ts               the retained status, and when news in it goes out
//   flash-state.ts          the state and the acknowledgement mark in flash, seq reservations
//   recovery.ts             at boot: where the previous boot's readings end, its gap records
//   reading-loop.ts         each meter's readings, queued as records
//   time-updates.ts         the time topic, and the first time of a boot
//   command-handler.ts      commands and their replies
//   discovery-publisher.ts  Home Assistant discovery
//   planned-stop.ts         the stop of the restart and shutdown commands
// Classes where a job keeps state of its own; functions over the node's parts otherwise, since
// every class and method costs the VM's code section more than a function does.
import * as ds from "@devicescript/core"
import { DEVICE_ID_MARK, NodeConfig } from "./config"
import { ClientEvents, MAX_INBOUND_PACKET_BYTES, MqttClient } from "./mqtt/client"
import { Session, SessionOptions } from "./mqtt/session"
import { MAX_TOPIC_BYTES } from "./mqtt/decoder"
import { PublishPacket } from "./mqtt/packets"
import { EnergyMeter } from "./meters/meter"
import { MeterLabel, MeterSpec } from "./meters/meter-spec"
import { firmware, readingTopic, statusTopic, WILL_PAYLOAD } from "./reading"
import { ANNOUNCED_KEY, announcedFromJson } from "./discovery"
import { CommandHandler, CommandHost } from "./node/command-handler"
import { DiscoveryHost, publishDiscovery } from "./node/discovery-publisher"
import { FlashState, FlashStateHost } from "./node/flash-state"
import { ReadingHost, startReadingLoop } from "./node/reading-loop"
import { queueGaps, recoverLastKnown, RecoveryHost } from "./node/recovery"
import { StatusHost, StatusReporter } from "./node/status"
import { onTimeMessage } from "./node/time-updates"
import { nativeSocket, runtimeClock } from "./platform/native-socket"
import { readJsonSetting } from "./platform/settings-store"
import { initialState, NodeState, STATE_KEY, stateFromJson, totalOf } from "./node-state"
import { DurableQueue } from "./storage/durable-queue"
import { SettingsKeyValueStore } from "./storage/settings-kv"
import { ReadingRecord } from "./storage/records"
import { Uplink, UplinkEvents } from "./uplink"
import { removeAt } from "./util/arrays"
import { BacklogHost, Features, ReplayHistory } from "./features"
import { offsetOfBoot, WallClock } from "./clock"

/** After a connection, how long readings wait for the time when the clock is not set. */
const TIME_WAIT_MS = 3000

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

class Node
    implements
        ClientEvents,
        UplinkEvents,
        BacklogHost,
        StatusHost,
        FlashStateHost,
        RecoveryHost,
        ReadingHost,
        CommandHost,
        DiscoveryHost
{
    uplink: Uplink
    /** By slot; null where no meter runs (none configured, or unusable: the node stays up and says why). */
    readonly meters: EnergyMeter[] = []
    /** By slot: id, quantity and unit (the meters' specs); null where no meter is configured. */
    readonly labels: MeterLabel[]
    readonly boot: number
    /** Set when a planned stop begins. */
    stopping = false
    /** Emits the token of every acknowledged publish, for code that waits on one. */
    private delivered = ds.emitter<number>()
    /** By slot, built once: a reading topic is used for every publish. */
    private readonly readingTopics: string[] = []
    readonly statusTopic: string
    /** The state and the acknowledgement mark, as last written to flash, and the seqs. */
    readonly flash: FlashState
    /** UTC, once a time message arrived. */
    readonly clock = new WallClock()
    /** Recent readings for the replay command; null when HISTORY_BYTES is 0. */
    history: ReplayHistory = null
    readonly status: StatusReporter
    private readonly commands: CommandHandler
    /** For discovery: the meter ids with a Home Assistant config out, as stored in flash. */
    announced: string[] = []

    constructor(
        readonly config: NodeConfig,
        readonly previous: NodeState,
        readonly queue: DurableQueue,
        readonly features: Features,
        readonly client: MqttClient
    ) {
        this.labels = config.meters
        for (const m of config.meters) {
            // Records of a meter no longer configured may still be queued: they go out as "meter<slot>".
            this.readingTopics.push(
                readingTopic(config.topicPrefix, config.nodeId, m ? m.id : "meter" + this.readingTopics.length)
            )
        }
        this.statusTopic = statusTopic(config.topicPrefix, config.nodeId)
        this.status = new StatusReporter(this, this.statusTopic)
        this.boot = previous.boot + 1
        this.flash = new FlashState(this, previous)
        this.commands = new CommandHandler(this)
    }

    async start(errors: string[]) {
        const c = this.config
        for (const e of errors) this.reportError(e)
        this.uplink = new Uplink(
            this.queue,
            this.labels,
            this.readingTopics,
            c.inflightWindow,
            c.flushIntervalMs,
            this,
            {
                // The runtime's own functions, as in runtimeClock: a wrapper would cost code.
                millis: runtimeClock.millis,
                sleep: runtimeClock.sleep,
                spawn: spawnFiber,
            }
        )
        if (c.haPrefix) this.announced = announcedFromJson(await readJsonSetting(ANNOUNCED_KEY, []))
        if (c.historyBytes) {
            this.history = await this.features.history.open(c.historyBytes)
        }
        const known = await recoverLastKnown(this)
        // The mark starts where the previous boot's readings end; it moves once the gaps below are made.
        const flash = this.flash
        flash.mark = known
        for (let slot = 0; slot < c.meters.length; ++slot) {
            const spec = c.meters[slot]
            this.meters.push(spec ? await this.createMeter(spec, totalOf(known.totals, slot)) : null)
        }
        // The new boot count and the first seq reservation in one write, before any seq is used.
        const s = flash.next()
        s.boot = this.boot
        s.totals = known.totals
        s.markSeq = known.seq
        s.markEndS = 0
        s.markUtc = false
        s.clean = false
        flash.state = s
        await flash.persistReservation(true)
        await queueGaps(this, known)
        const first = c.meters[0]
        if (c.simBacklog && first && first.kind === "sim" && this.meters[0] && !this.queue.size())
            await this.features.backlog(this, c.simBacklog)
        let totals = ""
        for (let slot = 0; slot < c.meters.length; ++slot)
            if (this.meters[slot]) totals += ", " + c.meters[slot].id + " total " + this.meters[slot].totalMilliWh
        console.log(`node: boot ${this.boot}, next seq ${flash.sequence.peek()}, queued ${this.uplink.size()}${totals}`)
        this.client.events = this
        this.uplink.attach(this.client)
        this.client.start()
        for (let slot = 0; slot < this.meters.length; ++slot) if (this.meters[slot]) startReadingLoop(this, slot)
        startFlushLoop(this.uplink)
    }

    async onConnected() {
        await this.status.onConnected()
        await publishDiscovery(this)
        // A new connection ends a wait after a refusal (a good moment to try again). Without the
        // time, the readings wait briefly: the retained time usually arrives right after the
        // SUBACK, and readings that wait go out in UTC.
        if (this.clock.isSet() || !this.config.timeTopic) this.uplink.holdFor(0)
        else this.uplink.holdFor(TIME_WAIT_MS)
    }

    onDelivered(token: number, refusedCode?: number) {
        const r = this.commands.replyTokens.indexOf(token)
        if (r >= 0) removeAt(this.commands.replyTokens, r)
        this.delivered.emit(token)
        this.uplink.onDelivered(token, refusedCode)
        this.status.onDelivered(token)
    }

    /** A configured meter, started; null (and the reason reported) when it cannot be built. */
    private async createMeter(spec: MeterSpec, totalMilli: number): Promise<EnergyMeter> {
        const self = this
        const start = this.features.meters[spec.kind]
        if (!start) {
            this.reportError(
                "meter " +
                    spec.id +
                    ": this image has no " +
                    spec.kind +
                    " driver; build and flash one for this configuration (npm run build -- --board ...)"
            )
            return null
        }
        try {
            return await start(spec, totalMilli, text => self.reportError(text))
        } catch (e) {
            this.reportError(
                "meter " +
                    spec.id +
                    " (" +
                    spec.kind +
                    "): " +
                    (e as Error).message +
                    "; no readings until the configuration is fixed"
            )
            return null
        }
    }

    async onMessage(message: PublishPacket, receivedMs: number) {
        if (message.skipped) {
            // Its topic is unknown: the decoder skipped it without decoding it.
            this.reportError(
                `mqtt: dropped ${message.skipped}, over the limits (packet ${MAX_INBOUND_PACKET_BYTES} bytes, topic ${MAX_TOPIC_BYTES}); acknowledged, so the broker does not send it again`
            )
            return
        }
        if (this.config.timeTopic && message.topic === this.config.timeTopic) {
            await onTimeMessage(this, message, receivedMs)
            return
        }
        await this.commands.handle(message, receivedMs)
    }

    /** UTC offset of boot `boot` (0 when unknown): this boot's first one, or an earlier boot's from the state. */
    utcOffsetS(boot: number) {
        return boot === this.boot ? this.clock.bootOffsetS : offsetOfBoot(this.flash.state.offsets, boot)
    }

    /** Whether the publish with `token` was acknowledged within `timeoutMs`. */
    async waitForAck(token: number, timeoutMs: number) {
        const deadline = ds.millis() + timeoutMs
        while (ds.millis() < deadline) {
            const acked = await ds.wait(this.delivered, deadline - ds.millis())
            if (acked === token) return true
        }
        return false
    }

    /** The broker acknowledged `r` and everything before it (UplinkEvents): the mark moves there. */
    async onAcknowledged(r: ReadingRecord) {
        await this.flash.onAcknowledged(r)
    }

    /** A message is about to go out with `last` its newest record (UplinkEvents): its total's ceiling first. */
    async beforePublish(last: ReadingRecord) {
        await this.flash.beforePublish(last)
    }

    reportError(text: string) {
        console.log(text)
        this.status.onError(text)
    }

    /** A new error (the client's, which it logged; "" once it cleared) is news for the status. */
    onError(text: string) {
        this.status.onError(text)
    }
}

// Fibers are started from small functions of their own: a closure keeps its enclosing
// function's whole activation alive, and start()'s holds everything the boot used.

function spawnFiber(fn: () => Promise<void>) {
    setTimeout(fn, 0)
}

function startFlushLoop(uplink: Uplink) {
    setTimeout(async () => await uplink.flushLoop(), 0)
}

/**
 * Commands at QoS 1; the time topic at QoS 0, so that a broker keeping our session never
 * queues time messages while the node is away and delivers them stale.
 */
function subscriptions(c: NodeConfig) {
    const subs = [{ topic: `${c.topicPrefix}/${c.nodeId}/cmd/+`, qos: 1 }]
    if (c.timeTopic) subs.push({ topic: c.timeTopic, qos: 0 })
    return subs
}

/**
 * The MQTT client, made first thing at boot (its events go to the node once it exists): the
 * client object (about 30 fields, one block of some 430 bytes) and its session are among the
 * largest of the node's long-lived blocks, and at the end of the boot the heap was measured too
 * fragmented for them (no free block over 300 bytes with 40 KB held).
 */
async function createClient(c: NodeConfig, features: Features) {
    const options: SessionOptions = {
        clientId: `meternode-${c.nodeId}`,
        keepaliveS: c.keepaliveS,
        cleanSession: false,
        will: {
            topic: statusTopic(c.topicPrefix, c.nodeId),
            payload: Buffer.from(WILL_PAYLOAD),
            qos: 1,
            retain: true,
        },
        username: c.username || undefined,
        password: c.password ? Buffer.from(c.password) : undefined,
        inflightWindow: c.inflightWindow,
        subscriptions: subscriptions(c),
        subscribeOnEveryConnect: !!c.timeTopic,
    }
    const mqtt5 = features.mqtt5
    const session = mqtt5 && c.mqttVersion !== 4 ? await mqtt5(options, c) : new Session(options)
    return new MqttClient(c.broker, session, null, nativeSocket, runtimeClock)
}

/**
 * Boots the node with a validated configuration and the configuration's problems, reported at
 * boot (for invalid settings the defaults were used). A node id of "" means the device id.
 */
export async function runNode(config: NodeConfig, configErrors: string[], features: Features, description: string) {
    firmware.version = ds._dcfgString("@version") || firmware.version
    if (!config.nodeId) {
        config.nodeId = ds.deviceIdentifier("self")
        const at = description.indexOf(DEVICE_ID_MARK)
        if (at >= 0)
            description = description.slice(0, at) + config.nodeId + description.slice(at + DEVICE_ID_MARK.length)
    }
    console.log(`meternode: ${description}`)
    const client = await createClient(config, features)
    const previous = await loadState()
    const queue = new DurableQueue(new SettingsKeyValueStore(), config.queueBytes, { pause })
    const lost = await queue.open()
    const node = new Node(config, previous, queue, features, client)
    const problems = configErrors.map(e => `config: ${e}`)
    if (lost) problems.push(lost)
    await node.start(problems)
}
