// What the MQTT client needs of its platform, as coreMQTT has it (MQTT_Init takes a transport
// interface and a time function): a socket and a clock, passed to MqttClient's constructor. On the
// device, src/platform/native-socket.ts implements them over the runtime; Node tests pass a
// scripted broker and a clock they advance (test/node/mqtt-client.test.ts).
//
// Pure core: imports nothing from @devicescript.

/** SocketPort.ended when the peer closed the connection (rather than an error). */
export const CLOSED_BY_BROKER = "connection closed by the broker"

/**
 * One connection at a time, opened, used and closed by one client. Its state is in fields that
 * the implementation updates as the socket's events come (fields cost no code in the VM, where
 * functions are counted against the code section).
 */
export interface SocketPort {
    /**
     * Starts a connection to `host`:`port` (over TLS when `tls`) and forgets the previous one's
     * state. Returns 0 when the connection is under way (`opened` or `ended` follows; `wait`
     * returns when it does), or the error that prevented it.
     */
    open(host: string, port: number, tls: boolean): number
    /**
     * Sends `bytes`, or queues them in order; 0 when done, else an error (the connection is then
     * unusable). The bytes are copied before it returns: the caller reuses the buffer.
     */
    write(bytes: Buffer): number
    /** Closes the connection; no event follows. */
    close(): void
    /** Returns at the socket's next event (opened, data, ended) or after `ms`, whichever comes first. */
    wait(ms: number): Promise<void>
    /** Chunks received and not read yet, oldest first: the reader takes them with shift(). */
    received: Buffer[]
    /** Whether the connection opened. */
    opened: boolean
    /** Why the connection ended: CLOSED_BY_BROKER, or an error's text; "" while opening or open. */
    ended: string
}

/** Time since boot, and sleeping; the client waits on nothing else. */
export interface ClockPort {
    millis(): number
    /** Resumes after `ms`; 0 lets every other fiber that is ready run first. */
    sleep(ms: number): Promise<void>
}
