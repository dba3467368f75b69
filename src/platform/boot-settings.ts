// Boot for an image configured after flashing (src/main.ts, every driver): the settings are read
// from the Settings store and validated on the board. `provisioned` holds settings built into the
// image; they take precedence over the Settings store, which takes precedence over the defaults.
import { describeConfig, parseConfig, settingSpecs } from "../config"
import { Features } from "../features"
import { runNode } from "../node"
import { readSettings } from "./settings-store"

export async function startNode(provisioned: Record<string, any>, features: Features) {
    const raw = await readSettings(settingSpecs().map(s => s.key))
    for (const key of Object.keys(provisioned)) raw[key] = provisioned[key]
    const { config, errors } = parseConfig(raw)
    // A feature configured for an image that lacks it is named, never silently ignored. A composed
    // image has every feature its configuration names (devs/lib/compose.ts).
    if (config.haPrefix && !features.discovery) {
        errors.push("HA_PREFIX is set, but this image has no Home Assistant discovery; no configs sent")
        config.haPrefix = ""
    }
    if (config.historyBytes && !features.history) {
        errors.push("HISTORY_BYTES is set, but this image has no replay history; none kept")
        config.historyBytes = 0
    }
    if (config.simBacklog && !features.backlog) {
        errors.push("SIM_BACKLOG is set, but this image has no simulated backlog; none queued")
        config.simBacklog = 0
    }
    if (config.mqttVersion !== 4 && !features.mqtt5) {
        errors.push("MQTT_VERSION is 5 or auto, but this image speaks MQTT 3.1.1 only; 3.1.1 used")
        config.mqttVersion = 4
    }
    await runNode(config, errors, features, describeConfig(config))
}
