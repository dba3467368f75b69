// The Open Energy Dashboard output against a stand-in for OED's CSV readings upload: a real HTTP
// server that parses the multipart body with the platform's own parser (Response.formData), checks
// the login, gunzips the file and records each upload. On PGlite and on a PostgreSQL server:
// readings posted once with their exact values and times in the documented form; a restart that
// neither posts twice nor skips; OED down (503) then back; one meter refused while the others go
// on; late readings (a backlog below the position, a merged reading partly stored); ingest timed
// with and without the output beside it; and the collector's command line through a real broker.
import { after, before, describe, test } from "node:test"
import assert from "node:assert/strict"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { gunzipSync } from "node:zlib"
import mqtt from "mqtt"
import { Broker } from "../../devs/lib/broker"
import { sleep } from "../../devs/lib/process"
import type { Database } from "../../collector/db"
import { OedOutput, type OedOptions } from "../../collector/oed"
import { Store } from "../../collector/store"
import { energyLabel } from "../../src/reading"
import { CollectorProcess, disposeBroker, energyRecords, payloads, record, T0_S, variants, waitFor } from "./helpers"
import type { ReadingRecord } from "../../src/storage/records"

const USER = "csv-user"
const PASSWORD = "s3cret pass"

/** The fields every upload carries besides the login and the meter, as docs/collector.md lists them. */
const DOCUMENTED_FIELDS = {
    gzip: "yes",
    headerRow: "yes",
    timeSort: "increasing",
    duplications: "1",
    cumulative: "no",
    cumulativeReset: "no",
    endOnly: "no",
    update: "no",
    refreshReadings: "no",
    honorDst: "no",
    relaxedParsing: "no",
}

interface Upload {
    /** Every field and the file, in the order they came. */
    order: string[]
    fields: Record<string, string>
    meterName: string
    /** The CSV's lines after its header. */
    rows: string[]
    header: string
}

/**
 * A stand-in for OED's POST /api/csv/readings: answers as OED's routes/csv.js does (200
 * "<h1>SUCCESS</h1>...", 400 "<h1>FAILURE</h1>..." for a bad login or an unknown meter), or as
 * scripted per meter.
 */
class FakeOed {
    uploads: Upload[] = []
    /** Requests per meter name, answered or not. */
    requests = new Map<string, number>()
    /** Per meter name: statuses to answer (without storing) before accepting. */
    failFirst = new Map<string, number[]>()
    /** Meter names OED does not know. */
    unknown = new Set<string>()
    /** Delay before each answer, ms. */
    delayMs = 0
    private server?: Server

    /** Listens on `port` (0: any free one). */
    async start(port = 0) {
        this.server = createServer((req, res) => {
            const chunks: Buffer[] = []
            req.on("data", c => chunks.push(c))
            req.on("end", async () => {
                try {
                    const [status, body] = await this.answer(req.method!, req.url!, req.headers, Buffer.concat(chunks))
                    if (this.delayMs) await sleep(this.delayMs)
                    res.writeHead(status, { "content-type": "text/html" }).end(body)
                } catch (e) {
                    res.writeHead(500).end(String(e))
                }
            })
        })
        this.server.listen(port, "127.0.0.1")
        await new Promise(resolve => this.server!.once("listening", resolve))
        return this
    }

    get url() {
        return `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`
    }

    private async answer(method: string, url: string, headers: Record<string, any>, body: Buffer) {
        if (method !== "POST" || url !== "/api/csv/readings") return [404, `no ${method} ${url}`] as const
        const form = await new Response(body, { headers: { "content-type": headers["content-type"] } }).formData()
        const fields: Record<string, string> = {}
        const order: string[] = []
        let file: File | undefined
        for (const [name, value] of form.entries()) {
            order.push(name)
            if (typeof value === "string") fields[name] = value
            else file = value
        }
        const meterName = fields.meterName
        this.requests.set(meterName, (this.requests.get(meterName) ?? 0) + 1)
        // OED checks the login in multer's file filter: only the fields before the file count.
        const beforeFile = order.slice(0, order.indexOf("csvfile"))
        const user = beforeFile.includes("username") ? fields.username : fields.email
        if (!file || !beforeFile.includes("password") || user !== USER || fields.password !== PASSWORD)
            return [400, "<h1>FAILURE</h1>Error: Invalid credentials"] as const
        const scripted = this.failFirst.get(meterName)?.shift()
        if (scripted) return [scripted, "<html><body>503 Service Unavailable</body></html>"] as const
        if (this.unknown.has(meterName))
            return [400, `<h1>FAILURE</h1>User Error: Meter with name '${meterName}' not found.`] as const
        const text = gunzipSync(Buffer.from(await file.arrayBuffer())).toString("utf-8")
        const [header, ...rows] = text.split("\n")
        assert.equal(rows.pop(), "", "the file ends with a newline")
        this.uploads.push({ order, fields, meterName, rows, header })
        return [200, "<h1>SUCCESS</h1><h2>It looks like the insert of the readings was a success.</h2>"] as const
    }

    /** Every row OED received for a meter, in the order received. */
    rowsOf(meterName: string) {
        return this.uploads.filter(u => u.meterName === meterName).flatMap(u => u.rows)
    }

    async stop() {
        this.server?.closeAllConnections()
        await new Promise(resolve => this.server?.close(resolve))
    }
}

/** "YYYY-MM-DD HH:mm:ss" of Unix seconds, written out here rather than taken from the collector. */
function utc(s: number) {
    const d = new Date(s * 1000)
    const p = (n: number) => String(n).padStart(2, "0")
    return `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}`
}

/** The OED row a record of energyRecords must become. */
function expectedRow(r: ReadingRecord) {
    return `${r.deltaMilliWh / 1000},${utc(r.startS)},${utc(r.startS + r.durationS)}`
}

async function storeAll(store: Store, node: string, meter: string, records: ReadingRecord[], perMessage = 12) {
    for (const p of payloads(records, [energyLabel(meter)], perMessage))
        await store.store(`meters/${node}/${meter}/reading`, Buffer.from(p))
    assert.deepEqual(store.stats.rejected, {}, "every message stored")
}

function assertOnce(rows: string[], what: string) {
    const seen = new Set<string>()
    for (const r of rows) {
        assert.ok(!seen.has(r), `${what}: ${r} posted twice`)
        seen.add(r)
    }
}

for (const v of variants()) {
    describe(`Open Energy Dashboard output on ${v.name}`, { skip: v.skip }, () => {
        let oed: FakeOed
        let db: Database
        let store: Store
        const logs: string[] = []
        const outputs: OedOutput[] = []

        /** An output of this test's database to this test's OED. */
        const output = (options: Partial<OedOptions> = {}) => {
            const o = new OedOutput(db, {
                url: options.url ?? oed.url,
                username: USER,
                password: PASSWORD,
                retryMs: 20,
                log: line => logs.push(line),
                ...options,
            })
            outputs.push(o)
            return o
        }

        before(async () => {
            // The template database (PGlite) or the server (PostgreSQL) before the first test's clock.
            await (await v.open()).close()
        })

        const begin = async () => {
            oed = await new FakeOed().start()
            db = await v.open()
            store = new Store(db, { log: () => {} })
            logs.length = 0
        }

        const end = async () => {
            for (const o of outputs.splice(0)) await o.stop()
            await oed.stop()
            await db.close()
        }

        after(() => v.dispose())

        test("stored readings are posted once, exact values and UTC times, in the documented form", async () => {
            await begin()
            try {
                const records = energyRecords(30, { seed: 3 })
                await storeAll(store, "n1", "main", records)
                // Not for OED: a gap, readings of a boot without the time, a level meter.
                await storeAll(store, "n1", "main", [
                    record({ seq: 1000, firstSeq: 31, boot: 2, startS: T0_S + 1800, totalMilli: 2e6, gap: true }),
                    record({ seq: 1001, boot: 2, startS: 10, deltaMilli: 500, totalMilli: 2e6 + 500, uptime: true }),
                ])
                await store.store(
                    "meters/n1/temp/reading",
                    Buffer.from(
                        JSON.stringify({
                            meter: "temp",
                            quantity: "temperature",
                            unit: "°C",
                            time: "utc_ms",
                            readings: [
                                {
                                    seq: 1,
                                    boot: 1,
                                    start: T0_S * 1000,
                                    end: T0_S * 1000 + 60_000,
                                    min: 20,
                                    mean: 21,
                                    max: 22,
                                },
                            ],
                        })
                    )
                )
                const o = output({ batchRows: 12 })
                assert.equal(await o.pass(), 3, "30 readings in uploads of up to 12")
                assert.equal(oed.uploads.length, 3)
                for (const u of oed.uploads) {
                    assert.equal(u.meterName, "n1.main")
                    assert.deepEqual(u.fields, {
                        username: USER,
                        password: PASSWORD,
                        meterName: "n1.main",
                        ...DOCUMENTED_FIELDS,
                    })
                    assert.equal(u.order[u.order.length - 1], "csvfile", "the file after every field")
                    assert.equal(u.header, "reading,start_timestamp,end_timestamp")
                }
                const rows = oed.rowsOf("n1.main")
                assert.deepEqual(rows, records.map(expectedRow))
                assert.match(rows[0], /^\d+(\.\d+)?,2025-11-22 09:00:00,2025-11-22 09:01:00$/)
                assert.equal(oed.requests.get("n1.temp"), undefined, "a level is not posted")
                assert.equal(o.stats.posted, 30)
                assert.equal(await o.pass(), 0, "nothing new: nothing posted")
                assert.equal(oed.uploads.length, 3)
                const [position] = await db.query("SELECT * FROM oed_positions WHERE node = 'n1' AND meter = 'main'")
                assert.equal(position.posted_seq, 1001)
                assert.equal(position.readings_posted, 30)
                assert.equal(position.oed_meter, "n1.main")
                assert.equal(position.posted_until, (records[29].startS + 60) * 1000)
            } finally {
                await end()
            }
        })

        test("OED 1.0's form (email, createMeter); a wrong password refused, counted, never logged", async () => {
            await begin()
            try {
                await storeAll(store, "n1", "main", energyRecords(5))
                const wrong = output({ api: "1.0", password: "not it" })
                assert.equal(await wrong.pass(), 0)
                assert.equal(wrong.stats.refused, 1)
                assert.match(wrong.stats.parked["n1/main"], /400 FAILURE Error: Invalid credentials/)
                assert.equal(await wrong.pass(), 0)
                assert.equal(oed.requests.get("n1.main"), 1, "a refused meter is not tried again")
                const [p] = await db.query("SELECT posted_seq, refusal FROM oed_positions")
                assert.equal(p.posted_seq, 0)
                assert.match(p.refusal, /Invalid credentials/)

                const right = output({ api: "1.0" })
                assert.equal(await right.pass(), 1)
                const [u] = oed.uploads
                assert.deepEqual(u.fields, {
                    email: USER,
                    password: PASSWORD,
                    meterName: "n1.main",
                    createMeter: "yes",
                    ...DOCUMENTED_FIELDS,
                })
                assert.equal(u.rows.length, 5)
                const [after] = await db.query("SELECT posted_seq, refusal FROM oed_positions")
                assert.deepEqual(after, { posted_seq: 5, refusal: null })
                assert.ok(logs.length > 0)
                for (const line of logs) assert.ok(!line.includes(PASSWORD) && !line.includes("not it"), line)
            } finally {
                await end()
            }
        })

        test("stopped mid-way and started again: nothing posted twice, nothing skipped", async () => {
            await begin()
            try {
                const records = energyRecords(100, { seed: 5 })
                await storeAll(store, "n1", "main", records.slice(0, 70))
                oed.delayMs = 50
                const first = output({ batchRows: 10 }).start()
                await waitFor("a first upload", async () => oed.uploads.length >= 1)
                await first.stop()
                const postedByFirst = oed.rowsOf("n1.main").length
                assert.ok(postedByFirst >= 10 && postedByFirst < 70, `stopped mid-way: ${postedByFirst} of 70 posted`)
                // Readings arrive while no output runs.
                await storeAll(store, "n1", "main", records.slice(70))
                oed.delayMs = 0
                const second = output({ batchRows: 10 })
                await second.pass()
                const rows = oed.rowsOf("n1.main")
                assertOnce(rows, "after the restart")
                assert.deepEqual(rows, records.map(expectedRow), "every reading, in order")
                assert.equal(second.stats.posted, 100 - postedByFirst)
            } finally {
                await end()
            }
        })

        test("OED down (503) then back: the readings delivered once after the retries", async () => {
            await begin()
            try {
                const records = energyRecords(20, { seed: 9 })
                await storeAll(store, "n1", "main", records)
                oed.failFirst.set("n1.main", [503, 503, 503])
                const o = output({ intervalMs: 60_000 }).start()
                await waitFor("the upload accepted and its position stored", async () => o.stats.uploads === 1)
                assert.equal(oed.requests.get("n1.main"), 4, "three 503s, then accepted")
                assert.equal(o.stats.retries, 3)
                assert.deepEqual(oed.rowsOf("n1.main"), records.map(expectedRow))
                assert.ok(
                    logs.some(l => /n1\/main: OED answered 503/.test(l)),
                    logs.join("\n")
                )
                assert.ok(
                    logs.some(l => /n1\/main: delivered after 3 failed tries/.test(l)),
                    logs.join("\n")
                )
                await sleep(200)
                assert.equal(oed.uploads.length, 1, "not posted again")
            } finally {
                await end()
            }
        })

        test("OED unreachable, then listening again: the readings delivered once", async () => {
            await begin()
            try {
                const records = energyRecords(10, { seed: 21 })
                await storeAll(store, "n1", "main", records)
                const port = Number(new URL(oed.url).port)
                await oed.stop()
                const o = output({ intervalMs: 60_000, url: `http://127.0.0.1:${port}` }).start()
                await waitFor("two failed tries", async () => o.stats.retries >= 2)
                assert.ok(
                    logs.some(l => /n1\/main: OED unreachable \(ECONNREFUSED\)/.test(l)),
                    logs.join("\n")
                )
                oed = await new FakeOed().start(port)
                await waitFor("the upload accepted", async () => o.stats.uploads === 1, 10_000)
                assert.deepEqual(oed.rowsOf("n1.main"), records.map(expectedRow))
            } finally {
                await end()
            }
        })

        test("OED refusing one meter (400): the others delivered, the refusal counted, the meter kept for a restart", async () => {
            await begin()
            try {
                const records = energyRecords(15, { seed: 11 })
                for (const node of ["n1", "n2", "n3"]) await storeAll(store, node, "main", records)
                oed.unknown.add("n2.main")
                const o = output({ intervalMs: 30 }).start()
                await waitFor("n1 and n3 delivered", async () => oed.uploads.length === 2)
                assert.deepEqual(oed.rowsOf("n1.main"), records.map(expectedRow))
                assert.deepEqual(oed.rowsOf("n3.main"), records.map(expectedRow))
                // More readings: n1 and n3 go on, n2 waits.
                const more = energyRecords(20, { seed: 11 }).slice(15)
                for (const node of ["n1", "n2", "n3"]) await storeAll(store, node, "main", more)
                await waitFor("the new readings of n1 and n3", async () => oed.uploads.length === 4)
                await sleep(150)
                assert.equal(oed.requests.get("n2.main"), 1, "refused once, not retried")
                assert.equal(o.stats.refused, 1)
                assert.match(o.stats.parked["n2/main"], /Meter with name 'n2.main' not found/)
                const [p] = await db.query("SELECT posted_seq, refusal FROM oed_positions WHERE node = 'n2'")
                assert.equal(p.posted_seq, 0)
                assert.match(p.refusal, /not found/)
                await o.stop()
                // The meter created in OED, the collector restarted: n2 delivered, the others not again.
                oed.unknown.clear()
                const restarted = output()
                assert.equal(await restarted.pass(), 1)
                for (const node of ["n1", "n2", "n3"]) {
                    const rows = oed.rowsOf(`${node}.main`)
                    assertOnce(rows, node)
                    assert.equal(rows.length, 20, node)
                }
            } finally {
                await end()
            }
        })

        test("late readings: a backlog below the position and a merged reading partly stored, each delivered once", async () => {
            await begin()
            try {
                const records = energyRecords(33, { seed: 13 })
                // seqs 11..20 are still in the node's backlog when 21..30 arrive.
                await storeAll(store, "n1", "main", [...records.slice(0, 10), ...records.slice(20, 30)])
                const o = output({ batchRows: 8 })
                await o.pass()
                assert.deepEqual(
                    oed.rowsOf("n1.main"),
                    [...records.slice(0, 10), ...records.slice(20, 30)].map(expectedRow)
                )
                assert.deepEqual(await db.query("SELECT from_seq, to_seq FROM oed_holes"), [
                    { from_seq: 11, to_seq: 20 },
                ])
                oed.uploads.length = 0
                await storeAll(store, "n1", "main", records.slice(10, 20))
                await o.pass()
                assert.deepEqual(oed.rowsOf("n1.main"), records.slice(10, 20).map(expectedRow), "the backlog, once")
                assert.equal(o.stats.late, 10)
                assert.deepEqual(await db.query("SELECT * FROM oed_holes"), [], "no hole left")

                // 31..33 stored and posted; then the node, after a power cut, sends 31..35 merged into
                // one reading: the collector keeps the energy of 34 and 35 only (partial).
                oed.uploads.length = 0
                await storeAll(store, "n1", "main", records.slice(30, 33))
                await o.pass()
                assert.equal(oed.rowsOf("n1.main").length, 3)
                const d34 = 1234
                const d35 = 2345
                const sum = records.slice(30, 33).reduce((s, r) => s + r.deltaMilliWh, 0) + d34 + d35
                const start31 = records[30].startS
                const merged = record({
                    seq: 35,
                    firstSeq: 31,
                    startS: start31,
                    durationS: 300,
                    deltaMilli: sum,
                    totalMilli: records[32].totalMilliWh + d34 + d35,
                })
                await storeAll(store, "n1", "main", [merged])
                assert.equal(store.stats.partial, 1)
                oed.uploads.length = 0
                await o.pass()
                assert.deepEqual(oed.rowsOf("n1.main"), [
                    `${(d34 + d35) / 1000},${utc(start31 + 180)},${utc(start31 + 300)}`,
                ])
                await o.pass()
                assert.equal(oed.uploads.length, 1, "each once")
            } finally {
                await end()
            }
        })

        test("posting beside ingest: every reading delivered once; ingest timed with and without", async () => {
            await begin()
            try {
                const count = 1500
                const records = energyRecords(count, { seed: 17 })
                const t0 = Date.now()
                await storeAll(store, "alone", "main", records, 1)
                const aloneMs = Date.now() - t0
                // Posting everything stored so far, and what comes, while ingest goes on.
                const o = output({ intervalMs: 1000, batchRows: 100 }).start()
                const t1 = Date.now()
                await storeAll(store, "beside", "main", records, 1)
                const besideMs = Date.now() - t1
                await waitFor("everything posted", async () => o.stats.posted === 2 * count, 60_000)
                console.log(
                    `# ${v.name}: ${count} messages of one reading stored in ${aloneMs} ms alone, ` +
                        `${besideMs} ms beside the OED output (${o.stats.uploads} uploads by then or after)`
                )
                for (const node of ["alone", "beside"]) {
                    const rows = oed.rowsOf(`${node}.main`)
                    assertOnce(rows, node)
                    assert.equal(rows.length, count)
                }
            } finally {
                await end()
            }
        })
    })
}

describe("Open Energy Dashboard output of the collector's command line", () => {
    let broker: Broker
    before(async () => {
        broker = await new Broker({ persistence: false }).start()
    })
    after(() => disposeBroker(broker))

    for (const v of variants()) {
        test(
            `on ${v.name}: --oed posts, the password never printed; restarted, nothing twice`,
            { skip: v.skip },
            async () => {
                const oed = await new FakeOed().start()
                const node = await mqtt.connectAsync(broker.url, { clientId: `oed-node-${process.pid}`, clean: true })
                const saved = process.env.OED_PASS
                process.env.OED_PASS = PASSWORD
                let collector: CollectorProcess | undefined
                let printed = ""
                try {
                    const args = [
                        ...(await v.collectorArgs()),
                        "--broker",
                        broker.url,
                        "--client-id",
                        `oed-${v.name}-${process.pid}`,
                        "--mqtt-version",
                        broker.kind === "mosquitto" ? "5" : "4",
                        "--oed",
                        oed.url,
                        "--oed-user",
                        USER,
                        "--oed-every",
                        "0.2",
                        "--oed-meter",
                        "bldg-{node}-{meter}",
                    ]
                    const records = energyRecords(40, { seed: 19 })
                    const messages = payloads(records, [energyLabel("main")], 4)
                    collector = await new CollectorProcess(args).start(90_000)
                    assert.match(
                        collector.output,
                        /posting to Open Energy Dashboard at http:\/\/127\.0\.0\.1:\d+\/api\/csv\/readings/
                    )
                    for (const m of messages.slice(0, 5))
                        await node.publishAsync("meters/cli/main/reading", m, { qos: 1 })
                    await waitFor("20 readings posted", async () => oed.rowsOf("bldg-cli-main").length === 20)
                    await collector.stop()
                    printed += collector.output
                    assert.match(collector.output, /Open Energy Dashboard: 20 readings posted/)
                    for (const m of messages.slice(5)) await node.publishAsync("meters/cli/main/reading", m, { qos: 1 })
                    collector = await new CollectorProcess(args).start(90_000)
                    await waitFor("40 readings posted", async () => oed.rowsOf("bldg-cli-main").length === 40, 30_000)
                    await sleep(500)
                    await collector.stop()
                    printed += collector.output
                    const rows = oed.rowsOf("bldg-cli-main")
                    assertOnce(rows, "across the restart")
                    assert.deepEqual(rows, records.map(expectedRow))
                    assert.ok(!printed.includes(PASSWORD), "the password is not printed")
                } finally {
                    await collector?.stop()
                    if (saved === undefined) delete process.env.OED_PASS
                    else process.env.OED_PASS = saved
                    await node.endAsync()
                    await oed.stop()
                    await v.dispose()
                }
            }
        )
    }
})
