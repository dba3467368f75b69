// Commands from the network (src/commands.ts checks them): each is handled here and answered
// with one reply, except a replay, which replies itself when it is done, and a flood over the
// rate limit, which goes unanswered and is counted in the status.
//
// Platform code: DeviceScript only.
import * as ds from "@devicescript/core"
import { TIME_COMMAND, timeFromJson } from "../clock"
import { COMMANDS_PER_WINDOW, CommandRate, MAX_REPLIES_WAITING, parseCommand } from "../commands"
import { NodeConfig } from "../config"
import { Features, ReplayHistory, ReplayHost } from "../features"
import { MqttClient } from "../mqtt/client"
import { PublishPacket } from "../mqtt/packets"
import { JSON_CONTENT } from "../reading"
import { stopGracefully, StopHost } from "./planned-stop"
import { setTime, TimeHost } from "./time-updates"

const NO_HISTORY = "replay: no history kept (HISTORY_BYTES is 0)"

/** What the commands need of the node: the time, the status, a planned stop and a replay. */
export interface CommandHost extends TimeHost, StopHost, ReplayHost {
    readonly client: MqttClient
    readonly config: NodeConfig
    readonly features: Features
    /** Null when HISTORY_BYTES is 0. */
    readonly history: ReplayHistory
}

/**
 * Commands arrive on <prefix>/<node>/cmd/<name>; the reply goes to <prefix>/<node>/reply/<name>
 * with the request's `id`, or in MQTT 5 to the request's Response Topic with its Correlation
 * Data. A malformed or unknown command gets an error reply and changes nothing.
 */
export class CommandHandler {
    private readonly rate = new CommandRate()
    /** Replies awaiting their PUBACK: each holds its payload in RAM until then. */
    readonly replyTokens: number[] = []

    constructor(private readonly node: CommandHost) {}

    /** A message on a topic other than the time topic, received at `receivedMs`. */
    async handle(message: PublishPacket, receivedMs: number) {
        const node = this.node
        const c = node.config
        const clock = node.clock
        const base = `${c.topicPrefix}/${c.nodeId}/cmd/`
        if (message.topic.indexOf(base) !== 0) return
        if (!this.rate.admit(ds.millis(), this.replyTokens.length)) {
            // Unanswered: a reply per command of a flood would cost what the limit saves.
            if (this.rate.dropped % COMMANDS_PER_WINDOW === 1)
                node.reportError(
                    `command: ${this.rate.dropped} dropped since boot, over ${COMMANDS_PER_WINDOW} a minute or ${MAX_REPLIES_WAITING} replies waiting`
                )
            return
        }
        const command = parseCommand(message.topic.slice(base.length), message.payload, message.retain)
        const name = command.name
        const request = command.request
        const id = command.id
        let error = command.error
        // An MQTT 5 request [MQTT-4.10]: answered on its Response Topic, with its Correlation Data.
        // Not one under the topic prefix but the node's own replies: readings and statuses live
        // there, and a command must not make the node publish into them. (The topic is not echoed:
        // it may be kilobytes.) A replay still replies on its own topic.
        const asked = message.properties ? message.properties.responseTopic : ""
        const own = `${c.topicPrefix}/${c.nodeId}/reply/`
        let replyTopic = own + name
        if (asked && asked.indexOf(c.topicPrefix + "/") === 0 && asked.indexOf(own) !== 0)
            error = error || `response topic refused: under ${c.topicPrefix}/ but not ${own}`
        else if (asked) replyTopic = asked
        if (!error && name === "time" && request.utc_ms !== undefined) {
            const given = timeFromJson(request)
            error = given.error
            // An operator's explicit act: the clock steps, forward or back (bounded), once it is set.
            if (!error && clock.isSet()) {
                error = clock.step(receivedMs, given.utcMs, TIME_COMMAND)
                if (!error) console.log("time: " + clock.lastChange + ", offset " + clock.offsetS + " s")
            } else if (!error) await setTime(node, given.utcMs, receivedMs, TIME_COMMAND, false)
        }
        const reply: any = error ? { id, ok: false, error } : { id, ok: true }
        console.log(`command: ${name}: ${error || "accepted"}`)
        if (!error && name === "time") {
            reply.clock = clock.isSet() ? "set" : "unset"
            if (clock.isSet()) reply.utc_ms = ds.millis() + clock.offsetS * 1000
        }
        if (!error && name === "status") reply.status = JSON.parse(await node.status.publish())
        if (!error && name === "replay") {
            error = node.history ? node.features.history.start(node.history, request, id, node) : NO_HISTORY
            // Started: the replay replies when it is done.
            if (!error) return
            reply.ok = false
            reply.error = error
        }
        this.replyTokens.push(
            node.client.publish(
                replyTopic,
                Buffer.from(JSON.stringify(reply)),
                1,
                false,
                replyTopic === asked
                    ? { correlationData: message.properties.correlationData, contentType: JSON_CONTENT.contentType }
                    : JSON_CONTENT
            )
        )
        if (!error && (name === "restart" || name === "shutdown")) {
            // In a fiber of its own: this handler runs on the fiber that reads the socket, and the
            // command's PUBACK and the offline status's PUBACK must get through before the stop.
            setTimeout(async () => await stopGracefully(node, name, name === "restart"), 0)
        }
    }
}
