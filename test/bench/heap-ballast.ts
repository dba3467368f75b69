// Heap headroom probe (runs in the simulator): holds `ballastBytes` of the 64 KB heap in buffers
// for the whole run, then starts the node (or the baseline program on the built-in client). The largest ballast with which the node still runs its
// workload without running out of memory bounds the node's peak heap use from above:
// peak <= heap - ballast.
import { startNode } from "../../src/platform/boot-settings"
import { ALL_FEATURES } from "../../src/full-image"
import { onlineBuiltin, OnlineBenchOptions } from "./online-builtin"

const held: Buffer[] = []

export async function ballastNode(o: { ballastBytes: number; settings: Record<string, any> }) {
    // 1 KB pieces: a fragmented heap cannot fit one large block, and the node's objects are small.
    for (let n = 0; n < o.ballastBytes; n += 1024) held.push(Buffer.alloc(1024))
    console.log("BALLAST " + held.length + " KB")
    await startNode(o.settings, ALL_FEATURES)
}

/** The same probe for the baseline: the ballast, then a reading a second through the built-in client. */
export async function ballastBuiltin(o: { ballastBytes: number; online: OnlineBenchOptions }) {
    for (let n = 0; n < o.ballastBytes; n += 1024) held.push(Buffer.alloc(1024))
    console.log("BALLAST " + held.length + " KB")
    await onlineBuiltin(o.online)
}
