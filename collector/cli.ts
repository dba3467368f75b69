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
import { OED_APIS, OED_DEFAULTS, OED_METER_NAME_MAX, type OedApi } from "./oed"

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
  --http PORT         serve the HTTP API (/api/readings, /api/nodes, /api/stats) and the fleet page
                      (http://127.0.0.1:PORT/) on PORT
  --http-host HOST    address of the HTTP API (default 127.0.0.1)
  --operator-token-file FILE
                      allow commands (restart, time) from the fleet page to whoever gives the token in
                      FILE (one line, at least 16 characters); without it the page is read-only
  --time-every S      be the nodes' time source: publish UTC retained every S seconds (default 0: off)
  --time-topic T      the time topic (default meters/time)
  --user NAME         user name; the password comes from the MQTT_PASS environment variable
  --ca-file FILE      CA certificate for mqtts:// with a private CA

Open Energy Dashboard output (off unless --oed is given):
  --oed URL           post each energy, water and gas meter's new readings to the OED at URL
                      (http(s)://host:port), to its CSV readings upload; the position is in the database
  --oed-user NAME     OED user with the CSV role; the password comes from the OED_PASS environment variable
  --oed-api A         current (default: OED since 2024, the meters must exist in OED) or 1.0 (OED 1.0.0:
                      a meter OED lacks is created)
  --oed-meter T       OED meter name of each meter, {node} and {meter} replaced (default ${OED_DEFAULTS.meterName});
                      at most ${OED_METER_NAME_MAX} characters
  --oed-batch N       readings per upload (default ${OED_DEFAULTS.batchRows})
  --oed-every S       seconds between passes over the meters (default ${OED_DEFAULTS.intervalMs / 1000})

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
        "operator-token-file": { type: "string" },
        "time-topic": { type: "string", default: "meters/time" },
        "time-every": { type: "string", default: "0" },
        user: { type: "string" },
        "ca-file": { type: "string" },
        oed: { type: "string" },
        "oed-user": { type: "string" },
        "oed-api": { type: "string", default: OED_DEFAULTS.api },
        "oed-meter": { type: "string", default: OED_DEFAULTS.meterName },
        "oed-batch": { type: "string", default: String(OED_DEFAULTS.batchRows) },
        "oed-every": { type: "string", default: String(OED_DEFAULTS.intervalMs / 1000) },
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

let operatorToken: string | undefined
if (values["operator-token-file"] !== undefined) {
    if (httpPort === undefined) fail("--operator-token-file is for the fleet page: give --http PORT too")
    try {
        operatorToken = readFileSync(values["operator-token-file"], "utf-8").trim()
    } catch (e) {
        fail(`--operator-token-file: ${(e as Error).message}`)
    }
    // A short token could be guessed through the page's command route.
    if (operatorToken.length < 16 || /\s/.test(operatorToken))
        fail("--operator-token-file: the token is one line of at least 16 characters, no spaces")
}

let oed: NonNullable<ConstructorParameters<typeof Collector>[0]["oed"]> | undefined
if (values.oed !== undefined) {
    let url: URL
    try {
        url = new URL(values.oed)
    } catch {
        fail(`--oed takes OED's URL, http://host:port, got ${values.oed}`)
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") fail(`--oed takes an http:// or https:// URL`)
    if (url.username || url.password)
        fail("--oed: no credentials in the URL: --oed-user, and OED_PASS for the password")
    if (!values["oed-user"] || !process.env.OED_PASS)
        fail("--oed needs --oed-user and the password in the OED_PASS environment variable")
    if (!(OED_APIS as string[]).includes(values["oed-api"]!))
        fail(`--oed-api is ${OED_APIS.join(" or ")}, not ${values["oed-api"]}`)
    if (!/\{node\}|\{meter\}/.test(values["oed-meter"]!)) fail("--oed-meter needs {node} or {meter} (or both)")
    const batchRows = Number(values["oed-batch"])
    if (!(Number.isInteger(batchRows) && batchRows > 0))
        fail(`--oed-batch takes a number of readings, got ${values["oed-batch"]}`)
    const everyS = Number(values["oed-every"])
    if (!(Number.isFinite(everyS) && everyS > 0)) fail(`--oed-every takes seconds, got ${values["oed-every"]}`)
    oed = {
        url: values.oed,
        username: values["oed-user"],
        password: process.env.OED_PASS,
        api: values["oed-api"] as OedApi,
        meterName: values["oed-meter"],
        batchRows,
        intervalMs: everyS * 1000,
    }
} else if (values["oed-user"]) fail("--oed-user without --oed: give OED's URL")

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
    operatorToken,
    oed,
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
    const o = collector.oed?.stats
    if (o)
        console.log(
            `Open Energy Dashboard: ${o.posted} readings posted (${o.late} late) in ${o.uploads} uploads, ` +
                `${o.retries} retried, ${o.refused} refused, parked ${JSON.stringify(o.parked)}`
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
        (collector.httpPort !== undefined
            ? `, HTTP API on http://${values["http-host"]}:${collector.httpPort} ` +
              `(the fleet page at /, ${operatorToken ? "commands on" : "read-only"})`
            : "") +
        (timeEveryS ? `, publishing the time every ${timeEveryS} s` : "") +
        (collector.oed ? `, posting to Open Energy Dashboard at ${collector.oed.where}` : "") +
        "; Ctrl-C stops"
)
