// Boot for a composed image (devs/lib/compose.ts): the configuration was validated on the host
// and built into the image, so the board carries no settings parser. The Settings store is only
// compared with it: a setting deployed there later is named and not used, never silently
// ignored, because changing the configuration means building and flashing again.
import { BuiltChecks, NodeConfig } from "../config"
import { Features } from "../features"
import { runNode } from "../node"
import { readJsonSetting } from "./settings-store"

export async function startBuiltNode(config: NodeConfig, checksJson: string, features: Features) {
    const built: BuiltChecks = JSON.parse(checksJson)
    // The settings' errors found at build time, then what the Settings store says otherwise.
    const problems = built.errors
    for (const key of built.keys) {
        const stored = await readJsonSetting(key, undefined)
        const own = built.settings[key]
        // Values are not printed: a password is a setting too.
        if (stored !== undefined && "" + stored !== (own === undefined ? "" : "" + own))
            problems.push(
                `setting ${key} in the Settings store differs from this image's; the image's is used (build and flash again)`
            )
    }
    await runNode(config, problems, features, built.description)
}
