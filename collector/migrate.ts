// Versioned migrations: collector/migrations/NNN_name.sql, applied in order of NNN, each in a
// transaction with its version recorded in schema_migrations, so a database is brought from
// whatever version it has to the newest, and a migration is applied once or not at all.
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import type { Database } from "./db"

export const MIGRATIONS_DIR = join(import.meta.dirname, "migrations")

export interface Migration {
    version: number
    name: string
    sql: string
}

export function listMigrations(dir = MIGRATIONS_DIR): Migration[] {
    const list = readdirSync(dir)
        .map(file => file.match(/^(\d+)_([\w-]+)\.sql$/))
        .filter(m => m !== null)
        .map(m => ({ version: Number(m[1]), name: m[2], sql: readFileSync(join(dir, m[0]), "utf-8") }))
        .sort((a, b) => a.version - b.version)
    for (let i = 0; i < list.length; i++)
        if (list[i].version !== i + 1)
            throw new Error(`migrations: expected version ${i + 1}, found ${list[i].version}`)
    return list
}

/** Applies the migrations the database lacks; returns its version before and after. */
export async function migrate(db: Database, dir = MIGRATIONS_DIR) {
    const migrations = listMigrations(dir)
    await db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
    )`)
    const current = async (q: { query: Database["query"] }) =>
        (await q.query<{ v: number }>("SELECT coalesce(max(version), 0) AS v FROM schema_migrations"))[0].v
    const from = await current(db)
    const newest = migrations.length
    if (from > newest)
        throw new Error(`the database's schema is version ${from}, newer than this collector's (${newest})`)
    for (const m of migrations) {
        if (m.version <= from) continue
        await db.transaction(async tx => {
            // Two collectors starting at once on one server: the second waits, then finds it done.
            await tx.exec("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
            if ((await current(tx)) >= m.version) return
            await tx.exec(m.sql)
            await tx.query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", [m.version, m.name])
        })
    }
    return { from, to: await current(db) }
}
