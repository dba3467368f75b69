// tsx runs the Node code (tooling, collector, tests) without checking its types, so a field
// renamed in the firmware's pure core can leave a benchmark or a test quietly computing with
// `undefined`. This runs the TypeScript compiler over that code (tsconfig.json).
import { test } from "node:test"
import assert from "node:assert/strict"
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { dirname, join } from "node:path"

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..")

test("the Node code type-checks (tsc -p .)", () => {
    const tsc = join(ROOT, "node_modules", "typescript", "bin", "tsc")
    const run = spawnSync(process.execPath, [tsc, "-p", join(ROOT, "tsconfig.json")], {
        cwd: ROOT,
        encoding: "utf8",
        timeout: 120_000,
    })
    assert.equal(run.error, undefined, `tsc did not run: ${run.error}`)
    const errors = (run.stdout + run.stderr).split("\n").filter(l => l.includes("error TS"))
    assert.deepEqual(errors, [], `${errors.length} type errors`)
    assert.equal(run.status, 0, run.stdout + run.stderr)
})
