// The collector's storage against PGlite and a real PostgreSQL: migrations, the CHECK constraints
// of the payload contract, duplicates absorbed by the key, a differing duplicate kept aside,
// merged readings that overlap stored ones, several messages in one transaction, refused input,
// and a failed transaction reported to the caller (who then does not acknowledge the message).
import { after, describe, test } from "node:test"
import assert from "node:assert/strict"
import type { Database } from "../../collector/db"
import { listMigrations, migrate } from "../../collector/migrate"
import { Store } from "../../collector/store"
import { KEPT_PAYLOAD_BYTES } from "../../collector/payload"
import { energyLabel, statusPayload } from "../../src/reading"
import { sleep } from "../../devs/lib/process"
import { energyRecords, payloads, record, T0_S, variants, waitFor } from "./helpers"

const TOPIC = "meters/n1/main/reading"

async function count(db: Database, sql: string, params: unknown[] = []) {
    return (await db.query<{ n: number }>(`SELECT count(*) AS n FROM ${sql}`, params))[0].n
}

/** A valid row for direct inserts; each test breaks one field. */
const VALID: Record<string, unknown> = {
    node: "n1",
    meter: "main",
    seq: 1,
    first_seq: 1,
    boot: 1,
    time_base: "utc_ms",
    start_time: 1000,
    end_time: 61000,
    delta: 1.5,
    total: 10,
    reported_delta: null,
    min: null,
    mean: null,
    max: null,
    gap: false,
    after_seq: null,
    partial: false,
}

async function insertRow(db: Database, row: Record<string, unknown>) {
    const keys = Object.keys(row)
    await db.query(
        `INSERT INTO readings (${keys.join(", ")}) VALUES (${keys.map((_, i) => `$${i + 1}`).join(", ")})`,
        Object.values(row)
    )
}

for (const v of variants()) {
    describe(`collector storage on ${v.name}`, { skip: v.skip }, () => {
        after(() => v.dispose())

        test("migrations: applied once, in a transaction, the version kept; a newer schema is refused", async () => {
            const db = await v.open()
            try {
                const versions = await db.query("SELECT version, name FROM schema_migrations ORDER BY version")
                const files = listMigrations()
                assert.deepEqual(
                    versions,
                    files.map(m => ({ version: m.version, name: m.name }))
                )
                assert.deepEqual(versions.slice(0, 3), [
                    { version: 1, name: "init" },
                    { version: 2, name: "max_span" },
                    { version: 3, name: "oed_output" },
                ])
                const newest = files.length
                assert.deepEqual(await migrate(db), { from: newest, to: newest }, "nothing to do the second time")
                for (const table of ["readings", "meters", "nodes", "integrity_conflicts", "rejected_messages"])
                    assert.equal(await count(db, table), 0, table)
                await db.query("INSERT INTO schema_migrations (version, name) VALUES ($1, 'future')", [newest + 1])
                await assert.rejects(migrate(db), /newer than this collector/)
            } finally {
                await db.close()
            }
        })

        test("CHECK constraints refuse every break of the payload contract", async () => {
            const db = await v.open()
            try {
                await db.query("INSERT INTO nodes (node) VALUES ('n1')")
                await db.query("INSERT INTO meters (node, meter, quantity, unit) VALUES ('n1', 'main', 'energy', 'Wh')")
                let seq = 100
                const breaks: [string, Record<string, unknown>][] = [
                    ["interval_order", { end_time: 1000 }],
                    ["interval_order", { end_time: null }],
                    ["delta_nonnegative", { delta: -0.001 }],
                    ["total_nonnegative", { total: -1 }],
                    ["seq_positive", { seq: 0, first_seq: 0 }],
                    ["first_seq_range", { first_seq: 1000 }],
                    ["first_seq_range", { first_seq: 0 }],
                    ["boot_nonnegative", { boot: -1 }],
                    ["time_base_known", { time_base: "local" }],
                    ["start_nonnegative", { start_time: -5 }],
                    ["amount_or_level", { delta: null }],
                    ["amount_or_level", { mean: 1, min: 1, max: 1 }],
                    ["level_order", { delta: null, total: null, min: 3, mean: 2, max: 4 }],
                    ["gap_shape", { gap: true, end_time: 61000, after_seq: 1 }],
                    ["gap_shape", { gap: true, end_time: null, delta: null, after_seq: null }],
                    ["after_seq_on_gap", { after_seq: 3 }],
                    ["partial_shape", { partial: true }],
                    ["partial_shape", { reported_delta: 2 }],
                ]
                for (const [constraint, change] of breaks) {
                    const s = ++seq
                    const row = { ...VALID, seq: s, first_seq: s, ...change }
                    await assert.rejects(
                        insertRow(db, row),
                        // seq 0 breaks first_seq_range too: either may be named.
                        (e: any) =>
                            e.code === "23514" &&
                            (e.constraint === constraint ||
                                (constraint === "seq_positive" && e.constraint === "first_seq_range")),
                        `${JSON.stringify(change)} breaks ${constraint}`
                    )
                }
                assert.equal(await count(db, "readings"), 0)
                // What the contract allows goes in: a reading, a level, a gap, a partial merged reading.
                await insertRow(db, VALID)
                await insertRow(db, {
                    ...VALID,
                    seq: 2,
                    first_seq: 2,
                    delta: null,
                    total: null,
                    min: 1,
                    mean: 2,
                    max: 2,
                })
                await insertRow(db, {
                    ...VALID,
                    seq: 3,
                    first_seq: 3,
                    gap: true,
                    end_time: null,
                    delta: null,
                    after_seq: 2,
                })
                await insertRow(db, { ...VALID, seq: 9, first_seq: 4, partial: true, delta: 1, reported_delta: 3 })
                assert.equal(await count(db, "readings"), 4)
                await assert.rejects(insertRow(db, { ...VALID, meter: "nope" }), (e: any) => e.code === "23503")
            } finally {
                await db.close()
            }
        })

        test("duplicates are absorbed by the key; a differing duplicate is kept aside, never stored over the first", async () => {
            const db = await v.open()
            const log: string[] = []
            const store = new Store(db, { log: l => log.push(l) })
            try {
                const records = energyRecords(40)
                const messages = payloads(records, [energyLabel("main")], 1).concat(
                    payloads(records.slice(20), [energyLabel("main")], 12)
                )
                for (const m of messages) await store.store(TOPIC, Buffer.from(m))
                for (const m of messages.slice(0, 10)) await store.store(TOPIC, Buffer.from(m))
                assert.equal(store.stats.stored, 40)
                assert.equal(store.stats.duplicates, 20 + 10)
                assert.equal(await count(db, "readings"), 40)
                const sum = (await db.query("SELECT sum(delta) AS s FROM readings"))[0].s
                const expected = records.reduce((s, r) => s + r.deltaMilliWh, 0) / 1000
                assert.ok(Math.abs(sum - expected) < 1e-6, `${sum} Wh stored, ${expected} Wh published`)

                // Seq 5 again, 1 mWh more: an integrity error.
                const original = JSON.parse(messages[4])
                const changed = {
                    ...original,
                    readings: [{ ...original.readings[0], delta: original.readings[0].delta + 0.001 }],
                }
                await store.store(TOPIC, Buffer.from(JSON.stringify(changed)))
                await store.store(TOPIC, Buffer.from(JSON.stringify(changed)))
                assert.equal(store.stats.conflicts, 2)
                const [row] = await db.query("SELECT delta FROM readings WHERE seq = 5")
                assert.equal(row.delta, original.readings[0].delta, "the first content stays")
                const conflicts = await db.query("SELECT seq, note, stored, received, times FROM integrity_conflicts")
                assert.equal(conflicts.length, 1, "one row per distinct content")
                assert.equal(conflicts[0].seq, 5)
                assert.equal(conflicts[0].times, 2)
                assert.match(conflicts[0].note, /delta/)
                assert.equal(conflicts[0].stored.delta, original.readings[0].delta)
                assert.equal(JSON.parse(conflicts[0].received).delta, changed.readings[0].delta)
                assert.ok(log.some(l => /INTEGRITY n1\/main seq 5/.test(l)))
                // A gap delivered twice, and a replay of a stored reading, are duplicates too.
                const gap = payloads([
                    record({ seq: 41, startS: T0_S + 2400, totalMilli: 5e6, gap: true, firstSeq: 41 }),
                ])[0]
                await store.store(TOPIC, Buffer.from(gap))
                await store.store(TOPIC, Buffer.from(gap))
                const replay = JSON.parse(messages[0])
                await store.store("meters/n1/main/replay", Buffer.from(JSON.stringify({ ...replay, replay: true })))
                assert.equal(store.stats.duplicates, 30 + 2)
                assert.equal(store.stats.conflicts, 2)
            } finally {
                await db.close()
            }
        })

        test("a merged reading over readings already stored keeps only the new amount, flagged partial", async () => {
            const db = await v.open()
            const store = new Store(db, { log: () => {} })
            try {
                const records = energyRecords(8, { firstSeq: 11 })
                // Readings 11..14 arrived, then the node merged 11..18 (their removal never reached flash).
                for (const m of payloads(records.slice(0, 4), [energyLabel("main")], 1))
                    await store.store(TOPIC, Buffer.from(m))
                const all = records.reduce((s, r) => s + r.deltaMilliWh, 0)
                const merged = record({
                    seq: 18,
                    firstSeq: 11,
                    startS: records[0].startS,
                    durationS: 8 * 60,
                    deltaMilli: all,
                    totalMilli: records[7].totalMilliWh,
                })
                await store.store(TOPIC, Buffer.from(payloads([merged])[0]))
                const rows = await db.query(
                    "SELECT seq, first_seq, delta, reported_delta, partial FROM readings ORDER BY seq"
                )
                assert.equal(rows.length, 5)
                const last = rows[4]
                assert.deepEqual([last.seq, last.first_seq, last.partial], [18, 11, true])
                const later = records.slice(4).reduce((s, r) => s + r.deltaMilliWh, 0) / 1000
                assert.ok(Math.abs(last.delta - later) < 1e-6, `${last.delta} Wh new, ${later} expected`)
                assert.equal(last.reported_delta, all / 1000)
                const sum = rows.reduce((s, r) => s + r.delta, 0)
                assert.ok(Math.abs(sum - all / 1000) < 1e-6, "each Wh counted once")
                assert.equal(store.stats.partial, 1)
                const [meter] = await db.query("SELECT max_span_ms FROM meters WHERE node = 'n1'")
                assert.equal(meter.max_span_ms, 8 * 60_000, "the longest interval, for range queries")
                // The same merged reading again: a duplicate (compared with what the message said).
                await store.store(TOPIC, Buffer.from(payloads([merged])[0]))
                assert.equal(store.stats.duplicates, 1)
                assert.equal(store.stats.conflicts, 0)
                // History told coarser: 11..14 merged into one, over rows stored one by one.
                const coarse = record({
                    seq: 14,
                    firstSeq: 11,
                    startS: records[0].startS,
                    durationS: 4 * 60,
                    deltaMilli: records.slice(0, 4).reduce((s, r) => s + r.deltaMilliWh, 0),
                    totalMilli: records[3].totalMilliWh,
                })
                await store.store("meters/n1/main/replay", Buffer.from(payloads([coarse])[0]))
                assert.equal(store.stats.duplicates, 2)
                assert.equal(store.stats.conflicts, 0)
                assert.equal(await count(db, "readings"), 5)
            } finally {
                await db.close()
            }
        })

        test("a reading that comes after a merged reading covering it is not stored: its energy is counted once", async () => {
            const db = await v.open()
            const store = new Store(db, { log: () => {} })
            try {
                const records = energyRecords(9, { firstSeq: 11 })
                const sumOf = (list: typeof records) => list.reduce((s, r) => s + r.deltaMilliWh, 0)
                const merge = (from: number, to: number) =>
                    record({
                        seq: 11 + to,
                        firstSeq: 11 + from,
                        startS: records[from].startS,
                        durationS: (to - from + 1) * 60,
                        deltaMilli: sumOf(records.slice(from, to + 1)),
                        totalMilli: records[to].totalMilliWh,
                    })
                // The node merged 11..18 and a collector stored it; 12 and the smaller merge 11..15,
                // sent before the merge, come late (another collector's session gives them back),
                // with 19, the reading after.
                await store.store(TOPIC, Buffer.from(payloads([merge(0, 7)])[0]))
                const plain = payloads([records[1], records[8]], [energyLabel("main")], 1)
                await store.storeMany([
                    { topic: TOPIC, payload: Buffer.from(plain[0]) },
                    { topic: TOPIC, payload: Buffer.from(plain[1]) },
                ])
                await store.store(TOPIC, Buffer.from(payloads([merge(0, 4)])[0]))
                const rows = await db.query("SELECT seq, first_seq, delta FROM readings ORDER BY seq")
                assert.deepEqual(
                    rows.map(r => [r.first_seq, r.seq]),
                    [
                        [11, 18],
                        [19, 19],
                    ]
                )
                const sum = rows.reduce((s, r) => s + r.delta, 0)
                assert.ok(
                    Math.abs(sum - sumOf(records) / 1000) < 1e-6,
                    `${sum} Wh stored, ${sumOf(records) / 1000} taken`
                )
                assert.deepEqual(
                    { stored: store.stats.stored, covered: store.stats.covered, conflicts: store.stats.conflicts },
                    { stored: 2, covered: 2, conflicts: 0 }
                )
            } finally {
                await db.close()
            }
        })

        test("several messages in one transaction: as one by one, and meter_counts agrees with the readings", async () => {
            const db = await v.open()
            const store = new Store(db, { log: () => {} })
            try {
                const records = energyRecords(8, { firstSeq: 11 })
                const singles = payloads(records.slice(0, 4), [energyLabel("main")], 1)
                const merged = record({
                    seq: 18,
                    firstSeq: 11,
                    startS: records[0].startS,
                    durationS: 8 * 60,
                    deltaMilli: records.reduce((s, r) => s + r.deltaMilliWh, 0),
                    totalMilli: records[7].totalMilliWh,
                })
                const other = payloads(energyRecords(3, { seed: 9 }), [energyLabel("main")], 12)[0]
                const message = (topic: string, text: string) => ({ topic, payload: Buffer.from(text) })
                // Plain readings, one of them twice, another meter's backlog, then a merged
                // reading over the plain ones: it must see them, stored earlier in the same transaction.
                await store.storeMany([
                    ...singles.map(m => message(TOPIC, m)),
                    message(TOPIC, singles[1]),
                    message("meters/n2/main/reading", other),
                    message(TOPIC, payloads([merged])[0]),
                ])
                assert.deepEqual(
                    { stored: store.stats.stored, duplicates: store.stats.duplicates, partial: store.stats.partial },
                    { stored: 4 + 3 + 1, duplicates: 1, partial: 1 }
                )
                const [last] = await db.query("SELECT delta, partial FROM readings WHERE node = 'n1' AND seq = 18")
                const later = records.slice(4).reduce((s, r) => s + r.deltaMilliWh, 0) / 1000
                assert.ok(
                    last.partial && Math.abs(last.delta - later) < 1e-6,
                    `${last.delta} Wh new, ${later} expected`
                )
                // A refusal in a batch: rolled back, then each message alone; only the bad one refused.
                const bad = JSON.stringify({
                    meter: "main",
                    quantity: "energy",
                    unit: "Wh",
                    time: "utc_ms",
                    readings: [{ seq: 30, boot: 1, start: 5000, end: 4000, delta: 1, total: 1 }],
                })
                const more = payloads(energyRecords(2, { firstSeq: 40, seed: 4 }), [energyLabel("main")], 1)
                await store.storeMany([message(TOPIC, more[0]), message(TOPIC, bad), message(TOPIC, more[1])])
                assert.equal(store.stats.rejected["contract:interval_order"], 1)
                assert.deepEqual(
                    (await db.query("SELECT seq FROM readings WHERE node = 'n1' AND seq >= 30 ORDER BY seq")).map(
                        r => r.seq
                    ),
                    [40, 41]
                )
                const counts = await db.query(
                    "SELECT node, meter, readings, gaps, first_seq, last_seq, seqs_held FROM meter_counts ORDER BY node"
                )
                const actual = await db.query(
                    `SELECT node, meter, count(*) FILTER (WHERE NOT gap) AS readings, count(*) FILTER (WHERE gap) AS gaps,
                            min(first_seq) AS first_seq, max(seq) AS last_seq, sum(seq - first_seq + 1)::bigint AS seqs_held
                     FROM readings GROUP BY node, meter ORDER BY node`
                )
                assert.deepEqual(counts, actual)
            } finally {
                await db.close()
            }
        })

        test(
            "collectors sharing a group make new meters in one order: two transactions of the same new meters, in opposite orders, both commit at once",
            { skip: v.server ? false : "one process on PGlite" },
            async () => {
                const db = await v.open()
                // Two stores are two collectors: each its own connection from the pool, its own cache of meters.
                const stores = [new Store(db, { log: () => {} }), new Store(db, { log: () => {} })]
                try {
                    const nodes = Array.from({ length: 60 }, (_, i) => `race-${i}`)
                    const messages = (seq: number) =>
                        nodes.map(n => ({
                            topic: `meters/${n}/main/reading`,
                            payload: Buffer.from(
                                payloads(energyRecords(1, { firstSeq: seq }), [energyLabel("main")])[0]
                            ),
                        }))
                    const t = performance.now()
                    await Promise.all([stores[0].storeMany(messages(1)), stores[1].storeMany(messages(2).reverse())])
                    const ms = performance.now() - t
                    // A deadlock is found after PostgreSQL's deadlock_timeout (1 s), and one transaction fails.
                    assert.deepEqual(
                        stores.map(s => [s.stats.stored, s.stats.failures]),
                        [
                            [60, 0],
                            [60, 0],
                        ]
                    )
                    assert.ok(ms < 900, `both committed in ${ms.toFixed(0)} ms: a lock wait that long is a deadlock`)
                    assert.equal(await count(db, "readings"), 120)
                    assert.equal(await count(db, "meters"), 60)
                } finally {
                    await db.close()
                }
            }
        )

        test("bad input is refused, counted by reason, kept in rejected_messages, never in readings", async () => {
            const db = await v.open()
            const store = new Store(db, { log: () => {} })
            try {
                const head = { meter: "main", quantity: "energy", unit: "Wh", time: "utc_ms" }
                const good = { seq: 1, boot: 1, start: 1000, end: 61000, delta: 1.5, total: 10 }
                const inputs: [string, string | Buffer, string][] = [
                    [TOPIC, "{not json", "not_json"],
                    [TOPIC, Buffer.alloc(70_000, 0x20), "too_large"],
                    [TOPIC, "[".repeat(5000) + "]".repeat(5000), "too_deep"],
                    ["meters/n1/cmd/reading", JSON.stringify({ ...head, readings: [good] }), "bad_topic"],
                    [TOPIC, JSON.stringify({ ...head, meter: "x", readings: [good] }), "meter_mismatch"],
                    [TOPIC, JSON.stringify({ ...head, time: 5, readings: [good] }), "bad_header"],
                    [TOPIC, JSON.stringify({ ...head, readings: [{ ...good, seq: "7" }] }), "bad_element"],
                    [TOPIC, JSON.stringify({ ...head, readings: [{ ...good, end: 500 }] }), "contract:interval_order"],
                    [
                        TOPIC,
                        JSON.stringify({ ...head, readings: [{ ...good, delta: -2 }] }),
                        "contract:delta_nonnegative",
                    ],
                    [TOPIC, JSON.stringify({ ...head, readings: [{ ...good, seq: -3 }] }), "contract:first_seq_range"],
                    [
                        TOPIC,
                        JSON.stringify({ ...head, readings: [{ ...good, first_seq: 9 }] }),
                        "contract:first_seq_range",
                    ],
                    ["meters/n1/status", "[]", "bad_status"],
                    ["meters/n1/status", '{"state":"online","x":"\\u0000"}', "refused:22P05"],
                ]
                for (const [topic, payload, _] of inputs)
                    await store.store(topic, typeof payload === "string" ? Buffer.from(payload) : payload)
                const expected: Record<string, number> = {}
                for (const [, , r] of inputs) expected[r] = (expected[r] ?? 0) + 1
                assert.deepEqual(store.stats.rejected, expected)
                assert.equal(await count(db, "readings"), 0)
                const rows = await db.query(
                    "SELECT topic, reason, payload, payload_bytes FROM rejected_messages ORDER BY id"
                )
                assert.deepEqual(
                    rows.map(r => r.reason),
                    inputs.map(i => i[2])
                )
                const large = rows.find(r => r.reason === "too_large")
                assert.equal(large.payload_bytes, 70_000)
                assert.ok(large.payload.length <= KEPT_PAYLOAD_BYTES, "the payload kept is truncated")
                assert.equal(rows.find(r => r.reason === "bad_topic").topic, "meters/n1/cmd/reading")
                // A good element beside a bad one is stored; the bad one alone is refused.
                await store.store(
                    TOPIC,
                    Buffer.from(
                        JSON.stringify({
                            ...head,
                            readings: [
                                good,
                                { ...good, seq: 2, start: 61000, end: 61000 },
                                { ...good, seq: 3, start: 61000, end: 121000 },
                            ],
                        })
                    )
                )
                assert.deepEqual(
                    (await db.query("SELECT seq FROM readings ORDER BY seq")).map(r => r.seq),
                    [1, 3]
                )
                assert.equal(store.stats.rejected["contract:interval_order"], 2)
                // A status is kept per node; the same status again changes nothing.
                const status = statusPayload({
                    online: true,
                    boot: 3,
                    uptimeS: 12,
                    queued: 0,
                    dropped: 0,
                    merged: 0,
                    lastError: "",
                })
                await store.store("meters/n1/status", Buffer.from(status), true)
                const [node] = await db.query("SELECT status, status_at, status_retained FROM nodes WHERE node = 'n1'")
                assert.equal(node.status.state, "online")
                assert.equal(node.status.boot, 3)
                assert.equal(node.status_retained, true)
                await store.store("meters/n1/status", Buffer.from(status), true)
                const [again] = await db.query("SELECT status_at FROM nodes WHERE node = 'n1'")
                assert.equal(again.status_at.getTime(), node.status_at.getTime())
            } finally {
                await db.close()
            }
        })

        test("a transaction that fails for the database's sake rejects: the caller must not acknowledge", async () => {
            const db = await v.open()
            const store = new Store(db, { log: () => {} })
            try {
                // Seq 3 fails twice (the sequence is not rolled back with the transaction), then goes in.
                await db.exec(`
                    CREATE SEQUENCE fail_count;
                    CREATE FUNCTION fail_twice() RETURNS trigger LANGUAGE plpgsql AS $$
                    BEGIN
                        IF NEW.seq = 3 AND nextval('fail_count') <= 2 THEN
                            RAISE EXCEPTION 'disk on fire' USING ERRCODE = '58030';
                        END IF;
                        RETURN NEW;
                    END $$;
                    CREATE TRIGGER fail_twice BEFORE INSERT ON readings FOR EACH ROW EXECUTE FUNCTION fail_twice();`)
                const messages = payloads(energyRecords(4), [energyLabel("main")], 2)
                await store.store(TOPIC, Buffer.from(messages[0]))
                await assert.rejects(store.store(TOPIC, Buffer.from(messages[1])), /disk on fire/)
                await assert.rejects(store.store(TOPIC, Buffer.from(messages[1])), /disk on fire/)
                assert.equal(await count(db, "readings"), 2, "nothing of the failed message stayed")
                assert.equal(store.stats.failures, 2)
                assert.equal(store.stats.stored, 2, "counters count committed work only")
                await store.store(TOPIC, Buffer.from(messages[1]))
                assert.equal(await count(db, "readings"), 4)
                assert.deepEqual(store.stats.rejected, {})
            } finally {
                await db.close()
            }
        })

        // PGlite runs in the process: no connection to lose.
        if (v.server)
            test("a connection the server ends inside a transaction: the transaction rejects, the process goes on, the next one commits", async () => {
                const db = await v.open()
                const store = new Store(db, { log: () => {} })
                try {
                    const messages = payloads(energyRecords(4), [energyLabel("main")], 2)
                    await assert.rejects(
                        db.transaction(async tx => {
                            const [{ pid }] = await tx.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")
                            // Ended between two statements: the server's notice reaches an idle client.
                            await db.query("SELECT pg_terminate_backend($1)", [pid])
                            await waitFor(
                                "the backend gone",
                                async () => (await count(db, "pg_stat_activity WHERE pid = $1", [pid])) === 0,
                                2000,
                                20
                            )
                            // The client is not ours to watch: a moment for the server's notice to reach it while idle.
                            await sleep(50)
                            await tx.query("SELECT 1")
                        }),
                        /terminat|not queryable|connection/i
                    )
                    // The dead connection was not handed back: every later transaction gets a live one.
                    for (const m of messages) await store.store(TOPIC, Buffer.from(m))
                    assert.equal(await count(db, "readings"), 4)
                } finally {
                    await db.close()
                }
            })
    })
}
