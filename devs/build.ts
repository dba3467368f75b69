// `npm run build [-- --board ID] [--set KEY=VALUE ...]`
//
// Without --board: compiles src/main.ts, the image with every driver (for a board whose
// meters are chosen after flashing), which also makes the DeviceScript compiler validate every
// board file in boards/, and reports its code section and image size against each board's limit.
//
// With --board ID: composes the image for one configuration, the settings in .env.defaults and
// .env.local (what devtools and `devs bundle` deploy) and --set: only the drivers and features
// they use (devs/lib/compose.ts). The settings are validated here, before anything is flashed,
// and the build prints what each feature costs in code bytes. Changing the kind of a meter means
// building and flashing again.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { join, relative } from "node:path"
import { parseArgs } from "node:util"
import { Composition, composedEntrySource, composition, describeComposition } from "./lib/compose"
import { devsSync, PROJECT_ROOT } from "./lib/simulator"

/** Largest program image each architecture's runtime accepts (DeviceScript 2.16.4 partitions). */
const MAX_IMAGE_BYTES: Record<string, number> = {
    esp32: 225 * 1024,
    esp32c3: 225 * 1024,
    esp32s2: 225 * 1024,
    esp32s3: 225 * 1024,
    rp2040: 110 * 1024,
    rp2040w: 110 * 1024,
}

/** The VM loader's limit for the code section (function descriptors and byte code). */
export const CODE_SECTION_LIMIT_BYTES = 65536

export interface ImageSize {
    /** The code section by the loader's count: the image header, function descriptors and byte code. */
    codeBytes: number
    imageBytes: number
}

/** Compiles `entry` (relative to the project root) and reads the compiler's size report. */
export function buildImage(entry: string): ImageSize & { output: string } {
    const output = devsSync(["build", entry, "--stats"])
    const sizes = readFileSync(join(PROJECT_ROOT, ".devicescript", "bin", "bytecode-sizes.md"), "utf-8")
    const number = (pattern: RegExp) => Number(sizes.match(pattern)?.[1] ?? NaN)
    return {
        codeBytes: number(/^(\d+) \| Function TOTAL/m) + number(/^ *(\d+) \| header/m),
        imageBytes: number(/^(\d+) \| TOTAL/m),
        output,
    }
}

/** Writes the entry point of the image composed as `c`, under .devicescript/gen/<name>/main.ts. */
export function writeComposedEntry(c: Composition, name: string) {
    const genDir = join(PROJECT_ROOT, ".devicescript", "gen", name)
    mkdirSync(genDir, { recursive: true })
    const entry = join(genDir, "main.ts")
    writeFileSync(entry, composedEntrySource(c, genDir, PROJECT_ROOT))
    return relative(PROJECT_ROOT, entry)
}

/** KEY=VALUE lines of a .env file; the DeviceScript compiler drops lines with a hash character. */
export function readEnvFile(path: string): Record<string, string> {
    const settings: Record<string, string> = {}
    if (!existsSync(path)) return settings
    for (const line of readFileSync(path, "utf-8").split("\n")) {
        if (line.includes("#")) continue
        const eq = line.indexOf("=")
        if (eq > 0) settings[line.slice(0, eq).trim()] = line.slice(eq + 1).trim()
    }
    return settings
}

function percent(part: number, whole: number) {
    return `${((100 * part) / whole).toFixed(1)} %`
}

function main() {
    const { values } = parseArgs({
        options: { board: { type: "string" }, set: { type: "string", multiple: true, default: [] } },
        strict: true,
    })
    const boardDir = join(PROJECT_ROOT, "boards")
    const boards = readdirSync(boardDir)
        .filter(f => f.endsWith(".board.json"))
        .map(f => ({ id: f.replace(".board.json", ""), json: JSON.parse(readFileSync(join(boardDir, f), "utf-8")) }))
    const board = boards.find(b => b.id === values.board)
    if (values.board && !board) {
        console.error(`npm run build: no board ${values.board} in boards/ (known: ${boards.map(b => b.id).join(", ")})`)
        process.exit(2)
    }

    let entry = "src/main.ts"
    let composed: Composition | undefined
    if (board) {
        const settings: Record<string, string> = {
            ...readEnvFile(join(PROJECT_ROOT, ".env.defaults")),
            ...readEnvFile(join(PROJECT_ROOT, ".env.local")),
        }
        for (const pair of values.set!) {
            const eq = pair.indexOf("=")
            if (eq <= 0) {
                console.error(`npm run build: --set ${pair}: expected KEY=VALUE`)
                process.exit(2)
            }
            settings[pair.slice(0, eq)] = pair.slice(eq + 1)
        }
        composed = composition(settings)
        if (composed.errors.length) {
            console.error(`npm run build: invalid settings:\n  ${composed.errors.join("\n  ")}`)
            process.exit(1)
        }
        entry = writeComposedEntry(composed, `board-${board.id}`)
        console.log(`composed for ${board.id}: ${describeComposition(composed)}`)
    }

    let size: ReturnType<typeof buildImage>
    try {
        size = buildImage(entry)
    } catch (e) {
        console.error((e as Error).message)
        process.exit(1)
    }
    // The compiler reports invalid board files as diagnostics but still exits 0.
    const boardErrors = size.output.split("\n").filter(l => /board\.json/.test(l))
    if (boardErrors.length) {
        console.error(boardErrors.join("\n"))
        process.exit(1)
    }
    console.log(`firmware image: ${size.imageBytes} bytes (.devicescript/bin/bytecode.devs, from ${entry})`)
    // The code section is the limit that bites first: the VM's loader refuses an image whose
    // function descriptors and byte code end past 64 KB, whatever room the board has for the image.
    console.log(
        `code section: ${size.codeBytes} of ${CODE_SECTION_LIMIT_BYTES} bytes (${percent(size.codeBytes, CODE_SECTION_LIMIT_BYTES)}, ` +
            `${CODE_SECTION_LIMIT_BYTES - size.codeBytes} left); per function: .devicescript/bin/bytecode-sizes.md`
    )
    if (size.codeBytes > CODE_SECTION_LIMIT_BYTES) {
        console.error("the code section is over the VM's limit: the board would refuse this image")
        process.exit(1)
    }
    for (const b of boards) {
        if (board && b.id !== board.id) continue
        const max = MAX_IMAGE_BYTES[b.json.archId]
        console.log(
            `board ${b.id} (${b.json.devName}, ${b.json.archId}): valid; image ${size.imageBytes} of ${max} bytes (${percent(size.imageBytes, max)})`
        )
        if (size.imageBytes > max) {
            console.error(`board ${b.id}: the image does not fit`)
            process.exit(1)
        }
    }
    if (!board || !composed) return
    console.log(`flash it: npx devs bundle --board ${board.id} ${entry}`)
    // What each feature costs: the same image built without it.
    const c = composed
    const without: [string, Composition][] = [
        ...c.kinds
            .filter(() => c.kinds.length > 1)
            .map(k => [`${k} driver`, { ...c, kinds: c.kinds.filter(x => x !== k) }] as [string, Composition]),
        ...(c.discovery ? [["Home Assistant discovery", { ...c, discovery: false }] as [string, Composition]] : []),
        ...(c.history ? [["replay history", { ...c, history: false }] as [string, Composition]] : []),
    ]
    for (const [feature, rest] of without) {
        const other = buildImage(writeComposedEntry(rest, `board-${board.id}-cost`))
        console.log(`  ${feature}: ${size.codeBytes - other.codeBytes} bytes of code`)
    }
    // The cost builds overwrote .devicescript/bin: leave the board's image there.
    if (without.length) buildImage(entry)
}

if (import.meta.url === `file://${process.argv[1]}`) main()
