// The payloads the firmware builds follow docs/asyncapi.yaml (the end-to-end tests check every
// message the broker delivers; this checks every shape, including the rare ones, in Node).
import { describe, test } from "node:test"
import assert from "node:assert/strict"
import { schemaViolation } from "../e2e/schemas"
import { expandHomeAssistantConfig } from "../fixtures/home-assistant"
import { readingMessage, statusPayload, WILL_PAYLOAD, energyLabel } from "../../src/reading"
import {
    energyRecord,
    FLAG_CLOCK_NOT_SET,
    FLAG_ESTIMATED,
    FLAG_NON_ADDITIVE,
    newRecord,
} from "../../src/storage/records"
import { gapRecord, initialState, lastKnown } from "../../src/node-state"
import { recordInUtc } from "../../src/clock"
import { announcedFromJson, discoveryMessages, discoveryTopic } from "../../src/discovery"

const OFFSET_S = 1_763_802_000

describe("payloads follow docs/asyncapi.yaml", () => {
    test("reading messages: uptime and UTC, merged, estimated, levels and gaps", () => {
        const plain = energyRecord(0, 7, 2, 1000, 61000, 125, 5125)
        const merged = energyRecord(0, 20, 2, 61000, 3661000, 50_000, 55_125)
        merged.firstSeq = 8
        merged.flags |= FLAG_ESTIMATED
        const level = newRecord()
        Object.assign(level, {
            flags: FLAG_NON_ADDITIVE | FLAG_CLOCK_NOT_SET,
            seq: 3,
            firstSeq: 3,
            boot: 1,
            startS: 60,
            durationS: 60,
            minMilli: -500,
            meanMilli: 1250,
            maxMilli: 4000,
        })
        const prev = {
            ...initialState(),
            boot: 4,
            seq: 2000,
            totals: [77_000],
            markSeq: 1500,
            markEndS: 3600,
            clean: false,
        }
        const gap = gapRecord(prev, lastKnown(prev, null), 0, 2001)!
        for (const records of [
            [plain, merged],
            [level],
            [gap],
            [recordInUtc(plain, OFFSET_S), recordInUtc(gap, OFFSET_S)],
        ]) {
            const payload = readingMessage(records, [energyLabel("main")]).payload
            assert.equal(schemaViolation("meters/n/main/reading", payload), "", payload)
        }
    })

    test("status, will and replies; and the schemas do reject", () => {
        const online = statusPayload({
            online: true,
            boot: 3,
            uptimeS: 12.7,
            queued: 2,
            dropped: 1,
            merged: 4,
            lastError: 'a "quoted" error',
            clock: "set",
        })
        const offline = statusPayload({
            online: false,
            reason: "restart",
            boot: 3,
            uptimeS: 0,
            queued: 0,
            dropped: 0,
            merged: 0,
            lastError: "",
        })
        for (const p of [online, offline, WILL_PAYLOAD]) assert.equal(schemaViolation("meters/n/status", p), "", p)
        assert.equal(
            schemaViolation(
                "meters/n/reply/time",
                JSON.stringify({ id: "t", ok: true, clock: "set", utc_ms: OFFSET_S * 1000 })
            ),
            ""
        )
        assert.equal(
            schemaViolation("meters/n/reply/x", JSON.stringify({ id: null, ok: false, error: "unknown command x" })),
            ""
        )
        assert.match(schemaViolation("meters/n/status", '{"state":"online"}'), /required property/)
        assert.match(schemaViolation("meters/n/reply/x", '{"id":1,"ok":false}'), /error/)
        assert.match(schemaViolation("meters/n/main/reading", '{"meter":"main"'), /not JSON/)
    })

    test("Home Assistant discovery: an energy sensor per meter; meters no longer configured are cleared", () => {
        const first = discoveryMessages("homeassistant", "meters", "n1", [energyLabel("main")], [])
        assert.equal(first.length, 1)
        assert.equal(first[0].topic, "homeassistant/sensor/meternode_n1_main_energy/config")
        assert.equal(schemaViolation(first[0].topic, first[0].payload.join("")), "", first[0].payload.join(""))
        const config = expandHomeAssistantConfig(first[0].payload.join(""))
        assert.equal(config.state_topic, "meters/n1/main/reading")
        assert.equal(config.availability_topic, "meters/n1/status")
        assert.equal(config.device_class, "energy")
        assert.equal(config.unit_of_measurement, "Wh")
        assert.equal(config.device.identifiers[0], "meternode_n1")
        // After METER_ID changed from main to grid: main's config is cleared first.
        const next = discoveryMessages(
            "homeassistant",
            "meters",
            "n1",
            [energyLabel("grid")],
            announcedFromJson(["main"])
        )
        assert.deepEqual(
            next.map(m => [m.topic, m.payload.length === 0]),
            [
                [discoveryTopic("homeassistant", "n1", "main", "energy"), true],
                [discoveryTopic("homeassistant", "n1", "grid", "energy"), false],
            ]
        )
        assert.deepEqual(announcedFromJson({ not: "a list" }), [])
        assert.match(
            schemaViolation(
                first[0].topic,
                JSON.stringify({ ...JSON.parse(first[0].payload.join("")), dev_cla: "power" })
            ),
            /dev_cla must be equal to one of the allowed values/
        )
    })
})
