// The node's retained status: online, with its boot, uptime, queue, clock and last error. News (an
// error, an error cleared, a backlog drained) is published soon, at most once every
// STATUS_MIN_INTERVAL_MS, and never while the previous status still waits for its PUBACK.
//
// Platform code: DeviceScript only.
import * as ds from "@devicescript/core"
import { WallClock } from "../clock"
import { MqttClient } from "../mqtt/client"
import { JSON_CONTENT, statusPayload } from "../reading"
import { DurableQueue } from "../storage/durable-queue"
import { Uplink } from "../uplink"

/** News (an error, a drained queue) is published in the status at most this often. */
const STATUS_MIN_INTERVAL_MS = 10000

/** What the status tells of the node. */
export interface StatusHost {
    readonly boot: number
    /** Null until the node starts its client: news before that waits for the birth status. */
    readonly client: MqttClient
    readonly uplink: Uplink
    readonly queue: DurableQueue
    readonly clock: WallClock
}

export class StatusReporter {
    /** What the status says went wrong last; "" once it cleared. */
    lastError = ""
    /** The status awaiting its PUBACK (0: none), and whether newer news waits behind it. */
    private token = 0
    private stale = false
    /** When the last status was published, with how many readings queued, and whether another is due. */
    private lastMs = -STATUS_MIN_INTERVAL_MS
    private lastQueued = 0
    private scheduled = false

    constructor(
        private readonly node: StatusHost,
        private readonly topic: string
    ) {}

    /** Publishes the status (retained, QoS 1) and returns its payload. */
    async publish() {
        const node = this.node
        const q = node.queue
        this.lastMs = ds.millis()
        this.lastQueued = node.uplink.size()
        const payload = statusPayload({
            online: true,
            boot: node.boot,
            uptimeS: this.lastMs / 1000,
            queued: this.lastQueued,
            dropped: q.droppedReadings,
            merged: q.mergedRecords,
            lastError: this.lastError,
            clock: node.clock.isSet() ? "set" : "unset",
            mqtt: node.client.session.mqtt5 ? "5" : "3.1.1",
        })
        // A status still waiting for its PUBACK goes out again at every reconnect (the session
        // resends it): another one would pile up behind it on a link that drops each connection
        // before the PUBACK, until the heap runs out. The newer news goes out once it is through.
        if (this.token) {
            this.stale = true
            return payload
        }
        this.stale = false
        this.token = node.client.publish(this.topic, Buffer.from(payload), 1, true, JSON_CONTENT)
        return payload
    }

    /** The birth status, once connected. */
    async onConnected() {
        await this.publish()
        // The birth status told what kept the node away; that is over once connected, and the
        // next status (within STATUS_MIN_INTERVAL_MS) says so.
        if (this.lastError.indexOf("mqtt: ") === 0) this.onError("")
    }

    /** A publish was acknowledged: the status's own, or one of the readings it counted as queued. */
    onDelivered(token: number) {
        const self = this
        if (token === this.token) {
            this.token = 0
            if (this.stale) setTimeout(async () => await self.publish(), 0)
        }
        // The backlog the last status announced is through: say so.
        if (this.lastQueued && !this.node.uplink.size()) this.changed()
    }

    /** A new error (the client's, which it logged, or one reported by the node; "" once it cleared) is news. */
    onError(text: string) {
        if (text === this.lastError) return
        this.lastError = text
        this.changed()
    }

    /**
     * The status would say something new (an error, the queue drained): published soon, at most
     * once every STATUS_MIN_INTERVAL_MS, so a consumer never reads a stale one for long.
     */
    private changed() {
        if (this.scheduled) return
        this.scheduled = true
        const self = this
        const waitMs = this.lastMs + STATUS_MIN_INTERVAL_MS - ds.millis()
        setTimeout(
            async () => {
                self.scheduled = false
                if (self.node.client.isConnected()) await self.publish()
            },
            waitMs > 0 ? waitMs : 0
        )
    }
}
