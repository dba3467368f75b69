// Entry point for a real board: settings come from the Settings store, deployed from
// .env.defaults / .env.local by devtools or baked into the image by `devs bundle`.
import { startNode } from "./node"

await startNode({})
