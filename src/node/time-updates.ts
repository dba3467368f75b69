// The time, as it reaches the node over MQTT: messages on the time topic, and the time command
// while the clock is not set yet. How the clock uses it: docs/time.md.
//
// Platform code: DeviceScript only.
import { parseTimePayload, WallClock, withBootOffset } from "../clock"
import { MqttClient } from "../mqtt/client"
import { PublishPacket } from "../mqtt/packets"
import { Uplink } from "../uplink"
import { FlashState } from "./flash-state"
import { StatusReporter } from "./status"

/** What a time update needs of the node. */
export interface TimeHost {
    readonly boot: number
    readonly clock: WallClock
    readonly uplink: Uplink
    readonly flash: FlashState
    readonly client: MqttClient
    readonly status: StatusReporter
    reportError(text: string): void
}

/** A message on the time topic, received at `receivedMs`. */
export async function onTimeMessage(node: TimeHost, message: PublishPacket, receivedMs: number) {
    // An empty retained message clears the topic (the time source went away): nothing to do.
    if (!message.payload.length) return
    const t = parseTimePayload(message.payload.toString())
    if (t.error) node.reportError("time topic " + message.topic + ": " + t.error)
    else await setTime(node, t.utcMs, receivedMs, "time topic", message.retain)
}

/**
 * A time arrived. The first one of a boot is written to the state with the boot's offset, so
 * that readings of this boot still queued at the next boot are published in UTC too.
 * Runs on the socket's fiber: the state write goes to a fiber of its own.
 */
export async function setTime(node: TimeHost, utcMs: number, receivedMs: number, source: string, retained: boolean) {
    const clock = node.clock
    const wasSet = clock.isSet()
    if (!clock.apply(receivedMs, utcMs, source, retained)) {
        if (clock.refusal) node.reportError(clock.refusal)
        return
    }
    console.log("time: " + clock.lastChange + ", offset " + clock.offsetS + " s")
    if (wasSet) return
    node.uplink.holdFor(0)
    setTimeout(async () => {
        const s = node.flash.next()
        s.offsets = withBootOffset(s.offsets, node.boot, clock.bootOffsetS)
        await node.flash.write(s)
        // The birth message said "clock":"unset": a consumer deciding whether to trust the times needs the news.
        if (node.client.isConnected()) await node.status.publish()
    }, 0)
}
