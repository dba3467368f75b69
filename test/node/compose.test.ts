// An image carries the drivers and features its configuration uses, and nothing else.
import { test } from "node:test"
import assert from "node:assert/strict"
import { composedEntrySource, composition, featuresSource } from "../../devs/lib/compose"
import { BuiltChecks, NodeConfig, parseConfig } from "../../src/config"
import { DEFAULT_SESSION_EXPIRY_S, DEFAULT_WILL_DELAY_S } from "../../src/mqtt/mqtt5-session"

test("the default configuration: the simulated meter and Home Assistant discovery, no history, MQTT 3.1.1", () => {
    const c = composition({})
    assert.deepEqual(c, {
        kinds: ["sim"],
        discovery: true,
        history: false,
        mqtt5: false,
        backlog: false,
        errors: [],
        settings: {},
    })
})

test("each meter's kind brings its driver once; HA_PREFIX=- drops discovery; HISTORY_BYTES adds history", () => {
    const settings = {
        METER_KIND: "s0",
        METER_OPTS: "imp=1000/kWh",
        METER2: "water s0 imp=1/10L",
        METER3: "room temperature",
        HA_PREFIX: "-",
        HISTORY_BYTES: 2048,
    }
    const c = composition(settings)
    assert.deepEqual(c, {
        kinds: ["s0", "temperature"],
        discovery: false,
        history: true,
        mqtt5: false,
        backlog: false,
        errors: [],
        settings,
    })
})

test("an invalid meter is named and brings no driver", () => {
    const c = composition({ METER_KIND: "ina226", METER2: "gas s0 imp=banana" })
    assert.deepEqual(c.kinds, ["ina226"])
    assert.equal(c.errors.length, 1)
    assert.match(c.errors[0], /meter gas \(METER2\): imp: /)
})

test("the entry imports exactly the composed drivers, each module once", () => {
    const { imports, features } = featuresSource(
        {
            kinds: ["s0", "temperature"],
            discovery: true,
            history: false,
            mqtt5: false,
            backlog: false,
            errors: [],
            settings: {},
        },
        "/p/.devicescript/gen/x",
        "/p"
    )
    assert.deepEqual(imports, [
        'import { startPulseMeter, startLevelMeter } from "../../../src/meters/jacdac-meters"',
        'import { discoveryMessages } from "../../../src/discovery"',
    ])
    assert.equal(
        features,
        '{ meters: { "s0": startPulseMeter, "temperature": startLevelMeter }, discovery: discoveryMessages }'
    )
})

test("the entry builds in the configuration validated on the host, with its errors and the values given", () => {
    const c = composition({ METER_KIND: "s0", METER_OPTS: "imp=1000/kWh", READ_MS: "fast", MQTT_PASS: "pw" })
    const source = composedEntrySource(c, "/p/.devicescript/gen/x", "/p")
    assert.match(source, /^import \{ startBuiltNode \} from "..\/..\/..\/src\/platform\/boot-built"$/m)
    // The configuration as an object literal (JSON is one), then what the boot checks as a JSON string.
    const call = source.match(/^await startBuiltNode\((\{.*\}), ("(?:[^"\\]|\\.)*"), \{/m)
    assert.ok(call, source)
    const config: NodeConfig = JSON.parse(call[1])
    const built: BuiltChecks = JSON.parse(JSON.parse(call[2]))
    assert.equal(config.meters[0].kind, "s0")
    // The spec carries what the S0 driver reads, and nothing of the other kinds'.
    assert.deepEqual(Object.keys(config.meters[0]).sort(), [
        "additive",
        "id",
        "input",
        "kind",
        "minGapMs",
        "minPulseMs",
        "pulseDen",
        "pulseMilliNum",
        "quantity",
        "readMs",
        "slot",
        "unit",
    ])
    assert.equal(config.readingIntervalMs, 60000, "the invalid READ_MS is replaced by its default")
    assert.equal(built.errors.length, 1)
    assert.match(built.errors[0], /^setting READ_MS: fast /)
    assert.equal(config.nodeId, "", "no NODE_ID: the board's device id, taken at boot")
    assert.deepEqual(built.settings, { METER_KIND: "s0", METER_OPTS: "imp=1000/kWh", READ_MS: "fast", MQTT_PASS: "pw" })
    assert.ok(built.keys.includes("METER2") && built.keys.includes("MQTT_URL"), "every setting is compared at boot")
})

test("MQTT_VERSION auto or 5 brings the MQTT 5 session; 3.1.1 (the default) leaves it out; an unknown version is named", () => {
    for (const version of ["auto", "5"]) {
        const c = composition({ MQTT_VERSION: version })
        assert.equal(c.mqtt5, true, `MQTT_VERSION ${version}`)
        const { imports, features } = featuresSource(c, "/p/.devicescript/gen/x", "/p")
        assert.ok(
            imports.includes('import { mqtt5Feature } from "../../../src/platform/mqtt5-feature"'),
            imports.join()
        )
        assert.match(features, /mqtt5: mqtt5Feature/)
    }
    for (const settings of [{ MQTT_VERSION: "3.1.1" }, {}]) {
        const c = composition(settings)
        assert.equal(c.mqtt5, false)
        assert.doesNotMatch(featuresSource(c, "/p/.devicescript/gen/x", "/p").features, /mqtt5/)
    }
    // The settings' defaults are the session's, whose comments say why.
    const { config } = parseConfig({})
    assert.equal(config.sessionExpiryS, DEFAULT_SESSION_EXPIRY_S)
    assert.equal(config.willDelayS, DEFAULT_WILL_DELAY_S)
    const wrong = composition({ MQTT_VERSION: "3" })
    assert.deepEqual(wrong.errors, ["setting MQTT_VERSION: 3 is not auto, 5 or 3.1.1"])
    assert.equal(wrong.mqtt5, false, "the default (3.1.1) is used instead")
})

test("SIM_BACKLOG brings the simulated backlog; no other configuration carries it", () => {
    assert.equal(composition({ SIM_BACKLOG: 1440 }).backlog, true)
    assert.equal(composition({}).backlog, false)
    const { imports, features } = featuresSource(composition({ SIM_BACKLOG: 1440 }), "/p/.devicescript/gen/x", "/p")
    assert.ok(imports.includes('import { queueSimulatedBacklog } from "../../../src/meters/sim-backlog"'))
    assert.match(features, /backlog: queueSimulatedBacklog/)
})
