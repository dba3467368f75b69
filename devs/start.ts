// `npm start`: builds the firmware, starts a broker (or uses --broker), runs the firmware in the
// DeviceScript simulator with persistent flash, and prints live what the broker receives.
import mqtt from "mqtt"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { parseArgs } from "node:util"
import { Broker } from "./lib/broker"
import { buildFirmware, PROJECT_ROOT, Simulator } from "./lib/simulator"
import type { Settings } from "./lib/simulator"
import { ChildRegistry } from "./lib/process"

const HELP = `Usage: npm start -- [options]

Runs the meternode firmware in the DeviceScript simulator against an MQTT broker and prints what
the broker receives (topic, retained flag, QoS, payload).

Options:
  --broker URL       use this broker (mqtt://HOST:PORT or mqtts://HOST:PORT) and start none;
                     default: start Mosquitto (or the embedded aedes broker if Mosquitto is not
                     installed) on a free port on 127.0.0.1
  --node ID          node id used in topics and in the MQTT client id (default: demo)
  --set KEY=VALUE    a firmware setting, repeatable (e.g. --set READ_MS=1000); see the README
  --clear-flash      start with empty simulated flash (default: keep it, like a real device
                     across power cycles; it lives in run/<node>/)
  -h, --help         show this help

Defaults for the simulator: READ_MS=5000 (a reading every 5 s), METER_KIND=sim.
For mqtts:// with a self-signed CA, set NODE_EXTRA_CA_CERTS=ca.pem.
Stop with Ctrl-C: the simulator and the broker it started are stopped.`

function fail(message: string): never {
    console.error(`npm start: ${message}\n\n${HELP}`)
    process.exit(2)
}

function parseCommandLine() {
    try {
        return parseArgs({
            options: {
                broker: { type: "string" },
                node: { type: "string", default: "demo" },
                set: { type: "string", multiple: true, default: [] },
                "clear-flash": { type: "boolean", default: false },
                help: { type: "boolean", short: "h", default: false },
            },
            strict: true,
            allowPositionals: false,
        }).values
    } catch (e) {
        fail((e as Error).message)
    }
}
const args = parseCommandLine()
if (args.help) {
    console.log(HELP)
    process.exit(0)
}

const nodeId = args.node!
if (!/^[A-Za-z0-9_-]{1,32}$/.test(nodeId)) fail(`--node ${nodeId}: use 1..32 letters, digits, '-' or '_'`)
if (args.broker && !/^mqtts?:\/\/[^/:]+(:\d+)?\/?$/.test(args.broker))
    fail(`--broker ${args.broker}: expected mqtt://HOST:PORT or mqtts://HOST:PORT`)

const settings: Settings = { READ_MS: 5000, METER_KIND: "sim", NODE_ID: nodeId }
for (const pair of args.set!) {
    const eq = pair.indexOf("=")
    if (eq <= 0) fail(`--set ${pair}: expected KEY=VALUE`)
    const key = pair.slice(0, eq)
    const value = pair.slice(eq + 1)
    settings[key] = /^-?\d+$/.test(value) ? Number(value) : value
}

const children = new ChildRegistry()
let broker: Broker | undefined
let simulator: Simulator | undefined
let watcher: mqtt.MqttClient | undefined
let stopping = false

async function shutdown(code: number) {
    if (stopping) return
    stopping = true
    watcher?.end(true)
    await simulator?.stop()
    await broker?.dispose()
    await children.stopAll()
    process.exit(code)
}
process.on("SIGINT", () => void shutdown(0))
process.on("SIGTERM", () => void shutdown(0))
process.on("exit", () => children.killAllNow())
// npm does not pass SIGTERM on to the script: when `npm start` is terminated, its shell dies and
// this process is re-parented. Treat that as the stop signal, so nothing is left running.
const parentPid = process.ppid
setInterval(() => {
    if (process.ppid !== parentPid) {
        console.log("[runner] npm start was stopped: stopping the simulator and the broker")
        void shutdown(0)
    }
}, 250).unref()

function time() {
    return new Date().toISOString().slice(11, 23)
}

function shorten(text: string, max = 160) {
    return text.length > max ? text.slice(0, max - 3) + "..." : text
}

async function main() {
    let brokerUrl = args.broker
    if (!brokerUrl) {
        broker = new Broker({ persistence: true })
        await broker.start()
        brokerUrl = broker.url
        console.log(`[runner] broker: ${broker.describe()}`)
    } else console.log(`[runner] broker: ${brokerUrl} (not started by this runner)`)
    settings.MQTT_URL = settings.MQTT_URL ?? brokerUrl

    const prefix = String(settings.TOPIC_PREFIX ?? "meters")
    const ca = process.env.NODE_EXTRA_CA_CERTS
    // With its own broker the runner is also the node's time source, as the collector would be
    // (--time-every): the retained time every 2 s, cleared by the will if the runner dies.
    const timeTopic = String(settings.TIME_TOPIC ?? "meters/time")
    const timeSource = !!broker && timeTopic !== "-"
    watcher = mqtt.connect(brokerUrl, {
        clientId: `meternode-watch-${process.pid}`,
        reconnectPeriod: 1000,
        ca: ca && existsSync(ca) ? readFileSync(ca) : undefined,
        will: timeSource ? { topic: timeTopic, payload: Buffer.alloc(0), qos: 1, retain: true } : undefined,
    })
    watcher.on("connect", () => watcher!.subscribe(`${prefix}/#`, { qos: 1 }))
    if (timeSource) {
        const publishTime = () => {
            if (watcher?.connected)
                watcher.publish(timeTopic, JSON.stringify({ utc_ms: Date.now() }), { qos: 0, retain: true })
        }
        watcher.on("connect", publishTime)
        setInterval(publishTime, 2000).unref()
        console.log(`[runner] publishing the time on ${timeTopic} every 2 s (not printed below)`)
    }
    watcher.on("message", (topic, payload, packet) => {
        if (timeSource && topic === timeTopic) return
        console.log(
            `${time()} ${topic}  qos=${packet.qos} retain=${packet.retain ? 1 : 0}  ${shorten(payload.toString())}`
        )
    })
    watcher.on("error", e => console.log(`[runner] watcher: ${e.message}`))

    const runDir = join(PROJECT_ROOT, "run", nodeId)
    console.log(
        `[runner] building firmware with ${JSON.stringify({ ...settings, MQTT_PASS: settings.MQTT_PASS ? "***" : undefined })}`
    )
    const bytecode = await buildFirmware(settings, runDir, `start-${nodeId}`)
    simulator = new Simulator({
        bytecode,
        runDir,
        mode: "device",
        clearFlash: args["clear-flash"],
        onLine: line => console.log(`[node] ${line}`),
    })
    await simulator.start()
    children.add(simulator.child!)
    if (broker) {
        // The broker is stopped by shutdown(); registering its process too covers a crash of this one.
    }
    console.log(`[runner] simulator pid ${simulator.pid}, flash ${simulator.flashFile}; Ctrl-C stops`)
    const exit = await new Promise<{ code: number | null; signal: string | null }>(resolve =>
        simulator!.child!.once("exit", (code, signal) => resolve({ code, signal }))
    )
    if (!stopping) {
        console.log(
            `[runner] simulator exited (${exit.signal ?? "code " + exit.code}); its flash is kept in ${simulator.flashFile}: run npm start again to power it back on`
        )
        await shutdown(1)
    }
}

main().catch(async e => {
    console.error(`[runner] ${e instanceof Error ? e.message : e}`)
    await shutdown(1)
})
