// The MQTT client's ports on the device: the runtime's socket (it has one) and its clock.
// The socket is driven directly, the way @devicescript/net's Socket drives it, for a fraction of
// that class's code: the client needs no line reading, no event emitters and no socket objects.
// The runtime reports the socket's events to ds._socketOnEvent, only those of the socket it
// opened last. Wherever the runtime's own functions fit a port, they are the port's functions:
// a wrapper would cost code in the VM.
// Platform code: DeviceScript only.
import * as ds from "@devicescript/core"
import { ClockPort, CLOSED_BY_BROKER, SocketPort } from "../mqtt/transport"

interface RuntimeSocket {
    /** 0 when the connection is under way (an "open" or "error" event follows); `port` negative for TLS. */
    _socketOpen(host: string, port: number): number
    _socketClose(): number
    /** 0 when the bytes were queued (a copy). */
    _socketWrite(bytes: Buffer): number
    _socketOnEvent: (event: string, arg?: Buffer | string) => void
}
const runtime = ds as any as RuntimeSocket

/** The fiber waiting for the socket's next event (nativeSocket.wait). */
let waiter: ds.Fiber = null

function onSocketEvent(event: string, arg?: Buffer | string) {
    const s = nativeSocket
    if (event === "data") s.received.push(arg as Buffer)
    else if (event === "open") s.opened = true
    else s.ended = event === "error" ? `socket error: ${arg}` : CLOSED_BY_BROKER
    if (waiter && waiter.suspended) waiter.resume(null)
}

export const nativeSocket: SocketPort = {
    open: (host, port, tls) => {
        const s = nativeSocket
        s.received = []
        s.opened = false
        s.ended = ""
        runtime._socketOnEvent = onSocketEvent
        return runtime._socketOpen(host, tls ? -port : port)
    },
    write: runtime._socketWrite,
    close: runtime._socketClose,
    wait: async ms => {
        waiter = ds.Fiber.self()
        await ds.suspend(ms)
        waiter = null
    },
    received: [],
    opened: false,
    ended: "",
}

export const runtimeClock: ClockPort = { millis: ds.millis, sleep: ds.sleep }
