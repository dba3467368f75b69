// `npm run fleet -- --nodes N --rate R`: a fleet of simulated meternodes for the collector. Each
// node is an MQTT client of its own that publishes its status (retained, with the firmware's
// will) and one-minute energy readings at QoS 1, in the firmware's own payloads (src/reading.ts),
// seq by seq, the fleet at R messages per second in all. With --verify URL it then asks the
// collector's HTTP API until every reading is stored, and prints how long that took.
import mqtt from "mqtt"
import { appendFileSync, writeFileSync } from "node:fs"
import { parseArgs } from "node:util"
import { energyLabel, readingMessage, readingTopic, statusPayload, statusTopic, WILL_PAYLOAD } from "../src/reading"
import { newRecord, type ReadingRecord } from "../src/storage/records"
import { random } from "./random"
import { maskUrl } from "../src/mqtt/url"

const HELP = `npm run fleet -- [options]
  --broker URL      broker (default mqtt://127.0.0.1:1883)
  --nodes N         simulated nodes, one MQTT connection each (default 10)
  --rate R          messages per second, the whole fleet (default 50)
  --readings K      readings per node (default 60)
  --batch B         readings per message, 1 to 12 (default 1; 12 is a node sending its backlog)
  --interval S      the readings' length, seconds (default 60); the last ends about now
  --window W        messages a node has awaiting PUBACK at most (default 8)
  --repeat P        share of messages published a second time, 0 to 1 (default 0: a lost PUBACK)
  --prefix P        first topic level (default meters)
  --id PREFIX       node ids PREFIX-0001... (default fleet)
  --seed S          seed of the generated energy (default 1)
  --verify URL      the collector's HTTP API (http://127.0.0.1:PORT): wait until it has every reading
  --hold            stay connected once published (and verified) until SIGTERM or SIGINT, then stop
                    as a node does; SIGKILL instead is every node losing power at once
  --log FILE        write each reading as it is taken, a JSON line {"node","seq","delta","total"} (mWh):
                    what the database must hold once every reading is delivered`

const { values } = parseArgs({
    options: {
        broker: { type: "string", default: "mqtt://127.0.0.1:1883" },
        nodes: { type: "string", default: "10" },
        rate: { type: "string", default: "50" },
        readings: { type: "string", default: "60" },
        batch: { type: "string", default: "1" },
        interval: { type: "string", default: "60" },
        window: { type: "string", default: "8" },
        repeat: { type: "string", default: "0" },
        prefix: { type: "string", default: "meters" },
        id: { type: "string", default: "fleet" },
        seed: { type: "string", default: "1" },
        verify: { type: "string" },
        log: { type: "string" },
        hold: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
    },
    strict: true,
})

if (values.help) {
    console.log(HELP)
    process.exit(0)
}

function number(name: keyof typeof values, min: number, max: number, integer = true) {
    const v = Number(values[name])
    if (!Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
        console.error(`npm run fleet: --${name} must be ${integer ? "an integer" : "a number"} from ${min} to ${max}`)
        process.exit(2)
    }
    return v
}

const NODES = number("nodes", 1, 5000)
const RATE = number("rate", 0.1, 100_000, false)
const READINGS = number("readings", 1, 10_000_000)
const BATCH = number("batch", 1, 12)
const INTERVAL_S = number("interval", 1, 86_400)
const WINDOW = number("window", 1, 1000)
const REPEAT = number("repeat", 0, 1, false)
const SEED = number("seed", 0, 2 ** 31)
const LABELS = [energyLabel("main")]
const LOG = values.log
if (LOG) writeFileSync(LOG, "")

class SimulatedNode {
    client!: mqtt.MqttClient
    next = 0
    inFlight = 0
    published = 0
    private total: number
    private readonly rnd: () => number
    private readonly firstStartS: number

    constructor(
        readonly id: string,
        index: number
    ) {
        this.rnd = random(SEED * 100_003 + index)
        this.total = Math.floor(this.rnd() * 1e9)
        // The last reading ends about now.
        this.firstStartS = Math.floor(Date.now() / 1000) - READINGS * INTERVAL_S
    }

    get done() {
        return this.next >= READINGS
    }

    async connect() {
        this.client = await mqtt.connectAsync(values.broker!, {
            clientId: this.id,
            clean: true,
            reconnectPeriod: 1000,
            will: {
                topic: statusTopic(values.prefix!, this.id),
                payload: Buffer.from(WILL_PAYLOAD),
                qos: 1,
                retain: true,
            },
        })
        const status = statusPayload({
            online: true,
            boot: 1,
            uptimeS: 0,
            queued: 0,
            dropped: 0,
            merged: 0,
            lastError: "",
            clock: "set",
        })
        await this.client.publishAsync(statusTopic(values.prefix!, this.id), status, { qos: 1, retain: true })
    }

    /** The records of the next message: up to BATCH readings. */
    private records(): ReadingRecord[] {
        const out: ReadingRecord[] = []
        while (out.length < BATCH && this.next + out.length < READINGS) {
            const i = this.next + out.length
            const r = newRecord()
            r.seq = i + 1
            r.firstSeq = i + 1
            r.boot = 1
            r.startS = this.firstStartS + i * INTERVAL_S
            r.durationS = INTERVAL_S
            // Around 1 kW: 1 to 33 Wh a minute.
            r.deltaMilliWh = Math.round((1000 + this.rnd() * 32_000) * (INTERVAL_S / 60))
            this.total += r.deltaMilliWh
            r.totalMilliWh = this.total
            out.push(r)
        }
        // Taken: from now on the node holds these readings until the broker has them, as the
        // firmware does in flash.
        if (LOG)
            appendFileSync(
                LOG,
                out
                    .map(r =>
                        JSON.stringify({ node: this.id, seq: r.seq, delta: r.deltaMilliWh, total: r.totalMilliWh })
                    )
                    .join("\n") + "\n"
            )
        return out
    }

    /** Publishes its next message (false when its window is full or it is done). */
    publishNext(onAck: (ms: number) => void): boolean {
        if (this.done || this.inFlight >= WINDOW) return false
        const m = readingMessage(this.records(), LABELS)
        this.next += m.count
        const topic = readingTopic(values.prefix!, this.id, "main")
        const send = () => {
            const at = performance.now()
            this.inFlight++
            this.client.publishAsync(topic, m.payload, { qos: 1 }).then(
                () => {
                    this.inFlight--
                    this.published++
                    onAck(performance.now() - at)
                },
                e => {
                    // Not acknowledged (the connection dropped as it went out): sent again, as a
                    // node sends what it still holds once it is connected again.
                    console.error(`${this.id}: ${e.message}; sending it again in 1 s`)
                    setTimeout(() => {
                        this.inFlight--
                        send()
                    }, 1000)
                }
            )
        }
        send()
        if (REPEAT && Math.random() < REPEAT) {
            send()
            repeated++
        }
        return true
    }

    async end() {
        // A planned stop: the offline status, so the will does not fire.
        await this.client.publishAsync(
            statusTopic(values.prefix!, this.id),
            statusPayload({
                online: false,
                reason: "shutdown",
                boot: 1,
                uptimeS: 0,
                queued: 0,
                dropped: 0,
                merged: 0,
                lastError: "",
            }),
            { qos: 1, retain: true }
        )
        await this.client.endAsync()
    }
}

/** Messages published a second time (--repeat). */
let repeated = 0

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms))

const nodes = Array.from(
    { length: NODES },
    (_, i) => new SimulatedNode(`${values.id}-${String(i + 1).padStart(4, "0")}`, i)
)
const t = performance.now()
for (let i = 0; i < nodes.length; i += 50) await Promise.all(nodes.slice(i, i + 50).map(n => n.connect()))
console.log(`${NODES} nodes connected to ${maskUrl(values.broker!)} in ${Math.round(performance.now() - t)} ms`)

const acks: number[] = []
const startedAt = performance.now()
let sent = 0
let turn = 0
// Every 10 ms, the messages due by then, node after node.
while (nodes.some(n => !n.done)) {
    const due = Math.floor(((performance.now() - startedAt) / 1000) * RATE) - sent
    let idle = 0
    for (let k = 0; k < due && idle < NODES;) {
        const node = nodes[turn++ % NODES]
        if (node.publishNext(ms => acks.push(ms))) {
            k++
            sent++
            idle = 0
        } else idle++
    }
    await sleep(10)
}
while (nodes.some(n => n.inFlight > 0)) await sleep(10)
const publishS = (performance.now() - startedAt) / 1000
const readings = NODES * READINGS
acks.sort((a, b) => a - b)
const pct = (p: number) => acks[Math.min(acks.length - 1, Math.floor((p / 100) * acks.length))]?.toFixed(1)
console.log(
    `published ${sent} messages (${readings} readings)${REPEAT ? `, ${repeated} of them twice,` : ""} in ${publishS.toFixed(1)} s: ${(sent / publishS).toFixed(0)} messages/s, ` +
        `${(readings / publishS).toFixed(0)} readings/s; PUBACK from the broker: median ${pct(50)} ms, 99th percentile ${pct(99)} ms`
)

let failed = false
if (values.verify) {
    // Every node's readings stored: the end-to-end figure, from the first publish.
    const deadline = Date.now() + 120_000
    const ids = new Set(nodes.map(n => n.id))
    for (;;) {
        let stored = 0
        try {
            const res = await fetch(`${values.verify.replace(/\/$/, "")}/api/nodes`)
            const { nodes: known } = (await res.json()) as { nodes: any[] }
            for (const n of known)
                if (ids.has(n.node)) stored += n.meters.find((m: any) => m.meter === "main")?.readings ?? 0
        } catch (e) {
            console.error(`--verify: ${(e as Error).message}`)
        }
        if (stored >= readings) {
            const s = (performance.now() - startedAt) / 1000
            console.log(
                `all ${readings} readings stored after ${s.toFixed(1)} s: ${(readings / s).toFixed(0)} readings/s end to end`
            )
            break
        }
        if (Date.now() > deadline) {
            console.error(`--verify: ${stored} of ${readings} readings stored after 120 s`)
            failed = true
            break
        }
        await sleep(200)
    }
}
if (values.hold && !failed) {
    console.log(`holding ${NODES} nodes connected until SIGTERM`)
    await new Promise(resolve => {
        process.once("SIGTERM", resolve)
        process.once("SIGINT", resolve)
    })
}
await Promise.all(nodes.map(n => n.end()))
process.exit(failed ? 1 : 0)
