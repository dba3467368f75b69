// The collector's database: embedded PostgreSQL (PGlite, a directory on disk, nothing to install)
// or a PostgreSQL server (pg). Both run the same SQL; this is the little both must offer: queries
// with $1 parameters, multi-statement scripts, transactions and close. 64-bit integers (seq, times,
// counts) come back as numbers in both (every one the collector stores is a safe integer).
import { PGlite } from "@electric-sql/pglite"
import pg from "pg"
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from "node:fs"
import { join } from "node:path"
import { migrate } from "./migrate"

export interface Queryable {
    query<T = any>(sql: string, params?: unknown[]): Promise<T[]>
    /** Several statements, no parameters. */
    exec(sql: string): Promise<void>
}

export interface Database extends Queryable {
    readonly kind: "pglite" | "postgres"
    /** Where the data is, for the log: the directory or the server (without the password). */
    readonly where: string
    /** The PGlite instance, for PGlite. */
    readonly pglite?: PGlite
    /** Runs fn in a transaction: committed when fn resolves, rolled back when it throws. */
    transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>
    close(): Promise<void>
}

const INT8 = 20

export interface OpenOptions {
    /** postgres://user:password@host:port/db: a PostgreSQL server. Without it, PGlite in dataDir. */
    url?: string
    /** PGlite's directory (the collector's lock file and the database under it). */
    dataDir?: string
    /** Connections of the pool to the server (the ingest takes one, queries the others). */
    poolSize?: number
    log?: (line: string) => void
}

/** Opens the database and brings its schema to the newest migration. */
export async function openDatabase(options: OpenOptions): Promise<Database> {
    const db = options.url ? openPostgres(options.url, options.poolSize ?? 4) : await openPGlite(options.dataDir!)
    try {
        const { from, to } = await migrate(db)
        if (from !== to) options.log?.(`collector: database schema ${from} -> ${to} (${db.where})`)
    } catch (e) {
        await db.close()
        throw e
    }
    return db
}

function openPostgres(url: string, poolSize: number): Database {
    const pool = new pg.Pool({
        connectionString: url,
        max: poolSize,
        // Timestamps as text in ISO style whatever the server's default: the OED text (query.ts).
        options: `-c DateStyle=${DATE_STYLE}`,
        types: {
            getTypeParser: ((oid: number, format?: any) =>
                oid === INT8 ? Number : pg.types.getTypeParser(oid, format)) as any,
        },
    })
    // An idle connection the server drops is an error event on the pool: logged by the next query.
    pool.on("error", () => {})
    const safe = new URL(url)
    safe.password = ""
    const run = (client: pg.Pool | pg.PoolClient): Queryable => ({
        query: async (sql, params) => (await client.query(sql, params as any[])).rows,
        exec: async sql => {
            await client.query(sql)
        },
    })
    return {
        kind: "postgres",
        where: safe.toString(),
        ...run(pool),
        async transaction(fn) {
            const client = await pool.connect()
            // A checked-out connection the server drops (a restart between two statements) is an
            // 'error' event on the client, not on the pool: unheard, it ends the process. Heard,
            // the next statement fails, the transaction throws, and the dead connection is discarded.
            let lost: Error | undefined
            const onError = (e: Error): void => void (lost ??= e)
            client.on("error", onError)
            try {
                await client.query("BEGIN")
                const result = await fn(run(client))
                await client.query("COMMIT")
                return result
            } catch (e) {
                await client.query("ROLLBACK").catch((r: Error): void => void (lost ??= r))
                throw e
            } finally {
                client.removeListener("error", onError)
                client.release(lost)
            }
        },
        close: () => pool.end(),
    }
}

/**
 * PGlite keeps no lock of its own: two processes on one directory corrupt it, and one killed
 * leaves a postmaster.pid on which the next open hangs. The collector's lock file (its PID)
 * guards the directory; holding it, any postmaster.pid is a dead process's and is removed.
 */
/** Directories this process holds the lock of. */
const locked = new Set<string>()

function takeLock(dir: string) {
    const lock = join(dir, "collector.pid")
    if (locked.has(lock)) throw new Error(`the database in ${dir} is in use by this process`)
    for (let attempt = 0; attempt < 2; attempt++) {
        try {
            const fd = openSync(lock, "wx")
            writeSync(fd, `${process.pid}\n`)
            closeSync(fd)
            locked.add(lock)
            return lock
        } catch (e: any) {
            if (e.code !== "EEXIST") throw e
            const pid = Number(readFileSync(lock, "utf-8").trim())
            if (pid > 0 && pid !== process.pid && processAlive(pid))
                throw new Error(`the database in ${dir} is in use by process ${pid}`)
            rmSync(lock, { force: true })
        }
    }
    throw new Error(`cannot lock ${dir}`)
}

function processAlive(pid: number) {
    try {
        process.kill(pid, 0)
        return true
    } catch (e: any) {
        return e.code === "EPERM"
    }
}

/** How timestamps read as text: `2025-01-01 00:00:00`. */
const DATE_STYLE = "ISO,MDY"

/** PGlite's data directory for an in-memory database (tests, trials): nothing on disk. */
export const MEMORY = ":memory:"

async function openPGlite(dataDir: string): Promise<Database> {
    const memory = dataDir === MEMORY
    let lock = ""
    let pgdata: string | undefined
    if (!memory) {
        mkdirSync(dataDir, { recursive: true })
        lock = takeLock(dataDir)
        pgdata = join(dataDir, "pgdata")
        rmSync(join(pgdata, "postmaster.pid"), { force: true })
    }
    let db: PGlite
    try {
        db = await PGlite.create({ dataDir: pgdata, parsers: PGLITE_PARSERS })
        await db.exec(`SET DateStyle TO '${DATE_STYLE}'`)
    } catch (e) {
        if (lock) rmSync(lock, { force: true })
        locked.delete(lock)
        throw e
    }
    return pgliteDatabase(db, dataDir, () => {
        if (!lock) return
        rmSync(lock, { force: true })
        locked.delete(lock)
    })
}

/** What a PGlite instance must be created with for the collector: 64-bit integers as numbers. */
export const PGLITE_PARSERS = { [INT8]: (v: string) => Number(v) }

/** A PGlite instance (created with PGLITE_PARSERS) as the collector's Database; closing it calls onClose. */
export function pgliteDatabase(db: PGlite, where: string, onClose?: () => void): Database {
    const run = (q: { query: PGlite["query"]; exec: PGlite["exec"] }): Queryable => ({
        query: async (sql, params) => (await q.query<any>(sql, params as any[])).rows,
        exec: async sql => {
            await q.exec(sql)
        },
    })
    let closed = false
    return {
        kind: "pglite",
        where,
        pglite: db,
        ...run(db),
        transaction: fn => db.transaction(tx => fn(run(tx))),
        async close() {
            if (closed) return
            closed = true
            try {
                await db.close()
            } finally {
                onClose?.()
            }
        },
    }
}

/** SQLSTATE classes of errors a message's content causes (bad data, a constraint): not worth a retry. */
export function isDataError(e: unknown) {
    const code = (e as any)?.code
    return typeof code === "string" && (code.startsWith("22") || code.startsWith("23"))
}

/**
 * A transaction that lost a race with another one (deadlock_detected, serialization_failure): the
 * same transaction run again succeeds. Collectors sharing a group meet these.
 */
export function isRaceError(e: unknown) {
    const code = (e as any)?.code
    return code === "40P01" || code === "40001"
}
