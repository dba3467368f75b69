// Composes a firmware image for one configuration: the entry point imports the drivers of the
// meter kinds the settings name, Home Assistant discovery when HA_PREFIX is on, and replay history
// when HISTORY_BYTES is set, and nothing else. The VM compiles only what the entry references, so
// an image carries the code of what its board uses (as ESPHome's code generation does).
import { relative } from "node:path"
import { BuiltConfig, describeConfig, NodeConfig, parseConfig, settingSpecs } from "../../src/config"
import { MeterSpec } from "../../src/meters/meter-spec"

/** The fields of a meter's spec the node reads whatever the kind. */
const SPEC_FIELDS: (keyof MeterSpec)[] = ["slot", "id", "kind", "quantity", "unit", "additive", "readMs"]
const INA_FIELDS: (keyof MeterSpec)[] = ["address", "shuntMicroOhm", "maxMilliA", "sampleMs"]

/**
 * Where each meter kind's driver lives: the function the entry imports, its module, and the
 * fields of a meter's spec it reads besides SPEC_FIELDS (the image's spec carries no others).
 */
const DRIVERS: Record<string, { name: string; module: string; fields: (keyof MeterSpec)[] }> = {
    sim: { name: "startSimulatedMeter", module: "src/meters/simulated", fields: ["seed", "meanW"] },
    s0: {
        name: "startPulseMeter",
        module: "src/meters/jacdac-meters",
        fields: ["input", "pulseMilliNum", "pulseDen", "minPulseMs", "minGapMs"],
    },
    ina219: { name: "startInaMeter", module: "src/meters/ina-meter", fields: INA_FIELDS },
    ina226: { name: "startInaMeter", module: "src/meters/ina-meter", fields: INA_FIELDS },
    temperature: { name: "startLevelMeter", module: "src/meters/jacdac-meters", fields: ["input"] },
    humidity: { name: "startLevelMeter", module: "src/meters/jacdac-meters", fields: ["input"] },
    "dc-current": { name: "startLevelMeter", module: "src/meters/jacdac-meters", fields: ["input"] },
    "dc-voltage": { name: "startLevelMeter", module: "src/meters/jacdac-meters", fields: ["input"] },
    "water-level": { name: "startLevelMeter", module: "src/meters/jacdac-meters", fields: ["input"] },
}
const DISCOVERY = { name: "discoveryMessages", module: "src/discovery" }
const HISTORY = { name: "replayHistory", module: "src/platform/history-feature" }
const BACKLOG = { name: "queueSimulatedBacklog", module: "src/meters/sim-backlog" }
const MQTT5 = { name: "mqtt5Feature", module: "src/platform/mqtt5-feature" }

export interface Composition {
    /** Meter kinds with a driver in the image. */
    kinds: string[]
    discovery: boolean
    history: boolean
    /** MQTT 5 (MQTT_VERSION auto or 5); without it the image speaks 3.1.1 only. */
    mqtt5: boolean
    /** The simulated backlog of SIM_BACKLOG (benchmarks). */
    backlog: boolean
    /** Invalid settings, as the node would report them at boot. */
    errors: string[]
    /** The settings it was composed for (absent ones take their defaults). */
    settings: Record<string, unknown>
}

/** What an image for `settings` must carry (settings absent from it take their defaults). */
export function composition(settings: Record<string, unknown>, everything = false): Composition {
    if (everything)
        return {
            kinds: Object.keys(DRIVERS),
            discovery: true,
            history: true,
            mqtt5: true,
            backlog: true,
            errors: [],
            settings,
        }
    const { config, errors } = parseConfig(settings)
    const kinds: string[] = []
    for (const meter of config.meters) if (meter && !kinds.includes(meter.kind)) kinds.push(meter.kind)
    const history = config.historyBytes > 0
    return {
        kinds,
        discovery: !!config.haPrefix,
        history,
        mqtt5: config.mqttVersion !== 4,
        backlog: config.simBacklog > 0,
        errors,
        settings,
    }
}

/**
 * The configuration an image is built with, validated here on the host: the settings given,
 * then the defaults. Values stay as given (strings from .env files, numbers from the runners).
 */
export function builtConfig(settings: Record<string, unknown>): BuiltConfig {
    const { config, errors } = parseConfig(settings)
    const given: Record<string, string | number> = {}
    for (const [key, value] of Object.entries(settings))
        if (typeof value === "string" || typeof value === "number") given[key] = value
    return {
        config,
        errors,
        description: describeConfig(config),
        keys: settingSpecs().map(s => s.key),
        settings: given,
    }
}

/** The features argument of startNode() for `c`, and the imports it needs. */
export function featuresSource(c: Composition, fromDir: string, projectRoot: string) {
    const modules = new Map<string, Set<string>>()
    const use = (d: { name: string; module: string }) => {
        if (!modules.has(d.module)) modules.set(d.module, new Set())
        modules.get(d.module)!.add(d.name)
    }
    const meters = c.kinds.map(kind => {
        use(DRIVERS[kind])
        return `${JSON.stringify(kind)}: ${DRIVERS[kind].name}`
    })
    const parts = [`meters: { ${meters.join(", ")} }`]
    if (c.discovery) (use(DISCOVERY), parts.push(`discovery: ${DISCOVERY.name}`))
    if (c.history) (use(HISTORY), parts.push(`history: ${HISTORY.name}`))
    if (c.mqtt5) (use(MQTT5), parts.push(`mqtt5: ${MQTT5.name}`))
    if (c.backlog) (use(BACKLOG), parts.push(`backlog: ${BACKLOG.name}`))
    const imports = [...modules].map(([module, names]) => {
        const path = relative(fromDir, `${projectRoot}/${module}`).replace(/\\/g, "/")
        return `import { ${[...names].join(", ")} } from "${path.startsWith(".") ? path : "./" + path}"`
    })
    return { imports, features: `{ ${parts.join(", ")} }` }
}

/**
 * The entry point of an image composed as `c`, written in `genDir`: the configuration of
 * `settings` (by default the ones `c` was composed for), validated here and built in, and the
 * features.
 */
export function composedEntrySource(
    c: Composition,
    genDir: string,
    projectRoot: string,
    settings: Record<string, unknown> = c.settings
) {
    const { imports, features } = featuresSource(c, genDir, projectRoot)
    const boot = relative(genDir, `${projectRoot}/src/platform/boot-built`).replace(/\\/g, "/")
    const { config, ...checks } = builtConfig(settings)
    // Each field costs the heap 16 bytes for good and the code about 7: a spec carries what its driver reads.
    const meters = config.meters.map(m => {
        if (!m || !DRIVERS[m.kind]) return m
        const kept: Partial<MeterSpec> = {}
        for (const f of [...SPEC_FIELDS, ...DRIVERS[m.kind].fields]) (kept as any)[f] = m[f]
        return kept
    })
    const builtIn: NodeConfig = { ...config, meters: meters as MeterSpec[] }
    // The node's configuration, kept for good, is an object literal in the code: its keys are
    // strings of the image, where JSON.parse makes each one a string in the heap. What only the
    // boot uses is JSON, parsed and dropped (as a literal it would cost more code than heap).
    return (
        `// Generated for: ${describeComposition(c)}.\n` +
        `import { startBuiltNode } from "${boot}"\n` +
        imports.map(line => line + "\n").join("") +
        `await startBuiltNode(${JSON.stringify(builtIn)}, ${JSON.stringify(JSON.stringify(checks))}, ${features})\n`
    )
}

/** A one-line description of a composition, for build logs. */
export function describeComposition(c: Composition) {
    const parts = [`meters: ${c.kinds.join(", ") || "none"}`]
    parts.push(c.discovery ? "Home Assistant discovery" : "no discovery")
    parts.push(c.history ? "replay history" : "no history")
    parts.push(c.mqtt5 ? "MQTT 5 or 3.1.1" : "MQTT 3.1.1")
    if (c.backlog) parts.push("simulated backlog")
    return parts.join("; ")
}
