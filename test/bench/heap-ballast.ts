// The ballast probe (ballast.ts) for the image with every driver, which reads its settings on the
// board, and for the baseline program on the built-in client. A composed image calls
// holdBallast() from its generated entry.
import { startNode } from "../../src/platform/boot-settings"
import { ALL_FEATURES } from "../../src/full-image"
import { queueSimulatedBacklog } from "../../src/meters/sim-backlog"
import { holdBallast } from "./ballast"
import { onlineBuiltin, OnlineBenchOptions } from "./online-builtin"

export async function ballastNode(o: { ballastBytes: number; settings: Record<string, any> }) {
    holdBallast(o.ballastBytes)
    // The drain's backlog (SIM_BACKLOG) is a benchmark feature the board image does not carry.
    await startNode(o.settings, { ...ALL_FEATURES, backlog: queueSimulatedBacklog })
}

/** The same probe for the baseline: the ballast, then a reading a second through the built-in client. */
export async function ballastBuiltin(o: { ballastBytes: number; online: OnlineBenchOptions }) {
    holdBallast(o.ballastBytes)
    await onlineBuiltin(o.online)
}
