// Store and forward: every reading goes into the durable queue first, and leaves it only when
// the broker acknowledged and accepted the message that carried it. Oldest first, several
// readings per message while there is a backlog, a bounded number of messages out at once.
//
// The queue is used by one fiber at a time: flush() merges and rewrites blocks across many
// awaits, and a peek, an append or a removal in the middle of it could see blocks half merged.
// While the queue is busy, appends and removals wait in RAM and are applied right after.
//
// Write policy: while the broker acknowledges promptly, a reading is removed before the next
// flush and never touches flash. What is not yet acknowledged is written at the latest
// `flushIntervalMs` after it was taken (sooner once two blocks of it pile up), so a power cut
// loses at most that long of unacknowledged readings, and the next boot reports them as a gap.
//
// Pure core: the clock, sleeping, new fibers and the MQTT client are passed in, so Node tests
// drive it under random interleavings against the model of the Settings store.
import { MAX_READINGS_PER_MESSAGE, readingElement, readingHead } from "./reading"
import { MeterLabel } from "./meters/meter-spec"
import { DurableQueue } from "./storage/durable-queue"
import { copyInto, FLAG_CLOCK_NOT_SET, FLAG_NON_ADDITIVE, newRecord, ReadingRecord } from "./storage/records"
import { removeAt } from "./util/arrays"

/**
 * Reading messages out at once, each held in the heap until its PUBACK. With 8 a day's backlog
 * drained in 0.9 s rather than 1.3 s, but needed 8 KB more of the heap (measured with the ballast
 * benchmark); the goal is under 10 s.
 */
const MAX_MESSAGES_OUT = 4
/**
 * Largest reading message the uplink sends, in bytes: about 4 readings. The VM's heap does not
 * move, and during a drain it fragments until no free block holds 600 bytes while a fifth of it
 * is free: small messages fit the gaps, and 4 of them out hold 1.6 KB.
 */
export const MAX_MESSAGE_BYTES_OUT = 400

/**
 * After the broker refused a reading message (MQTT 5), its readings wait this long before they go
 * out again: a broker that refuses for good (not authorized, payload format) gets a window of
 * messages a minute, not a stream of them.
 */
export const REFUSED_RETRY_MS = 60_000

/** Messages handed to the client in one go before yielding (the VM's op limit). */
const SUBMITS_PER_YIELD = 4

interface OutMessage {
    token: number
    /** Queue records the message carries, and the last of them as published. */
    count: number
    last: ReadingRecord
    acked: boolean
}

/** What the uplink needs from the runtime: DeviceScript's on the device, the test's in Node. */
export interface UplinkPlatform {
    millis(): number
    sleep(ms: number): Promise<void>
    /** Runs `fn` soon, in a fiber of its own. */
    spawn(fn: () => Promise<void>): void
}

/** What the uplink needs from the MQTT client. */
export interface UplinkClient {
    isConnected(): boolean
    /** Queues a QoS 1 publish; returns at once the token that its acknowledgement reports. */
    publish(topic: string, payload: Buffer, qos: number, retain: boolean): number
}

/** What the uplink tells its owner; the node passes itself, so each is one of its methods. */
export interface UplinkEvents {
    /** A flush or append problem, for the console and the status message. */
    reportError: (text: string) => void
    /**
     * The broker acknowledged `newest` and everything before it: they are leaving the queue, and
     * the next boot must know they were delivered. Called on a fiber of its own, one at a time,
     * with the newest only when several come meanwhile. `newest` is the uplink's own record, which
     * the next PUBACK changes: read it before waiting.
     */
    onAcknowledged?: (newest: ReadingRecord) => Promise<void>
    /** Before a message is published, with its last record as it goes out (the node's ceiling check). */
    beforePublish?: (last: ReadingRecord) => Promise<void>
    /**
     * UTC offset (utcS - uptimeS) of boot `boot`, or 0 when that boot never learned the time.
     * Readings stored in uptime seconds are published in UTC when their boot's offset is known.
     */
    utcOffsetS?: (boot: number) => number
}

export class Uplink {
    private client: UplinkClient
    private out: OutMessage[] = []
    /**
     * Messages acknowledged, each with its record object, for the next ones: a record is about
     * 216 bytes in two blocks, made by growing (see docs/platform-notes.md), and online a new one
     * per message was the allocation the heap ran short for first.
     */
    private spare: OutMessage[] = []
    /** Records at the queue's head that messages in `out` carry. */
    private pinned = 0
    private busy = false
    private deferredAppends: ReadingRecord[] = []
    private deferredRemovals = 0
    /** The newest record appended, and whether records came since the last flush. */
    private newest: ReadingRecord = null
    private appendedSinceFlush = false
    private lastFlushMs = 0
    private kicked = false
    private heldUntilMs = 0
    /**
     * The newest record acknowledged (a copy, made when its PUBACK came; its seq the highest the
     * broker acknowledged, 0 before any), and whether onAcknowledged is running.
     */
    private readonly acknowledged: ReadingRecord = newRecord()
    private reporting = false
    private readonly window: number
    /**
     * The record a message is built from (the last one read, which may not fit), the last one the
     * message took, and the payload built for the next publish.
     */
    private readonly record: ReadingRecord = newRecord()
    private readonly last: ReadingRecord = newRecord()
    private payload: Buffer = null

    constructor(
        readonly queue: DurableQueue,
        private readonly meters: MeterLabel[],
        private readonly topics: string[],
        inflightWindow: number,
        readonly flushIntervalMs: number,
        private readonly events: UplinkEvents,
        private readonly platform: UplinkPlatform
    ) {
        this.window = Math.min(inflightWindow, MAX_MESSAGES_OUT)
        this.lastFlushMs = platform.millis()
    }

    attach(client: UplinkClient) {
        this.client = client
    }

    /** Readings waiting for the broker, in the queue and about to be added to it. */
    size() {
        return this.queue.size() + this.deferredAppends.length - this.deferredRemovals
    }

    /** Queues a reading (or a gap); it is published when the link and the window allow. */
    async append(record: ReadingRecord) {
        this.newest = record
        this.appendedSinceFlush = true
        this.deferredAppends.push(record)
        if (!this.busy) this.applyDeferred()
        // Two closed blocks not in flash: the broker is not keeping up, so write them now rather
        // than let RAM fill up.
        if (this.queue.closedUnflushedBlocks() >= 2) await this.flush()
        else await this.submit()
    }

    /** Every flushIntervalMs: writes what is not acknowledged yet (nothing when all is). */
    async flushLoop() {
        for (;;) {
            const dueMs = this.lastFlushMs + this.flushIntervalMs
            const waitMs = dueMs - this.platform.millis()
            if (waitMs > 0) await this.platform.sleep(waitMs)
            else await this.flush()
        }
    }

    /** Writes the queue to flash, then logs the newest reading as safe. */
    async flush() {
        if (!(await this.acquire())) return
        this.lastFlushMs = this.platform.millis()
        const newest = this.newest
        const appended = this.appendedSinceFlush
        this.appendedSinceFlush = false
        let error = ""
        const droppedBefore = this.queue.droppedReadings
        try {
            error = await this.queue.flush(this.pinned)
        } finally {
            this.release()
        }
        const dropped = this.queue.droppedReadings - droppedBefore
        // The last resort of a full queue: never silent.
        if (dropped > 0)
            this.events.reportError(
                "queue: full, dropped the " +
                    dropped +
                    " oldest unacknowledged readings that were not out for delivery (raise QUEUE_BYTES, or restore the link)"
            )
        if (error) {
            this.appendedSinceFlush = true
            this.events.reportError(error)
            return
        }
        // What was acknowledged is in the node's acknowledgement mark already; what the queue still
        // holds, the next boot finds there.
        if (appended && newest && newest.seq > this.acknowledged.seq) console.log(`flash: safe up to seq ${newest.seq}`)
        await this.submit()
    }

    /** Takes the queue for this fiber; waits (bounded) while another has it. */
    private async acquire() {
        for (let i = 0; this.busy; ++i) {
            if (i > 3000) {
                this.events.reportError("queue: busy for over a minute, flush skipped")
                return false
            }
            await this.platform.sleep(20)
        }
        this.busy = true
        return true
    }

    private release() {
        this.busy = false
        // What arrived meanwhile found the queue busy: publish it now, not at the next reading.
        if (this.applyDeferred()) this.kick()
    }

    /**
     * Applies the appends and the removal of acknowledged records that waited for the queue;
     * returns whether there were any. `pinned` counts positions in the queue as it is: it shrinks
     * only together with the queue, never while a removal waits.
     */
    private applyDeferred() {
        const changed = this.deferredAppends.length > 0 || this.deferredRemovals > 0
        while (this.deferredAppends.length) {
            const error = this.queue.append(this.deferredAppends.shift())
            if (error) this.events.reportError(error)
        }
        this.queue.remove(this.deferredRemovals)
        this.pinned -= this.deferredRemovals
        this.deferredRemovals = 0
        return changed
    }

    /**
     * Runs submit() in a fiber of its own, soon. Callbacks of the MQTT client run on the fiber
     * that reads the socket, and a Settings-store read there (peek reads flash) gets resumed by
     * the socket's next event with the wrong value.
     */
    kick() {
        if (this.kicked) return
        this.kicked = true
        const self = this
        this.platform.spawn(async () => {
            self.kicked = false
            await self.submit()
        })
    }

    /**
     * Holds publishing for `ms` (0 ends a hold), then publishes what waited. The node holds its
     * readings for a moment after connecting while it has no time, so they go out in UTC; the
     * uplink holds them after a refusal (see onDelivered).
     */
    holdFor(ms: number) {
        this.heldUntilMs = ms > 0 ? this.platform.millis() + ms : 0
        if (ms > 0) {
            const self = this
            this.platform.spawn(async () => {
                await self.platform.sleep(ms)
                self.kick()
            })
        } else this.kick()
    }

    /** Publishes the oldest readings not yet out, while the link is up and the window has room. */
    async submit() {
        const client = this.client
        if (this.busy || !client || !client.isConnected() || this.platform.millis() < this.heldUntilMs) return
        this.busy = true
        try {
            let submitted = 0
            while (this.out.length < this.window && this.pinned < this.queue.size() && client.isConnected()) {
                const pinned = this.pinned
                const message = await this.nextMessage()
                if (!message) break
                if (this.events.beforePublish) await this.events.beforePublish(this.last)
                // A refusal meanwhile un-pinned records before the ones this message carries: they
                // go out first, after the hold it set.
                if (this.pinned !== pinned) {
                    this.spare.push(message)
                    this.payload = null
                    break
                }
                this.out.push(message)
                this.pinned += message.count
                message.token = client.publish(this.topics[this.record.meter], this.payload, 1, false)
                this.payload = null
                if (++submitted % SUBMITS_PER_YIELD === 0) await this.platform.sleep(0)
            }
        } finally {
            this.release()
        }
    }

    /**
     * The next message from the oldest records not out: consecutive records of one meter and
     * time base, up to MAX_READINGS_PER_MESSAGE and MAX_MESSAGE_BYTES_OUT; its payload goes
     * to `payload`. The records are decoded in place and each element is encoded on its own, then
     * copied once into a payload of its exact size: no record objects, no text that grows by
     * concatenation, and no block larger than the payload (the heap does not move, so large
     * blocks are what it runs short of first).
     */
    private async nextMessage(): Promise<OutMessage> {
        const self = this
        const r = this.record
        const offsetOf = this.events.utcOffsetS
        const parts: Buffer[] = []
        // Bytes of the parts: the head, the first element, then each next one after its comma.
        let length = 0
        const count = await this.queue.read(this.pinned, MAX_READINGS_PER_MESSAGE, stored => {
            // In UTC when the boot's offset is known (as recordInUtc, without a copy).
            const offsetS = offsetOf && stored.flags & FLAG_CLOCK_NOT_SET ? offsetOf(stored.boot) : 0
            const flags = offsetS ? stored.flags - FLAG_CLOCK_NOT_SET : stored.flags
            const more = parts.length > 0
            if (more && (stored.meter !== r.meter || (flags ^ r.flags) & (FLAG_CLOCK_NOT_SET | FLAG_NON_ADDITIVE)))
                return false
            copyInto(r, stored)
            r.flags = flags
            r.startS += offsetS
            const part = Buffer.from((more ? "," : "") + readingElement(r))
            // 2: the closing "]}".
            if (more && length + part.length + 2 > MAX_MESSAGE_BYTES_OUT) return false
            if (!more) {
                parts.push(Buffer.from(readingHead(r, self.meters)))
                length = parts[0].length
            }
            parts.push(part)
            length += part.length
            copyInto(self.last, r)
            return true
        })
        if (!count) return null
        const payload = Buffer.alloc(length + 2)
        let at = 0
        for (const part of parts) {
            payload.set(part, at)
            at += part.length
        }
        payload[at] = 93 // ]
        payload[at + 1] = 125 // }
        this.payload = payload
        const message = this.spare.pop() || { token: 0, count: 0, last: newRecord(), acked: false }
        message.token = 0
        message.count = count
        message.acked = false
        copyInto(message.last, this.last)
        return message
    }

    /**
     * A PUBACK: returns whether it was for a reading message out (accepted or refused).
     * Acknowledged records leave the queue in order. Runs on the socket's fiber: no flash access here.
     *
     * With `refusedCode` from 0x80 up (MQTT 5: the broker refused the message, or it was over the
     * broker's Maximum Packet Size and never sent), its records stay in the queue: the message and
     * every one out after it leave `out` and un-pin their records, which go out again after
     * REFUSED_RETRY_MS. Only the head of the queue is ever out, and only an acknowledged head
     * leaves it, so the later ones go too: what they carry follows the refused records. Their own
     * PUBACKs then match no message and are ignored (tokens are never reused); what the broker
     * accepted of them arrives twice, and consumers keep one copy per seq. `acknowledged` never
     * moves for a refusal. The queue is not touched, so a busy one is no matter: a flush under way
     * keeps the records its older count pinned, and a message being built sees the count change
     * and is not sent (submit). The MQTT session reports the refusal, naming its code. The hold is
     * holdFor's: a later one of the node replaces it (the first time of a boot ends it, a
     * connection without the time makes it 3 s), which happens at most once per connection, so
     * a broker that keeps refusing still gets one window of messages per connection or per
     * REFUSED_RETRY_MS; a new connection is a fair moment to try again anyway.
     */
    onDelivered(token: number, refusedCode = 0) {
        const out = this.out
        let at = 0
        while (at < out.length && out[at].token !== token) ++at
        if (at === out.length) return false
        if (refusedCode >= 0x80) {
            // `pinned` counts positions in the queue as it is: a removal waiting for it stays counted.
            while (out.length > at) {
                const m = out.pop()
                this.pinned -= m.count
                this.spare.push(m)
            }
            this.holdFor(REFUSED_RETRY_MS)
            return true
        }
        out[at].acked = true
        // PUBACKs come in order (MQTT 3.1.1, 4.6), but the queue is FIFO either way: only an
        // acknowledged head leaves it.
        let removed = 0
        while (out.length && out[0].acked) {
            const m = out[0]
            removed += m.count
            if (m.last.seq > this.acknowledged.seq) copyInto(this.acknowledged, m.last)
            removeAt(out, 0)
            this.spare.push(m)
        }
        this.deferredRemovals += removed
        if (!this.busy) this.applyDeferred()
        this.kick()
        if (removed && this.events.onAcknowledged && !this.reporting) {
            const self = this
            this.reporting = true
            this.platform.spawn(async () => await self.reportAcknowledged())
        }
        return true
    }

    /**
     * Tells onAcknowledged the newest acknowledged record until it has heard of the newest. The
     * record is the uplink's own: onAcknowledged reads it before it first waits.
     */
    private async reportAcknowledged() {
        let told = 0
        try {
            while (this.acknowledged.seq !== told) {
                told = this.acknowledged.seq
                await this.events.onAcknowledged(this.acknowledged)
            }
        } finally {
            this.reporting = false
        }
    }
}
