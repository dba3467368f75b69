// The fleet page with the real firmware: the node in the simulator, a real broker, the collector
// (in this process, PGlite in memory, the nodes' time source) and Debian's Chromium. A power cut
// (the simulator SIGKILLed) shows the node offline with the will's reason within 5 s, without a
// reload; the node back shows online within 5 s of connecting; and the gap its next boot reports
// shows in the meter's completeness strip, at the hour of the cut.
import { after, before, describe, test } from "node:test"
import assert from "node:assert/strict"
import type { Browser, Page } from "playwright-core"
import { Broker } from "../../devs/lib/broker"
import { Collector } from "../../collector/collector"
import { MEMORY, openDatabase, type Database } from "../../collector/db"
import { chromiumMissing, launchChromium, waitForState } from "../collector/browser"
import { NodeUnderTest, until } from "./helpers"

declare const performance: any

const NODE = "e2e-page"
const HOUR_MS = 3_600_000

describe("the fleet page with the firmware in the simulator", { skip: chromiumMissing }, () => {
    let broker: Broker
    let database: Database
    let collector: Collector
    let node: NodeUnderTest
    let browser: Browser
    let page: Page
    let base = ""
    let killedAt = 0

    const stored = async (where: string) => {
        const [r] = await database.query(`SELECT count(*)::int AS n FROM readings WHERE node = $1 AND ${where}`, [NODE])
        return r.n as number
    }

    before(async () => {
        broker = await new Broker({ persistence: false }).start()
        node = new NodeUnderTest({ MQTT_URL: broker.url, NODE_ID: NODE, READ_MS: 1000, KEEPALIVE_S: 10, SIM_SEED: 9 })
        await node.build()
        database = await openDatabase({ dataDir: MEMORY })
        collector = await new Collector({
            broker: broker.url,
            database,
            timeEveryS: 2,
            httpPort: 0,
            log: () => {},
        }).start()
        base = `http://127.0.0.1:${collector.httpPort}`
        browser = await launchChromium()
        page = await browser.newPage({ viewport: { width: 1280, height: 720 } })
        await page.goto(base + "/")
        await page.waitForSelector('#live[data-state="live"]')
    })

    after(async () => {
        await browser?.close()
        await node?.dispose()
        await collector?.stop()
        await database?.close()
        await broker?.dispose()
    })

    test("a power cut shows offline (lost) within 5 s, the node back shows online within 5 s of connecting, no reload", async () => {
        let since = Date.now()
        const sim = await node.start(true)
        const firstMs = await waitForState(page, NODE, /^online/, since, 60_000)
        await until(
            "readings in UTC stored",
            async () => (await stored("time_base = 'utc_ms' AND NOT gap")) >= 5,
            60_000
        )
        const loads = await page.evaluate(() => performance.getEntriesByType("navigation").length)

        killedAt = since = Date.now()
        await node.kill()
        assert.ok(sim.exit?.signal === "SIGKILL", "the simulator was killed")
        const offlineMs = await waitForState(page, NODE, "offline (lost)", since, 5000)

        const restartedAt = Date.now()
        const next = await node.start()
        // Back once it is connected: from there the page has 5 s. (The boot before it is the
        // simulator's and the firmware's, not the page's.)
        await next.waitForLine(/^mqtt: connected/, 30_000)
        since = Date.now()
        const onlineMs = await waitForState(page, NODE, /^online/, since, 5000)
        assert.equal(await page.evaluate(() => performance.getEntriesByType("navigation").length), loads, "no reload")
        console.log(
            `# the node's first boot shown online ${firstMs} ms after the simulator started; after the SIGKILL, ` +
                `offline (lost) in ${offlineMs} ms; the next boot online ${onlineMs} ms after it connected ` +
                `(${Date.now() - restartedAt} ms after its simulator started)`
        )
    })

    test("the gap of the power cut shows in the meter's completeness strip at the hour of the cut", async () => {
        try {
            await until("the next boot's gap stored", async () => (await stored("gap")) === 1, 30_000)
        } catch (e) {
            // What the node and the collector said, for a failure that does not reproduce at will.
            const lines = node.simulator!.lines.filter(l => /boot|gap|flash|unreadable|mqtt:/.test(l))
            const rows = await database.query(
                "SELECT boot, seq, gap, time_base FROM readings WHERE node = $1 ORDER BY boot DESC, seq DESC LIMIT 5",
                [NODE]
            )
            console.log(
                `# node console:\n${lines.slice(0, 30).join("\n")}\n# newest rows: ${JSON.stringify(rows)}\n# collector: ${JSON.stringify(collector.stats)}`
            )
            throw e
        }
        const [gap] = await database.query("SELECT meter, start_time FROM readings WHERE node = $1 AND gap", [NODE])
        const gapStart = Number(gap.start_time)
        // The gap starts where the last reading acknowledged ended: a reading (a second) or two
        // before the cut, by the node's clock, which keeps whole seconds of offset (up to half a
        // second off the collector's).
        assert.ok(
            gapStart <= killedAt + 1000 && gapStart > killedAt - 60_000,
            `the gap starts ${killedAt - gapStart} ms before the cut`
        )
        await page.goto(`${base}/#/meter/${NODE}/${gap.meter}`)
        const hour = Math.floor(gapStart / HOUR_MS) * HOUR_MS
        const cell = await page.waitForSelector(`#strip td[data-start="${hour}"][data-state="gap"]`, { timeout: 5000 })
        assert.equal(await cell.textContent(), "G")
        assert.match((await cell.getAttribute("aria-label"))!, /gap/)
        assert.equal(await page.$$eval("#strip td[data-state=gap]", tds => tds.length), 1, "one hour with a gap")
    })
})
