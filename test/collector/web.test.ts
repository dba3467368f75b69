// The collector's fleet page in a real Chromium (Debian's `chromium`, driven by playwright-core):
// a node that vanishes shows offline with its will's reason, and online again, without a reload;
// a gap lands in its meter's completeness strip at its hour; the chart's sum over a range is the
// database's; sorting and filtering work from the keyboard; the page asks nothing of any other
// origin; 1,000 nodes render in under a second and a status change shows within 2 s; and the
// screenshots of the README come from this run. Skipped with a message where Chromium is missing.
import { after, before, describe, test } from "node:test"
import assert from "node:assert/strict"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { request } from "node:http"
import mqtt from "mqtt"
import type { Browser, BrowserContext, Page } from "playwright-core"
import { Broker } from "../../devs/lib/broker"
import { Collector } from "../../collector/collector"
import type { Database } from "../../collector/db"
import { Store } from "../../collector/store"
import { completeness } from "../../collector/page"
import { statusPayload, WILL_PAYLOAD, type NodeStatus } from "../../src/reading"
import { chromiumMissing, launchChromium, waitForState } from "./browser"
import { disposeBroker, energyRecords, payloads, record, startFleet, variants, waitFor } from "./helpers"

// What runs inside the page (page.evaluate and friends) sees the browser's globals; this project
// type-checks against Node's only.
declare const document: any, Image: any, performance: any, getComputedStyle: any

const HOUR_MS = 3_600_000
const OPERATOR_TOKEN = "operator-token-for-the-tests"
/** Where the screenshots go: docs/images when asked to write the README's, else a temporary directory. */
const SCREENSHOTS_DIR = process.env.WEB_SCREENSHOTS_DIR ?? mkdtempSync(join(tmpdir(), "meternode-web-"))

const online = (s: Partial<NodeStatus> = {}) =>
    statusPayload({
        online: true,
        boot: 3,
        uptimeS: 600,
        queued: 0,
        dropped: 0,
        merged: 0,
        lastError: "",
        clock: "set",
        ...s,
    })

/** The whole hour, UTC, 6 hours ago: where the test meter's readings start. */
const BASE_MS = (Math.floor(Date.now() / HOUR_MS) - 6) * HOUR_MS
const BASE_S = BASE_MS / 1000

/**
 * web-gap/main: one-minute readings from BASE for 2 h 30 min (seqs 1..150), a power cut, the gap
 * element of boot 2 at BASE + 2 h 30 min (readings after seq 150 may be missing), readings again
 * from BASE + 4 h (seqs 1001..1060), and one merged reading over BASE + 5 h .. + 5 h 30 min.
 */
function gapMeterRecords() {
    const first = energyRecords(150, { startS: BASE_S, seed: 7 })
    const lastTotal = first[first.length - 1].totalMilliWh
    const gap = record({
        seq: 1000,
        firstSeq: 151,
        boot: 2,
        startS: BASE_S + 150 * 60,
        totalMilli: lastTotal,
        gap: true,
    })
    const second = energyRecords(60, { firstSeq: 1001, startS: BASE_S + 4 * 3600, seed: 8 })
    for (const r of second) r.boot = 2
    const merged = record({
        seq: 1090,
        firstSeq: 1061,
        boot: 2,
        startS: BASE_S + 5 * 3600,
        durationS: 1800,
        deltaMilli: 60_000,
        totalMilli: second[second.length - 1].totalMilliWh + 60_000,
    })
    return [...first, gap, ...second, merged]
}

/** The variance of the screenshot's pixels (luminance), computed by the browser from the PNG. */
async function pixelVariance(page: Page, png: Buffer) {
    return page.evaluate(
        async dataUrl => {
            const img = new Image()
            img.src = dataUrl
            await img.decode()
            const canvas = document.createElement("canvas")
            canvas.width = img.width
            canvas.height = img.height
            const ctx = canvas.getContext("2d")!
            ctx.drawImage(img, 0, 0)
            const d = ctx.getImageData(0, 0, img.width, img.height).data
            let sum = 0
            let sq = 0
            const n = d.length / 4
            for (let i = 0; i < d.length; i += 4) {
                const y = 0.2126 * d[i] + 0.7152 * d[i + 1] + 0.0722 * d[i + 2]
                sum += y
                sq += y * y
            }
            return sq / n - (sum / n) ** 2
        },
        `data:image/png;base64,${png.toString("base64")}`
    )
}

describe("the fleet page in Chromium", { skip: chromiumMissing }, () => {
    const pglite = variants()[0]
    let broker: Broker
    let db: Database
    let collector: Collector
    let browser: Browser
    let context: BrowserContext
    let page: Page
    let base = ""
    /** Every request the page made, and those to another origin than the collector. */
    const requests: string[] = []
    const outside: string[] = []
    /** The origins of the collectors the tests start: the only ones the page may ask. */
    const collectors: string[] = []
    const clients: mqtt.MqttClient[] = []
    const collectorLog: string[] = []

    const publisher = async (id: string, will?: string) => {
        const c = await mqtt.connectAsync(broker.url, {
            clientId: id,
            reconnectPeriod: 0,
            will: will
                ? { topic: `meters/${will}/status`, payload: Buffer.from(WILL_PAYLOAD), qos: 1, retain: true }
                : undefined,
        })
        clients.push(c)
        return c
    }

    /** Records every request of the context's pages; only the collectors' and inline data may pass. */
    const watchRequests = (c: BrowserContext) =>
        c.route("**/*", route => {
            const url = route.request().url()
            requests.push(url)
            if (collectors.some(origin => url.startsWith(origin + "/")) || url.startsWith("data:"))
                return route.continue()
            outside.push(url)
            return route.abort()
        })

    before(async () => {
        broker = await new Broker({ persistence: false }).start()
        db = await pglite.open()
        collector = await new Collector({
            broker: broker.url,
            database: db,
            clientId: `web-test-${process.pid}`,
            protocolVersion: broker.kind === "mosquitto" ? 5 : 4,
            httpPort: 0,
            operatorToken: OPERATOR_TOKEN,
            log: line => collectorLog.push(line),
        }).start()
        base = `http://127.0.0.1:${collector.httpPort}`
        collectors.push(base)
        // A small fleet of every state, for the screenshot and the sorting.
        const c = await publisher("web-fleet")
        const fleet: [string, string][] = [
            ["boiler-room", online({ boot: 12, queued: 0 })],
            ["east-wing", online({ boot: 4, queued: 37, merged: 120, lastError: "mqtt: connection refused (5)" })],
            [
                "garage",
                statusPayload({
                    online: false,
                    reason: "shutdown",
                    boot: 2,
                    uptimeS: 0,
                    queued: 0,
                    dropped: 0,
                    merged: 0,
                    lastError: "",
                }),
            ],
            ["kitchen", WILL_PAYLOAD],
            ["roof-pv", online({ boot: 1, clock: "unset", queued: 5 })],
            [
                "west-wing",
                online({ boot: 8, dropped: 14, merged: 2210, lastError: "flash: queue full, readings dropped" }),
            ],
        ]
        for (const [node, payload] of fleet)
            await c.publishAsync(`meters/${node}/status`, payload, { qos: 1, retain: true })
        for (const [node] of fleet.slice(0, 2)) {
            const now = Math.floor(Date.now() / 60_000) * 60 - 600
            for (const p of payloads(energyRecords(10, { startS: now, seed: node.length })))
                await c.publishAsync(`meters/${node}/main/reading`, p, { qos: 1 })
        }
        await c.publishAsync("meters/web-gap/status", online({ boot: 2 }), { qos: 1, retain: true })
        for (const p of payloads(gapMeterRecords())) await c.publishAsync("meters/web-gap/main/reading", p, { qos: 1 })
        await waitFor("the readings stored", async () => {
            const [r] = await db.query("SELECT count(*)::int AS n FROM readings WHERE node = 'web-gap'")
            return r.n === 150 + 1 + 60 + 1
        })

        browser = await launchChromium()
        context = await browser.newContext({ viewport: { width: 1280, height: 720 } })
        await watchRequests(context)
        page = await context.newPage()
        page.on("pageerror", e => console.log(`# page error: ${e.message}`))
        await page.goto(base + "/")
        await page.waitForSelector('#fleet tr[data-node="web-gap"]')
    })

    after(async () => {
        await browser?.close()
        for (const c of clients) c.end(true)
        await collector?.stop()
        await db?.close()
        await pglite.dispose()
        await disposeBroker(broker)
        if (!process.env.WEB_SCREENSHOTS_DIR) rmSync(SCREENSHOTS_DIR, { recursive: true, force: true })
    })

    test("a node that vanishes shows offline with its will's reason within 5 s, and online again, without a reload", async () => {
        const node = await publisher("web-1", "web-1")
        await node.publishAsync("meters/web-1/status", online({ queued: 2 }), { qos: 1, retain: true })
        await waitForState(page, "web-1", "online", Date.now(), 5000)
        const loads = await page.evaluate(() => performance.getEntriesByType("navigation").length)

        // Its socket destroyed without DISCONNECT: the broker publishes the will, retained.
        let t = Date.now()
        node.stream.destroy()
        const offlineMs = await waitForState(page, "web-1", "offline (lost)", t, 5000)

        t = Date.now()
        const back = await publisher("web-1", "web-1")
        await back.publishAsync("meters/web-1/status", online({ boot: 4 }), { qos: 1, retain: true })
        const onlineMs = await waitForState(page, "web-1", "online", t, 5000)
        const boot = await page.textContent('#fleet tr[data-node="web-1"] td:nth-of-type(3)')
        assert.equal(boot, "4", "the new boot shows")
        assert.equal(await page.evaluate(() => performance.getEntriesByType("navigation").length), loads, "no reload")
        console.log(`# offline shown ${offlineMs} ms after the socket closed, online ${onlineMs} ms after the status`)
    })

    test("a gap shows in its meter's completeness strip at its hour, merged and full hours beside it", async () => {
        await page.goto(base + "/#/meter/web-gap/main")
        const cell = (offsetH: number) => `#strip td[data-start="${BASE_MS + offsetH * HOUR_MS}"]`
        await page.waitForSelector(cell(0))
        const state = async (offsetH: number) => {
            const el = (await page.$(cell(offsetH)))!
            return {
                state: await el.getAttribute("data-state"),
                letter: await el.textContent(),
                label: await el.getAttribute("aria-label"),
            }
        }
        const gapHour = await state(2)
        assert.equal(gapHour.state, "gap")
        assert.equal(gapHour.letter, "G")
        assert.match(gapHour.label!, /gap/)
        assert.equal((await state(0)).state, "full")
        assert.match((await state(0)).label!, /full resolution \(60 min full/)
        assert.equal((await state(3)).state, "none", "no reading between the cut and the next boot's readings")
        assert.equal((await state(4)).state, "full")
        assert.equal((await state(5)).state, "merged")
        assert.equal((await state(-1)).state, "none")
        const gaps = await page.$$eval("#strip td[data-state=gap]", tds => tds.length)
        assert.equal(gaps, 1, "one hour with a gap")
    })

    test("the meter chart's sum over a range is the database's sum for that range", async () => {
        // From 30 minutes in to 5 h 10 min: a partial first hour, the gap, the merged reading cut through.
        const from = BASE_MS + 30 * 60_000
        const to = BASE_MS + 5 * HOUR_MS + 10 * 60_000
        await page.goto(`${base}/#/meter/web-gap/main?from=${from}&to=${to}`)
        await page.waitForSelector('#chart-figure[data-state="drawn"]')
        const figure = await page.$eval("#chart-figure", f => ({ ...f.dataset }))
        const [expected] = await db.query(
            `SELECT round(sum(delta) * 1000)::bigint AS milli, count(*)::int AS n FROM readings
             WHERE node = 'web-gap' AND meter = 'main' AND time_base = 'utc_ms' AND NOT gap
               AND start_time < $2 AND end_time > $1`,
            [from, to]
        )
        assert.ok(expected.n > 100, "the range holds readings")
        assert.equal(Number(figure.sumMilli), expected.milli)
        assert.equal(Number(figure.count), expected.n)
        assert.ok(await page.$("#chart canvas"), "uPlot drew")
        const href = await page.getAttribute("#csv", "href")
        const csv = await (await fetch(new URL(href!, base))).text()
        assert.equal(csv.trim().split("\n").length - 1, expected.n, "the OED download holds the range's readings")
    })

    test("sorting and filtering from the keyboard", async () => {
        await page.goto(base + "/#/")
        await page.waitForSelector('#fleet tr[data-node="west-wing"]')
        await page.keyboard.press("/")
        await page.keyboard.type("wing")
        const visible = () => page.$$eval("#fleet tbody tr:not([hidden])", trs => trs.map(tr => tr.dataset.node))
        assert.deepEqual(await visible(), ["east-wing", "west-wing"])
        await page.fill("#filter", "")
        await page.focus('#fleet th[data-key="dropped"] button')
        await page.keyboard.press("Enter")
        assert.equal(await page.getAttribute('#fleet th[data-key="dropped"]', "aria-sort"), "ascending")
        await page.keyboard.press("Enter")
        assert.equal(await page.getAttribute('#fleet th[data-key="dropped"]', "aria-sort"), "descending")
        assert.equal((await visible())[0], "west-wing", "the most dropped first")
        await page.selectOption("#state-filter", "offline")
        assert.deepEqual((await visible()).sort(), ["garage", "kitchen"])
        await page.selectOption("#state-filter", "")
    })

    test("screenshots of the fleet and a meter, not blank", async () => {
        mkdirSync(SCREENSHOTS_DIR, { recursive: true })
        await page.goto(base + "/#/")
        await page.waitForSelector('#fleet tr[data-node="west-wing"]')
        const fleet = await page.screenshot()
        const from = BASE_MS
        const to = BASE_MS + 6 * HOUR_MS
        await page.goto(`${base}/#/meter/web-gap/main?from=${from}&to=${to}`)
        await page.waitForSelector('#chart-figure[data-state="drawn"]')
        await page.waitForSelector("#strip td[data-state=gap]")
        const meter = await page.screenshot({ fullPage: true })
        for (const [name, png] of [
            ["fleet.png", fleet],
            ["meter.png", meter],
        ] as const) {
            const variance = await pixelVariance(page, png)
            assert.ok(variance > 100, `${name}: pixel variance ${variance.toFixed(1)}, a blank page`)
            writeFileSync(join(SCREENSHOTS_DIR, name), png)
        }
    })

    test("commands from the page only with the operator token, each logged", async () => {
        const node = await publisher("web-commands")
        const received: { topic: string; payload: any }[] = []
        node.on("message", (topic, payload) => received.push({ topic, payload: JSON.parse(payload.toString()) }))
        await node.subscribeAsync("meters/web-gap/cmd/#", { qos: 1 })
        await page.goto(base + "/#/meter/web-gap/main")
        await page.waitForSelector("#commands:not([hidden])")
        await page.fill("#token", "not-the-token")
        await page.click('#commands button[data-command="restart"]')
        await page.waitForFunction(() => /refused/.test(document.querySelector("#command-result").textContent))
        assert.match(collectorLog.join("\n"), /command refused from .*: wrong or no operator token/)
        await page.fill("#token", OPERATOR_TOKEN)
        await page.click('#commands button[data-command="time"]')
        await page.waitForFunction(() => /time sent/.test(document.querySelector("#command-result").textContent))
        await waitFor("the command at the node", async () => received.length === 1)
        assert.equal(received[0].topic, "meters/web-gap/cmd/time")
        assert.ok(Math.abs(received[0].payload.utc_ms - Date.now()) < 10_000, "the collector's time")
        assert.match(collectorLog.join("\n"), new RegExp(`command time to web-gap \\(id ${received[0].payload.id}\\)`))
        const bad = await fetch(`${base}/api/command`, {
            method: "POST",
            headers: { authorization: `Bearer ${OPERATOR_TOKEN}` },
            body: JSON.stringify({ node: "web-gap", command: "shutdown" }),
        })
        assert.equal(bad.status, 400, "shutdown is not for the page")
    })

    test("a request under another name (DNS rebinding) gets nothing: 421, no command sent", async () => {
        const ask = (path: string, host: string, method = "GET", body?: string) =>
            new Promise<{ status: number; text: string }>((resolve, reject) => {
                const req = request(
                    {
                        host: "127.0.0.1",
                        port: collector.httpPort,
                        path,
                        method,
                        headers: { host, authorization: `Bearer ${OPERATOR_TOKEN}` },
                    },
                    res => {
                        let text = ""
                        res.on("data", d => (text += d))
                        res.on("end", () => resolve({ status: res.statusCode!, text }))
                    }
                )
                req.on("error", reject)
                req.end(body)
            })
        const port = collector.httpPort
        const before = collectorLog.length
        for (const path of ["/", "/api/fleet", "/api/nodes", "/api/events"]) {
            const r = await ask(path, `rebind.example:${port}`)
            assert.equal(r.status, 421, path)
            assert.match(r.text, /answers to 127\.0\.0\.1, localhost and \[::1\] only/)
            assert.doesNotMatch(r.text, /web-gap/, "no fleet data")
        }
        const post = await ask(
            "/api/command",
            `rebind.example:${port}`,
            "POST",
            JSON.stringify({ node: "web-gap", command: "restart" })
        )
        assert.equal(post.status, 421)
        assert.equal(collectorLog.slice(before).filter(l => /command restart/.test(l)).length, 0, "no command")
        for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`])
            assert.equal((await ask("/api/fleet", host)).status, 200, host)
    })

    test("readable on a phone: a card per node, nothing wider than the screen", async () => {
        const phone = await browser.newContext({
            viewport: { width: 390, height: 844 },
            deviceScaleFactor: 2,
            isMobile: true,
            hasTouch: true,
        })
        await watchRequests(phone)
        const p = await phone.newPage()
        try {
            await p.goto(base + "/#/")
            await p.waitForSelector('#fleet tr[data-node="west-wing"]')
            const layout = await p.evaluate(() => {
                const width = document.documentElement.clientWidth
                const cells = [...document.querySelectorAll("#fleet tbody tr:not([hidden]) > *")].filter(
                    (el: any) => el.getClientRects().length > 0
                )
                return {
                    width,
                    scrollWidth: document.documentElement.scrollWidth,
                    cells: cells.length,
                    outside: cells.filter((el: any) => el.getBoundingClientRect().right > width + 0.5).length,
                    smallestFontPx: Math.min(...cells.map((el: any) => parseFloat(getComputedStyle(el).fontSize))),
                    errorLabel: getComputedStyle(
                        document.querySelector('#fleet tr[data-node="west-wing"] td:nth-of-type(7)'),
                        "::before"
                    ).content,
                }
            })
            assert.ok(layout.cells > 30, `cells shown: ${layout.cells}`)
            assert.equal(layout.scrollWidth, layout.width, "the page does not scroll sideways")
            assert.equal(layout.outside, 0, "every cell within the screen")
            assert.ok(layout.smallestFontPx >= 12, `smallest text ${layout.smallestFontPx} px`)
            assert.equal(layout.errorLabel, '"dropped "', "each number named by its column")
            const fleetPng = await p.screenshot()

            await p.goto(`${base}/#/meter/web-gap/main?from=${BASE_MS}&to=${BASE_MS + 6 * HOUR_MS}`)
            await p.waitForSelector('#chart-figure[data-state="drawn"]')
            await p.waitForSelector("#strip td[data-state=gap]")
            const meter = await p.evaluate(() => ({
                width: document.documentElement.clientWidth,
                scrollWidth: document.documentElement.scrollWidth,
                chartRight: document.querySelector("#chart canvas").getBoundingClientRect().right,
                stripScrolls:
                    document.querySelector("#strip").scrollWidth > document.querySelector("#strip").clientWidth,
            }))
            assert.equal(meter.scrollWidth, meter.width, "the meter page does not scroll sideways")
            assert.ok(meter.chartRight <= meter.width, `the chart ends at ${meter.chartRight} px`)
            assert.ok(meter.stripScrolls, "the 24 hours of the strip scroll within it")
            const variance = await pixelVariance(page, fleetPng)
            assert.ok(variance > 100, `the phone's fleet view: pixel variance ${variance.toFixed(1)}`)
            mkdirSync(SCREENSHOTS_DIR, { recursive: true })
            writeFileSync(join(SCREENSHOTS_DIR, "fleet-phone.png"), fleetPng)
        } finally {
            await phone.close()
        }
    })

    test("the page asks nothing of any other origin", async () => {
        assert.ok(
            requests.some(u => u.endsWith("/vendor/uplot.js")),
            "requests were seen"
        )
        assert.deepEqual(outside, [])
        // The watch itself: a request to elsewhere from a blank page of the same browser context
        // (no Content-Security-Policy there to stop it first) is seen and refused.
        const probe = await context.newPage()
        await probe.evaluate(() => fetch("http://192.0.2.1/probe").catch(() => {}))
        await probe.close()
        assert.deepEqual(outside, ["http://192.0.2.1/probe"])
    })

    test("1,000 nodes of the fleet simulator: the fleet renders in under 1 s, a status change shows within 2 s", async () => {
        const scaleDb = await pglite.open()
        const scale = await new Collector({
            broker: broker.url,
            database: scaleDb,
            prefix: "scale",
            clientId: `web-scale-${process.pid}`,
            protocolVersion: broker.kind === "mosquitto" ? 5 : 4,
            httpPort: 0,
            log: () => {},
        }).start()
        const scaleBase = `http://127.0.0.1:${scale.httpPort}`
        // 1,000 MQTT connections, each with its retained status, its will and 3 readings, held open.
        const fleet = startFleet([
            ...["--broker", broker.url, "--prefix", "scale", "--id", "scale", "--nodes", "1000"],
            ...["--readings", "3", "--rate", "2000", "--verify", scaleBase, "--hold"],
        ])
        try {
            await Promise.race([
                waitFor(
                    "the fleet connected, published and verified",
                    async () => /^holding 1000 nodes/m.test(fleet.output),
                    120_000
                ),
                fleet.exited.then(how => assert.fail(`the fleet simulator exited (${how}): ${fleet.output}`)),
            ])
            console.log(fleet.output.trim().replace(/^/gm, "# "))

            collectors.push(scaleBase)
            const p = await context.newPage()
            const t = Date.now()
            await p.goto(scaleBase + "/")
            await p.waitForFunction(() => document.documentElement.dataset.fleetRenderedMs, null, { polling: 20 })
            const wallMs = Date.now() - t
            const renderedMs = Number(await p.evaluate(() => document.documentElement.dataset.fleetRenderedMs))
            // The first screenful is drawn at once, the other rows in chunks after it.
            await p.waitForFunction(() => document.documentElement.dataset.fleetCompleteMs, null, { polling: 20 })
            const completeMs = Number(await p.evaluate(() => document.documentElement.dataset.fleetCompleteMs))
            assert.equal(await p.$$eval("#fleet tbody tr", trs => trs.length), 1000)
            assert.equal(await p.$eval("#commands", el => el.hidden), true, "read-only without a token")
            const refused = await fetch(`${scaleBase}/api/command`, {
                method: "POST",
                headers: { authorization: `Bearer ${OPERATOR_TOKEN}` },
                body: JSON.stringify({ node: "scale-0001", command: "restart" }),
            })
            assert.equal(refused.status, 403)
            assert.match((await p.textContent("#fleet-counts"))!, /^1000: 1000 online, 0 offline/)
            // The event stream is open before the change.
            await p.waitForSelector('#live[data-state="live"]')

            // Every node loses power at once: the broker publishes 1,000 wills.
            const since = Date.now()
            fleet.child.kill("SIGKILL")
            const changeMs = await waitForState(p, "scale-0500", "offline (lost)", since, 2000)
            await p.waitForFunction(
                () => /^1000: 0 online, 1000 offline/.test(document.querySelector("#fleet-counts").textContent),
                null,
                { timeout: 10_000, polling: 50 }
            )
            const allMs = Date.now() - since
            console.log(
                `# 1,000 nodes: first render ${renderedMs} ms from navigation (${wallMs} ms from goto), every row ${completeMs} ms; ` +
                    `after the fleet was killed, a node shown offline in ${changeMs} ms, all 1,000 in ${allMs} ms`
            )
            assert.ok(renderedMs < 1000, `first render took ${renderedMs} ms`)
            await p.close()
        } finally {
            fleet.child.kill("SIGKILL")
            await fleet.exited
            await scale.stop()
            await scaleDb.close()
        }
    })
})

for (const v of variants()) {
    describe(`completeness in SQL on ${v.name}`, { skip: v.skip }, () => {
        let db: Database
        before(async () => {
            db = await v.open()
        })
        after(async () => {
            await db?.close()
            await v.dispose()
        })

        test("each reading counts in the hours it overlaps; the worst of an hour shows", async () => {
            const store = new Store(db, { log: () => {} })
            // Seq 1: 20 min ending at BASE + 10 min (10 min in each of two hours); seq 2..3: 1 h
            // later, a merged reading of 90 min over three hours; then a gap in the last of them.
            const records = [
                record({ seq: 1, startS: BASE_S - 600, durationS: 1200, deltaMilli: 1000, totalMilli: 1000 }),
                record({
                    seq: 3,
                    firstSeq: 2,
                    startS: BASE_S + 3600 + 1800,
                    durationS: 5400,
                    deltaMilli: 5000,
                    totalMilli: 6000,
                }),
                record({ seq: 10, firstSeq: 4, boot: 2, startS: BASE_S + 3 * 3600 + 60, totalMilli: 6000, gap: true }),
            ]
            for (const p of payloads(records)) await store.store("meters/c/main/reading", Buffer.from(p))
            const c = (await completeness(db, "c", "main", 1))!
            assert.equal(c.hours.length, 24)
            const at = (offsetH: number) => c.hours.find(h => h.start === BASE_MS + offsetH * HOUR_MS)!
            assert.deepEqual(at(-1), {
                start: BASE_MS - HOUR_MS,
                state: "full",
                full_ms: 600_000,
                merged_ms: 0,
                gaps: 0,
            })
            assert.deepEqual(at(0), { start: BASE_MS, state: "full", full_ms: 600_000, merged_ms: 0, gaps: 0 })
            assert.equal(at(1).state, "merged")
            assert.equal(at(1).merged_ms, 1_800_000)
            assert.equal(at(2).merged_ms, HOUR_MS)
            assert.deepEqual(at(3), { start: BASE_MS + 3 * HOUR_MS, state: "gap", full_ms: 0, merged_ms: 0, gaps: 1 })
            assert.equal(at(4).state, "none")
            assert.equal(await completeness(db, "c", "other", 7), undefined, "an unknown meter")
        })
    })
}
