// The code-section budget, held by CI: each image's code section (the VM loader's count) must stay
// within its budget, and every image within the VM's 64 KB.
import { test } from "node:test"
import assert from "node:assert/strict"
import { buildImage, CODE_SECTION_LIMIT_BYTES, writeComposedEntry } from "../../devs/build"
import { Composition, composition } from "../../devs/lib/compose"

const KB = 1024

interface Budgeted {
    name: string
    /** The entry point, relative to the project root. */
    entry: () => string
    budgetBytes: number
}

function composed(name: string, settings: Record<string, unknown>): () => string {
    return () => {
        const c = composition(settings)
        assert.deepEqual(c.errors, [], `${name}: the settings are valid`)
        return writeComposedEntry(c, `budget-${name}`)
    }
}

// The budgets are where the images stand, rounded up to the next KB: any growth is a decision
// made here. The goal was 48 KB (49,152 bytes) for each composed image, 16 KB left for what comes
// next; it was reached by taking out of the image what only tests and servers need (the MQTT
// stack's server-side decoding and checks of values the node produces itself, the queue's
// statistics), by its own socket code instead of @devicescript/net's class, and by smaller code
// throughout: 55-58 KB down to 43-45 KB. Since then, the MQTT 5 codec hooks (about 590 bytes in
// each image; src/mqtt/mqtt5.ts itself is composed in only where the client speaks MQTT 5), the
// node split by job, the clock floor and the send path that allocates no whole payload brought
// them to 45-47 KB; then the configuration built in as an object literal rather than JSON parsed
// at boot (about 430 bytes of code; 0.9 KB of the heap kept, 3 KB less garbage at boot), and
// reused record objects and readers on the way to 24 KB of heap online (the image with every
// driver: 59.7 KB, its budget to 59 KB). MQTT 5 (MQTT_VERSION, the reply to a request's Response
// Topic, the version in the status, a refused reading message kept queued) then added about
// 0.6 KB to every image, 46-48 KB now, and an image composed to speak MQTT 5 (MQTT_VERSION auto
// or 5) carries about 7.0 KB more: 53.6 KB for the simulator's, 53.9 KB for the ESP32-C3's and
// 55.5 KB for the Pico W's, over the 48 KB goal. That is why the default stays 3.1.1
// (docs/configuration.md); the image with every driver speaks 3.1.1 only, since with MQTT 5 it
// would come close to 64 KB.
const C3_BUDGET_BYTES = 46 * KB

const IMAGES: Budgeted[] = [
    {
        name: "every driver, discovery and history (src/main.ts)",
        entry: () => "src/main.ts",
        budgetBytes: 60 * KB,
    },
    { name: "simulator default", entry: composed("sim", { METER_KIND: "sim" }), budgetBytes: 46 * KB },
    {
        name: "simulator, MQTT 5 (MQTT_VERSION=auto)",
        entry: composed("sim-mqtt5", { METER_KIND: "sim", MQTT_VERSION: "auto" }),
        budgetBytes: 53 * KB,
    },
    {
        name: "ESP32-C3, one S0 meter, Home Assistant discovery",
        entry: composed("c3-s0", { METER_KIND: "s0", METER_OPTS: "imp=1000/kWh" }),
        budgetBytes: C3_BUDGET_BYTES,
    },
    { name: "Pico W, INA226", entry: composed("pico-ina226", { METER_KIND: "ina226" }), budgetBytes: 48 * KB },
    // The board images composed to speak MQTT 5: within the VM's 64 KB, and no larger unnoticed.
    {
        name: "ESP32-C3, one S0 meter, discovery, MQTT 5",
        entry: composed("c3-s0-mqtt5", { METER_KIND: "s0", METER_OPTS: "imp=1000/kWh", MQTT_VERSION: "auto" }),
        budgetBytes: 53 * KB,
    },
    {
        name: "Pico W, INA226, MQTT 5",
        entry: composed("pico-ina226-mqtt5", { METER_KIND: "ina226", MQTT_VERSION: "auto" }),
        budgetBytes: 55 * KB,
    },
]

/** Whether an image's code section is within budget, and a message saying by how much it is not. */
function check(name: string, codeBytes: number, budgetBytes: number) {
    const within = codeBytes <= budgetBytes && codeBytes <= CODE_SECTION_LIMIT_BYTES
    return { within, message: `${name}: code section ${codeBytes} bytes, budget ${budgetBytes}` }
}

for (const image of IMAGES)
    test(`code section within budget: ${image.name}`, () => {
        const size = buildImage(image.entry())
        const result = check(image.name, size.codeBytes, image.budgetBytes)
        console.log(`${result.message}; image ${size.imageBytes} bytes`)
        assert.ok(result.within, result.message)
    })

test("the gate fails on an image with a driver its configuration does not name", () => {
    const c3: Composition = composition({ METER_KIND: "s0", METER_OPTS: "imp=1000/kWh" })
    const bloated = { ...c3, kinds: [...c3.kinds, "ina226"] }
    const size = buildImage(writeComposedEntry(bloated, "budget-c3-bloated"))
    const result = check("ESP32-C3 with an unused INA226 driver", size.codeBytes, C3_BUDGET_BYTES)
    assert.equal(result.within, false, result.message)
})
