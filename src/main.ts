// Entry point for a board configured after flashing: settings come from the Settings store,
// deployed from .env.defaults / .env.local by devtools or baked into the image by `devs bundle`.
// It carries every driver, discovery and replay history; `npm run build --
// --board ID` composes a smaller image for one configuration.
import { startNode } from "./platform/boot-settings"
import { ALL_FEATURES } from "./full-image"

await startNode({}, ALL_FEATURES)
