// Starts an MQTT broker on a free loopback port for the runner, the tests and the benchmarks:
// Mosquitto from Debian's packages when it is installed, otherwise the embedded aedes broker in a
// child process (so both can be killed and restarted the same way, by PID).
import { spawn, ChildProcess } from "node:child_process"
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { freePort, waitForPort, stopProcess, trackChild } from "./process"

export type BrokerKind = "mosquitto" | "aedes"

export interface BrokerOptions {
    /** Keep sessions and queued messages across a restart (Mosquitto's persistence). */
    persistence?: boolean
    /** Force one implementation; default: MQTT_BROKER env, then Mosquitto if installed. */
    kind?: BrokerKind
    /** Reuse this port (a restart must come back on the same one). */
    port?: number
    /** Extra mosquitto.conf lines (TLS listeners, password files). */
    extraConfig?: string[]
    /** Echo the broker's log to this stream. */
    log?: (line: string) => void
}

const MOSQUITTO_PATHS = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"]

export function findMosquitto(): string | undefined {
    for (const p of MOSQUITTO_PATHS) if (existsSync(p)) return p
    for (const dir of (process.env.PATH || "").split(":")) {
        const p = join(dir, "mosquitto")
        if (dir && existsSync(p)) return p
    }
    return undefined
}

export function defaultBrokerKind(): BrokerKind {
    const forced = process.env.MQTT_BROKER
    if (forced === "mosquitto" || forced === "aedes") return forced
    return findMosquitto() ? "mosquitto" : "aedes"
}

export class Broker {
    readonly kind: BrokerKind
    port = 0
    private child?: ChildProcess
    private readonly dir: string
    private readonly options: BrokerOptions

    constructor(options: BrokerOptions = {}) {
        this.options = options
        this.kind = options.kind ?? defaultBrokerKind()
        this.dir = mkdtempSync(join(tmpdir(), "meternode-broker-"))
        if (options.port) this.port = options.port
    }

    get url() {
        return `mqtt://127.0.0.1:${this.port}`
    }

    get pid() {
        return this.child?.pid
    }

    describe() {
        // aedes keeps sessions and queued messages in memory only: a restart of it loses them.
        const kept =
            this.kind === "aedes" ? " (sessions in memory only)" : this.options.persistence ? " (persistence on)" : ""
        return `${this.kind} on 127.0.0.1:${this.port}${kept}`
    }

    async start(): Promise<this> {
        if (!this.port) this.port = await freePort()
        const child = this.kind === "mosquitto" ? this.spawnMosquitto() : this.spawnAedes()
        this.child = trackChild(child)
        const log = this.options.log
        const onData = (d: Buffer) => {
            if (log) for (const line of d.toString().split("\n")) if (line) log(line)
        }
        child.stdout?.on("data", onData)
        child.stderr?.on("data", onData)
        let exited = false
        child.on("exit", () => (exited = true))
        await waitForPort(this.port, 10_000, () => exited)
        if (exited) throw new Error(`broker ${this.kind} exited during start on port ${this.port}`)
        return this
    }

    /** Kills the broker (SIGKILL: an abrupt crash, nothing flushed beyond what it already saved). */
    async kill() {
        await stopProcess(this.child, "SIGKILL")
        this.child = undefined
    }

    /** Graceful stop: Mosquitto writes its persistence file on SIGTERM. */
    async stop() {
        await stopProcess(this.child, "SIGTERM")
        this.child = undefined
    }

    async restart(downMs = 0) {
        await this.stop()
        if (downMs) await new Promise(r => setTimeout(r, downMs))
        await this.start()
    }

    async dispose() {
        await this.stop()
        rmSync(this.dir, { recursive: true, force: true })
    }

    private spawnMosquitto(): ChildProcess {
        const conf = join(this.dir, "mosquitto.conf")
        const lines = [
            `listener ${this.port} 127.0.0.1`,
            "allow_anonymous true",
            `persistence ${this.options.persistence ? "true" : "false"}`,
            `persistence_location ${this.dir}/`,
            "autosave_interval 1",
            "max_queued_messages 100000",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            // Run as root, Mosquitto switches to the "mosquitto" user and then can neither write its
            // persistence file nor read a password file in this private (0700) directory.
            ...(process.getuid?.() === 0 ? ["user root"] : []),
            ...(this.options.extraConfig ?? []),
        ]
        writeFileSync(conf, lines.join("\n") + "\n")
        return spawn(findMosquitto()!, ["-c", conf], { stdio: ["ignore", "pipe", "pipe"] })
    }

    private spawnAedes(): ChildProcess {
        const script = join(import.meta.dirname, "aedes-broker.ts")
        return spawn(process.execPath, ["--import", "tsx", script, String(this.port)], {
            stdio: ["ignore", "pipe", "pipe"],
            cwd: join(import.meta.dirname, "..", ".."),
        })
    }
}

export async function startBroker(options: BrokerOptions = {}) {
    return await new Broker(options).start()
}
