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
    await runNode(config, errors, features, describeConfig(config))
}
