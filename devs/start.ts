// `npm start`: builds the firmware, starts a broker (or uses --broker), runs the firmware in the
// DeviceScript simulator with persistent flash, and prints live what the broker receives.
// Ctrl-C or SIGTERM is a planned stop, as an operator's `shutdown` command is: the node publishes
// its offline status, writes what is queued to flash and disconnects, so the next start reports
// no gap. SIGKILL of the simulator is the way to simulate a power cut.
import mqtt from "mqtt"
import { spawn, spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { dirname, join, relative } from "node:path"
import { parseArgs } from "node:util"
import { Broker } from "./lib/broker"
import { buildFirmware, PROJECT_ROOT, Simulator } from "./lib/simulator"
import type { Settings } from "./lib/simulator"
import { ChildRegistry } from "./lib/process"
import { maskUrl } from "../src/mqtt/url"

const HELP = `Usage: npm start -- [options]

Runs the meternode firmware in the DeviceScript simulator against an MQTT broker and prints what
the broker receives (topic, retained flag, QoS, payload).

Options:
  --broker URL       use this broker (mqtt://HOST:PORT or mqtts://HOST:PORT) and start none;
                     default: start Mosquitto (or the embedded aedes broker if Mosquitto is not
                     installed) on a free port on 127.0.0.1
  --node ID          node id used in topics and in the MQTT client id (default: demo)
  --set KEY=VALUE    a firmware setting, repeatable (e.g. --set READ_MS=1000); see docs/configuration.md
  --clear-flash      start with empty simulated flash (default: keep it, like a real device
                     across power cycles; it lives in run/<node>/)
  -h, --help         show this help

Defaults for the simulator: READ_MS=5000 (a reading every 5 s), METER_KIND=sim.
The first reading arrives about 15 s after the start: about 6 s of build, skipped when nothing
changed, then about 10 s to boot, connect and measure the first interval.

Environment:
  MQTT_BROKER=mosquitto|aedes   which broker to start (default: Mosquitto when installed)
  NODE_EXTRA_CA_CERTS=ca.pem    for mqtts:// with a self-signed CA

Stop with Ctrl-C (or SIGTERM): a planned stop. The node publishes its offline status, writes what
is queued to flash and disconnects; the next start reports no gap and the totals continue. A
second Ctrl-C stops at once. To simulate a power cut, kill the simulator: kill -9 <simulator pid>.`

function fail(message: string): never {
    console.error(`npm start: ${message}\n\n${HELP}`)
    process.exit(2)
}

/**
 * `npm start --clear-flash` (without `--`) makes npm take the option as its own configuration:
 * npm warns and hands it to the script only as npm_config_clear_flash. Take it from there.
 */
function optionsSwallowedByNpm() {
    const found: string[] = []
    for (const name of ["broker", "node", "clear-flash"]) {
        const value = process.env[`npm_config_${name.replace("-", "_")}`]
        if (value === undefined || value === "") continue
        found.push(name === "clear-flash" ? `--${name}` : `--${name}=${value}`)
    }
    return found
}

function parseCommandLine() {
    const swallowed = optionsSwallowedByNpm()
    if (swallowed.length) console.log(`[runner] taking ${swallowed.join(" ")} from npm (next time: npm start -- ...)`)
    try {
        return parseArgs({
            args: [...swallowed, ...process.argv.slice(2)],
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
/**
 * Ctrl-C in a terminal signals the whole foreground process group: npm, this runner and its
 * children, the simulator and the broker among them. A planned stop needs both alive while the
 * node says goodbye, so the runner runs again in a process group of its own, and this first
 * process only relays the stop (a second Ctrl-C too) and exits with the runner's exit code.
 */
const OWN_GROUP_ENV = "METERNODE_START_OWN_GROUP"
if (process.env[OWN_GROUP_ENV] !== "1") {
    const runner = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
        detached: true,
        stdio: "inherit",
        env: { ...process.env, [OWN_GROUP_ENV]: "1" },
    })
    const relay = (signal: NodeJS.Signals) => () => {
        try {
            runner.kill(signal)
        } catch {}
    }
    process.on("SIGINT", relay("SIGINT"))
    process.on("SIGTERM", relay("SIGTERM"))
    runner.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)))
    await new Promise(() => {})
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

const prefix = String(settings.TOPIC_PREFIX ?? "meters")

const children = new ChildRegistry()
let broker: Broker | undefined
let simulator: Simulator | undefined
let watcher: mqtt.MqttClient | undefined
let stopping = false
/** Whether the node's last status said online: only then can it be asked to stop as planned. */
let nodeOnline = false
let stopRequests = 0
/** How long the node gets to publish its offline status, flush its queue and disconnect. */
const PLANNED_STOP_TIMEOUT_MS = 15_000

async function shutdown(code: number) {
    if (stopping) return
    stopping = true
    watcher?.end(true)
    await simulator?.stop()
    await broker?.dispose()
    await children.stopAll()
    process.exit(code)
}

/**
 * Asks the node to stop as planned (the `shutdown` command, at QoS 0 so that a broker never keeps
 * it for a later boot) and waits for the node to say it stopped. Without a connected node there is
 * nobody to ask: the stop is then a power cut, and the runner says so.
 */
async function stopNodeAsPlanned(): Promise<void> {
    if (!simulator?.child || simulator.exit) return
    if (!nodeOnline || !watcher?.connected) {
        console.log("[runner] the node is not connected to a broker, so it cannot be asked to stop:")
        console.log("[runner] this stop is a power cut, and the next start reports a gap")
        return
    }
    console.log("[runner] stopping the node as planned (Ctrl-C again: stop at once, as a power cut)")
    const stopped = simulator.waitForLine(/^node: stopped \(/, PLANNED_STOP_TIMEOUT_MS)
    watcher.publish(`${prefix}/${nodeId}/cmd/shutdown`, JSON.stringify({ id: "npm-start" }), { qos: 0 })
    try {
        await stopped
        console.log("[runner] the node stopped as planned: its queue and state are in flash")
    } catch {
        console.log(`[runner] the node did not stop within ${PLANNED_STOP_TIMEOUT_MS / 1000} s: stopped as a power cut`)
    }
}

async function onStopRequest(): Promise<void> {
    if (++stopRequests > 1 || stopping) return void shutdown(0)
    await stopNodeAsPlanned()
    await shutdown(0)
}
process.on("SIGINT", () => void onStopRequest())
process.on("SIGTERM", () => void onStopRequest())
process.on("exit", () => children.killAllNow())
// npm does not pass SIGTERM on to the script: when `npm start` is terminated, its shell dies and
// the process that started this runner goes with it. Treat that as the stop signal too.
const parentPid = process.ppid
setInterval(() => {
    if (process.ppid !== parentPid && !stopRequests) {
        console.log("[runner] npm start was stopped")
        void onStopRequest()
    }
}, 250).unref()

function time() {
    return new Date().toISOString().slice(11, 23)
}

/** The built-in socket layer's debug line for every connection ("socket tcp://... open undefined"). */
const SOCKET_DEBUG_LINE = /^socket \S+ open\b/

/**
 * What identifies a build: the settings, the firmware's sources, the compiler and the git commit
 * (the compiler stamps the version from it). The same key means the image on disk is current.
 */
function firmwareKey(settings: Settings) {
    const hash = createHash("sha256")
    hash.update(JSON.stringify(settings))
    const addTree = (dir: string) => {
        for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
            const path = join(dir, entry.name)
            if (entry.isDirectory()) addTree(path)
            else if (entry.name.endsWith(".ts") || entry.name.endsWith(".json"))
                hash.update(path).update(readFileSync(path))
        }
    }
    addTree(join(PROJECT_ROOT, "src"))
    for (const file of ["package.json", "devsconfig.json", "node_modules/@devicescript/cli/package.json"])
        if (existsSync(join(PROJECT_ROOT, file))) hash.update(readFileSync(join(PROJECT_ROOT, file)))
    const git = spawnSync("git", ["describe", "--tags", "--always", "--dirty"], {
        cwd: PROJECT_ROOT,
        encoding: "utf-8",
    })
    hash.update(git.stdout ?? "")
    return hash.digest("hex")
}

/** Builds the firmware unless the image in `runDir` was built from the same inputs. */
async function buildIfChanged(settings: Settings, runDir: string) {
    const key = firmwareKey(settings)
    const image = join(runDir, "firmware.devs")
    const keyFile = join(runDir, "firmware.key")
    if (existsSync(image) && existsSync(keyFile) && readFileSync(keyFile, "utf-8") === key) {
        console.log("[runner] firmware unchanged since the last build: not building")
        return image
    }
    console.log("[runner] building the firmware (about 6 s)...")
    const started = Date.now()
    const bytecode = await buildFirmware(settings, runDir, `start-${nodeId}`)
    writeFileSync(keyFile, key)
    console.log(`[runner] built in ${((Date.now() - started) / 1000).toFixed(1)} s`)
    return bytecode
}

/**
 * Starts a broker on the port the last run of this node used, when it is free: the broker's URL
 * is built into the image, so the same port lets the next start skip the build.
 */
async function startOwnBroker(portFile: string) {
    const lastPort = existsSync(portFile) ? Number(readFileSync(portFile, "utf-8")) : 0
    if (lastPort > 0) {
        const again = new Broker({ persistence: true, port: lastPort })
        try {
            return await again.start()
        } catch {
            await again.dispose()
        }
    }
    const fresh = await new Broker({ persistence: true }).start()
    mkdirSync(dirname(portFile), { recursive: true })
    writeFileSync(portFile, String(fresh.port))
    return fresh
}

async function main() {
    let brokerUrl = args.broker
    if (!brokerUrl) {
        broker = await startOwnBroker(join(PROJECT_ROOT, "run", nodeId, "broker.port"))
        brokerUrl = broker.url
        console.log(`[runner] broker: ${broker.describe()}`)
    } else console.log(`[runner] broker: ${maskUrl(brokerUrl)} (not started by this runner)`)
    settings.MQTT_URL = settings.MQTT_URL ?? brokerUrl

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
    const statusTopic = `${prefix}/${nodeId}/status`
    watcher.on("message", (topic, payload, packet) => {
        if (timeSource && topic === timeTopic) return
        const text = payload.toString()
        if (topic === statusTopic) nodeOnline = /"state":"online"/.test(text)
        console.log(`${time()} ${topic}  qos=${packet.qos} retain=${packet.retain ? 1 : 0}  ${text}`)
    })
    watcher.on("error", e => console.log(`[runner] watcher: ${e.message}`))

    const runDir = join(PROJECT_ROOT, "run", nodeId)
    console.log(
        `[runner] settings ${JSON.stringify({ ...settings, MQTT_PASS: settings.MQTT_PASS ? "***" : undefined })}`
    )
    const bytecode = await buildIfChanged(settings, runDir)
    simulator = new Simulator({
        bytecode,
        runDir,
        mode: "device",
        clearFlash: args["clear-flash"],
        onLine: line => {
            if (!SOCKET_DEBUG_LINE.test(line)) console.log(`[node] ${line}`)
        },
    })
    await simulator.start()
    children.add(simulator.child!)
    if (broker) {
        // The broker is stopped by shutdown(); registering its process too covers a crash of this one.
    }
    console.log(
        `[runner] simulator pid ${simulator.pid} (kill -9 it for a power cut), flash in ${relative(PROJECT_ROOT, simulator.flashFile)}; Ctrl-C stops`
    )
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
