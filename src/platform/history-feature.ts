// Replay history as a feature an image may carry: readings kept in RAM for the `replay` command.
// Platform code: DeviceScript only.
import * as ds from "@devicescript/core"
import { HistoryFeature } from "../features"
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
    start: startReplay,
}
