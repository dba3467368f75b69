// What a benchmark or fault run prints, kept as well, so that the run can write its own figures
// into the README (`--readme`): the results there are the output of the last run, not a copy.
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { PROJECT_ROOT } from "./simulator"

const printed: string[] = []

/** console.log, and kept for writeReadmeSection. */
export function print(text = "") {
    console.log(text)
    printed.push(...text.split("\n"))
}

/**
 * Replaces what the README holds between `<!-- name:begin -->` and `<!-- name:end -->` with
 * everything printed so far, under the command that printed it and the date.
 */
export function writeReadmeSection(name: string, command: string) {
    const path = join(PROJECT_ROOT, "README.md")
    const readme = readFileSync(path, "utf-8")
    const begin = `<!-- ${name}:begin -->`
    const end = `<!-- ${name}:end -->`
    const from = readme.indexOf(begin)
    const to = readme.indexOf(end)
    if (from < 0 || to < from) throw new Error(`README.md has no ${begin} ... ${end} block`)
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
    writeFileSync(path, readme.slice(0, from) + body + readme.slice(to))
}

/** The command line of this run as a reader would type it, without --readme. */
export function npmCommand(script: string) {
    const args = process.argv.slice(2).filter(a => a !== "--readme")
    return ["npm run", script, ...(args.length ? ["--", ...args] : [])].join(" ")
}
