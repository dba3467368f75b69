// Home Assistant MQTT discovery: one retained config per meter, so that Home Assistant creates a
// sensor without any YAML (energy, water and gas meters usable in its Energy dashboard), with the
// node's status topic as its availability. https://www.home-assistant.io/integrations/sensor.mqtt/
//
// Pure core: imports nothing from @devicescript.
import { firmware } from "./reading"
import { MeterLabel } from "./meters/meter-spec"

/**
 * Settings key holding the sensors this node announced, so that removed ones are cleared: each as
 * "<meter id>:<quantity>" ("<meter id>" alone: an energy meter, as earlier versions stored it).
 */
export const ANNOUNCED_KEY = "mn_ha"

export interface DiscoveryMessage {
    topic: string
    /**
     * The config in parts, to be written one after another (MqttClient.publishParts): the whole
     * config (about 480 bytes) never needs a block of its own in the node's fragmented heap.
     * No parts clear the config: Home Assistant removes the entity.
     */
    payload: string[]
}

function objectId(nodeId: string, meterId: string, quantity: string) {
    return "meternode_" + nodeId + "_" + meterId + "_" + quantity
}

export function discoveryTopic(haPrefix: string, nodeId: string, meterId: string, quantity: string) {
    return haPrefix + "/sensor/" + objectId(nodeId, meterId, quantity) + "/config"
}

/** How the announced list stores a meter's sensor. */
export function announcedKey(m: MeterLabel) {
    return m.quantity === "energy" ? m.id : m.id + ":" + m.quantity
}

/**
 * The config of one meter. An amount's state is the `total` of the newest element of each reading
 * message (a gap carries one too), always increasing: device class energy (water, gas) with state
 * class total_increasing is what the Energy dashboard accepts. A level's state is the newest mean.
 */
export function discoveryPayload(prefix: string, nodeId: string, meter: MeterLabel): string[] {
    const quantity = meter.quantity
    const id = '"' + objectId(nodeId, meter.id, quantity) + '"'
    // Energy, water and gas are amounts: their device classes are named as our quantities.
    const amount = ["energy", "water", "gas"].indexOf(quantity) >= 0
    // Written out, not stringified from an object: that costs more code. The keys are Home
    // Assistant's documented abbreviations, and "~" stands for the node's topic base in the topics
    // (a config with the full names was 640 bytes). Availability payloads are Home Assistant's
    // defaults, online and offline. Ids need no escaping (letters, digits, '-' and '_':
    // config.ts); the topic base, from the topic prefix, does. The unit goes in as it is: the VM's
    // JSON.stringify escapes each byte of a non-ASCII character (m³, °C) as a character of its own.
    return [
        '{"name":"' + quantity.charAt(0).toUpperCase() + quantity.slice(1) + " " + meter.id,
        '","uniq_id":' + id + ',"obj_id":' + id + ',"~":' + JSON.stringify(prefix + "/" + nodeId),
        ',"stat_t":"~/' + meter.id + '/reading","val_tpl":"{{ value_json.readings[-1].',
        amount ? 'total }}","stat_cla":"total_increasing"' : 'mean }}","stat_cla":"measurement"',
        ',"avty_t":"~/status","avty_tpl":"{{ value_json.state }}","qos":1,"dev":{"ids":["meternode_',
        nodeId + '"],"name":"meternode ' + nodeId,
        '","mf":"meternode","mdl":"DeviceScript metering node","sw":' + JSON.stringify(firmware.version),
        // Home Assistant has device classes for these quantities, not for a generic level.
        quantity === "level" ? "}" : '},"dev_cla":"' + quantity + '"',
        ',"unit_of_meas":"' + (meter.unit === "m3" ? "m³" : meter.unit) + '"}',
    ]
}

/**
 * What to publish after connecting: a config for every meter, and an empty retained message for
 * every meter announced before and no longer configured.
 */
export function discoveryMessages(
    haPrefix: string,
    prefix: string,
    nodeId: string,
    meters: MeterLabel[],
    announced: string[]
): DiscoveryMessage[] {
    const out: DiscoveryMessage[] = []
    const keys: string[] = []
    for (const m of meters) keys.push(announcedKey(m))
    for (const old of announced) {
        if (keys.indexOf(old) >= 0) continue
        const colon = old.indexOf(":")
        const topic =
            colon < 0
                ? discoveryTopic(haPrefix, nodeId, old, "energy")
                : discoveryTopic(haPrefix, nodeId, old.slice(0, colon), old.slice(colon + 1))
        out.push({ topic, payload: [] })
    }
    for (const m of meters)
        out.push({
            topic: discoveryTopic(haPrefix, nodeId, m.id, m.quantity),
            payload: discoveryPayload(prefix, nodeId, m),
        })
    return out
}

/** The announced ids as stored: a list of ids, anything else read as none. */
export function announcedFromJson(v: any): string[] {
    const out: string[] = []
    if (!Array.isArray(v)) return out
    for (const x of v) if (typeof x === "string") out.push(x)
    return out
}
