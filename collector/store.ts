// Stores one message in one transaction: its readings, its status, or the record of its refusal.
// The caller acknowledges the message only once store() has resolved, that is once the
// transaction has committed: a message is in the database before the broker forgets it.
//
// Deduplication is the key's: (node, meter, seq). A reading delivered again is absorbed (INSERT
// ... ON CONFLICT DO NOTHING, then its content compared with the row stored); one whose content
// differs is an integrity error, kept in integrity_conflicts and never stored over the first.
// A merged reading (first_seq..seq) that covers readings already stored keeps only the amount not
// yet counted, flagged partial.
import { isDataError, isRaceError, type Database, type Queryable } from "./db"
import { keptPayload, parseMessage, type Element, type Parsed, type ReadingBatch, type StatusMessage } from "./payload"
import type { ReadingRow } from "./query"

export interface StoreStats {
    /** Messages stored (acknowledged once committed). */
    messages: number
    /** Readings and gaps stored. */
    stored: number
    /** Readings delivered again with the same content. */
    duplicates: number
    /** Readings that came after a merged reading covering them, not stored: their energy is in it. */
    covered: number
    /** Merged readings stored with only the part not already counted. */
    partial: number
    /** Readings delivered again with another content: see integrity_conflicts. */
    conflicts: number
    statuses: number
    /** Refused messages and elements, by reason. */
    rejected: Record<string, number>
    /** Transactions that failed (the message was not acknowledged, the broker delivers it again). */
    failures: number
    /** Transactions run again at once after losing a race with another collector's (deadlock, serialization). */
    retries: number
}

/** A message as it came from the broker. */
export interface Incoming {
    topic: string
    payload: Buffer
    retained?: boolean
}

/** The counters a message's outcome adds to the store's, at zero. */
const zeroCounts = () => ({ stored: 0, duplicates: 0, covered: 0, partial: 0, conflicts: 0, statuses: 0 })

export function newStats(): StoreStats {
    return { messages: 0, ...zeroCounts(), rejected: {}, failures: 0, retries: 0 }
}

/** What one message did, applied to the counters once its transaction has committed. */
interface Outcome {
    stored: number
    duplicates: number
    covered: number
    partial: number
    conflicts: number
    statuses: number
    rejected: string[]
    /** The meter (node/meter/quantity/unit) this transaction made sure of. */
    meter?: string
}

/** A meter as the store knows it: a change of quantity or unit is another key. */
const meterKey = (b: ReadingBatch) => `${b.node}/${b.meter}/${b.quantity}/${b.unit}`

const newOutcome = (): Outcome => ({ ...zeroCounts(), rejected: [] })

const READING_COLUMNS =
    "node, meter, seq, first_seq, boot, time_base, start_time, end_time, delta, total, reported_delta, min, mean, max, estimated, gap, after_seq, replay, partial"

/** The columns of READING_COLUMNS with their types, for INSERT ... SELECT FROM unnest(arrays). */
const INSERT_COLUMNS = [
    "text",
    "text",
    "bigint",
    "bigint",
    "bigint",
    "text",
    "bigint",
    "bigint",
    "float8",
    "float8",
    "float8",
    "float8",
    "float8",
    "float8",
    "boolean",
    "boolean",
    "bigint",
    "boolean",
    "boolean",
]
/**
 * Rows as arrays, one per column; a row inside a merged reading stored before it (first_seq..seq
 * covering its own) is left out like one whose key is taken: compare() tells the two apart.
 */
const INSERT_SQL = `INSERT INTO readings (${READING_COLUMNS})
    SELECT * FROM unnest(${INSERT_COLUMNS.map((type, i) => `$${i + 1}::${type}[]`).join(", ")}) AS u (${READING_COLUMNS})
    WHERE NOT EXISTS (SELECT 1 FROM readings r WHERE r.node = u.node AND r.meter = u.meter
        AND r.first_seq < r.seq AND r.seq > u.seq AND r.first_seq <= u.first_seq)
    ON CONFLICT (node, meter, seq) DO NOTHING RETURNING node, meter, seq`

/** A stored reading as the duplicate check compares it: the row without its node, meter and flags. */
type StoredRow = Omit<ReadingRow, "node" | "meter" | "quantity" | "unit" | "replay" | "partial">

const round3 = (x: number) => Math.round(x * 1000) / 1000

/** An element on its way in: the amount it adds (less than its delta when partial). */
interface Row {
    e: Element
    delta: number | null
    partial: boolean
    refused?: boolean
}

export interface StoreOptions {
    prefix?: string
    log?: (line: string) => void
    /** Called with each message once its transaction has committed. */
    onStored?: (parsed: Parsed) => void
}

export class Store {
    readonly stats = newStats()
    private readonly prefix: string
    private readonly log: (line: string) => void
    /** Meters known to be in the database with this quantity and unit (filled after commits). */
    private readonly knownMeters = new Set<string>()

    constructor(
        readonly db: Database,
        options: StoreOptions = {}
    ) {
        this.prefix = options.prefix ?? "meters"
        this.log = options.log ?? (line => console.log(line))
        this.onStored = options.onStored
    }

    private readonly onStored?: (parsed: Parsed) => void

    /**
     * Stores one message; resolves once committed (then acknowledge it), rejects when the
     * database failed (then do not: the broker delivers it again). A message the database refuses
     * for its content (a constraint, a value out of range) is recorded as rejected and resolves.
     */
    async store(topic: string, payload: Buffer, retained = false): Promise<Parsed> {
        const parsed = parseMessage(topic, payload, this.prefix, retained)
        const outcome = newOutcome()
        try {
            await this.db.transaction(async tx => {
                if (parsed.kind === "rejected")
                    await this.reject(
                        tx,
                        outcome,
                        topic,
                        parsed.reason,
                        parsed.detail,
                        keptPayload(payload),
                        payload.length
                    )
                else if (parsed.kind === "status") await this.storeStatus(tx, outcome, parsed)
                else {
                    await this.ensureMeters(tx, [parsed])
                    await this.storeBatch(tx, outcome, topic, parsed)
                }
            })
        } catch (e) {
            if (!isDataError(e)) {
                // A lost race is counted by whoever gives up running it again (IngestQueue).
                if (!isRaceError(e)) this.stats.failures++
                throw e
            }
            // The content, not the database: the same message would fail again. Kept as refused.
            const err = e as any
            const reason = err.constraint ? `contract:${err.constraint}` : `refused:${err.code}`
            Object.assign(outcome, zeroCounts(), { rejected: [] })
            await this.db.transaction(tx =>
                this.reject(tx, outcome, topic, reason, String(err.message), keptPayload(payload), payload.length)
            )
            const rejected: Parsed = { kind: "rejected", reason, detail: String(err.message) }
            this.apply(outcome, null)
            this.onStored?.(rejected)
            return rejected
        }
        this.apply(outcome, parsed)
        this.onStored?.(parsed)
        return parsed
    }

    /**
     * Stores several messages in one transaction: one commit, and the readings of every message
     * whose elements are plain (no merged reading, nothing refused) in one INSERT. Resolves once
     * committed, with each message's outcome in order; rejects when the database failed (then
     * acknowledge none of them). When the database refuses something for its content, the
     * transaction is rolled back and each message is stored alone, as store() does, so that the
     * refusal is that message's only.
     */
    async storeMany(messages: Incoming[]): Promise<Parsed[]> {
        if (messages.length === 1)
            return [await this.store(messages[0].topic, messages[0].payload, messages[0].retained)]
        const parsed = messages.map(m => parseMessage(m.topic, m.payload, this.prefix, !!m.retained))
        const outcomes = parsed.map(() => newOutcome())
        try {
            await this.db.transaction(async tx => {
                await this.ensureMeters(
                    tx,
                    parsed.filter((p): p is ReadingBatch => p.kind === "readings")
                )
                let plain: { o: Outcome; b: ReadingBatch; topic: string }[] = []
                // Plain readings wait for one INSERT; anything that reads the readings stored
                // (a merged reading) must see them, so it flushes them first.
                const flush = async () => {
                    if (plain.length) await this.insertPlain(tx, plain)
                    plain = []
                }
                for (let i = 0; i < messages.length; i++) {
                    const p = parsed[i]
                    const o = outcomes[i]
                    const topic = messages[i].topic
                    if (p.kind === "rejected")
                        await this.reject(
                            tx,
                            o,
                            topic,
                            p.reason,
                            p.detail,
                            keptPayload(messages[i].payload),
                            messages[i].payload.length
                        )
                    else if (p.kind === "status") await this.storeStatus(tx, o, p)
                    else if (!p.refused.length && p.elements.every(e => e.gap || e.firstSeq === e.seq)) {
                        o.meter = meterKey(p)
                        plain.push({ o, b: p, topic })
                    } else {
                        await flush()
                        await this.storeBatch(tx, o, topic, p)
                    }
                }
                await flush()
            })
        } catch (e) {
            if (!isDataError(e)) {
                // A lost race is counted by whoever gives up running it again (IngestQueue).
                if (!isRaceError(e)) this.stats.failures++
                throw e
            }
            const out: Parsed[] = []
            for (const m of messages) out.push(await this.store(m.topic, m.payload, m.retained))
            return out
        }
        for (let i = 0; i < parsed.length; i++) {
            this.apply(outcomes[i], parsed[i])
            this.onStored?.(parsed[i])
        }
        return parsed
    }

    /** The readings of several messages in one statement; each counted in its own message's outcome. */
    private async insertPlain(tx: Queryable, list: { o: Outcome; b: ReadingBatch; topic: string }[]) {
        const items = list.flatMap(({ o, b, topic }) =>
            b.elements.map(e => ({ o, b, topic, row: { e, delta: e.delta, partial: false } }))
        )
        const inserted = await this.insertRows(
            tx,
            items.map(x => ({ b: x.b, row: x.row }))
        )
        for (const { o, b, topic, row } of items) {
            const key = `${b.node}/${b.meter}/${row.e.seq}`
            // The same key twice in one statement: the first is the one stored, the next compared with it.
            if (inserted.delete(key)) o.stored++
            else await this.compare(tx, o, topic, b, row.e)
        }
    }

    private apply(o: Outcome, parsed: Parsed | null) {
        const s = this.stats
        s.messages++
        s.stored += o.stored
        s.duplicates += o.duplicates
        s.covered += o.covered
        s.partial += o.partial
        s.conflicts += o.conflicts
        s.statuses += o.statuses
        for (const r of o.rejected) s.rejected[r] = (s.rejected[r] ?? 0) + 1
        if (parsed && o.meter) this.knownMeters.add(o.meter)
    }

    private async reject(
        tx: Queryable,
        o: Outcome,
        topic: string,
        reason: string,
        detail: string,
        payload: string,
        bytes: number
    ) {
        o.rejected.push(reason)
        this.log(`collector: ${topic}: refused (${reason}: ${detail})`)
        await tx.query(
            "INSERT INTO rejected_messages (topic, reason, detail, payload, payload_bytes) VALUES ($1, $2, $3, $4, $5)",
            [keptPayload(topic, 512), reason, keptPayload(detail, 512), payload, bytes]
        )
    }

    private async storeStatus(tx: Queryable, o: Outcome, p: StatusMessage) {
        await tx.query(
            `INSERT INTO nodes (node, status, status_at, status_retained) VALUES ($1, $2::jsonb, now(), $3)
             ON CONFLICT (node) DO UPDATE SET status = EXCLUDED.status, status_at = EXCLUDED.status_at,
                 status_retained = EXCLUDED.status_retained
             WHERE nodes.status IS DISTINCT FROM EXCLUDED.status`,
            [p.node, JSON.stringify(p.status), p.retained]
        )
        o.statuses++
    }

    /**
     * The nodes and meters of these batches with readings, with their quantity and unit, unless
     * known to be there already; in one statement each and in the database's order of their names. Collectors sharing a group write into one database at once: rows locked in a
     * different order by each of them would deadlock. The meters row is locked only when its
     * quantity or unit changes (ON CONFLICT DO UPDATE would lock it every time, against the key
     * locks other transactions' readings hold on it).
     */
    private async ensureMeters(tx: Queryable, batches: ReadingBatch[]) {
        const unknown = batches.filter(b => b.elements.length && !this.knownMeters.has(meterKey(b)))
        const byKey = new Map(unknown.map(b => [`${b.node}\u0000${b.meter}`, b]))
        if (!byKey.size) return
        const list = [...byKey.values()]
        const columns = [
            list.map(b => b.node),
            list.map(b => b.meter),
            list.map(b => b.quantity),
            list.map(b => b.unit),
        ]
        await tx.query(
            "INSERT INTO nodes (node) SELECT DISTINCT unnest($1::text[]) ORDER BY 1 ON CONFLICT DO NOTHING",
            [columns[0]]
        )
        await tx.query(
            `INSERT INTO meters (node, meter, quantity, unit)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) ORDER BY 1, 2
             ON CONFLICT (node, meter) DO NOTHING`,
            columns
        )
        await tx.query(
            `UPDATE meters SET quantity = u.quantity, unit = u.unit
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u (node, meter, quantity, unit)
             WHERE meters.node = u.node AND meters.meter = u.meter
                 AND (meters.quantity <> u.quantity OR meters.unit <> u.unit)`,
            columns
        )
    }

    /** A message's readings; its meter made already (ensureMeters). */
    private async storeBatch(tx: Queryable, o: Outcome, topic: string, b: ReadingBatch) {
        for (const r of b.refused)
            await this.reject(tx, o, topic, r.reason, r.detail, r.text, Buffer.byteLength(r.text))
        if (!b.elements.length) return
        o.meter = meterKey(b)
        // Merged readings first: what of first_seq..seq is stored already?
        const rows: Row[] = []
        for (const e of b.elements) {
            const row = await this.prepare(tx, o, topic, b, e)
            if (row) rows.push(row)
        }
        if (!rows.length) return
        // A message of one reading: the database's refusal is the whole message's (store() records it).
        if (b.elements.length === 1 && !b.refused.length)
            return this.settle(tx, o, topic, b, rows, await this.insert(tx, b, rows))
        // All in one statement; if the database refuses one, one by one to refuse only that one.
        await tx.exec("SAVEPOINT batch")
        let inserted: Set<number>
        try {
            inserted = await this.insert(tx, b, rows)
            await tx.exec("RELEASE SAVEPOINT batch")
        } catch (err) {
            if (!isDataError(err)) throw err
            await tx.exec("ROLLBACK TO SAVEPOINT batch; RELEASE SAVEPOINT batch")
            inserted = new Set()
            for (const row of rows) {
                await tx.exec("SAVEPOINT element")
                try {
                    for (const seq of await this.insert(tx, b, [row])) inserted.add(seq)
                    await tx.exec("RELEASE SAVEPOINT element")
                } catch (err) {
                    if (!isDataError(err)) throw err
                    await tx.exec("ROLLBACK TO SAVEPOINT element; RELEASE SAVEPOINT element")
                    const x = err as any
                    const reason = x.constraint ? `contract:${x.constraint}` : `refused:${x.code}`
                    const text = row.e.text
                    await this.reject(
                        tx,
                        o,
                        topic,
                        reason,
                        String(x.message),
                        keptPayload(text),
                        Buffer.byteLength(text)
                    )
                    row.refused = true
                }
            }
        }
        await this.settle(tx, o, topic, b, rows, inserted)
    }

    /** Counts what went in; compares what was there already. */
    private async settle(
        tx: Queryable,
        o: Outcome,
        topic: string,
        b: ReadingBatch,
        rows: Row[],
        inserted: Set<number>
    ) {
        for (const row of rows) {
            if (row.refused) continue
            if (!inserted.has(row.e.seq)) {
                await this.compare(tx, o, topic, b, row.e)
                continue
            }
            o.stored++
            if (row.partial) {
                o.partial++
                this.log(
                    `collector: ${b.node}/${b.meter} seq ${row.e.firstSeq}..${row.e.seq}: merged, partly stored before`
                )
            }
        }
    }

    /**
     * The row to insert for an element, or null when it is settled already: a merged reading
     * whose seq is stored (a duplicate or a conflict), or one that carries less than what is
     * stored of its range (a conflict). A merged reading over stored readings keeps the rest.
     */
    private async prepare(tx: Queryable, o: Outcome, topic: string, b: ReadingBatch, e: Element): Promise<Row | null> {
        const row: Row = { e, delta: e.delta, partial: false }
        if (e.gap || e.firstSeq === e.seq) return row
        const covered = await this.rowsBetween(tx, b, e.firstSeq, e.seq)
        if (covered.some(r => r.seq === e.seq)) {
            await this.compare(tx, o, topic, b, e)
            return null
        }
        if (!covered.length) return row
        row.partial = true
        if (e.delta === null) return row
        const seen = covered.reduce((s, r) => s + (r.delta ?? 0), 0)
        row.delta = round3(e.delta - seen)
        if (row.delta >= 0) return row
        const note = `a merged reading of ${e.delta} carries less than the ${round3(seen)} already stored for seq ${e.firstSeq}..${e.seq - 1}`
        await this.conflict(tx, o, topic, b, e, note)
        return null
    }

    /** INSERT ... ON CONFLICT DO NOTHING of one message's rows; the seqs inserted. */
    private async insert(tx: Queryable, b: ReadingBatch, rows: Row[]) {
        const keys = await this.insertRows(
            tx,
            rows.map(row => ({ b, row }))
        )
        return new Set([...keys].map(k => Number(k.slice(k.lastIndexOf("/") + 1))))
    }

    /**
     * INSERT ... ON CONFLICT DO NOTHING of rows of any messages, as one array per column: one
     * statement whose text does not change with the number of rows. The keys inserted, as
     * node/meter/seq.
     */
    private async insertRows(tx: Queryable, rows: { b: ReadingBatch; row: Row }[]) {
        const columns: unknown[][] = INSERT_COLUMNS.map((): unknown[] => [])
        for (const { b, row } of rows) {
            const { e, delta, partial } = row
            const values = [
                b.node,
                b.meter,
                e.seq,
                e.firstSeq,
                e.boot,
                b.time,
                e.start,
                e.end,
                delta,
                e.total,
                partial ? e.delta : null,
                e.min,
                e.mean,
                e.max,
                e.estimated,
                e.gap,
                e.afterSeq,
                b.replay,
                partial,
            ]
            for (let i = 0; i < values.length; i++) columns[i].push(values[i])
        }
        const inserted = await tx.query<{ node: string; meter: string; seq: number }>(INSERT_SQL, columns)
        return new Set(inserted.map(r => `${r.node}/${r.meter}/${r.seq}`))
    }

    private rowsBetween(tx: Queryable, b: ReadingBatch, from: number, to: number) {
        return tx.query<StoredRow>(
            `SELECT ${READING_COLUMNS} FROM readings WHERE node = $1 AND meter = $2 AND seq BETWEEN $3 AND $4 ORDER BY seq`,
            [b.node, b.meter, from, to]
        )
    }

    /**
     * Not inserted: inside a merged reading stored before (absorbed: its energy is counted there),
     * or its key is taken: the same reading again (absorbed) or another one (an integrity error).
     */
    private async compare(tx: Queryable, o: Outcome, topic: string, b: ReadingBatch, e: Element) {
        const [row] = await this.rowsBetween(tx, b, e.seq, e.seq)
        if (!row) {
            o.covered++
            this.log(
                `collector: ${b.node}/${b.meter} seq ${e.firstSeq}..${e.seq}: inside a merged reading stored before, not stored`
            )
            return false
        }
        const differences = differ(row, b, e)
        if (!differences.length) {
            o.duplicates++
            return false
        }
        // History merges older readings into longer ones: a replayed merged reading that the
        // rows stored cover exactly, with the same amount, is the same energy told coarser.
        if (e.firstSeq < row.first_seq && differences.every(d => d === "first_seq" || d === "start" || d === "delta")) {
            const rows = await this.rowsBetween(tx, b, e.firstSeq, e.seq)
            let next = e.firstSeq
            for (const r of rows) if (r.first_seq <= next && r.seq >= next) next = r.seq + 1
            const sum = rows.reduce((s, r) => s + (r.delta ?? 0), 0)
            const sameAmount = e.delta === null || Math.abs(sum - e.delta) <= 0.0005 * rows.length
            const sameStart = rows.length > 0 && rows[0].first_seq === e.firstSeq && rows[0].start_time === e.start
            if (next > e.seq && sameAmount && sameStart) {
                o.duplicates++
                return false
            }
        }
        return this.conflict(tx, o, topic, b, e, `differs in ${differences.join(", ")}`)
    }

    private async conflict(tx: Queryable, o: Outcome, topic: string, b: ReadingBatch, e: Element, note: string) {
        o.conflicts++
        this.log(`collector: INTEGRITY ${b.node}/${b.meter} seq ${e.seq}: delivered again, ${note}; kept aside`)
        await tx.query(
            `INSERT INTO integrity_conflicts (node, meter, seq, topic, note, stored, received)
             VALUES ($1, $2, $3, $4, $5,
                 (SELECT to_jsonb(r) - 'received_at' FROM readings r WHERE node = $1 AND meter = $2 AND seq = $3), $6)
             ON CONFLICT (node, meter, seq, md5(received))
             DO UPDATE SET times = integrity_conflicts.times + 1, last_at = now()`,
            [b.node, b.meter, e.seq, keptPayload(topic, 512), note, e.text]
        )
        return false
    }
}

/** The fields in which a stored row and a received element differ (the replay flag aside). */
export function differ(row: StoredRow, b: ReadingBatch, e: Element) {
    const out: string[] = []
    const check = (name: string, a: unknown, b: unknown) => {
        if ((a ?? null) !== (b ?? null)) out.push(name)
    }
    check("first_seq", row.first_seq, e.firstSeq)
    check("boot", row.boot, e.boot)
    check("time", row.time_base, b.time)
    check("start", row.start_time, e.start)
    check("end", row.end_time, e.end)
    check("delta", row.reported_delta ?? row.delta, e.delta)
    check("total", row.total, e.total)
    check("min", row.min, e.min)
    check("mean", row.mean, e.mean)
    check("max", row.max, e.max)
    check("estimated", row.estimated, e.estimated)
    check("gap", row.gap, e.gap)
    check("after_seq", row.after_seq, e.afterSeq)
    return out
}

/** Runs of one transaction that lost races before the failure is the caller's (a reconnection, with its backoff). */
const RACE_ATTEMPTS = 5

/** Messages one transaction takes at most: a bound on its size, far above what the broker keeps in flight. */
export const BATCH_MESSAGES = 200

/**
 * Messages waiting for their transaction. While one transaction runs, the messages that arrive
 * wait; when it has committed, the next takes all of them (up to BATCH_MESSAGES) at once. A lone
 * message goes in at once; under load, transactions grow with it, and so one commit stands for
 * many messages. Each message's callback runs once its transaction has committed (or failed).
 */
export class IngestQueue {
    private waiting: { message: Incoming; done: (err?: Error) => void }[] = []
    private running: Promise<void> | undefined
    private scheduled = false

    constructor(private readonly store: Store) {}

    push(message: Incoming, done: (err?: Error) => void) {
        this.waiting.push({ message, done })
        this.schedule()
    }

    /** Resolves once every message pushed so far is settled. */
    async idle() {
        while (this.running || this.scheduled || this.waiting.length) await (this.running ?? new Promise(setImmediate))
    }

    private schedule() {
        if (this.running || this.scheduled) return
        this.scheduled = true
        // After the messages of this read from the socket have been handed over, and after
        // pending I/O (the HTTP API, keepalives): a backlog never holds the event loop.
        setImmediate(() => {
            this.scheduled = false
            if (!this.waiting.length || this.running) return
            const batch = this.waiting.splice(0, BATCH_MESSAGES)
            this.running = this.storeRetrying(batch.map(w => w.message)).then(
                () => this.settle(batch),
                (err: Error) => this.settle(batch, err)
            )
        })
    }

    /** A transaction that lost a race runs again (its outcomes are made anew each time); any other failure is the caller's. */
    private async storeRetrying(messages: Incoming[]) {
        for (let attempt = 1; ; attempt++) {
            try {
                return await this.store.storeMany(messages)
            } catch (e) {
                if (!isRaceError(e)) throw e
                if (attempt >= RACE_ATTEMPTS) {
                    this.store.stats.failures++
                    throw e
                }
                this.store.stats.retries++
            }
        }
    }

    private settle(batch: { done: (err?: Error) => void }[], err?: Error) {
        this.running = undefined
        for (const w of batch) w.done(err)
        if (this.waiting.length) this.schedule()
    }
}
