// A Jacdac device on the simulator's bus, for tests: it stands for the services a real board's
// firmware runs in C (a button server on an S0 input, a sensor), outside the VM, as on hardware.
// `devs run --tcp` connects the VM to a bus at 127.0.0.1:8082 (see simulator.ts), where frames
// travel as [length byte][frame]. This module writes frames to it by hand, from the Jacdac
// specification (https://microsoft.github.io/jacdac-docs/reference/protocol/):
//
//   frame:  crc16 (CCITT, over the rest) | data size | flags | device id (8 bytes) | packets
//   packet: payload size | service index | command (u16) | payload, padded to 4 bytes
//
// The device announces itself every 500 ms (the control service's advertisement, which lists the
// service classes), so that the VM's role manager binds its roles to our services. Events carry a
// 7-bit counter so that the receiver can tell a new event from a repeat.
import { randomBytes } from "node:crypto"
import { busSend } from "./simulator"

export const BUTTON_SERVICE_CLASS = 0x1473a263
export const TEMPERATURE_SERVICE_CLASS = 0x1421bac7

const ANNOUNCE_MS = 500
const EVENT_DOWN = 0x01
const EVENT_UP = 0x02
/** A register's report: 0x1000 | register; `reading` is register 0x101. */
const REPORT_READING = 0x1101

function crc16(bytes: Uint8Array) {
    let crc = 0xffff
    for (const b of bytes) {
        let x = (crc >> 8) ^ b
        x ^= x >> 4
        crc = ((crc << 8) ^ (x << 12) ^ (x << 5) ^ x) & 0xffff
    }
    return crc
}

/** One frame holding one packet from `deviceId`. */
export function jacdacFrame(deviceId: Buffer, serviceIndex: number, command: number, payload: Buffer) {
    const padded = (payload.length + 3) & ~3
    const frame = Buffer.alloc(12 + 4 + padded)
    frame[2] = 4 + padded
    frame[3] = 0 // a report from deviceId
    deviceId.copy(frame, 4)
    frame[12] = payload.length
    frame[13] = serviceIndex
    frame.writeUInt16LE(command, 14)
    payload.copy(frame, 16)
    frame.writeUInt16LE(crc16(frame.subarray(2)), 0)
    return frame
}

export interface JacdacService {
    serviceClass: number
}

export class JacdacBusDevice {
    readonly deviceId = randomBytes(8)
    private timer?: NodeJS.Timeout
    private restartCounter = 1
    private eventCounters: number[] = []
    /** Frames written to the bus. */
    framesSent = 0

    /** `services` are served at indices 1, 2...: index 0 is the control service. */
    constructor(readonly services: JacdacService[]) {
        for (const _ of services) this.eventCounters.push(0)
    }

    start() {
        this.announce()
        this.timer = setInterval(() => this.announce(), ANNOUNCE_MS)
        return this
    }

    stop() {
        clearInterval(this.timer)
    }

    private send(serviceIndex: number, command: number, payload: Buffer) {
        busSend(jacdacFrame(this.deviceId, serviceIndex, command, payload))
        this.framesSent++
    }

    private announce() {
        const payload = Buffer.alloc(4 + 4 * this.services.length)
        // The restart counter climbs to 15 and stays: a lower value would mean the device restarted.
        payload.writeUInt16LE(this.restartCounter, 0)
        if (this.restartCounter < 15) this.restartCounter++
        this.services.forEach((s, i) => payload.writeUInt32LE(s.serviceClass, 4 + 4 * i))
        this.send(0, 0x0000, payload)
    }

    /** An event of the service at `serviceIndex` (1-based). */
    event(serviceIndex: number, code: number, payload = Buffer.alloc(0)) {
        const counter = (this.eventCounters[serviceIndex - 1] = (this.eventCounters[serviceIndex - 1] + 1) & 0x7f)
        this.send(serviceIndex, 0x8000 | (counter << 8) | code, payload)
    }

    /** A button press: `down`, then `up` with how long it was held, as a button server measures it. */
    buttonDown(serviceIndex: number) {
        this.event(serviceIndex, EVENT_DOWN)
    }

    buttonUp(serviceIndex: number, heldMs: number) {
        const payload = Buffer.alloc(4)
        payload.writeUInt32LE(heldMs, 0)
        this.event(serviceIndex, EVENT_UP, payload)
    }

    /** A sensor's `reading` report, in the i22.10 format of temperature and current readings. */
    reading(serviceIndex: number, value: number) {
        const payload = Buffer.alloc(4)
        payload.writeInt32LE(Math.round(value * 1024), 0)
        this.send(serviceIndex, REPORT_READING, payload)
    }
}
