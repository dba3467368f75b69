// An image carries the drivers and features its configuration uses, and nothing else.
import { test } from "node:test"
import assert from "node:assert/strict"
import { composition, featuresSource } from "../../devs/lib/compose"

test("the default configuration: the simulated meter and Home Assistant discovery, no history", () => {
    const c = composition({})
    assert.deepEqual(c, { kinds: ["sim"], discovery: true, history: false, errors: [] })
})

test("each meter's kind brings its driver once; HA_PREFIX=- drops discovery; HISTORY_BYTES adds history", () => {
    const c = composition({
        METER_KIND: "s0",
        METER_OPTS: "imp=1000/kWh",
        METER2: "water s0 imp=1/10L",
        METER3: "room temperature",
        HA_PREFIX: "-",
        HISTORY_BYTES: 2048,
    })
    assert.deepEqual(c, { kinds: ["s0", "temperature"], discovery: false, history: true, errors: [] })
})

test("an invalid meter is named and brings no driver", () => {
    const c = composition({ METER_KIND: "ina226", METER2: "gas s0 imp=banana" })
    assert.deepEqual(c.kinds, ["ina226"])
    assert.equal(c.errors.length, 1)
    assert.match(c.errors[0], /meter gas \(METER2\): imp: /)
})

test("the entry imports exactly the composed drivers, each module once", () => {
    const { imports, features } = featuresSource(
        { kinds: ["s0", "temperature"], discovery: true, history: false, errors: [] },
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
