// The planned stop (the restart and shutdown commands): the retained status says offline with the
// reason, the queue goes to flash and the state is marked clean (no gap at the next boot), then
// DISCONNECT, so the broker discards the will and no consumer reads "lost".
//
// Platform code: DeviceScript only.
import * as ds from "@devicescript/core"
import { EnergyMeter } from "../meters/meter"
import { MqttClient } from "../mqtt/client"
import { withTotal } from "../node-state"
import { JSON_CONTENT, statusPayload } from "../reading"
import { Uplink } from "../uplink"
import { FlashState } from "./flash-state"

/** How long a planned stop waits for its offline status to be acknowledged before going anyway. */
const SHUTDOWN_ACK_TIMEOUT_MS = 5000

/** What a planned stop needs of the node. */
export interface StopHost {
    /** Set once the stop begins: the reading loops end, and a second stop does nothing. */
    stopping: boolean
    readonly boot: number
    readonly client: MqttClient
    readonly statusTopic: string
    readonly uplink: Uplink
    readonly flash: FlashState
    /** By slot; null where no meter runs. */
    readonly meters: EnergyMeter[]
    waitForAck(token: number, timeoutMs: number): Promise<boolean>
}

/** Stops the node as planned, for `reason`; then restarts the program when `restart`. */
export async function stopGracefully(node: StopHost, reason: string, restart: boolean) {
    if (node.stopping) return
    node.stopping = true
    const client = node.client
    const payload = statusPayload({
        online: false,
        reason,
        boot: node.boot,
        uptimeS: 0,
        queued: 0,
        dropped: 0,
        merged: 0,
        lastError: "",
    })
    const token = client.publish(node.statusTopic, Buffer.from(payload), 1, true, JSON_CONTENT)
    await node.waitForAck(token, SHUTDOWN_ACK_TIMEOUT_MS)
    await node.uplink.flush()
    // The next boot continues each total exactly where it stops (no ceiling: there is no gap).
    const meters = node.meters
    const s = node.flash.next()
    for (let slot = 0; slot < meters.length; ++slot)
        if (meters[slot]) s.totals = withTotal(s.totals, slot, meters[slot].totalMilliWh)
    s.clean = true
    await node.flash.write(s)
    await client.stop()
    console.log(`node: stopped (${reason})`)
    if (restart) ds.restart()
}
