// Replay history as a feature an image may carry: readings kept in RAM for the `replay` command.
// Platform code: DeviceScript only.
import * as ds from "@devicescript/core"
import { HistoryFeature, ReplayHost, ReplayPort } from "../features"
import { History } from "../history"
import { startReplay } from "../replay"

export const replayHistory: HistoryFeature = {
    open: async (bytes: number) => {
        const history = new History(
            bytes,
            {
                sleep: async ms => await ds.sleep(ms),
                spawn: fn => {
                    setTimeout(fn, 0)
                },
            },
            async () => await ds.sleep(0)
        )
        await history.open()
        return history
    },
    start: (history, request, id, node) => startReplay(history, request, id, replayPort(node)),
}

/** What a replay needs of the node. */
function replayPort(node: ReplayHost): ReplayPort {
    return {
        labels: node.labels,
        topicPrefix: node.config.topicPrefix,
        nodeId: node.config.nodeId,
        utcOffsetS: boot => node.utcOffsetS(boot),
        publish: (topic, payload) => node.client.publish(topic, Buffer.from(payload), 1, false),
        waitForAck: async (token, timeoutMs) => await node.waitForAck(token, timeoutMs),
        spawn: fn => {
            setTimeout(fn, 0)
        },
    }
}
