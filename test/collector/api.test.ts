// The collector's HTTP API and export on PGlite and on a PostgreSQL server: 100,000 readings
// generated straight into the database stream out as JSON, CSV and Open Energy Dashboard's CSV;
// sub-ranges hold exactly the readings that overlap them; bad queries get a 400 with a reason;
// /api/nodes tells each node's status, meters, last reading, age and gaps.
import { after, before, describe, test } from "node:test"
import assert from "node:assert/strict"
import type { AddressInfo } from "node:net"
import type { Server } from "node:http"
import { mkdtempSync, readdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { Database } from "../../collector/db"
import { startHttp } from "../../collector/http"
import { FAR_FUTURE_MS, oedLinesInRange, readingsInRange } from "../../collector/query"
import { Store } from "../../collector/store"
import { exportCsv, oedPath } from "../../collector/export"
import { COMBINED_HEADER, OED_HEADER, oedRow } from "../../collector/format"
import { energyLabel, statusPayload } from "../../src/reading"
import { energyRecords, payloads, readText, record, T0_S, variants } from "./helpers"

const ROWS = 100_000
const T0 = T0_S * 1000
const MIN = 60_000

/** `count` one-minute readings of big/main straight into the database: reading i is seq i, 1.5 Wh. */
async function generate(db: Database, count: number) {
    await db.exec(`
        INSERT INTO nodes (node) VALUES ('big');
        INSERT INTO meters (node, meter, quantity, unit) VALUES ('big', 'main', 'energy', 'Wh');
        INSERT INTO readings (node, meter, seq, first_seq, boot, time_base, start_time, end_time, delta, total)
        SELECT 'big', 'main', g, g, 1, 'utc_ms', ${T0} + (g - 1) * ${MIN}, ${T0} + g * ${MIN}, 1.5, 1000 + g * 1.5
        FROM generate_series(1::bigint, ${count}) AS g;`)
}

async function get(port: number, path: string) {
    const res = await fetch(`http://127.0.0.1:${port}${path}`)
    const reader = res.body!.getReader()
    const decoder = new TextDecoder()
    let text = ""
    let chunks = 0
    for (;;) {
        const { done, value } = await reader.read()
        if (done) break
        chunks++
        text += decoder.decode(value, { stream: true })
    }
    return { status: res.status, headers: res.headers, text, chunks }
}

for (const v of variants()) {
    describe(`collector HTTP API on ${v.name}`, { skip: v.skip }, () => {
        let db: Database
        let server: Server
        let port = 0
        const dir = mkdtempSync(join(tmpdir(), "meternode-api-"))

        before(async () => {
            db = await v.open()
            const t = Date.now()
            await generate(db, ROWS)
            console.log(`# ${v.name}: ${ROWS} readings generated in ${Date.now() - t} ms`)
            // A small node through the collector's own storage: status, a merged reading, a gap,
            // readings of a boot without the time, a level.
            const store = new Store(db, { log: () => {} })
            const status = statusPayload({
                online: true,
                boot: 2,
                uptimeS: 60,
                queued: 0,
                dropped: 0,
                merged: 1,
                lastError: "",
            })
            await store.store("meters/small/status", Buffer.from(status), true)
            const records = [
                ...energyRecords(5, { seed: 2 }),
                record({ seq: 9, firstSeq: 6, startS: T0_S + 300, durationS: 240, deltaMilli: 4000, totalMilli: 2e6 }),
                record({ seq: 20, firstSeq: 20, boot: 2, startS: T0_S + 600, totalMilli: 2e6, gap: true }),
                record({ seq: 21, boot: 2, startS: 30, deltaMilli: 10, totalMilli: 2e6 + 10, uptime: true }),
            ]
            records[6].firstSeq = 10 // the gap: readings after seq 9 may be missing
            for (const p of payloads(records)) await store.store("meters/small/main/reading", Buffer.from(p))
            await store.store(
                "meters/small/temp/reading",
                Buffer.from(
                    JSON.stringify({
                        meter: "temp",
                        quantity: "temperature",
                        unit: "°C",
                        time: "utc_ms",
                        readings: [{ seq: 1, boot: 2, start: T0, end: T0 + MIN, min: 20.5, mean: 21, max: 21.25 }],
                    })
                )
            )
            assert.deepEqual(store.stats.rejected, {})
            server = await startHttp(db, { port: 0, log: () => {} })
            port = (server.address() as AddressInfo).port
        })

        after(async () => {
            server?.closeAllConnections()
            await new Promise(r => server?.close(r))
            await db?.close()
            await v.dispose()
            rmSync(dir, { recursive: true, force: true })
        })

        test(`${ROWS} readings stream out as JSON, CSV and OED, every row once, in order`, async () => {
            let t = Date.now()
            const json = await get(port, "/api/readings?node=big&meter=main&format=json")
            const jsonMs = Date.now() - t
            assert.equal(json.status, 200)
            assert.equal(json.headers.get("transfer-encoding"), "chunked", "streamed, not sent as one body")
            assert.ok(json.chunks > 10, `${json.chunks} chunks`)
            const body = JSON.parse(json.text)
            assert.equal(body.count, ROWS)
            assert.equal(body.readings.length, ROWS)
            body.readings.forEach((r: any, i: number) => assert.equal(r.seq, i + 1))
            assert.deepEqual(body.readings[0], {
                node: "big",
                meter: "main",
                seq: 1,
                boot: 1,
                time: "utc_ms",
                start: T0,
                end: T0 + MIN,
                start_utc: new Date(T0).toISOString(),
                end_utc: new Date(T0 + MIN).toISOString(),
                delta: 1.5,
                total: 1001.5,
            })

            t = Date.now()
            const csv = await get(port, "/api/readings?node=big&format=csv")
            const csvMs = Date.now() - t
            const lines = csv.text.trimEnd().split("\n")
            assert.equal(csv.headers.get("content-type"), "text/csv; charset=utf-8")
            assert.equal(lines[0], COMBINED_HEADER)
            assert.equal(lines.length - 1, ROWS)
            assert.equal(
                lines[1],
                `big,main,1,1,1,utc_ms,${T0},${T0 + MIN},${new Date(T0).toISOString()},${new Date(T0 + MIN).toISOString()},1.5,1001.5,,,,`
            )

            t = Date.now()
            const oed = await get(port, "/api/readings?node=big&meter=main&format=oed")
            const oedMs = Date.now() - t
            const oedLines = oed.text.trimEnd().split("\n")
            assert.equal(oedLines[0], OED_HEADER)
            assert.equal(oedLines.length - 1, ROWS)
            assert.equal(oedLines[1], "1.5,2025-11-22 09:00:00,2025-11-22 09:01:00")
            assert.equal(oedLines[ROWS], "1.5,2026-01-30 19:39:00,2026-01-30 19:40:00")
            assert.match(oed.headers.get("content-disposition")!, /big\.main\.oed\.csv/)
            console.log(`# ${v.name}: ${ROWS} readings as JSON in ${jsonMs} ms, CSV in ${csvMs} ms, OED in ${oedMs} ms`)
        })

        test("a range holds exactly the readings that overlap it, given in ISO times or Unix ms", async () => {
            // From the middle of minute 30 to the end of minute 60: readings 31..60.
            const from = T0 + 30 * MIN + 30_000
            const to = T0 + 60 * MIN
            const iso = await get(
                port,
                `/api/readings?node=big&meter=main&from=${new Date(from).toISOString()}&to=${new Date(to).toISOString()}`
            )
            const ms = await get(port, `/api/readings?node=big&meter=main&from=${from}&to=${to}`)
            const seqs = JSON.parse(iso.text).readings.map((r: any) => r.seq)
            assert.deepEqual(
                seqs,
                Array.from({ length: 30 }, (_, i) => 31 + i)
            )
            assert.deepEqual(JSON.parse(ms.text).readings, JSON.parse(iso.text).readings)
            // Zone-less ISO times are UTC; a date alone is its midnight.
            const plain = await get(port, "/api/readings?node=big&from=2025-11-22T09:00:00&to=2025-11-22 09:03")
            assert.deepEqual(
                JSON.parse(plain.text).readings.map((r: any) => r.seq),
                [1, 2, 3]
            )
            const day = await get(port, "/api/readings?node=big&from=2025-11-23&to=2025-11-24&format=oed&meter=main")
            assert.equal(day.text.trimEnd().split("\n").length - 1, 1440)
            // A range before and after everything: empty, still well-formed.
            const none = await get(port, "/api/readings?from=0&to=1000")
            assert.deepEqual(JSON.parse(none.text).readings, [])
            assert.equal(JSON.parse(none.text).count, 0)
        })

        test("merged readings, gaps, levels: in the range with their flags; OED gets readings only", async () => {
            const all = JSON.parse((await get(port, "/api/readings?node=small")).text).readings
            const main = all.filter((r: any) => r.meter === "main")
            assert.deepEqual(
                main.map((r: any) => r.seq),
                [1, 2, 3, 4, 5, 9, 20],
                "the reading in uptime has no place in a date range"
            )
            assert.equal(main[5].first_seq, 6)
            assert.equal(main[6].gap, true)
            assert.equal(main[6].after_seq, 9)
            const temp = all.filter((r: any) => r.meter === "temp")
            assert.deepEqual([temp[0].min, temp[0].mean, temp[0].max], [20.5, 21, 21.25])
            // A range that starts inside the merged reading (minutes 5..9) holds it.
            const inside = await get(
                port,
                `/api/readings?node=small&meter=main&from=${T0 + 7 * MIN}&to=${T0 + 8 * MIN}`
            )
            assert.deepEqual(
                JSON.parse(inside.text).readings.map((r: any) => r.seq),
                [9]
            )
            const oed = (await get(port, "/api/readings?node=small&meter=main&format=oed")).text.trimEnd().split("\n")
            assert.equal(oed.length - 1, 6, "readings, no gap")
            assert.equal(oed[6], "4,2025-11-22 09:05:00,2025-11-22 09:09:00")
            const level = (await get(port, "/api/readings?node=small&meter=temp&format=oed")).text.trimEnd().split("\n")
            assert.equal(level[1], "21,2025-11-22 09:00:00,2025-11-22 09:01:00", "a level's reading is its mean")
        })

        test("bad queries get a 400 with the reason; other paths 404, other methods 405", async () => {
            const bad: [string, RegExp][] = [
                ["from=yesterday", /from: neither Unix milliseconds nor an ISO 8601 time/],
                ["from=2025-13-45", /from: not a valid time/],
                ["to=-5", /to: not a valid time/],
                ["from=2000&to=1000", /from must be before to/],
                ["from=1000&to=1000", /from must be before to/],
                ["format=xml", /format: one of json, csv, oed/],
                ["node=big&format=oed", /give node and meter/],
                ["nodes=big", /unknown parameter nodes/],
                ["node=big&node=small", /node given twice/],
                ["node=a%2Fb", /node: not a node id/],
                ["meter=" + "m".repeat(40), /meter: not a meter id/],
            ]
            for (const [query, reason] of bad) {
                const r = await get(port, `/api/readings?${query}`)
                assert.equal(r.status, 400, query)
                assert.match(JSON.parse(r.text).error, reason, query)
            }
            assert.equal((await get(port, "/api/nothing")).status, 404)
            const post = await fetch(`http://127.0.0.1:${port}/api/readings`, { method: "POST" })
            assert.equal(post.status, 405)
        })

        test("/api/nodes: each node's last status, meters, last reading and its age, gaps", async () => {
            const { nodes } = JSON.parse((await get(port, "/api/nodes")).text)
            assert.deepEqual(
                nodes.map((n: any) => n.node),
                ["big", "small"]
            )
            const big = nodes[0]
            assert.equal(big.status, null)
            assert.equal(big.meters[0].readings, ROWS)
            assert.equal(big.meters[0].last_reading.seq, ROWS)
            const lastEnd = T0 + ROWS * MIN
            assert.equal(big.meters[0].last_reading.end_utc, new Date(lastEnd).toISOString())
            assert.ok(Math.abs(big.meters[0].age_s - (Date.now() - lastEnd) / 1000) < 60)
            assert.deepEqual(big.meters[0].gaps, { reported: 0, last_reported: [], seq_holes: 0, last_holes: [] })
            const small = nodes[1]
            assert.equal(small.status.state, "online")
            assert.equal(small.status.merged, 1)
            assert.equal(small.status_retained, true)
            assert.deepEqual(
                small.meters.map((m: any) => [m.meter, m.quantity, m.unit]),
                [
                    ["main", "energy", "Wh"],
                    ["temp", "temperature", "°C"],
                ]
            )
            const main = small.meters[0]
            assert.equal(main.readings, 7, "5 + the merged one + the one in uptime")
            assert.equal(main.last_reading.seq, 21)
            assert.equal(main.last_reading.time, "uptime_s")
            assert.ok(main.age_s >= 0 && main.age_s < 60, "a reading in uptime: its age since it was received")
            assert.equal(main.gaps.reported, 1)
            assert.deepEqual(main.gaps.last_reported[0], {
                seq: 20,
                boot: 2,
                after_seq: 9,
                start: T0 + 10 * MIN,
                start_utc: new Date(T0 + 10 * MIN).toISOString(),
                total: 2000,
            })
            assert.equal(main.gaps.seq_holes, 10, "seqs 10..19")
            assert.deepEqual(main.gaps.last_holes, [{ from_seq: 10, to_seq: 19 }])
        })

        test("export: the combined CSV of every row and one OED file per meter", async () => {
            const out = join(dir, "readings.csv")
            const { rows, oedFiles } = await exportCsv(db, out)
            assert.equal(rows, ROWS + 8 + 1)
            const lines = readText(out).trimEnd().split("\n")
            assert.equal(lines[0], COMBINED_HEADER)
            assert.equal(lines.length - 1, rows)
            assert.ok(
                lines.some(l => /^small,main,20,10,2,utc_ms,.*,gap$/.test(l.replace(/,+$/, ""))),
                "the gap row"
            )
            assert.ok(
                lines.some(l => l.startsWith("small,main,21,21,2,uptime_s,30,90,,,0.01,")),
                "the uptime row"
            )
            assert.deepEqual(oedFiles, [
                oedPath(out, "big", "main"),
                oedPath(out, "small", "main"),
                oedPath(out, "small", "temp"),
            ])
            assert.deepEqual(readdirSync(dir).sort(), [
                "readings.big.main.oed.csv",
                "readings.csv",
                "readings.small.main.oed.csv",
                "readings.small.temp.oed.csv",
            ])
            const big = readText(oedPath(out, "big", "main"))
                .trimEnd()
                .split("\n")
            assert.equal(big[0], OED_HEADER)
            assert.equal(big.length - 1, ROWS)
            assert.equal(
                readText(oedPath(out, "small", "main"))
                    .trimEnd()
                    .split("\n").length - 1,
                6
            )
        })

        test("OED text written by the database is oedRow's, byte for byte, odd values and page edges included", async () => {
            // Values the database prints otherwise than JavaScript (1e-05, 1e+15), a mean for a
            // level, times with milliseconds, a gap; pages of 3 rows so that they fall everywhere.
            const values = [1.5, 0.00001, 0, 1e15, 0.1 + 0.2, 123456.789012345, 0.0001, 2 / 3, 7e-7, 42]
            await db.exec(`
                INSERT INTO nodes (node) VALUES ('odd');
                INSERT INTO meters (node, meter, quantity, unit) VALUES ('odd', 'main', 'energy', 'Wh');`)
            for (const [i, delta] of values.entries())
                await db.query(
                    `INSERT INTO readings (node, meter, seq, first_seq, boot, time_base, start_time, end_time, delta, total)
                     VALUES ('odd', 'main', $1, $1, 1, 'utc_ms', $2, $3, $4, 1)`,
                    [i + 1, T0 + i * MIN + 999, T0 + (i + 1) * MIN + 999, delta]
                )
            await db.query(
                `INSERT INTO readings (node, meter, seq, first_seq, boot, time_base, start_time, total, gap, after_seq)
                 VALUES ('odd', 'main', 30, 30, 2, 'utc_ms', $1, 1, true, 19)`,
                [T0 + 5 * MIN]
            )
            const range = { node: "odd", meter: "main", from: 0, to: FAR_FUTURE_MS }
            let expected = ""
            for await (const page of readingsInRange(db, range))
                for (const r of page) {
                    const line = oedRow(r)
                    if (line !== null) expected += line + "\n"
                }
            assert.equal(expected.split("\n").length - 1, values.length, "every reading, no gap")
            assert.match(expected, /^0\.00001,/m)
            for (const pageRows of [3, 4, 100]) {
                let text = ""
                for await (const page of oedLinesInRange(db, range, pageRows)) text += page
                assert.equal(text, expected, `pages of ${pageRows}`)
            }
            const plain = [1.5, 0.1 + 0.2, 123456.789012345, 0.0001, 2 / 3, 42]
            let text = ""
            for await (const page of oedLinesInRange(db, range, 3)) text += page
            assert.deepEqual(
                text
                    .trimEnd()
                    .split("\n")
                    .map(l => Number(l.split(",")[0]))
                    .filter(v => plain.includes(v)),
                plain
            )
        })
    })
}
