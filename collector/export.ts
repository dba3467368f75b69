// `npm run collect -- export --out FILE`: the database as files, page by page.
//   FILE                          every reading and gap of every node, one row each (COMBINED_HEADER)
//   FILE-stem.<node>.<meter>.oed.csv   one meter's UTC readings as Open Energy Dashboard's CSV
//                                 readings upload takes them (reading, start and end timestamps)
import { createWriteStream, mkdirSync, type WriteStream } from "node:fs"
import { once } from "node:events"
import { basename, dirname, join } from "node:path"
import type { Database } from "./db"
import { COMBINED_HEADER, csvRow, OED_HEADER, oedRow } from "./format"
import { allReadings } from "./query"

/** The Open Energy Dashboard file of `node`/`meter` beside the combined file `out`. */
export function oedPath(out: string, node: string, meter: string) {
    const stem = basename(out).replace(/\.csv$/, "")
    return join(dirname(out), `${stem}.${node}.${meter}.oed.csv`)
}

async function write(stream: WriteStream, text: string) {
    if (text && !stream.write(text)) await once(stream, "drain")
}

async function close(stream: WriteStream) {
    await new Promise<void>((resolve, reject) => stream.end((err?: Error | null) => (err ? reject(err) : resolve())))
}

/** Writes the files; returns the rows written and the Open Energy Dashboard files. */
export async function exportCsv(db: Database, out: string) {
    mkdirSync(dirname(out), { recursive: true })
    const combined = createWriteStream(out)
    await write(combined, COMBINED_HEADER + "\n")
    let rows = 0
    const oedFiles: string[] = []
    let oed: { key: string; stream: WriteStream } | undefined
    for await (const page of allReadings(db)) {
        await write(combined, page.map(csvRow).join("\n") + "\n")
        rows += page.length
        let text = ""
        for (const r of page) {
            const line = oedRow(r)
            if (line === null) continue
            const key = `${r.node}/${r.meter}`
            if (oed?.key !== key) {
                await write(oed?.stream!, text)
                text = ""
                if (oed) await close(oed.stream)
                const path = oedPath(out, r.node, r.meter)
                oedFiles.push(path)
                oed = { key, stream: createWriteStream(path) }
                text = OED_HEADER + "\n"
            }
            text += line + "\n"
        }
        if (oed) await write(oed.stream, text)
    }
    if (oed) await close(oed.stream)
    await close(combined)
    return { rows, oedFiles }
}
