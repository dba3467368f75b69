// Home Assistant discovery from the node: the configs (src/discovery.ts builds them) go out
// retained after every connection, since a broker may have lost its retained messages, and the
// meters announced are kept in flash, so that the config of a meter no longer configured is
// cleared. A function over the node's parts: a class would cost the image more code.
//
// Platform code: DeviceScript only.
import { NodeConfig } from "../config"
import { ANNOUNCED_KEY, announcedKey } from "../discovery"
import { Features } from "../features"
import { MeterLabel } from "../meters/meter-spec"
import { MqttClient } from "../mqtt/client"
import { writeVerified } from "../platform/settings-store"

/** What discovery needs of the node. */
export interface DiscoveryHost {
    readonly config: NodeConfig
    /** By slot; null where no meter is configured. */
    readonly labels: MeterLabel[]
    readonly features: Features
    readonly client: MqttClient
    /** Meter ids with a Home Assistant config out, as stored in flash (read at boot). */
    announced: string[]
    reportError(text: string): void
}

/**
 * Publishes every meter's config, and clears those of meters announced before and no longer
 * configured. At QoS 0, written in parts (MqttClient.publishParts): a config lost with its
 * connection goes out again at the next one. Runs on the socket's fiber: the flash write of the
 * announced ids goes to a fiber of its own.
 */
export async function publishDiscovery(node: DiscoveryHost) {
    const c = node.config
    if (!c.haPrefix) return
    const labels: MeterLabel[] = []
    const ids: string[] = []
    for (const m of node.labels)
        if (m) {
            labels.push(m)
            ids.push(announcedKey(m))
        }
    let written = true
    for (const m of node.features.discovery(c.haPrefix, c.topicPrefix, c.nodeId, labels, node.announced))
        written = node.client.publishParts(m.topic, m.payload, true) && written
    // The ids change only once every clearing config was written.
    if (!written || JSON.stringify(node.announced) === JSON.stringify(ids)) return
    node.announced = ids
    saveAnnounced(node, ids)
}

/**
 * Writes the announced ids in a fiber of its own, started here: a closure keeps its function's
 * whole activation alive, and publishDiscovery's holds every config it wrote.
 */
function saveAnnounced(node: DiscoveryHost, ids: string[]) {
    setTimeout(async () => {
        const error = await writeVerified(ANNOUNCED_KEY, ids)
        if (error) node.reportError(error)
    }, 0)
}
