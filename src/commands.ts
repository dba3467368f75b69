// Commands from the network, checked before anything is allocated for them. Anyone who may
// publish on the broker can send one, so every part has a byte budget: the name, the payload, its
// JSON nesting, the `id` a reply echoes, and how many commands a minute are handled at all.
// What is refused gets one error reply (or, over the rate, a count in the status) and changes
// nothing; the session acknowledges it like any other message, so it is never handed back.
//
// Pure core: imports nothing from @devicescript.

/**
 * Commands on <prefix>/<node>/cmd/<name>, each between slashes: one string, looked up with
 * indexOf, costs the image less code than an array (a name with a slash is refused first).
 */
export const COMMANDS = "/replay/restart/shutdown/status/time/"
/** Longest command name echoed in a reply topic; a longer one is answered on reply/invalid. */
export const MAX_COMMAND_NAME_BYTES = 16
/** Largest payload parsed. Every command fits in well under this. */
export const MAX_COMMAND_BYTES = 512
/** Deepest JSON nesting parsed: the VM's JSON.parse recurses without a bound. */
export const MAX_COMMAND_DEPTH = 4
/** Longest `id` echoed in a reply (a string; any number is fine). */
export const MAX_ID_BYTES = 64
/** Replies awaiting their PUBACK; a command arriving while this many wait is dropped and counted. */
export const MAX_REPLIES_WAITING = 4
/** Commands handled per window; more are dropped unanswered and counted. */
export const COMMANDS_PER_WINDOW = 20
export const COMMAND_WINDOW_MS = 60000

export interface Command {
    /** The name, or "invalid" when it is too long to echo. */
    name: string
    request: any
    /** Echoed in the reply: a string of at most MAX_ID_BYTES, a number, or null. */
    id: any
    /** Why the command is refused; "" when it may run. */
    error: string
}

/**
 * The deepest nesting of objects and arrays in `bytes`, read as JSON text, or -1 once it passes
 * `limit`: a scan of the bytes, so that deep input never reaches JSON.parse. Brackets inside
 * strings do not count.
 */
export function jsonDepth(bytes: Buffer, limit: number) {
    let depth = 0
    let deepest = 0
    let inString = false
    for (let i = 0; i < bytes.length; ++i) {
        const b = bytes[i]
        if (inString) {
            if (b === 92)
                i++ // backslash: skip the escaped byte
            else if (b === 34) inString = false
        } else if (b === 34) inString = true
        // "{" and "[" (123, 91), "}" and "]" (125, 93) differ in bit 5 alone.
        else if ((b | 32) === 123) {
            if (++depth > limit) return -1
            if (depth > deepest) deepest = depth
        } else if ((b | 32) === 125) depth--
    }
    return deepest
}

/**
 * Reads the command `name` with `payload` and its retain flag, within the budgets above. Never
 * throws: a malformed command comes back with its error.
 */
export function parseCommand(name: string, payload: Buffer, retain: boolean): Command {
    // The limits are written out in the texts: a template substitution costs code at every use.
    if (name.length > MAX_COMMAND_NAME_BYTES)
        return { name: "invalid", request: {}, id: null, error: "command name over 16 bytes" }
    let request: any = {}
    let error = ""
    if (retain) error = "retained commands are ignored: publish commands without the retain flag"
    else if (payload.length > MAX_COMMAND_BYTES) error = "payload over 512 bytes"
    else if (payload.length) {
        if (jsonDepth(payload, MAX_COMMAND_DEPTH) < 0) error = "payload nested deeper than 4"
        else {
            try {
                request = JSON.parse(payload.toString())
            } catch (e) {
                error = "payload is not JSON"
            }
            if (!error && (request === null || typeof request !== "object" || Array.isArray(request))) {
                request = {}
                error = "payload must be a JSON object"
            }
        }
    }
    let id = request.id
    if (typeof id !== "number" && !(typeof id === "string" && id.length <= MAX_ID_BYTES)) {
        if (id !== undefined && id !== null && !error)
            error = "id must be a number or a string of at most 64 characters"
        id = null
    }
    if (!error && (name.indexOf("/") >= 0 || COMMANDS.indexOf("/" + name + "/") < 0))
        error = "unknown command " + name + " (known: replay, restart, shutdown, status, time)"
    return { name, request, id, error }
}

/**
 * At most COMMANDS_PER_WINDOW commands per window, and none while MAX_REPLIES_WAITING replies
 * wait for their acknowledgement; the rest are dropped without a reply, so a flood costs the node
 * neither replies nor memory. Counts what it dropped.
 */
export class CommandRate {
    private windowStartMs = -COMMAND_WINDOW_MS
    private inWindow = 0
    dropped = 0

    /** Whether a command arriving at `nowMs`, with `repliesWaiting` replies unacknowledged, may be handled. */
    admit(nowMs: number, repliesWaiting: number) {
        if (repliesWaiting >= MAX_REPLIES_WAITING) {
            this.dropped++
            return false
        }
        if (nowMs - this.windowStartMs >= COMMAND_WINDOW_MS) {
            this.windowStartMs = nowMs
            this.inWindow = 0
        }
        if (this.inWindow < COMMANDS_PER_WINDOW) {
            this.inWindow++
            return true
        }
        this.dropped++
        return false
    }
}
