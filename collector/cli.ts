// `npm run collect -- --broker URL [--out data/readings.csv] [--time-every S]`: collects every meternode
// reading the broker carries into CSV until stopped (Ctrl-C), then prints per meter the readings,
// the gaps, and the sum of the deltas beside the change of the meter's total.
import { readFileSync } from "node:fs"
import { parseArgs } from "node:util"
import { Collector } from "./collector"

const { values } = parseArgs({
    options: {
        broker: { type: "string", default: "mqtt://127.0.0.1:1883" },
        out: { type: "string", default: "data/readings.csv" },
        prefix: { type: "string", default: "meters" },
        "client-id": { type: "string", default: "meternode-collector" },
        "time-topic": { type: "string", default: "meters/time" },
        "time-every": { type: "string", default: "0" },
        user: { type: "string" },
        "ca-file": { type: "string" },
        help: { type: "boolean", default: false },
    },
    strict: true,
})

if (values.help) {
    console.log(`npm run collect -- [options]
  --broker URL        broker, mqtt://host:port or mqtts://host:port (default mqtt://127.0.0.1:1883)
  --out FILE          combined CSV (default data/readings.csv; git ignores data/); the per-meter
                      Open Energy Dashboard files FILE-stem.<node>.<meter>.oed.csv go beside it
  --prefix P          first topic level of the nodes (default meters)
  --client-id ID      stable id of the persistent session (default meternode-collector)
  --time-every S      be the nodes' time source: publish UTC retained every S seconds (default 0: off)
  --time-topic T      the time topic (default meters/time)
  --user NAME         user name; the password comes from the MQTT_PASS environment variable
  --ca-file FILE      CA certificate for mqtts:// with a private CA`)
    process.exit(0)
}

const timeEveryS = Number(values["time-every"])
if (!Number.isFinite(timeEveryS) || timeEveryS < 0) {
    console.error(`npm run collect: --time-every must be a number of seconds, got ${values["time-every"]}`)
    process.exit(2)
}

const collector = new Collector({
    broker: values.broker!,
    out: values.out!,
    prefix: values.prefix,
    clientId: values["client-id"],
    username: values.user,
    password: process.env.MQTT_PASS,
    ca: values["ca-file"] ? readFileSync(values["ca-file"]) : undefined,
    timeTopic: values["time-topic"],
    timeEveryS,
})

let stopping = false
async function stop() {
    if (stopping) return
    stopping = true
    await collector.stop()
    for (const s of collector.summary())
        console.log(
            `${s.node}/${s.meter}: ${s.readings} readings, ${s.gaps} gaps, sum of deltas ${s.sumWh} Wh, change of total ${s.totalChangeWh} Wh`
        )
    console.log(`duplicates skipped: ${collector.duplicates}`)
    process.exit(0)
}
process.on("SIGINT", stop)
process.on("SIGTERM", stop)

await collector.start()
console.log(
    `collecting into ${values.out}${timeEveryS ? `, publishing the time every ${timeEveryS} s` : ""}; Ctrl-C stops`
)
