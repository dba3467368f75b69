// The `replay` command: republishes the held history that overlaps [from, to) on each meter's
// replay topic (only the requested meter's when the request names one), flagged "replay", one
// message at a time (each waits for its PUBACK, so heap stays bounded), then replies with the
// count. Readings of a boot that never learned the time cannot be placed in a range.
//
// Pure core: the node's side comes in as a ReplayPort.
import { ReplayHistory, ReplayPort } from "./features"
import { replayRangeError } from "./history"
import { readingMessage, replayTopic } from "./reading"
import { ReadingRecord } from "./storage/records"

/** How long a replayed message may wait for its PUBACK before the replay gives up. */
const REPLAY_ACK_TIMEOUT_MS = 10000

let replaying = false

/** The slot of the meter with id `id`, or -1. */
function slotOf(labels: { id: string }[], id: any) {
    for (let slot = 0; slot < labels.length; ++slot) if (labels[slot] && labels[slot].id === id) return slot
    return -1
}

/** Starts a replay: "" once started (it replies when done), else why it cannot start. */
export function startReplay(history: ReplayHistory, request: any, id: any, node: ReplayPort): string {
    if (replaying) return "replay: another replay is running"
    if (request.meter !== undefined && slotOf(node.labels, request.meter) < 0)
        return "replay: unknown meter " + request.meter
    const error = replayRangeError(request)
    if (error) return error
    replaying = true
    // In a fiber of its own: it waits for PUBACKs, which arrive on the fiber that runs commands.
    node.spawn(async () => {
        try {
            await replay(history, request, id, node)
        } finally {
            replaying = false
        }
    })
    return ""
}

async function replay(history: ReplayHistory, request: any, id: any, node: ReplayPort) {
    const only = request.meter === undefined ? -1 : slotOf(node.labels, request.meter)
    const labels = node.labels
    let messages = 0
    let sent = 0
    let failure = ""
    const result = await history.replay({ fromMs: request.from, toMs: request.to }, node.utcOffsetS, async records => {
        let rest: ReadingRecord[] = []
        for (const r of records)
            if ((only < 0 || r.meter === only) && r.meter < labels.length && labels[r.meter]) rest.push(r)
        sent += rest.length
        while (rest.length && !failure) {
            const m = readingMessage(rest, labels, true)
            rest = rest.slice(m.count)
            const token = node.publish(replayTopic(node.topicPrefix, node.nodeId, labels[m.meter].id), m.payload)
            messages++
            if (!(await node.waitForAck(token, REPLAY_ACK_TIMEOUT_MS)))
                failure = "replay: no PUBACK within " + REPLAY_ACK_TIMEOUT_MS + " ms"
        }
    })
    const reply: any = failure
        ? { id, ok: false, error: failure }
        : { id, ok: true, count: sent, messages, untimed: result.untimed }
    console.log("command: replay: " + (failure || sent + " readings in " + messages + " messages"))
    node.publish(node.topicPrefix + "/" + node.nodeId + "/reply/replay", JSON.stringify(reply))
}
