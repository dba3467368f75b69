// What a benchmark or fault run prints, kept as well, so that the run can write its own figures
// into docs/results.md (`--write-results`): the results there are the output of the last run, not
// a copy.
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { PROJECT_ROOT } from "./simulator"

/** The file the runs write their results into. */
export const RESULTS_FILE = join(PROJECT_ROOT, "docs", "results.md")
/** The options that ask a run to write its results (`--readme`: the older name). */
export const WRITE_RESULTS_OPTIONS = ["--write-results", "--readme"]

const printed: string[] = []

/** console.log, and kept for writeResultsSection. */
export function print(text = "") {
    console.log(text)
    printed.push(...text.split("\n"))
}

/**
 * Replaces what docs/results.md holds between `<!-- name:begin -->` and `<!-- name:end -->` with
 * everything printed so far, under the command that printed it and the date.
 */
export function writeResultsSection(name: string, command: string) {
    const text = readFileSync(RESULTS_FILE, "utf-8")
    const begin = `<!-- ${name}:begin -->`
    const end = `<!-- ${name}:end -->`
    const from = text.indexOf(begin)
    const to = text.indexOf(end)
    if (from < 0 || to < from) throw new Error(`docs/results.md has no ${begin} ... ${end} block`)
    const date = new Date().toISOString().slice(0, 10)
    const body = [
        begin,
        `Written by \`${command}\` on ${date}, as it printed:`,
        "",
        "```",
        ...printed.map(l => l.replace(/\s+$/, "")).filter((l, i, all) => l || (i > 0 && all[i - 1])),
        "```",
        "",
    ].join("\n")
    writeFileSync(RESULTS_FILE, text.slice(0, from) + body + text.slice(to))
    console.log(`results written into docs/results.md (${name})`)
}

/** The command line of this run as a reader would type it, without the option that writes results. */
export function npmCommand(script: string) {
    const args = process.argv.slice(2).filter(a => !WRITE_RESULTS_OPTIONS.includes(a))
    return ["npm run", script, ...(args.length ? ["--", ...args] : [])].join(" ")
}
