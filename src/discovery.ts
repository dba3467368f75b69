// Home Assistant MQTT discovery: one retained config per meter, so that Home Assistant creates an
// energy sensor (usable in its Energy dashboard) without any YAML, with the node's status topic as
// its availability. https://www.home-assistant.io/integrations/sensor.mqtt/
//
// Pure core: imports nothing from @devicescript.
import { FIRMWARE_VERSION, readingTopic, statusTopic } from "./reading"

/** Settings key holding the meter ids this node announced, so that removed ones are cleared. */
export const ANNOUNCED_KEY = "mn_ha"

export interface DiscoveryMessage {
    topic: string
    /** "" clears the config: Home Assistant removes the entity. */
    payload: string
}

function objectId(nodeId: string, meterId: string) {
    return "meternode_" + nodeId + "_" + meterId + "_energy"
}

export function discoveryTopic(haPrefix: string, nodeId: string, meterId: string) {
    return haPrefix + "/sensor/" + objectId(nodeId, meterId) + "/config"
}

/**
 * The config of one energy meter. The state is the `total` of the newest element of each reading
 * message (a gap carries one too), in Wh, always increasing: device class energy with state class
 * total_increasing is what the Energy dashboard accepts.
 */
export function discoveryPayload(prefix: string, nodeId: string, meterId: string) {
    const id = objectId(nodeId, meterId)
    const config = {
        name: "Energy " + meterId,
        unique_id: id,
        object_id: id,
        state_topic: readingTopic(prefix, nodeId, meterId),
        value_template: "{{ value_json.readings[-1].total }}",
        device_class: "energy",
        state_class: "total_increasing",
        unit_of_measurement: "Wh",
        availability_topic: statusTopic(prefix, nodeId),
        availability_template: "{{ value_json.state }}",
        payload_available: "online",
        payload_not_available: "offline",
        qos: 1,
        device: {
            identifiers: ["meternode_" + nodeId],
            name: "meternode " + nodeId,
            manufacturer: "meternode",
            model: "DeviceScript metering node",
            sw_version: FIRMWARE_VERSION,
        },
    }
    return JSON.stringify(config)
}

/**
 * What to publish after connecting: a config for every meter, and an empty retained message for
 * every meter announced before and no longer configured.
 */
export function discoveryMessages(haPrefix: string, prefix: string, nodeId: string, meterIds: string[], announced: string[]): DiscoveryMessage[] {
    const out: DiscoveryMessage[] = []
    for (const old of announced)
        if (meterIds.indexOf(old) < 0) out.push({ topic: discoveryTopic(haPrefix, nodeId, old), payload: "" })
    for (const m of meterIds) out.push({ topic: discoveryTopic(haPrefix, nodeId, m), payload: discoveryPayload(prefix, nodeId, m) })
    return out
}

/** The announced ids as stored: a list of ids, anything else read as none. */
export function announcedFromJson(v: any): string[] {
    const out: string[] = []
    if (!Array.isArray(v)) return out
    for (const x of v) if (typeof x === "string") out.push(x)
    return out
}
