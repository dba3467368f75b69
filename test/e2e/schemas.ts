// The payload schemas of docs/asyncapi.yaml, compiled with ajv: every message an end-to-end test
// receives from the broker is checked against the schema of its topic.
import Ajv from "ajv"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { parse } from "yaml"
import { PROJECT_ROOT } from "../../devs/lib/simulator"

const doc = parse(readFileSync(join(PROJECT_ROOT, "docs", "asyncapi.yaml"), "utf-8"))

// ajv resolves "#/components/schemas/X" against the document the schemas sit in: register the
// whole AsyncAPI document and address each schema inside it.
const ajv = new Ajv({ allErrors: true, strict: false })
ajv.addSchema(doc, "asyncapi")
const validators = {
    reading: ajv.getSchema("asyncapi#/components/schemas/ReadingMessage")!,
    status: ajv.getSchema("asyncapi#/components/schemas/Status")!,
    reply: ajv.getSchema("asyncapi#/components/schemas/Reply")!,
    time: ajv.getSchema("asyncapi#/components/schemas/Time")!,
    homeAssistant: ajv.getSchema("asyncapi#/components/schemas/HomeAssistantSensorConfig")!,
}

/** Which schema a topic's payload must follow, or null for topics the document does not cover. */
function schemaOf(topic: string): keyof typeof validators | null {
    const levels = topic.split("/")
    if (levels.length === 4 && levels[2] === "reply") return "reply"
    // Commands are what the tests send, malformed ones on purpose: only what nodes and the collector publish is checked.
    if (levels.length === 4 && levels[2] === "cmd") return null
    if (levels.length === 4 && (levels[3] === "reading" || levels[3] === "replay")) return "reading"
    if (levels.length === 3 && levels[2] === "status") return "status"
    if (topic === "meters/time") return "time"
    if (levels.length === 4 && levels[1] === "sensor" && levels[3] === "config") return "homeAssistant"
    return null
}

/** Why `payload` on `topic` breaks the documented schema, or "" when it follows it. */
export function schemaViolation(topic: string, payload: string): string {
    const name = schemaOf(topic)
    // An empty retained message clears a topic; it has no payload to check.
    if (!name || payload === "") return ""
    let body: unknown
    try {
        body = JSON.parse(payload)
    } catch {
        return `${topic}: not JSON: ${payload.slice(0, 80)}`
    }
    const validate = validators[name]
    if (validate(body)) return ""
    return `${topic}: ${ajv.errorsText(validate.errors)}: ${payload.slice(0, 200)}`
}
