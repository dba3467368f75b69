// `npm run build [-- --board ID]`: compiles the firmware (src/main.ts), which also makes the
// DeviceScript compiler validate every board file in boards/, and reports the image size against
// each board's limit. The bytecode is board-independent: a board file only tells the runtime,
// at flash time, which pins and services exist.
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { parseArgs } from "node:util"
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
const CODE_SECTION_LIMIT_BYTES = 65536

const { values } = parseArgs({ options: { board: { type: "string" } }, strict: true })

const boardDir = join(PROJECT_ROOT, "boards")
const boards = readdirSync(boardDir)
    .filter(f => f.endsWith(".board.json"))
    .map(f => ({ id: f.replace(".board.json", ""), json: JSON.parse(readFileSync(join(boardDir, f), "utf-8")) }))
if (values.board && !boards.some(b => b.id === values.board)) {
    console.error(`npm run build: no board ${values.board} in boards/ (known: ${boards.map(b => b.id).join(", ")})`)
    process.exit(2)
}

let output: string
try {
    output = devsSync(["build", "src/main.ts", "--stats"])
} catch (e) {
    console.error((e as Error).message)
    process.exit(1)
}
// The compiler reports invalid board files as diagnostics but still exits 0.
const boardErrors = output.split("\n").filter(l => /board\.json/.test(l))
if (boardErrors.length) {
    console.error(boardErrors.join("\n"))
    process.exit(1)
}
const sizes = readFileSync(join(PROJECT_ROOT, ".devicescript", "bin", "bytecode-sizes.md"), "utf-8")
const imageBytes = Number(sizes.match(/^(\d+) \| TOTAL/m)?.[1] ?? NaN)
// The loader counts the code section from the end of the image header.
const codeBytes =
    Number(sizes.match(/^(\d+) \| Function TOTAL/m)?.[1] ?? NaN) +
    Number(sizes.match(/^ *(\d+) \| header/m)?.[1] ?? NaN)
console.log(`firmware image: ${imageBytes} bytes (.devicescript/bin/bytecode.devs)`)
// The code section is the limit that bites first: the VM's loader refuses an image whose function
// descriptors and byte code end past 64 KB, whatever room the board has for the image.
console.log(
    `code section: ${codeBytes} of ${CODE_SECTION_LIMIT_BYTES} bytes (${((100 * codeBytes) / CODE_SECTION_LIMIT_BYTES).toFixed(1)} %, ` +
        `${CODE_SECTION_LIMIT_BYTES - codeBytes} left); per function: .devicescript/bin/bytecode-sizes.md`
)
if (codeBytes > CODE_SECTION_LIMIT_BYTES) {
    console.error("the code section is over the VM's limit: the board would refuse this image")
    process.exit(1)
}
for (const b of boards) {
    if (values.board && b.id !== values.board) continue
    const max = MAX_IMAGE_BYTES[b.json.archId]
    console.log(
        `board ${b.id} (${b.json.devName}, ${b.json.archId}): valid; image ${imageBytes} of ${max} bytes (${((100 * imageBytes) / max).toFixed(1)} %)`
    )
    if (imageBytes > max) {
        console.error(`board ${b.id}: the image does not fit`)
        process.exit(1)
    }
}
