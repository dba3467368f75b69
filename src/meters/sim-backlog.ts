// The simulated backlog for drain benchmarks (SIM_BACKLOG): `count` one-minute readings of the
// simulated meter, as if taken by the previous boot, queued and flushed before the link comes up,
// as after a day without a broker. A feature of its own, so that only the images built for a
// benchmark carry it.
import * as ds from "@devicescript/core"
import { BacklogHost } from "../features"
import { energyRecord } from "../storage/records"

export async function queueSimulatedBacklog(node: BacklogHost, count: number) {
    const boot = node.boot - 1
    const meter = node.meters[0]
    let first = 0
    for (let i = 0; i < count; ++i) {
        const r = await meter.read(i * 60000, (i + 1) * 60000)
        const seq = await node.flash.takeSeq()
        if (!i) first = seq
        await node.uplink.append(
            energyRecord(0, seq, boot, i * 60000, (i + 1) * 60000, r.deltaMilliWh, meter.totalMilliWh)
        )
        if (i % 16 === 15) await ds.sleep(0)
    }
    await node.uplink.flush()
    console.log(`node: queued ${count} readings of simulated history, seq ${first}..${first + count - 1}`)
}
