// `npm run collect -- [options]`: stores every meternode reading the broker carries in a database
// until stopped (Ctrl-C), then prints per meter the readings, the gaps, and the sum of the deltas
// beside the change of the meter's total.
// `npm run collect -- export --out FILE`: writes the database as the combined CSV and one Open
// Energy Dashboard file per meter.
import { readFileSync } from "node:fs"
import { parseArgs } from "node:util"
import { Collector, DEFAULT_DATA_DIR, summary } from "./collector"
import { openDatabase } from "./db"
import { exportCsv } from "./export"

const HELP = `npm run collect -- [options]            collect into the database (Ctrl-C stops)
npm run collect -- export --out FILE    write the database as CSV files

Database (both commands):
  --data-dir DIR      embedded PostgreSQL (PGlite) in DIR (default ${DEFAULT_DATA_DIR}; git ignores data/)
  --db URL            a PostgreSQL server instead, postgres://user:password@host:port/database

Collecting:
  --broker URL        broker, mqtt://host:port or mqtts://host:port (default mqtt://127.0.0.1:1883)
  --prefix P          first topic level of the nodes (default meters)
  --client-id ID      stable id of the persistent session (default meternode-collector)
  --mqtt-version V    5 (default) or 4 (MQTT 3.1.1, for a broker without MQTT 5)
  --share GROUP       share the messages with the other collectors of GROUP (MQTT 5 shared
                      subscription; each collector its own --client-id, all on one --db server)
  --http PORT         serve the HTTP API (/api/readings, /api/nodes, /api/stats) on PORT
  --http-host HOST    address of the HTTP API (default 127.0.0.1)
  --time-every S      be the nodes' time source: publish UTC retained every S seconds (default 0: off)
  --time-topic T      the time topic (default meters/time)
  --user NAME         user name; the password comes from the MQTT_PASS environment variable
  --ca-file FILE      CA certificate for mqtts:// with a private CA

Export:
  --out FILE          the combined CSV (default data/readings.csv); FILE-stem.<node>.<meter>.oed.csv
                      beside it, one per meter, for Open Energy Dashboard's CSV readings upload`

const { values, positionals } = parseArgs({
    options: {
        broker: { type: "string", default: "mqtt://127.0.0.1:1883" },
        "data-dir": { type: "string" },
        db: { type: "string" },
        out: { type: "string" },
        prefix: { type: "string", default: "meters" },
        "client-id": { type: "string", default: "meternode-collector" },
        "mqtt-version": { type: "string", default: "5" },
        share: { type: "string" },
        http: { type: "string" },
        "http-host": { type: "string", default: "127.0.0.1" },
        "time-topic": { type: "string", default: "meters/time" },
        "time-every": { type: "string", default: "0" },
        user: { type: "string" },
        "ca-file": { type: "string" },
        help: { type: "boolean", default: false },
    },
    allowPositionals: true,
    strict: true,
})

function fail(message: string): never {
    console.error(`npm run collect: ${message}`)
    process.exit(2)
}

if (values.help) {
    console.log(HELP)
    process.exit(0)
}
const command = positionals[0] ?? "collect"
if (positionals.length > 1 || !["collect", "export"].includes(command))
    fail(`unknown command ${positionals.join(" ")} (collect, export)`)
if (values.db && values["data-dir"]) fail("--db and --data-dir name two databases: give one")
if (values.db && !/^postgres(ql)?:\/\//.test(values.db)) fail("--db takes a postgres:// URL")
const dataDir = values["data-dir"] ?? DEFAULT_DATA_DIR

if (command === "export") {
    const out = values.out ?? "data/readings.csv"
    const db = await openDatabase({ url: values.db, dataDir, log: line => console.log(line) })
    try {
        const { rows, oedFiles } = await exportCsv(db, out)
        console.log(`${rows} rows in ${out}; Open Energy Dashboard files: ${oedFiles.join(", ") || "none"}`)
    } finally {
        await db.close()
    }
    process.exit(0)
}

if (values.out) fail("the collector stores into a database now: export CSV with `npm run collect -- export --out FILE`")
const timeEveryS = Number(values["time-every"])
if (!Number.isFinite(timeEveryS) || timeEveryS < 0)
    fail(`--time-every must be a number of seconds, got ${values["time-every"]}`)
const version = Number(values["mqtt-version"])
if (version !== 4 && version !== 5) fail(`--mqtt-version is 4 or 5, not ${values["mqtt-version"]}`)
if (values.share !== undefined && !values.db)
    fail("--share needs --db: the collectors of a group store into one PostgreSQL server")
if (values.share !== undefined && version !== 5) fail("--share is MQTT 5: drop --mqtt-version 4")
const httpPort = values.http === undefined ? undefined : Number(values.http)
if (httpPort !== undefined && !(Number.isInteger(httpPort) && httpPort >= 0 && httpPort < 65536))
    fail(`--http takes a port number, got ${values.http}`)

const collector = new Collector({
    broker: values.broker!,
    db: values.db,
    dataDir,
    prefix: values.prefix,
    clientId: values["client-id"],
    protocolVersion: version,
    share: values.share,
    username: values.user,
    password: process.env.MQTT_PASS,
    ca: values["ca-file"] ? readFileSync(values["ca-file"]) : undefined,
    timeTopic: values["time-topic"],
    timeEveryS,
    httpPort,
    httpHost: values["http-host"],
})

let stopping = false
async function stop() {
    if (stopping) return
    stopping = true
    const lines = (await summary(collector.db).catch((): Awaited<ReturnType<typeof summary>> => [])).map(
        s =>
            `${s.node}/${s.meter}: ${s.readings} readings, ${s.gaps} gaps, sum of deltas ${s.sumWh}, change of total ${s.totalChangeWh}`
    )
    await collector.stop()
    for (const line of lines) console.log(line)
    const s = collector.stats
    console.log(
        `this run: ${s.messages} messages, ${s.stored} rows stored, ${s.duplicates} duplicates absorbed, ${s.partial} partial, ` +
            `${s.conflicts} integrity conflicts, rejected ${JSON.stringify(s.rejected)}, ${s.failures} failed transactions`
    )
    process.exit(0)
}
process.on("SIGINT", stop)
process.on("SIGTERM", stop)

try {
    await collector.start()
} catch (e) {
    fail((e as Error).message)
}
console.log(
    `collecting into ${collector.db.where}` +
        (collector.httpPort !== undefined ? `, HTTP API on http://${values["http-host"]}:${collector.httpPort}` : "") +
        (timeEveryS ? `, publishing the time every ${timeEveryS} s` : "") +
        "; Ctrl-C stops"
)
