// Process and port helpers shared by the runner, the tests and the benchmarks.
// Every child is stopped by its PID, with a bounded wait, never by name.
import { ChildProcess } from "node:child_process"
import { createServer, connect } from "node:net"

export const sleep = (ms: number) => new Promise<void>(r => setTimeout(r, ms))

/** A port the kernel just handed out on 127.0.0.1 (closed again before returning). */
export function freePort(): Promise<number> {
    return new Promise((resolve, reject) => {
        const server = createServer()
        server.unref()
        server.on("error", reject)
        server.listen(0, "127.0.0.1", () => {
            const address = server.address()
            const port = typeof address === "object" && address ? address.port : 0
            server.close(() => resolve(port))
        })
    })
}

/** Resolves once something accepts TCP connections on the port; rejects after timeoutMs. */
export async function waitForPort(port: number, timeoutMs: number, giveUp?: () => boolean) {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
        if (giveUp?.()) return
        const ok = await new Promise<boolean>(resolve => {
            const socket = connect(port, "127.0.0.1")
            socket.once("connect", () => {
                socket.destroy()
                resolve(true)
            })
            socket.once("error", () => resolve(false))
        })
        if (ok) return
        await sleep(50)
    }
    throw new Error(`nothing listening on 127.0.0.1:${port} after ${timeoutMs} ms`)
}

function alive(child: ChildProcess) {
    return child.exitCode === null && child.signalCode === null
}

/** Sends the signal, waits up to graceMs for the exit, then SIGKILLs. */
export async function stopProcess(child: ChildProcess | undefined, signal: NodeJS.Signals = "SIGTERM", graceMs = 5000) {
    if (!child || !child.pid || !alive(child)) return
    const exited = new Promise<void>(resolve => child.once("exit", () => resolve()))
    try {
        child.kill(signal)
    } catch {}
    // The grace timer is cleared once the child exits: a pending one would keep the process alive.
    let graceTimer: NodeJS.Timeout | undefined
    const timeout = new Promise<string>(resolve => (graceTimer = setTimeout(() => resolve("timeout"), graceMs)))
    const outcome = await Promise.race([exited, timeout])
    clearTimeout(graceTimer)
    if (outcome === "timeout" && alive(child)) {
        try {
            child.kill("SIGKILL")
        } catch {}
        let killTimer: NodeJS.Timeout | undefined
        await Promise.race([exited, new Promise<void>(resolve => (killTimer = setTimeout(resolve, 2000)))])
        clearTimeout(killTimer)
    }
}

/** Stops every registered child when this process ends, also on SIGINT/SIGTERM and uncaught errors. */
export class ChildRegistry {
    private children = new Set<ChildProcess>()
    add(child: ChildProcess) {
        this.children.add(child)
        child.once("exit", () => this.children.delete(child))
        return child
    }
    async stopAll(signal: NodeJS.Signals = "SIGTERM") {
        await Promise.all([...this.children].map(c => stopProcess(c, signal)))
    }
    /** Synchronous last resort from process 'exit': SIGKILL whatever is left. */
    killAllNow() {
        for (const c of this.children) {
            try {
                if (alive(c)) c.kill("SIGKILL")
            } catch {}
        }
    }
}

/**
 * Every child a launcher starts is tracked here and SIGKILLed if this process exits with it still
 * running (an uncaught exception, a closed pipe, process.exit): no broker or simulator outlives
 * the tool that started it. Only SIGKILL of this process itself escapes, as it must.
 */
const liveChildren = new Set<ChildProcess>()
let exitHookInstalled = false

export function trackChild(child: ChildProcess) {
    liveChildren.add(child)
    child.once("exit", () => liveChildren.delete(child))
    if (!exitHookInstalled) {
        exitHookInstalled = true
        process.once("exit", () => {
            for (const c of liveChildren) {
                try {
                    if (alive(c)) c.kill("SIGKILL")
                } catch {}
            }
        })
    }
    return child
}
