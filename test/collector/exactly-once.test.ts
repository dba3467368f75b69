// Exactly once into the database, through a real broker, on PGlite and on a PostgreSQL server:
// - the collector (a child process) is killed with SIGKILL twice while a node publishes, and
//   restarted with the same persistent session: every reading is stored once, none is missing;
// - a fleet of simulated nodes publishes for a minute while the collector is SIGKILLed twice and
//   the broker restarted once: every reading the fleet took is stored once (crash-run.ts);
// - a flood of bad input keeps the audit tables bounded, each refusal counted;
// - a message whose transaction fails is not acknowledged: the broker delivers it again.
import { after, before, describe, test } from "node:test"
import assert from "node:assert/strict"
import mqtt from "mqtt"
import { Broker } from "../../devs/lib/broker"
import { Collector } from "../../collector/collector"
import { openDatabase, type Database } from "../../collector/db"
import { energyLabel, statusPayload } from "../../src/reading"
import { crashRun } from "./crash-run"
import { CollectorProcess, disposeBroker, energyRecords, payloads, variants, waitFor } from "./helpers"

const NODE = "eo-node"
const READINGS = 1200
const TOPIC = `meters/${NODE}/main/reading`

/** Publishes at QoS 1, up to `window` messages awaiting the broker's PUBACK at once. */
async function publishAll(client: mqtt.MqttClient, topic: string, messages: string[], window = 50) {
    for (let i = 0; i < messages.length; i += window)
        await Promise.all(messages.slice(i, i + window).map(m => client.publishAsync(topic, m, { qos: 1 })))
}

/** Readings stored: through the API of a running collector, else from the database (the PGlite directory is free). */
async function counted(dbArgs: string[], collector?: CollectorProcess): Promise<number | undefined> {
    if (collector) return (await collector.json("/api/nodes")).nodes[0]?.meters[0]?.readings
    const db =
        dbArgs[0] === "--db" ? await openDatabase({ url: dbArgs[1] }) : await openDatabase({ dataDir: dbArgs[1] })
    try {
        return (await db.query("SELECT count(*) AS n FROM readings"))[0].n
    } finally {
        await db.close()
    }
}

let broker: Broker
before(async () => {
    broker = await new Broker({ persistence: false }).start()
    console.log(`# broker: ${broker.describe()}`)
})
after(() => disposeBroker(broker))

/** MQTT 5 where the broker has it (Mosquitto); aedes speaks 3.1.1 only. */
const mqttVersion = () => (broker.kind === "mosquitto" ? 5 : 4)

for (const v of variants()) {
    describe(`exactly once on ${v.name}`, { skip: v.skip }, () => {
        after(() => v.dispose())

        test("killed twice mid-stream with SIGKILL and restarted: every reading stored exactly once", async () => {
            const dbArgs = await v.collectorArgs()
            const args = [
                ...dbArgs,
                "--broker",
                broker.url,
                "--client-id",
                `eo-${v.name}-${process.pid}`,
                "--mqtt-version",
                String(mqttVersion()),
                "--http",
                "0",
            ]
            let collector = await new CollectorProcess(args).start(90_000)
            const node = await mqtt.connectAsync(broker.url, { clientId: `${NODE}-${process.pid}`, clean: true })
            try {
                // The first half one per message (a node online), the rest in backlog messages of up to 12.
                const records = energyRecords(READINGS, { seed: 7 })
                const messages = [
                    ...payloads(records.slice(0, READINGS / 2), [energyLabel("main")], 1),
                    ...payloads(records.slice(READINGS / 2), [energyLabel("main")], 12),
                ]
                const status = statusPayload({
                    online: true,
                    boot: 1,
                    uptimeS: 5,
                    queued: 0,
                    dropped: 0,
                    merged: 0,
                    lastError: "",
                })
                await node.publishAsync(`meters/${NODE}/status`, status, { qos: 1, retain: true })
                // A third, and SIGKILL once the collector has stored 100 of them (it is busy with
                // the rest); a third while it is down (the broker queues them in its session); the
                // last third, and SIGKILL again 150 messages into the backlog.
                const third = Math.ceil(messages.length / 3)
                const kills: number[] = []
                // Polled every 5 ms: the collector stores a third of the stream in about 100 ms.
                const killAfter = async (messagesOfRun: number) => {
                    await waitFor(
                        `${messagesOfRun} messages stored`,
                        async () => {
                            const s = await collector.json("/api/stats")
                            return s.messages >= messagesOfRun
                        },
                        30_000,
                        5
                    )
                    await collector.kill()
                    kills.push((await counted(dbArgs)) ?? 0)
                }
                const first = publishAll(node, TOPIC, messages.slice(0, third))
                await killAfter(100)
                await first
                await publishAll(node, TOPIC, messages.slice(third, 2 * third))
                collector = await new CollectorProcess(args).start(90_000)
                const last = publishAll(node, TOPIC, messages.slice(2 * third))
                await killAfter(150)
                await last
                collector = await new CollectorProcess(args).start(90_000)
                assert.ok(
                    kills.every(k => k < READINGS),
                    `both kills mid-stream: ${kills.join(" and ")} readings stored when killed`
                )
                // The node sends the last 100 messages again (its acknowledgements were lost).
                await publishAll(node, TOPIC, messages.slice(-100))
                await waitFor(
                    `${READINGS} readings stored`,
                    async () => (await counted(dbArgs, collector)) === READINGS,
                    60_000
                )
                const repeated = messages.slice(-100).reduce((n, m) => n + JSON.parse(m).readings.length, 0)
                await waitFor(`the ${repeated} readings repeated absorbed`, async () => {
                    const s = await collector.json("/api/stats")
                    return s.duplicates >= repeated && s
                })
                const stats = await collector.json("/api/stats")
                await collector.stop()
                console.log(`# killed with ${kills.join(" and ")} readings stored; last run: ${JSON.stringify(stats)}`)
                assert.equal(stats.conflicts, 0)
                assert.deepEqual(stats.rejected, {})
                assert.equal(stats.connected, true)

                const db =
                    dbArgs[0] === "--db"
                        ? await openDatabase({ url: dbArgs[1] })
                        : await openDatabase({ dataDir: dbArgs[1] })
                try {
                    const rows = await db.query(
                        "SELECT seq, start_time, end_time, delta, total FROM readings ORDER BY seq"
                    )
                    assert.equal(rows.length, READINGS)
                    for (let i = 0; i < records.length; i++) {
                        const r = records[i]
                        assert.deepEqual(
                            [rows[i].seq, rows[i].start_time, rows[i].end_time, rows[i].delta, rows[i].total],
                            [
                                r.seq,
                                r.startS * 1000,
                                (r.startS + r.durationS) * 1000,
                                r.deltaMilliWh / 1000,
                                r.totalMilliWh / 1000,
                            ],
                            `seq ${r.seq}`
                        )
                    }
                    assert.equal((await db.query("SELECT count(*) AS n FROM integrity_conflicts"))[0].n, 0)
                    assert.equal((await db.query("SELECT count(*) AS n FROM rejected_messages"))[0].n, 0)
                    const [n] = await db.query("SELECT status FROM nodes WHERE node = $1", [NODE])
                    assert.equal(n.status.state, "online")
                    // A PGlite directory is one collector's at a time.
                    if (dbArgs[0] === "--data-dir") {
                        await assert.rejects(openDatabase({ dataDir: dbArgs[1] }), /in use by this process/)
                        const second = new CollectorProcess(args)
                        await assert.rejects(second.start(60_000), /in use by process \d+/)
                    }
                } finally {
                    await db.close()
                }
            } finally {
                await node.endAsync()
                await collector.kill()
            }
        })

        // A shared subscription needs one database server for the group; PGlite is one process's.
        if (v.server)
            test("two collectors sharing the messages (--share), one killed and restarted: every reading once", async t => {
                if (mqttVersion() !== 5) return t.skip(`shared subscriptions are MQTT 5; the broker is ${broker.kind}`)
                const dbArgs = await v.collectorArgs()
                const args = (id: string) => [
                    ...dbArgs,
                    "--broker",
                    broker.url,
                    "--client-id",
                    `${id}-${process.pid}`,
                    "--share",
                    "ingest",
                    "--http",
                    "0",
                ]
                let a = await new CollectorProcess(args("share-a")).start(90_000)
                const b = await new CollectorProcess(args("share-b")).start(90_000)
                const node = await mqtt.connectAsync(broker.url, { clientId: `share-node-${process.pid}`, clean: true })
                try {
                    const records = energyRecords(600, { seed: 11 })
                    const messages = payloads(records, [energyLabel("main")], 1)
                    const half = publishAll(node, "meters/share-node/main/reading", messages.slice(0, 300))
                    await waitFor("collector a at work", async () => (await a.json("/api/stats")).messages >= 50)
                    await a.kill()
                    await half
                    await publishAll(node, "meters/share-node/main/reading", messages.slice(300))
                    a = await new CollectorProcess(args("share-a")).start(90_000)
                    await waitFor(
                        "600 readings",
                        async () =>
                            (await b.json("/api/nodes")).nodes.find((n: any) => n.node === "share-node")?.meters[0]
                                .readings === 600,
                        60_000
                    )
                    const [sa, sb] = [await a.json("/api/stats"), await b.json("/api/stats")]
                    console.log(`# shared: a (restarted) ${sa.messages} messages, b ${sb.messages}`)
                    assert.ok(sb.messages > 0 && sb.messages < 600, `b took ${sb.messages} of 600`)
                    assert.equal(sa.conflicts + sb.conflicts, 0)
                    const db = await openDatabase({ url: dbArgs[1] })
                    try {
                        const rows = await db.query("SELECT seq, delta FROM readings ORDER BY seq")
                        assert.deepEqual(
                            rows.map(r => [r.seq, r.delta]),
                            records.map(r => [r.seq, r.deltaMilliWh / 1000])
                        )
                    } finally {
                        await db.close()
                    }
                } finally {
                    await node.endAsync()
                    await a.stop()
                    await b.stop()
                }
            })

        // PGlite runs inside the collector: no server to lose.
        if (v.server)
            test("the database server down for 2 s mid-stream: nothing lost, nothing twice", async () => {
                const server = await v.server!()
                const dbArgs = await v.collectorArgs()
                const args = [...dbArgs, "--broker", broker.url, "--client-id", `outage-${process.pid}`, "--http", "0"]
                const collector = await new CollectorProcess(args).start(90_000)
                const node = await mqtt.connectAsync(broker.url, {
                    clientId: `outage-node-${process.pid}`,
                    clean: true,
                })
                try {
                    const records = energyRecords(600, { seed: 13 })
                    const messages = payloads(records, [energyLabel("main")], 1)
                    const publishing = publishAll(node, "meters/outage-node/main/reading", messages, 10)
                    await waitFor(
                        "100 messages stored",
                        async () => (await collector.json("/api/stats")).messages >= 100
                    )
                    await server.restart(2000)
                    await publishing
                    await waitFor(
                        "600 readings",
                        async () =>
                            (await collector.json("/api/nodes")).nodes.find((n: any) => n.node === "outage-node")
                                ?.meters[0].readings === 600,
                        60_000
                    )
                    const stats = await collector.json("/api/stats")
                    console.log(`# outage: ${JSON.stringify(stats)}`)
                    assert.ok(stats.failures >= 1, "transactions failed while the server was down")
                    assert.equal(stats.conflicts, 0)
                    assert.match(collector.output, /not stored, not acknowledged/)
                    const db = await openDatabase({ url: dbArgs[1] })
                    try {
                        const rows = await db.query("SELECT seq, delta FROM readings ORDER BY seq")
                        assert.deepEqual(
                            rows.map(r => [r.seq, r.delta]),
                            records.map(r => [r.seq, r.deltaMilliWh / 1000])
                        )
                    } finally {
                        await db.close()
                    }
                } finally {
                    await node.endAsync()
                    await collector.stop()
                }
            })

        test("a fleet for a minute, the collector SIGKILLed twice, the broker restarted: every reading taken stored once", async t => {
            if (broker.kind !== "mosquitto")
                return t.skip("needs Mosquitto: its persistence keeps the session across the restart")
            // CRASH_SEED picks other fault times; the seed is printed either way.
            const seed = Number(process.env.CRASH_SEED ?? 1)
            const r = await crashRun({
                database: v.name as "PGlite" | "PostgreSQL",
                nodes: 5,
                seconds: 60,
                kills: 2,
                seed,
                log: line => console.log(`# ${line}`),
            })
            console.log(`# ${JSON.stringify(r)}`)
            assert.ok(r.taken >= 5 * 60, `the fleet took ${r.taken} readings`)
            assert.deepEqual(
                {
                    stored: r.stored,
                    lost: r.lost,
                    doubled: r.doubled,
                    wrong: r.wrong,
                    energyDiffMilli: r.energyDiffMilli,
                },
                { stored: r.taken, lost: 0, doubled: 0, wrong: 0, energyDiffMilli: 0 }
            )
        })

        test("a flood of bad input: the audit tables stay bounded, every refusal and conflict counted, ingest goes on", async () => {
            const db: Database = await v.open()
            const collector = await new Collector({
                broker: broker.url,
                database: db,
                clientId: `flood-${v.name}-${process.pid}`,
                protocolVersion: mqttVersion(),
                log: () => {},
            }).start()
            const node = await mqtt.connectAsync(broker.url, { clientId: `flood-node-${process.pid}`, clean: true })
            try {
                const records = energyRecords(20, { seed: 5 })
                await publishAll(node, TOPIC, payloads(records, [energyLabel("main")], 1))
                // 300 of each: not JSON, a wrong header, an interval that ends before it starts;
                // and 1,200 readings delivered again with another content (each a new conflict).
                const head = { meter: "main", quantity: "energy", unit: "Wh", time: "utc_ms" }
                const good = { seq: 1, boot: 1, start: 1000, end: 61000, delta: 1.5, total: 10 }
                const flood: string[] = []
                for (let i = 0; i < 300; i++) {
                    flood.push(`{not json ${i}`)
                    flood.push(JSON.stringify({ ...head, time: i, readings: [good] }))
                    flood.push(JSON.stringify({ ...head, readings: [{ ...good, seq: 1000 + i, end: 500 }] }))
                }
                const conflicting = Array.from({ length: 1200 }, (_, i) =>
                    JSON.stringify({ ...head, readings: [{ ...good, seq: 1 + (i % 20), delta: 100 + i }] })
                )
                await publishAll(node, TOPIC, [...flood, ...conflicting], 100)
                const after = energyRecords(40, { seed: 5 }).slice(20)
                await publishAll(node, TOPIC, payloads(after, [energyLabel("main")], 1))
                await waitFor(
                    "every message settled",
                    async () => collector.stats.messages >= 20 + flood.length + conflicting.length + 20,
                    60_000
                )
                assert.deepEqual(collector.stats.rejected, {
                    not_json: 300,
                    bad_header: 300,
                    "contract:interval_order": 300,
                })
                assert.equal(collector.stats.conflicts, 1200)
                assert.equal(collector.stats.stored, 40, "the readings before and after the flood are stored")
                const kept = await db.query(
                    "SELECT reason, count(*)::int AS n FROM rejected_messages GROUP BY reason ORDER BY reason"
                )
                assert.deepEqual(kept, [
                    { reason: "bad_header", n: 100 },
                    { reason: "contract:interval_order", n: 100 },
                    { reason: "not_json", n: 100 },
                ])
                // The newest are the ones kept.
                const newest = await db.query(
                    "SELECT payload FROM rejected_messages WHERE reason = 'not_json' ORDER BY id DESC LIMIT 1"
                )
                assert.equal(newest[0].payload, "{not json 299")
                assert.equal((await db.query("SELECT count(*)::int AS n FROM integrity_conflicts"))[0].n, 1000)
                const counted = await db.query("SELECT audit, reason, count FROM audit_counts ORDER BY audit, reason")
                assert.deepEqual(counted, [
                    { audit: "conflict", reason: "differs", count: 1200 },
                    { audit: "rejected", reason: "bad_header", count: 300 },
                    { audit: "rejected", reason: "contract:interval_order", count: 300 },
                    { audit: "rejected", reason: "not_json", count: 300 },
                ])
                const rows = await db.query("SELECT seq, delta FROM readings ORDER BY seq")
                assert.deepEqual(
                    rows.map(r => [r.seq, r.delta]),
                    [...records, ...after].map(r => [r.seq, r.deltaMilliWh / 1000])
                )
            } finally {
                await node.endAsync()
                await collector.stop()
                await db.close()
            }
        })

        test("a message whose transaction fails is not acknowledged: the broker delivers it again", async () => {
            const db: Database = await v.open()
            // The transaction storing seq 40 fails twice (the sequence outlives the rollback).
            await db.exec(`
                CREATE SEQUENCE fail_count;
                CREATE FUNCTION fail_twice() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.seq = 40 AND nextval('fail_count') <= 2 THEN
                        RAISE EXCEPTION 'the disk is full' USING ERRCODE = '53100';
                    END IF;
                    RETURN NEW;
                END $$;
                CREATE TRIGGER fail_twice BEFORE INSERT ON readings FOR EACH ROW EXECUTE FUNCTION fail_twice();`)
            const log: string[] = []
            const collector = await new Collector({
                broker: broker.url,
                database: db,
                clientId: `ack-${v.name}-${process.pid}`,
                protocolVersion: mqttVersion(),
                retryMs: 200,
                log: line => log.push(line),
            }).start()
            const node = await mqtt.connectAsync(broker.url, { clientId: `ack-node-${process.pid}`, clean: true })
            try {
                const records = energyRecords(80, { seed: 3 })
                // Published once each: only the broker's redelivery can bring seq 40 back.
                await publishAll(node, TOPIC, payloads(records, [energyLabel("main")], 1), 10)
                await waitFor(
                    "80 readings",
                    async () => (await db.query("SELECT count(*) AS n FROM readings"))[0].n === 80,
                    30_000
                )
                assert.equal(collector.stats.failures, 2, log.join("\n"))
                assert.equal((await db.query("SELECT nextval('fail_count') AS n"))[0].n, 4, "tried three times")
                const [row] = await db.query("SELECT delta FROM readings WHERE seq = 40")
                assert.equal(row.delta, records[39].deltaMilliWh / 1000)
                assert.ok(log.some(l => /not stored, not acknowledged \(the disk is full\)/.test(l)))
                assert.equal(collector.stats.conflicts, 0)
            } finally {
                await node.endAsync()
                await collector.stop()
                await db.close()
            }
        })
    })
}
