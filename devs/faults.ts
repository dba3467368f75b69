// `npm run faults`: the fault campaign. Each scenario is a real fault against the firmware in the
// simulator and a real broker, with the fault-injecting TCP proxy (devs/lib/fault-proxy.ts)
// between them, on Mosquitto and on aedes (an independent implementation in Node). For each it
// prints what the broker delivered to a persistent QoS 1 subscriber against what the node took:
//
//   taken        readings the node took (its console: "reading: seq N")
//   delivered    distinct readings the subscriber got (a merged reading counts for every seq it covers)
//   dup          deliveries of a seq already delivered (QoS 1 allows them; consumers deduplicate)
//   reord        first deliveries whose seq is below one delivered before
//   lost         taken and never delivered
//   unexpl       lost and not inside a gap the node reported (or, where readings may be dropped
//                for lack of room, beyond the drops the status reported): a failure
//   energy       the largest difference, in mWh, between the sum of the deltas and the change of
//                the total over a run of readings without a gap: must be 0
//   recover      seconds from the end of the fault to the first new reading delivered
//   status       whether the retained status told the truth: "lost" after the node vanished, and
//                online with the current boot at the end
//   restarts     restarts of the program the node did not ask for (power cuts excluded): must be 0
//
// Exits non-zero on any unexplained loss, energy difference or untruthful status, and on any check a
// scenario makes of its own (a "FAILED:" note on its row): the hostile-input rows check each
// input's error, contiguous seq, no crash line and nothing back after a restart; power-cuts checks
// its cuts with test/e2e/power-cut-checks.ts.
// Options: --only a,b  --brokers mosquitto,aedes  --soak-min N (0: no soak)  --soak-brokers a,b (default:
// the first broker)  --mqtt-version 3.1.1|5|auto (the node's; default 3.1.1)  --seed N  --json FILE
// --write-results (write the output into docs/results.md; --readme is an alias)  --crash-s N (the
// collector-crash run's length, default 600)
import mqtt from "mqtt"
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { cpus, tmpdir } from "node:os"
import { join } from "node:path"
import { parseArgs } from "node:util"
import { Broker, BrokerKind, findMosquitto } from "./lib/broker"
import { FaultProxy } from "./lib/fault-proxy"
import { HostileBroker } from "./lib/hostile-broker"
import { sleep } from "./lib/process"
import { npmCommand, print, writeResultsSection } from "./lib/report"
import { buildEntry, Simulator } from "./lib/simulator"
import { CRASH, NodeUnderTest, Recorder } from "../test/e2e/helpers"
import { checkPowerCuts, Cut, CutKind, cutOf, firstSeqOf, queuedAtBoot } from "../test/e2e/power-cut-checks"
import { crashRun } from "../test/collector/crash-run"

const { values } = parseArgs({
    options: {
        only: { type: "string" },
        brokers: { type: "string", default: findMosquitto() ? "mosquitto,aedes" : "aedes" },
        "soak-min": { type: "string", default: "30" },
        seed: { type: "string", default: "1" },
        json: { type: "string" },
        "soak-brokers": { type: "string" },
        // The node's MQTT_VERSION (3.1.1 by default): 5 runs the campaign on an image that speaks MQTT 5.
        "mqtt-version": { type: "string", default: "3.1.1" },
        // collector-crash: how long the fleet publishes while the collector is killed (seconds).
        "crash-s": { type: "string", default: "600" },
        "write-results": { type: "boolean", default: false },
        readme: { type: "boolean", default: false },
    },
    strict: true,
})

const READ_MS = 1000
const KEEPALIVE_S = 5
const FLUSH_S = 5
/** After the fault, how long everything taken may take to arrive. */
const SETTLE_TIMEOUT_MS = 90_000

let seed = Number(values.seed) || 1
/** Park-Miller: the same seed gives the same fault times. */
function random() {
    seed = (seed * 48271) % 2147483647
    return (seed - 1) / 2147483646
}

interface Rig {
    /** "scenario broker", for the lines printed while it runs. */
    label: string
    broker: Broker
    proxy: FaultProxy
    recorder: Recorder
    node: NodeUnderTest
    nodeId: string
    /** Console lines of every simulator run of this scenario. */
    lines: string[]
    /** When the (last) fault ended, ms. */
    faultEndMs: number
    /** Drops the node may make for lack of room (the scenario fills the queue). */
    dropsAllowed: boolean
    /** The scenario makes the node vanish: the will must be seen. */
    expectWill: boolean
    /** The status must name the fault: some status's `error` matches. */
    expectError?: RegExp
    notes: string[]
    /** SIGKILLs the scenario made (restarts it asked for). */
    kills: number
    /**
     * Hostile input: every seq delivered must be contiguous (readings or gaps), nothing lost, no
     * crash on the console.
     */
    hostile: boolean
}

interface Scenario {
    name: string
    what: string
    persistence?: boolean
    settings?: Record<string, string | number>
    /** Brokers it applies to (default all). */
    brokers?: BrokerKind[]
    /** Extra mosquitto.conf lines (aedes has no such settings). */
    brokerConfig?: string[]
    /** Runs before the node's first start, on its flash (which is then kept). */
    prepare?(rig: Rig): Promise<void>
    run(rig: Rig): Promise<void>
    /** After everything taken arrived (or the settle timed out): checks of the scenario's own. */
    check?(rig: Rig): Promise<void>
}

/** Starts (or restarts after a kill) the node, keeping every console line. */
async function startNode(rig: Rig, clearFlash: boolean) {
    const sim = await rig.node.start(clearFlash)
    const original = sim.options.onLine
    sim.options.onLine = line => {
        rig.lines.push(line)
        original?.(line)
    }
    return sim
}

function deliveredCount(rig: Rig) {
    return rig.recorder.readings().length
}

async function waitDeliveries(rig: Rig, n: number, timeoutMs = 30_000) {
    await rig.recorder.waitFor(`${n} readings`, r => r.readings().length >= n, timeoutMs)
}

/** A second client takes the node's client id for a while, as a misconfigured twin would. */
async function takeOver(brokerUrl: string, clientId: string, holdMs: number) {
    const twin = mqtt.connect(brokerUrl, { clientId, clean: false, reconnectPeriod: 0 })
    await new Promise<void>((resolve, reject) => {
        twin.once("connect", () => resolve())
        twin.once("error", reject)
    })
    await sleep(holdMs)
    await new Promise<void>(r => twin.end(true, {}, () => r()))
}

/**
 * Fills the Settings store of the node's flash with other values, leaving `leaveBytes` of its
 * log: a program of its own writes them in a simulator of its own, and its flash becomes the node's.
 */
async function fillStore(node: NodeUnderTest, leaveBytes: number) {
    const fillDir = mkdtempSync(join(tmpdir(), "meternode-fill-"))
    try {
        const bytecode = await buildEntry(
            "test/faults/fill-store",
            "fillStore",
            { leaveBytes },
            fillDir,
            "faults-fill-store"
        )
        const sim = await new Simulator({ bytecode, runDir: fillDir, mode: "device", clearFlash: true }).start()
        try {
            await sim.waitForLine(/^FILLED/, 60_000)
        } finally {
            await sim.kill()
        }
        const target = join(node.runDir, ".devicescript", "flash")
        mkdirSync(target, { recursive: true })
        copyFileSync(sim.flashFile, join(target, "sim.bin"))
    } finally {
        rmSync(fillDir, { recursive: true, force: true })
    }
}

/** A power cut: the simulator SIGKILLed (the restart after it is not one the node did not ask for). */
async function killNode(rig: Rig) {
    rig.kills++
    await rig.node.kill()
}

/** The broker unreachable for `ms`: open connections cut, new ones closed at accept. */
async function refuseFor(rig: Rig, ms: number) {
    rig.proxy.refuse(true)
    rig.proxy.cutAll()
    await sleep(ms)
    rig.proxy.refuse(false)
    rig.faultEndMs = Date.now()
}

// ---- Hostile input: what anyone with publish rights on the broker can send the node ----

/** The broker's limit on message size that docs/security.md recommends (Mosquitto). */
const MESSAGE_SIZE_LIMIT = 8192
const SIZE_LIMIT_CONFIG = [`message_size_limit ${MESSAGE_SIZE_LIMIT}`]
/** The time topic of the hostile-times scenario. */
const TIME_TOPIC = "meters/time"
const DAY_MS = 86_400_000
/** Console lines of a later boot that would mean hostile input was delivered again. */
const COMES_BACK = /^command: |^mqtt: dropped/

/** A line of what a scenario did, printed as it runs (not part of the table). */
function detail(rig: Rig, text: string) {
    console.log(`  ${rig.label}: ${text}`)
}

/** A check that failed: noted on the row (which then fails the campaign) and printed at once. */
function fail(rig: Rig, text: string) {
    rig.notes.push(`FAILED: ${text}`)
    detail(rig, `FAILED: ${text}`)
}

/** Polls `predicate` every `pollMs` until it holds (true) or `timeoutMs` passed (false). */
async function holdsWithin(predicate: () => boolean, timeoutMs: number, pollMs = 50) {
    const deadline = Date.now() + timeoutMs
    while (!predicate()) {
        if (Date.now() > deadline) return false
        await sleep(pollMs)
    }
    return true
}

/** A client of its own on the broker itself (not through the proxy): the attacker. */
async function connectAttacker(rig: Rig) {
    const client = await mqtt.connectAsync(rig.broker.url, {
        clientId: `attacker-${process.pid}-${Date.now()}`,
        reconnectPeriod: 0,
    })
    client.on("error", () => {})
    return client
}

/** The first reply on reply/<name> received after message index `from`, parsed. */
function replyAfter(rig: Rig, from: number, name: string) {
    const topic = `meters/${rig.nodeId}/reply/${name}`
    const m = rig.recorder.messages.slice(from).find(m => m.topic === topic)
    return m ? JSON.parse(m.payload) : undefined
}

let probes = 0
/** The error the node's status names now: a `status` command answers with the status. */
async function statusError(rig: Rig, attacker: mqtt.MqttClient): Promise<string | undefined> {
    const id = `probe-${++probes}`
    const topic = `meters/${rig.nodeId}/reply/status`
    const from = rig.recorder.messages.length
    await attacker.publishAsync(`meters/${rig.nodeId}/cmd/status`, JSON.stringify({ id }), { qos: 1 })
    const reply = () =>
        rig.recorder.messages
            .slice(from)
            .filter(m => m.topic === topic)
            .map(m => JSON.parse(m.payload))
            .find(r => r.id === id)
    if (!(await holdsWithin(() => !!reply(), 15_000))) return undefined
    return reply().status?.error ?? ""
}

/** What the node must do with one hostile input. */
type Expect =
    /** Refuse it with an error reply on reply/<name>. */
    | { reply: string; error: RegExp }
    /** Accept it: an ok reply, which `check` may look into further (it returns what is wrong, or ""). */
    | { reply: string; ok: true; check?: (reply: any) => string }
    /** Refuse it with an error on the console that the status then names. */
    | { line: RegExp; status: true }
    /** Accept it: a console line says what it changed. */
    | { line: RegExp; status?: false }
    /** Ignore it without a word, by design: no line matching `forbid` within `quietMs`. */
    | { ignored: true; forbid: RegExp; quietMs: number }

interface HostileInput {
    what: string
    send(): Promise<void>
    expect: Expect
}

/**
 * Sends each input in turn and waits for the node's answer to it before the next, so that every
 * answer belongs to its input (and the node's limit of 4 replies waiting is never the reason for
 * a silence). Returns how many were refused and how many accepted as the node should.
 */
async function sendHostile(rig: Rig, attacker: mqtt.MqttClient, inputs: HostileInput[]) {
    let refused = 0
    let accepted = 0
    for (const input of inputs) {
        const from = rig.recorder.messages.length
        const lineFrom = rig.lines.length
        await input.send()
        const e = input.expect
        if ("reply" in e) {
            if (!(await holdsWithin(() => !!replyAfter(rig, from, e.reply), 15_000))) {
                fail(rig, `${input.what}: no reply on reply/${e.reply}`)
                continue
            }
            const reply = replyAfter(rig, from, e.reply)
            if ("error" in e) {
                if (reply.ok === false && e.error.test(reply.error ?? "")) {
                    refused++
                    detail(
                        rig,
                        `${input.what}: reply/${e.reply} {id: ${JSON.stringify(reply.id)}, error: "${reply.error}"}`
                    )
                } else
                    fail(rig, `${input.what}: reply/${e.reply} ${JSON.stringify(reply).slice(0, 200)}, not ${e.error}`)
            } else {
                const wrong = reply.ok !== true ? `refused: ${reply.error}` : (e.check?.(reply) ?? "")
                if (wrong) fail(rig, `${input.what}: ${wrong}`)
                else {
                    accepted++
                    detail(rig, `${input.what}: accepted, reply/${e.reply} ok`)
                }
            }
        } else if ("line" in e) {
            const line = () => rig.lines.slice(lineFrom).find(l => e.line.test(l))
            if (!(await holdsWithin(() => !!line(), 20_000))) {
                fail(rig, `${input.what}: no console line matching ${e.line}`)
                continue
            }
            if (!e.status) {
                accepted++
                detail(rig, `${input.what}: accepted: "${line()}"`)
                continue
            }
            const error = await statusError(rig, attacker)
            if (error === undefined) fail(rig, `${input.what}: "${line()}", but no answer to a status command`)
            else if (!e.line.test(error)) fail(rig, `${input.what}: "${line()}", but the status says "${error}"`)
            else {
                refused++
                detail(rig, `${input.what}: console and status: "${error}"`)
            }
        } else {
            await sleep(e.quietMs)
            const said = rig.lines.slice(lineFrom).filter(l => e.forbid.test(l))
            if (said.length) fail(rig, `${input.what}: should be ignored, but "${said[0]}"`)
            else {
                accepted++
                detail(rig, `${input.what}: ignored, as designed`)
            }
        }
    }
    return { refused, accepted }
}

/** Readings keep coming: 3 delivered after `sinceMs`. */
async function readingsGoOn(rig: Rig, sinceMs: number, what: string) {
    const ok = await holdsWithin(() => rig.recorder.readings().filter(r => r.atMs > sinceMs).length >= 3, 30_000)
    if (!ok) fail(rig, `no readings delivered in the 30 s after ${what}`)
}

/**
 * A restart with the same flash and the same broker session: the simulator killed and started
 * again on the same run directory. Nothing of the hostile input may come back (`comesBack`: the
 * console lines that would show it). The kill waits for the newest reading taken to be
 * delivered, so that it loses nothing by itself.
 */
async function restartWithSameSession(rig: Rig, comesBack: RegExp) {
    const newest = Math.max(
        ...(rig.lines.map(l => l.match(/^reading: seq (\d+)\b/)?.[1]).filter(Boolean) as string[]).map(Number)
    )
    await holdsWithin(() => rig.recorder.readings().some(r => r.seq >= newest), 15_000)
    rig.expectWill = true
    await killNode(rig)
    const sinceMs = Date.now()
    const from = rig.lines.length
    await startNode(rig, false)
    const ok = await holdsWithin(() => rig.recorder.readings().filter(r => r.atMs > sinceMs).length >= 3, 60_000)
    if (!ok) fail(rig, "after the restart, no 3 readings within 60 s")
    // What the session still held would have arrived with the connection.
    await sleep(3000)
    const back = rig.lines.slice(from).filter(l => comesBack.test(l))
    if (back.length) {
        const again = redeliveries(rig, sinceMs)
        // Whose doing it is: a broker must never send a message again once the node completed
        // its acknowledgement flow (MQTT 3.1.1, 4.3.2 and 4.3.3: no PUBLISH again after PUBACK, or
        // after it sent PUBREL); before that, it must.
        const completed = again.filter(a => a.completed).length
        fail(
            rig,
            `delivered again after the restart: ${back.length} lines, "${back[0]}"; the broker sent ${again.length} messages again, ` +
                `${completed} of them after the node had completed their acknowledgement${completed ? " (the broker's doing)" : ""}`
        )
        for (const a of again) detail(rig, a.line)
    } else rig.notes.push("nothing came back after a restart")
}

/**
 * What the broker sent the node's commands topic again after `sinceMs`, from the proxy's record:
 * for each, when it was first delivered and whether the node had acknowledged it then.
 */
function redeliveries(rig: Rig, sinceMs: number) {
    const prefix = `meters/${rig.nodeId}/cmd/`
    const publishes = rig.proxy.brokerPackets("publish").filter(p => (p.packet as any).topic?.startsWith(prefix))
    return publishes
        .filter(p => p.atMs >= sinceMs)
        .map(p => {
            const packet = p.packet as any
            const payload = String(packet.payload).slice(0, 40)
            const first = publishes.find(q => q.atMs < sinceMs && String((q.packet as any).payload).startsWith(payload))
            const firstPacket = first?.packet as any
            // The flow of the first delivery, as the proxy saw it: PUBLISH, then PUBACK, or
            // PUBREC, PUBREL, PUBCOMP.
            const flow = first
                ? rig.proxy.packets
                      .filter(
                          q =>
                              q.connection === first.connection &&
                              q.atMs >= first.atMs &&
                              (q.packet as any).messageId === firstPacket.messageId &&
                              ["publish", "puback", "pubrec", "pubrel", "pubcomp"].includes(q.packet.cmd)
                      )
                      .map(
                          q =>
                              `${q.packet.cmd.toUpperCase()}${q.direction === "client->broker" ? " from the node" : ""}`
                      )
                : []
            const acked = flow.some(f => f === "PUBACK from the node" || f === "PUBREC from the node")
            const completed = flow.some(f => f === "PUBACK from the node" || f === "PUBCOMP from the node")
            const line =
                `again after the restart: ${payload} (QoS ${packet.qos}, dup ${!!packet.dup}, packet id ${packet.messageId}); ` +
                (first
                    ? `first delivered on connection ${first.connection} (packet id ${firstPacket.messageId}), ${acked ? "acknowledged by the node then" : "not acknowledged then"}: ${flow.join(", ")}`
                    : "not delivered before the restart")
            return { line, completed }
        })
}

/**
 * The hostile rows' own failures (called by analyse): a crash on the console, a reading lost, or
 * a seq delivered neither as a reading nor inside a gap.
 */
function hostileChecks(
    rig: Rig,
    taken: Set<number>,
    seen: Map<number, number>,
    gaps: [number, number][],
    lost: number
) {
    const crashes = rig.lines.filter(l => CRASH.test(l))
    if (crashes.length) fail(rig, `${crashes.length} crash lines, the first "${crashes[0]}"`)
    if (lost) fail(rig, `${lost} readings lost`)
    const seqs = [...seen.keys()]
    if (!seqs.length) return
    const holes: number[] = []
    for (let q = Math.min(...seqs); q <= Math.max(...seqs); q++)
        if (!seen.has(q) && !gaps.some(([a, b]) => q >= a && q <= b)) holes.push(q)
    if (holes.length)
        fail(rig, `seq not contiguous: ${holes.length} seqs neither delivered nor in a gap, from ${holes[0]}`)
}

/** Keys `a`, `b`, ... `aa`, ...: the n-th shortest distinct key. */
function keyName(n: number) {
    const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    let name = ""
    do {
        name = letters[n % letters.length] + name
        n = Math.floor(n / letters.length) - 1
    } while (n >= 0)
    return name
}

/** A command object with `keys` keys besides its id. */
function wideObject(keys: number, id: string) {
    const o: Record<string, unknown> = { id }
    for (let i = 0; i < keys; i++) o[keyName(i)] = 0
    return JSON.stringify(o)
}

/** The most keys a command object (with its id) can have within `bytes`. */
function widestKeys(bytes: number, id: string) {
    let keys = 0
    while (wideObject(keys + 1, id).length <= bytes) keys++
    return keys
}

/** The deepest nesting of objects `{"":...}` that fits in `bytes`. */
function deepestObjects(bytes: number) {
    return Math.floor((bytes - 1) / 5)
}

function nestedObjects(depth: number) {
    return '{"":'.repeat(depth) + "0" + "}".repeat(depth)
}

/** The node's command budget (src/commands.ts), for the sizes of the inputs that fit it. */
const COMMAND_BUDGET_BYTES = 512

function hostileCommandInputs(rig: Rig, attacker: mqtt.MqttClient): HostileInput[] {
    const cmd = `meters/${rig.nodeId}/cmd`
    const send = (topic: string, payload: string) => async () => {
        await attacker.publishAsync(topic, payload, { qos: 1 })
    }
    const overBudget = { reply: "status", error: /^payload over 512 bytes$/ }
    const tooDeep = { reply: "status", error: /^payload nested deeper than 4$/ }
    const skipped = { line: /^mqtt: dropped a message of \d+ bytes/, status: true } as const
    const wide = widestKeys(COMMAND_BUDGET_BYTES, "wide")
    const deep = deepestObjects(COMMAND_BUDGET_BYTES)
    return [
        {
            what: "a 3.5 KB command",
            send: send(`${cmd}/status`, JSON.stringify({ id: "big", pad: "x".repeat(3500) })),
            expect: overBudget,
        },
        {
            what: "a command name of 2 KB",
            send: send(`${cmd}/${"n".repeat(2048)}`, JSON.stringify({ id: "long" })),
            expect: { line: /^mqtt: dropped a topic of \d+ bytes/, status: true },
        },
        {
            what: "a command name of 40 bytes",
            send: send(`${cmd}/${"n".repeat(40)}`, JSON.stringify({ id: "name" })),
            expect: { reply: "invalid", error: /^command name over 16 bytes$/ },
        },
        // Not to a node that speaks MQTT 5: its Maximum Packet Size (4,096) makes Mosquitto drop
        // them, and Mosquitto 2.0.11 then holds each in the node's Receive Maximum window, which
        // stops the commands after them (docs/platform-notes.md); test/e2e/mqtt5-node.test.ts
        // sends such messages instead.
        ...(values["mqtt-version"] === "3.1.1" ? [4096, 6000, MESSAGE_SIZE_LIMIT - 200] : []).map(bytes => ({
            what: `a message of ${bytes} bytes`,
            send: send(`${cmd}/status`, "x".repeat(bytes)),
            expect: skipped,
        })),
        {
            what: "arrays nested 240 deep",
            send: send(`${cmd}/status`, '{"id":' + "[".repeat(240) + "]".repeat(240) + "}"),
            expect: tooDeep,
        },
        { what: "objects nested 600 deep", send: send(`${cmd}/status`, nestedObjects(600)), expect: overBudget },
        {
            what: `objects nested ${deep} deep (the deepest within 512 bytes)`,
            send: send(`${cmd}/status`, nestedObjects(deep)),
            expect: tooDeep,
        },
        {
            // Not refused: a command object may carry keys it does not use. (2,000 keys take
            // more than the broker's 8 KB: such a message never reaches the node.)
            what: `an object of ${wide} keys (the widest within 512 bytes)`,
            send: send(`${cmd}/status`, wideObject(wide, "wide")),
            expect: { reply: "status", ok: true },
        },
        {
            what: "an id of 3,000 characters",
            send: send(`${cmd}/status`, JSON.stringify({ id: "i".repeat(3000) })),
            expect: overBudget,
        },
        {
            what: "an id of 65 characters",
            send: send(`${cmd}/status`, JSON.stringify({ id: "i".repeat(65) })),
            expect: { reply: "status", error: /^id must be a number or a string of at most 64 characters$/ },
        },
    ]
}

function hostileTimeInputs(rig: Rig, attacker: mqtt.MqttClient): HostileInput[] {
    const cmd = `meters/${rig.nodeId}/cmd/time`
    const live = (payload: string) => async () => {
        await attacker.publishAsync(TIME_TOPIC, payload, { qos: 1 })
    }
    // A retained message reaches the node as retained only when it subscribes: the link is
    // refused while the message is set, and the node gets it at the next connection.
    const retained = (payload: string) => async () => {
        rig.proxy.refuse(true)
        rig.proxy.cutAll()
        await attacker.publishAsync(TIME_TOPIC, payload, { qos: 1, retain: true })
        await sleep(500)
        rig.proxy.refuse(false)
        rig.faultEndMs = Date.now()
    }
    const command = (id: string, utcMs: unknown) => async () => {
        await attacker.publishAsync(cmd, JSON.stringify({ id, utc_ms: utcMs }), { qos: 1 })
    }
    const topicError = (text: string) => ({
        line: new RegExp(`^time topic ${TIME_TOPIC}: (?:${text})`),
        status: true as const,
    })
    const notJson = topicError("time payload is not JSON")
    const notWhole = topicError("time must be a whole number of Unix milliseconds in utc_ms")
    const outOfRange = topicError("time -?\\d+(e\\+\\d+)? ms is not between 2020 and 2100|time Infinity ms")
    const tooFar = {
        line: /^time from time topic is -?\d+ s from the clock, more than 300 s: refused/,
        status: true as const,
    }
    const commandError = (error: RegExp) => ({ reply: "time", error })
    const now = Date.now
    return [
        // The clock unset: any time between 2020 and 2100 would set it; these are not times.
        { what: "retained garbage on the time topic", send: retained("garbage"), expect: notJson },
        { what: "a live time that is a string", send: live(JSON.stringify({ utc_ms: "tomorrow" })), expect: notWhole },
        { what: "a live time with a fraction", send: live("1764000000000.5"), expect: notWhole },
        { what: "a live time in 2000", send: live(JSON.stringify({ utc_ms: 946_684_800_000 })), expect: outOfRange },
        { what: "a live time in 2100", send: live(JSON.stringify({ utc_ms: 4_102_444_800_000 })), expect: outOfRange },
        { what: "a live time of 1e400 ms", send: live('{"utc_ms":1e400}'), expect: outOfRange },
        {
            what: "a retained time in 2000",
            send: retained(JSON.stringify({ utc_ms: 946_684_800_000 })),
            expect: outOfRange,
        },
        {
            what: "a time command with a string",
            send: command("t-string", "x"),
            expect: commandError(/^time must be a whole number of Unix milliseconds in utc_ms$/),
        },
        {
            what: "a time command in 2010",
            send: command("t-2010", 1_262_304_000_000),
            expect: commandError(/^time \d+ ms is not between 2020 and 2100$/),
        },
        // The true time sets the clock; from now on a time message may move it by 300 s at most.
        {
            what: "the true time, live",
            send: async () => await live(JSON.stringify({ utc_ms: now() }))(),
            expect: { line: /^time: clock set from time topic/ },
        },
        {
            what: "a live time 1 hour back",
            send: async () => await live(JSON.stringify({ utc_ms: now() - 3_600_000 }))(),
            expect: tooFar,
        },
        {
            what: "a live time 6 minutes ahead",
            send: async () => await live(JSON.stringify({ utc_ms: now() + 360_000 }))(),
            expect: tooFar,
        },
        {
            what: "a live time 400 days ahead",
            send: async () => await live(JSON.stringify({ utc_ms: now() + 400 * DAY_MS }))(),
            expect: tooFar,
        },
        {
            // A retained copy is as old as its source's period: it never moves a set clock, and says nothing.
            what: "a retained time 1 day back, the clock set",
            send: async () => await retained(JSON.stringify({ utc_ms: now() - DAY_MS }))(),
            expect: { ignored: true, forbid: /^time|refused/, quietMs: 8000 },
        },
        { what: "retained garbage, the clock set", send: retained("{not json"), expect: notJson },
        {
            what: "a time command 40 days ahead",
            send: async () => await command("t-ahead", now() + 40 * DAY_MS)(),
            expect: commandError(/^a step of \d+ s is more than 30 days: restart the node instead$/),
        },
        {
            what: "a time command 40 days back",
            send: async () => await command("t-back", now() - 40 * DAY_MS)(),
            expect: commandError(/^a step of -\d+ s is more than 30 days: restart the node instead$/),
        },
        {
            what: "a time command in 2100",
            send: command("t-2100", 4_102_444_800_001),
            expect: commandError(/^time \d+ ms is not between 2020 and 2100$/),
        },
        {
            // Within the command's 30 days: an operator's act, so it steps the clock.
            what: "a time command 29 days ahead",
            send: async () => await command("t-29", now() + 29 * DAY_MS)(),
            expect: {
                reply: "time",
                ok: true,
                check: reply =>
                    Math.abs(reply.utc_ms - (Date.now() + 29 * DAY_MS)) < 5000
                        ? ""
                        : `the clock says ${reply.utc_ms}, not 29 days ahead`,
            },
        },
        // The clock is 29 days ahead now: the true time is far from it, and refused.
        {
            what: "the true time after the step",
            send: async () => await live(JSON.stringify({ utc_ms: now() }))(),
            expect: tooFar,
        },
    ]
}

/** hostile-commands and hostile-times: each input refused (or accepted) as it should be, then the checks. */
async function runHostile(
    rig: Rig,
    inputsOf: (rig: Rig, attacker: mqtt.MqttClient) => HostileInput[],
    comesBack: RegExp,
    beforeRestart?: (attacker: mqtt.MqttClient) => Promise<void>
) {
    rig.hostile = true
    const attacker = await connectAttacker(rig)
    try {
        const inputs = inputsOf(rig, attacker)
        const { refused, accepted } = await sendHostile(rig, attacker, inputs)
        rig.notes.push(
            `${inputs.length} inputs: ${refused} refused with their error, ${accepted} accepted or ignored as designed`
        )
        const sinceMs = Date.now()
        await readingsGoOn(rig, sinceMs, "the last input")
        if (beforeRestart) await beforeRestart(attacker)
        await restartWithSameSession(rig, comesBack)
        rig.faultEndMs = Date.now()
    } finally {
        await attacker.endAsync(true)
    }
}

/** QoS 2 messages the attacker has in flight at most (Mosquitto's default max_inflight_messages). */
const QOS2_WINDOW = 20

/** `count` small `status` commands in `spreadMs` at QoS `qos`. */
function floodScenario(qos: 0 | 1 | 2): Scenario {
    const count = 2000
    const spreadMs = 2000
    return {
        name: `flood-qos${qos}`,
        what: `${count} small status commands in ${spreadMs / 1000} s at QoS ${qos}`,
        brokerConfig: SIZE_LIMIT_CONFIG,
        async run(rig) {
            rig.hostile = true
            const attacker = await connectAttacker(rig)
            try {
                const topic = `meters/${rig.nodeId}/cmd/status`
                const from = rig.recorder.messages.length
                const lineFrom = rig.lines.length
                const sinceMs = Date.now()
                let written = 0
                const batches = 20
                for (let i = 0; i < count; i++) {
                    // Mosquitto takes at most 20 QoS 2 messages in flight from a 3.1.1 client and
                    // drops the rest unseen: the attacker keeps under that, so the flood reaches the node.
                    while (qos === 2 && i - written >= QOS2_WINDOW) await sleep(1)
                    attacker.publish(topic, JSON.stringify({ id: i }), { qos }, () => written++)
                    if (i % (count / batches) === count / batches - 1) await sleep(spreadMs / batches)
                }
                if (!(await holdsWithin(() => written >= count, 60_000)))
                    fail(rig, `the attacker got ${written} of ${count} publishes through`)
                const sentS = (Date.now() - sinceMs) / 1000
                // The node works through them: wait until its counts stop moving.
                const lines = () => rig.lines.slice(lineFrom)
                const answered = () => lines().filter(l => l === "command: status: accepted").length
                const reportedDrops = () =>
                    Math.max(0, ...lines().map(l => Number(l.match(/^command: (\d+) dropped since boot/)?.[1] ?? 0)))
                let last = ""
                let stableSince = Date.now()
                const deadline = Date.now() + 120_000
                while (Date.now() < deadline && Date.now() - stableSince < 10_000) {
                    await sleep(500)
                    const now = `${answered()} ${reportedDrops()} ${rig.node.simulator?.exit ? "exit" : ""}`
                    if (now !== last) {
                        last = now
                        stableSince = Date.now()
                    }
                }
                const ok = answered()
                const drops = reportedDrops()
                // What the broker passed on to the node, from the proxy's record: a broker may
                // drop part of a flood before it reaches the node (Mosquitto passes on at most its
                // in-flight limit of a QoS 2 burst from a 3.1.1 client).
                const toNode = rig.proxy
                    .brokerPackets("publish")
                    .filter(p => p.forwarded && (p.packet as any).topic === topic)
                    .map(p => String((p.packet as any).payload))
                const distinct = new Set(toNode).size
                const replies = rig.recorder.messages
                    .slice(from)
                    .filter(m => m.topic === `meters/${rig.nodeId}/reply/status`)
                    .map(m => JSON.parse(m.payload))
                    .filter(r => typeof r.id === "number" && r.ok).length
                detail(
                    rig,
                    `${count} sent in ${sentS.toFixed(1)} s; the broker passed ${distinct} on to the node (${toNode.length - distinct} again); ` +
                        `${ok} answered (${replies} replies received), ${drops} drops reported on the console`
                )
                rig.notes.push(
                    `${distinct} of ${count} reached the node: ${ok} answered, ${drops} dropped and reported`
                )
                // Drops are reported at the 1st, 21st, 41st...: the count is within 19 of the truth.
                if (ok + drops + 19 < distinct)
                    fail(rig, `${distinct - ok - drops} commands neither answered nor reported dropped`)
                if (replies < ok) fail(rig, `${ok} commands answered on the console, ${replies} replies received`)
                const statusNamed = () =>
                    rig.recorder.messages
                        .slice(from)
                        .filter(m => m.topic === `meters/${rig.nodeId}/status`)
                        .map(m => JSON.parse(m.payload).error ?? "")
                        .filter(e => /^command: \d+ dropped since boot/.test(e))
                        .pop()
                if (!(await holdsWithin(() => !!statusNamed(), 15_000)))
                    fail(rig, "no status named the dropped commands")
                else detail(rig, `status error: "${statusNamed()}"`)
                await readingsGoOn(rig, Date.now(), "the flood")
                await restartWithSameSession(rig, COMES_BACK)
                rig.faultEndMs = Date.now()
            } finally {
                await attacker.endAsync(true)
            }
        },
    }
}

// ---- Power cuts: 10 SIGKILLs online, offline and in the middle of a long drain ----

/** The outage before a mid-drain cut: its backlog is about this many readings (one a second). */
const LONG_OUTAGE_S = 110
const POWER_CUTS: { kind: CutKind; outageS?: number }[] = [
    { kind: "online" },
    { kind: "offline" },
    { kind: "online" },
    { kind: "offline", outageS: LONG_OUTAGE_S },
    { kind: "mid-drain" },
    { kind: "online" },
    { kind: "offline" },
    { kind: "online" },
    { kind: "offline", outageS: LONG_OUTAGE_S },
    { kind: "mid-drain" },
]

/**
 * The reading messages the node sent through the proxy from `sinceMs` to `untilMs`, and the
 * distinct readings below `belowSeq` (the backlog of earlier boots) in them.
 */
function backlogSent(rig: Rig, belowSeq: number, sinceMs: number, untilMs: number) {
    const seqs = new Set<number>()
    let messages = 0
    for (const p of rig.proxy.clientPackets("publish")) {
        const packet = p.packet as any
        if (p.atMs < sinceMs || p.atMs > untilMs || !p.forwarded || !packet.topic.endsWith("/reading")) continue
        messages++
        for (const e of JSON.parse(String(packet.payload)).readings)
            for (let q = e.first_seq ?? e.seq; q <= e.seq; q++) if (q < belowSeq) seqs.add(q)
    }
    return { messages, readings: seqs.size }
}

/** Distinct seqs below `belowSeq` first received at or after `sinceMs`. */
function receivedSince(rig: Rig, belowSeq: number, sinceMs: number) {
    const seqs = new Set<number>()
    const before = new Set<number>()
    for (const r of rig.recorder.readings()) if (r.atMs < sinceMs) before.add(r.seq)
    for (const r of rig.recorder.readings())
        if (r.seq < belowSeq && r.atMs >= sinceMs && !before.has(r.seq)) seqs.add(r.seq)
    return seqs.size
}

function powerCutsScenario(): Scenario {
    const cuts: Cut[] = []
    const drains: {
        boot: number
        queued: number
        linkBackMs: number
        firstSeq: number
        /** Backlog readings the node had sent (through the proxy) before the cut. */
        sentBeforeCut: number
    }[] = []
    return {
        name: "power-cuts",
        what: `${POWER_CUTS.length} SIGKILLs at seeded moments: online, offline (link refused until the readings were flushed) and mid-drain (the next boot cut while it delivers a backlog of about ${LONG_OUTAGE_S - 10} readings)`,
        persistence: true,
        brokerConfig: SIZE_LIMIT_CONFIG,
        settings: { FLUSH_S: 2 },
        async run(rig) {
            rig.expectWill = true
            cuts.length = 0
            drains.length = 0
            let refused = false
            const link = (up: boolean) => {
                refused = !up
                rig.proxy.refuse(!up)
                if (!up) rig.proxy.cutAll()
            }
            for (const step of POWER_CUTS) {
                const sim = rig.node.simulator!
                let linkUpUntilMs = 0
                let drain: { linkBackMs: number; firstSeq: number } | undefined
                if (step.kind === "mid-drain") {
                    // This boot started with the link refused and the last boot's readings in flash:
                    // once the link is back and the first of them arrives, the cut comes inside the drain.
                    if (!(await holdsWithin(() => firstSeqOf(sim.lines) > 0, 30_000)))
                        throw new Error("the node did not boot within 30 s")
                    await sleep(2000)
                    const firstSeq = firstSeqOf(sim.lines)
                    const linkBackMs = Date.now()
                    link(true)
                    // The drain of a hundred readings takes well under a second: the cut follows
                    // the node's first to third reading message of it, as the proxy sees them go out.
                    const messages = 1 + Math.floor(random() * 3)
                    const sent = () => backlogSent(rig, firstSeq, linkBackMs, Infinity)
                    if (!(await holdsWithin(() => sent().messages >= messages, 90_000, 1)))
                        throw new Error("the drain did not begin within 90 s of the link coming back")
                    drain = { linkBackMs, firstSeq }
                } else {
                    if (refused) link(true)
                    const ok = await holdsWithin(() => {
                        const first = firstSeqOf(sim.lines)
                        return first > 0 && rig.recorder.readings().some(r => r.seq >= first)
                    }, 90_000)
                    if (!ok) throw new Error("no reading of the new boot received within 90 s")
                    if (step.kind === "offline") {
                        // The link goes away; the readings taken meanwhile are written to flash (FLUSH_S).
                        linkUpUntilMs = Date.now()
                        link(false)
                        const from = sim.lines.length
                        if (
                            !(await holdsWithin(
                                () => sim.lines.slice(from).some(l => /^flash: safe up to/.test(l)),
                                30_000
                            ))
                        )
                            throw new Error("no flush while offline within 30 s")
                        if (step.outageS) await sleep(step.outageS * 1000)
                    }
                    await sleep(1500 + random() * 4500)
                }
                const lines = [...sim.lines]
                const atMs = Date.now()
                await killNode(rig)
                cuts.push(cutOf(lines, atMs, linkUpUntilMs, step.kind))
                if (drain)
                    drains.push({
                        ...drain,
                        boot: cuts[cuts.length - 1].boot,
                        queued: queuedAtBoot(lines),
                        sentBeforeCut: backlogSent(rig, drain.firstSeq, drain.linkBackMs, atMs).readings,
                    })
                await startNode(rig, false)
            }
            if (refused) link(true)
            rig.faultEndMs = Date.now()
        },
        async check(rig) {
            const last = rig.node.simulator!
            const lastBoot = () =>
                Number(
                    last.lines
                        .map(l => l.match(/^node: boot (\d+),/)?.[1])
                        .filter(Boolean)
                        .pop()
                )
            const complete = await holdsWithin(() => {
                const gapBoots = new Set(rig.recorder.gaps().map(g => g.boot))
                return (
                    cuts.every(c => gapBoots.has(c.boot)) &&
                    rig.recorder.readings().filter(r => r.boot === lastBoot()).length >= 3
                )
            }, 120_000)
            if (!complete) fail(rig, "not every cut's gap (or no 3 readings of the last boot) within 120 s")
            const crashes = rig.lines.filter(l => CRASH.test(l))
            if (crashes.length) fail(rig, `${crashes.length} crash lines, the first "${crashes[0]}"`)
            const checked = checkPowerCuts(rig.recorder.messages, cuts, "/reading")
            for (const f of checked.failures) fail(rig, f)
            for (const line of checked.report) detail(rig, line)
            const kinds = POWER_CUTS.map(p => p.kind)
            const count = (k: CutKind) => kinds.filter(x => x === k).length
            const inside = drains.map(d => {
                const total = receivedSince(rig, d.firstSeq, d.linkBackMs)
                detail(
                    rig,
                    `mid-drain cut of boot ${d.boot}: ${d.queued} records queued at its start, ${d.sentBeforeCut} of its ${total} backlog readings sent before the cut`
                )
                if (total < 90) fail(rig, `boot ${d.boot}'s backlog was ${total} readings, not about 100`)
                if (!d.sentBeforeCut || d.sentBeforeCut >= total)
                    fail(rig, `boot ${d.boot}'s cut came outside its drain (${d.sentBeforeCut} of ${total} sent)`)
                return `${d.sentBeforeCut}/${total}`
            })
            rig.notes.push(
                `${cuts.length} cuts (${count("online")} online, ${count("offline")} offline, ${count("mid-drain")} mid-drain after ${inside.join(", ")} backlog readings sent)`,
                `totals never back, gaps after the last acknowledged seq: ${checked.failures.length ? "NO" : "yes"}; ${checked.again} delivered again (${checked.gapsAgain} gaps), none acknowledged before`
            )
        },
    }
}

const SCENARIOS: Scenario[] = [
    {
        name: "broker-restart-persistent",
        what: "broker stopped for 5 s and restarted, persistence on",
        persistence: true,
        brokers: ["mosquitto"],
        async run(rig) {
            await rig.broker.restart(5000)
            rig.faultEndMs = Date.now()
        },
    },
    {
        name: "broker-restart-clean",
        what: "broker stopped for 5 s and restarted without persistence (sessions lost)",
        async run(rig) {
            await rig.broker.restart(5000)
            rig.faultEndMs = Date.now()
        },
    },
    {
        name: "reset-mid-packet",
        what: "connection reset in the middle of a PUBLISH, three times",
        async run(rig) {
            for (let i = 0; i < 3; i++) {
                await rig.proxy.cutMidPacket(chunk => (chunk[0] & 0xf0) === 0x30)
                await sleep(3000)
            }
            rig.faultEndMs = Date.now()
        },
    },
    {
        name: "black-hole",
        what: "the link silently stops forwarding for 20 s (half-open)",
        async run(rig) {
            rig.expectWill = true
            rig.proxy.blackhole(true)
            await sleep(20_000)
            rig.proxy.blackhole(false)
            rig.faultEndMs = Date.now()
        },
    },
    {
        name: "slow-broker",
        what: "every byte from the broker delayed by 3 s for 20 s (PUBACKs late)",
        async run(rig) {
            rig.proxy.delayBrokerToClient(3000)
            await sleep(20_000)
            rig.proxy.delayBrokerToClient(0)
            rig.faultEndMs = Date.now()
        },
    },
    {
        name: "refused",
        what: "connections refused (closed at accept) for 20 s",
        async run(rig) {
            await refuseFor(rig, 20_000)
        },
    },
    {
        name: "connack-refused",
        what: "every CONNECT answered with CONNACK 5 (not authorized) for 20 s",
        async run(rig) {
            rig.expectWill = true
            rig.expectError = /refused the connection: (0x87 )?not authorized/
            // Not authorized: return code 5 in 3.1.1, reason code 0x87 in MQTT 5.
            rig.proxy.refuseWithConnack(rig.proxy.options.protocolVersion === 5 ? 0x87 : 5)
            rig.proxy.cutAll()
            await sleep(20_000)
            rig.proxy.refuseWithConnack(null)
            rig.faultEndMs = Date.now()
        },
    },
    {
        name: "take-over",
        what: "a second client connects with the node's client id for 5 s",
        async run(rig) {
            await takeOver(rig.broker.url, `meternode-${rig.nodeId}`, 5000)
            rig.faultEndMs = Date.now()
        },
    },
    {
        name: "power-cut",
        what: "the simulator killed (SIGKILL) at 3 random moments, restarted 2 s later",
        async run(rig) {
            rig.expectWill = true
            for (let i = 0; i < 3; i++) {
                await sleep(2000 + random() * 8000)
                await killNode(rig)
                await sleep(2000)
                await startNode(rig, false)
            }
            rig.faultEndMs = Date.now()
        },
    },
    {
        name: "flash-full",
        what: "a 900-byte queue through a 3-minute outage (readings merged, drops reported)",
        settings: { QUEUE_BYTES: 900 },
        async run(rig) {
            rig.dropsAllowed = true
            await refuseFor(rig, 180_000)
        },
    },
    {
        name: "store-full",
        what: "the Settings store filled by other values to 350 bytes free, then a 2-minute outage",
        async prepare(rig) {
            await fillStore(rig.node, 350)
        },
        async run(rig) {
            rig.expectError = /did not persist/
            await refuseFor(rig, 120_000)
        },
    },
    {
        name: "hostile-broker",
        what: "a broker sending malformed, truncated, oversized and random packets (10,000+)",
        async run(rig) {
            const hostile = await new HostileBroker(250, random).start()
            const real = rig.proxy.options.targetPort
            rig.proxy.options.targetPort = hostile.port
            rig.proxy.cutAll()
            const deadline = Date.now() + 180_000
            while (hostile.packetsSent < 10_000 && Date.now() < deadline) await sleep(500)
            rig.proxy.options.targetPort = real
            rig.proxy.cutAll()
            await hostile.stop()
            rig.notes.push(`${hostile.packetsSent} malformed packets over ${hostile.connections} connections`)
            if (hostile.packetsSent < 10_000) rig.notes.push("FAILED: fewer than 10,000 packets sent")
            rig.faultEndMs = Date.now()
        },
    },
    {
        name: "hostile-commands",
        what: "oversized commands up to the broker's 8 KB limit, deep and wide JSON, long names and ids",
        brokerConfig: SIZE_LIMIT_CONFIG,
        async run(rig) {
            await runHostile(rig, hostileCommandInputs, COMES_BACK)
        },
    },
    floodScenario(0),
    floodScenario(1),
    floodScenario(2),
    {
        name: "hostile-times",
        what: "past, future and garbage times on the time topic (retained and live) and as time commands",
        brokerConfig: SIZE_LIMIT_CONFIG,
        settings: { TIME_TOPIC },
        async run(rig) {
            // The retained time is cleared before the restart: the broker hands a retained message
            // to every new subscription by design, so it would come back anyway.
            await runHostile(
                rig,
                hostileTimeInputs,
                /^command: |^mqtt: dropped|^time topic |^time from /,
                async attacker => {
                    await attacker.publishAsync(TIME_TOPIC, "", { qos: 1, retain: true })
                }
            )
        },
    },
    powerCutsScenario(),
]

interface Result {
    scenario: string
    broker: string
    taken: number
    delivered: number
    dup: number
    reord: number
    lost: number
    unexplained: number
    energyDiffMilli: number
    recoverS: number | null
    statusTruthful: boolean
    restartsUnasked: number
    notes: string[]
}

/** Seqs a gap says may be missing: after_seq+1 up to the gap's own seq. */
/** The row of a scenario that could not run to its end: every figure 0, the failure noted. */
function failedResult(scenario: string, broker: string, error: unknown, notes: string[] = []): Result {
    return {
        scenario,
        broker,
        taken: 0,
        delivered: 0,
        dup: 0,
        reord: 0,
        lost: 0,
        unexplained: 0,
        energyDiffMilli: 0,
        recoverS: null,
        statusTruthful: false,
        restartsUnasked: 0,
        notes: [...notes, `FAILED: ${(error as Error).message.split("\n")[0]}`],
    }
}

function gapRanges(rig: Rig) {
    return rig.recorder.gaps().map(g => [g.after_seq + 1, g.seq] as [number, number])
}

function analyse(rig: Rig, scenario: string, brokerKind: string): Result {
    const taken = new Set<number>()
    for (const line of rig.lines) {
        const m = line.match(/^reading: seq (\d+)\b/)
        if (m) taken.add(Number(m[1]))
    }
    const seen = new Map<number, number>()
    let reord = 0
    let maxSeq = 0
    const readings = rig.recorder.readings()
    for (const r of readings) {
        const first = r.first_seq ?? r.seq
        const firstTime = !seen.has(r.seq)
        for (let s = first; s <= r.seq; s++) seen.set(s, (seen.get(s) ?? 0) + 1)
        if (firstTime) {
            if (r.seq < maxSeq) reord++
            maxSeq = Math.max(maxSeq, r.seq)
        }
    }
    let dup = 0
    for (const r of readings) if ((seen.get(r.seq) ?? 0) > 1) dup++
    // dup counts deliveries beyond the first: each seq delivered k times counts k-1.
    dup = [...seen.values()].reduce((n, k) => n + k - 1, 0)
    const ranges = gapRanges(rig)
    const lostSeqs = [...taken].filter(s => !seen.has(s))
    const inGap = (s: number) => ranges.some(([a, b]) => s >= a && s <= b)
    let unexplained = lostSeqs.filter(s => !inGap(s)).length
    // The node's own status topic: the hostile rows publish on cmd/status too.
    const statuses = rig.recorder.messages
        .filter(m => m.topic === `meters/${rig.nodeId}/status`)
        .map(m => JSON.parse(m.payload))
    const merged = Math.max(0, ...statuses.filter(s => s.state === "online").map(s => s.merged ?? 0))
    if (merged) rig.notes.push(`${merged} readings merged into longer intervals to make room`)
    if (rig.dropsAllowed && unexplained) {
        const dropped = Math.max(0, ...statuses.filter(s => s.state === "online").map(s => s.dropped ?? 0))
        if (unexplained <= dropped) {
            rig.notes.push(
                `${unexplained} readings dropped for lack of room, reported in the status (dropped ${dropped})`
            )
            unexplained = 0
        }
    }
    // Energy: over runs of one boot without a gap between them, sorted by seq.
    let energyDiffMilli = 0
    const firsts = new Map<number, any>()
    for (const r of readings) if (!firsts.has(r.seq)) firsts.set(r.seq, r)
    const sorted = [...firsts.values()].sort((a, b) => a.seq - b.seq)
    let run: any[] = []
    const closeRun = () => {
        if (run.length > 1) {
            const sum = run.reduce((s, r) => s + Math.round(r.delta * 1000), 0)
            const change =
                Math.round(run[run.length - 1].total * 1000) -
                (Math.round(run[0].total * 1000) - Math.round(run[0].delta * 1000))
            energyDiffMilli = Math.max(energyDiffMilli, Math.abs(sum - change))
        }
        run = []
    }
    for (const r of sorted) {
        const prev = run[run.length - 1]
        if (prev && (prev.boot !== r.boot || (r.first_seq ?? r.seq) !== prev.seq + 1 || inGap(r.seq))) closeRun()
        run.push(r)
    }
    closeRun()
    const after = readings.filter(r => r.atMs > rig.faultEndMs)
    const recoverS = after.length ? (after[0].atMs - rig.faultEndMs) / 1000 : null
    // Status: the will when the node vanished; online with the newest boot at the end.
    const boots = readings.map(r => r.boot)
    const lastBoot = Math.max(0, ...boots)
    const last = statuses[statuses.length - 1]
    let statusTruthful = !!last && last.state === "online" && last.boot === lastBoot
    if (rig.expectWill && !statuses.some(s => s.state === "offline" && s.reason === "lost")) statusTruthful = false
    if (rig.expectError) {
        const named = statuses.find(s => rig.expectError!.test(s.error ?? ""))
        if (named) rig.notes.push(`status error: ${named.error}`)
        else statusTruthful = false
    }
    const boots1 = rig.lines.filter(l => /^node: boot \d+, next seq/.test(l)).length
    if (rig.hostile) hostileChecks(rig, taken, seen, ranges, lostSeqs.length)
    return {
        scenario,
        broker: brokerKind,
        taken: taken.size,
        delivered: [...taken].filter(s => seen.has(s)).length,
        dup,
        reord,
        lost: lostSeqs.length,
        unexplained,
        energyDiffMilli,
        recoverS,
        statusTruthful,
        restartsUnasked: Math.max(0, boots1 - 1 - rig.kills),
        notes: rig.notes,
    }
}

async function runScenario(s: Scenario, kind: BrokerKind): Promise<Result> {
    const nodeId = `faults-${s.name}`.slice(0, 32)
    const broker = await new Broker({ kind, persistence: !!s.persistence, extraConfig: s.brokerConfig }).start()
    const v5 = values["mqtt-version"] !== "3.1.1"
    // The proxy's record parses what the node speaks (auto: 5 on Mosquitto, 3.1.1 on aedes).
    const parsed = v5 && (values["mqtt-version"] === "5" || kind === "mosquitto") ? 5 : 4
    const proxy = await new FaultProxy({ targetPort: broker.port, protocolVersion: parsed }).start()
    const recorder = await new Recorder(broker.url, `meters/${nodeId}/#`, { persistentSession: true }).start()
    const node = new NodeUnderTest({
        MQTT_URL: proxy.url,
        NODE_ID: nodeId,
        READ_MS,
        KEEPALIVE_S,
        FLUSH_S,
        TIME_TOPIC: "-",
        HA_PREFIX: "-",
        MQTT_VERSION: values["mqtt-version"]!,
        // MQTT 5 without a Will Delay: the scenarios expect the will as soon as the broker sees the
        // node gone, as in 3.1.1 (test/e2e/mqtt5-node.test.ts checks the delay).
        ...(v5 ? { WILL_DELAY_S: 0 } : {}),
        ...s.settings,
    })
    const rig: Rig = {
        label: `${s.name} ${kind}`,
        broker,
        proxy,
        recorder,
        node,
        nodeId,
        lines: [],
        faultEndMs: 0,
        dropsAllowed: false,
        expectWill: false,
        notes: [],
        kills: 0,
        hostile: false,
    }
    try {
        await node.build()
        if (s.prepare) await s.prepare(rig)
        await startNode(rig, !s.prepare)
        await waitDeliveries(rig, 5)
        await s.run(rig)
        // Readings go on for a while after the fault: then everything taken must arrive.
        await sleep(10_000)
        const deadline = Date.now() + SETTLE_TIMEOUT_MS
        for (;;) {
            const taken = new Set(
                rig.lines
                    .map(l => l.match(/^reading: seq (\d+)\b/)?.[1])
                    .filter(Boolean)
                    .map(Number)
            )
            const got = new Set<number>()
            for (const r of recorder.readings()) for (let q = r.first_seq ?? r.seq; q <= r.seq; q++) got.add(q)
            const gaps = recorder.gaps().map(g => [g.after_seq + 1, g.seq])
            const missing = [...taken].filter(q => !got.has(q) && !gaps.some(([a, b]) => q >= a && q <= b))
            if (!missing.length || Date.now() > deadline) break
            await sleep(1000)
        }
        if (s.check) await s.check(rig)
        // Recorder's persistent session: a broker restart without persistence may have lost
        // queued messages for it too; the recorder reconnects by itself.
        return analyse(rig, s.name, broker.describe().split(" ")[0])
    } finally {
        await node.dispose()
        await recorder.stop().catch(() => {})
        await proxy.stop()
        await broker.dispose()
    }
}

/**
 * The soak: one node, the faults above drawn at random (broker restart, reset, black hole, slow
 * broker, refusal, take-over), one every 30 to 90 s, for `minutes`, at one reading a second.
 */
async function soak(kind: BrokerKind, minutes: number): Promise<Result> {
    const picks = SCENARIOS.filter(s =>
        ["broker-restart-clean", "reset-mid-packet", "black-hole", "slow-broker", "refused", "take-over"].includes(
            s.name
        )
    )
    const s: Scenario = {
        name: "soak",
        what: `random faults for ${minutes} minutes`,
        async run(rig) {
            const end = Date.now() + minutes * 60_000
            const counts = new Map<string, number>()
            while (Date.now() < end) {
                await sleep(30_000 + random() * 60_000)
                const pick = picks[Math.floor(random() * picks.length)]
                counts.set(pick.name, (counts.get(pick.name) ?? 0) + 1)
                await pick.run(rig)
            }
            rig.expectWill = counts.has("black-hole")
            rig.notes.push([...counts].map(([k, v]) => `${k} x${v}`).join(", "))
            rig.faultEndMs = Date.now()
        },
    }
    return await runScenario(s, kind)
}

function row(r: Result) {
    const cells = [
        r.scenario.padEnd(26),
        r.broker.padEnd(9),
        String(r.taken).padStart(6),
        String(r.delivered).padStart(9),
        String(r.dup).padStart(4),
        String(r.reord).padStart(5),
        String(r.lost).padStart(5),
        String(r.unexplained).padStart(6),
        String(r.energyDiffMilli).padStart(6),
        (r.recoverS === null ? "-" : r.recoverS.toFixed(1)).padStart(7),
        (r.statusTruthful ? "true" : "FALSE").padStart(6),
        String(r.restartsUnasked).padStart(8),
    ]
    return cells.join(" ") + (r.notes.length ? "  " + r.notes.join("; ") : "")
}

const only = values.only ? values.only.split(",") : null
const knownScenarios = [...SCENARIOS.map(s => s.name), "soak", "collector-crash"]
const unknown = (only ?? []).filter(n => !knownScenarios.includes(n))
if (unknown.length) {
    console.error(`npm run faults: unknown scenario ${unknown.join(", ")} (known: ${knownScenarios.join(", ")})`)
    process.exit(2)
}
const brokers = values.brokers!.split(",") as BrokerKind[]
const soakMin = Number(values["soak-min"])
// The soak takes its full length on each broker it runs on: by default the first one only.
const soakBrokers = (values["soak-brokers"] ?? brokers[0]).split(",")
print(
    `meternode faults: ${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, Node ${process.version}; reading every ${READ_MS / 1000} s, keepalive ${KEEPALIVE_S} s, FLUSH_S ${FLUSH_S}, seed ${values.seed}${values["mqtt-version"] === "3.1.1" ? "" : ", MQTT_VERSION " + values["mqtt-version"]}`
)
print(
    [
        "scenario".padEnd(26),
        "broker".padEnd(9),
        " taken",
        "delivered",
        " dup",
        "reord",
        " lost",
        "unexpl",
        "energy",
        "recover",
        "status",
        "restarts",
    ].join(" ")
)
const results: Result[] = []
let failed = false
for (const kind of brokers) {
    for (const s of SCENARIOS) {
        if (only && !only.includes(s.name)) continue
        if (s.brokers && !s.brokers.includes(kind)) continue
        let r: Result
        const startedMs = Date.now()
        try {
            r = await runScenario(s, kind)
        } catch (e) {
            r = failedResult(s.name, kind, e)
        }
        results.push(r)
        print(row(r))
        console.log(`  ${s.name} ${kind}: ${((Date.now() - startedMs) / 60_000).toFixed(1)} min`)
    }
    if (soakMin > 0 && (!only || only.includes("soak")) && soakBrokers.includes(kind)) {
        const r = await soak(kind, soakMin).catch(e => failedResult("soak", kind, e))
        if (r.restartsUnasked) r.notes.push(`FAILED: ${r.restartsUnasked} restarts the node did not ask for`)
        results.push(r)
        print(row(r))
    }
}
// The collector's side (test/collector/crash-run.ts): 10 simulated nodes at a reading a second,
// the collector SIGKILLed at 5 moments drawn from the seed and restarted, the broker (Mosquitto,
// persistence on) restarted once; every reading the fleet took must be stored once, energy exact.
// The columns: taken by the fleet, delivered = stored with their content, dup = rows beyond one per
// reading, lost, energy; recover = seconds from the fleet's last publish to the last row stored.
if (findMosquitto() && (!only || only.includes("collector-crash")))
    for (const database of ["PGlite", "PostgreSQL"] as const) {
        const notes: string[] = []
        let r: Result
        try {
            const c = await crashRun({
                database,
                nodes: 10,
                seconds: Number(values["crash-s"]),
                kills: 5,
                seed: Number(values.seed) || 1,
                log: line => console.log(`  collector-crash ${database}: ${line}`),
            })
            notes.push(
                database,
                `SIGKILL at ${c.killsAtS.map(t => t.toFixed(0)).join(", ")} s, broker restart at ${c.brokerRestartAtS.toFixed(0)} s`,
                ...c.notes
            )
            if (c.wrong) notes.push(`FAILED: ${c.wrong} rows differ from what the fleet took`)
            r = {
                scenario: "collector-crash",
                broker: "mosquitto",
                taken: c.taken,
                delivered: c.stored,
                dup: c.doubled,
                reord: 0,
                lost: c.lost,
                unexplained: c.lost,
                energyDiffMilli: c.energyDiffMilli,
                recoverS: c.catchUpS,
                statusTruthful: true,
                restartsUnasked: 0,
                notes,
            }
            if (c.doubled) notes.push(`FAILED: ${c.doubled} readings stored twice`)
        } catch (e) {
            r = failedResult("collector-crash", "mosquitto", e, [database])
        }
        results.push(r)
        print(row(r))
    }
for (const r of results)
    if (
        r.unexplained ||
        r.energyDiffMilli ||
        !r.statusTruthful ||
        r.restartsUnasked ||
        r.notes.some(n => n.startsWith("FAILED"))
    )
        failed = true
if (values.json) writeFileSync(values.json, JSON.stringify(results, null, 2))
print(
    failed
        ? "faults: FAILED (see the rows above)"
        : "faults: every scenario passed: no unexplained loss, energy exact, status truthful"
)
// The collector's crash runs alone have their own block in docs/results.md, and so have the
// hostile-input and power-cuts rows (a run of them alone takes about 20 minutes, the campaign hours).
const HOSTILE_ROWS = ["hostile-commands", "flood-qos0", "flood-qos1", "flood-qos2", "hostile-times", "power-cuts"]
const block = only?.every(n => n === "collector-crash")
    ? "collector-faults"
    : only?.every(n => HOSTILE_ROWS.includes(n))
      ? "faults-hostile"
      : "faults"
if (values["write-results"] || values.readme) writeResultsSection(block, npmCommand("faults"))
process.exit(failed ? 1 : 0)
