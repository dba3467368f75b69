// The `format` suite of `npm test` runs `prettier --check` with the project's configuration. This
// proves the check it relies on: with the configuration resolved for a source file of the project,
// prettier's check() refuses badly formatted code and accepts the same code formatted.
import { describe, test } from "node:test"
import assert from "node:assert/strict"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import * as prettier from "prettier"
import { PROJECT_ROOT } from "../../devs/lib/simulator"

const SOURCE = join(PROJECT_ROOT, "devs", "test.ts")

async function projectOptions() {
    const config = await prettier.resolveConfig(SOURCE, { editorconfig: true })
    assert.ok(config, "a prettier configuration applies to the project's sources")
    return { ...config, filepath: SOURCE }
}

const WELL_FORMATTED = `import { sleep } from "./process"

export async function settle(values: number[], waitMs: number) {
    await sleep(waitMs)
    return values.map(value => value * 2).filter(value => value > 0 && value < Number.MAX_SAFE_INTEGER)
}
`

describe("format check (prettier with the project's configuration)", () => {
    test("the configuration is the project's: 4 spaces, no semicolons, 120 columns", async () => {
        const options = await projectOptions()
        assert.equal(options.tabWidth, 4)
        assert.equal(options.semi, false)
        assert.equal(options.printWidth, 120)
        assert.equal(options.arrowParens, "avoid")
    })

    test("well formatted code passes the check, with the project's configuration only", async () => {
        assert.equal(await prettier.check(WELL_FORMATTED, await projectOptions()), true)
        // Prettier's defaults (80 columns, semicolons, 2 spaces) would refuse it.
        assert.equal(await prettier.check(WELL_FORMATTED, { filepath: SOURCE }), false)
    })

    test("badly formatted code fails the check", async () => {
        const options = await projectOptions()
        const bad = {
            semicolons: WELL_FORMATTED.replace("await sleep(waitMs)", "await sleep(waitMs);"),
            "two-space indent": WELL_FORMATTED.replace(/^ {4}/gm, "  "),
            "parentheses around a single arrow parameter": WELL_FORMATTED.replace("map(value =>", "map((value) =>"),
            "single quotes": WELL_FORMATTED.replace('"./process"', "'./process'"),
            // What the default 80 columns would print.
            "a line wrapped below 120 columns": WELL_FORMATTED.replace(
                ".filter(value => value > 0",
                "\n        .filter(value => value > 0"
            ),
            "missing spaces": WELL_FORMATTED.replace(
                "export async function settle(values: number[], waitMs: number) {",
                "export async function settle(values:number[],waitMs:number){"
            ),
        }
        for (const [what, code] of Object.entries(bad)) {
            assert.notEqual(code, WELL_FORMATTED, `${what}: the sample differs`)
            assert.equal(await prettier.check(code, options), false, `${what}: the check fails`)
            // ...and formatting it gives back the well formatted code, which passes.
            assert.equal(await prettier.format(code, options), WELL_FORMATTED, `${what}: formatted back`)
        }
    })

    test("a project source file passes the check, and fails it once badly formatted", async () => {
        const options = await projectOptions()
        const text = readFileSync(SOURCE, "utf-8")
        assert.equal(await prettier.check(text, options), true, "devs/test.ts is formatted")
        assert.equal(await prettier.check(text.replace(/^import \{ /m, "import {"), options), false)
    })
})
