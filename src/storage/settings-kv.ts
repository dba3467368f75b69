// KeyValueStore over DeviceScript's Settings store (jacdac-c jd_fstor, an append-only log in
// flash with compaction). Values are raw bytes, unlike @devicescript/settings, which stores JSON.
// Platform code: DeviceScript only.
import * as ds from "@devicescript/core"
import { settings as sharedSettings } from "@devicescript/settings"
import { entryError, KeyValueStore } from "./kv"

/** A read is asked again after this long without an answer, this many times in all. */
const GET_TIMEOUT_MS = 1000
const GET_ATTEMPTS = 5

export class SettingsKeyValueStore implements KeyValueStore {
    private readonly settings: ds.Settings

    /**
     * By default the Settings client of @devicescript/settings, which the firmware already has:
     * a client created later, inside a running program, may never be bound to the service, and
     * its commands then wait forever.
     */
    constructor(settings?: ds.Settings) {
        this.settings = settings || sharedSettings
    }

    /**
     * The value arrives as a report to the get command. Not ds.actionReport: it resumes the
     * waiting fiber from the report handler, and a report that comes back while the command is
     * still being sent resumes a fiber that is not suspended yet, so the read waits forever.
     * Here the handler keeps the report; the command is sent again if none came within a second.
     */
    async get(key: string): Promise<Buffer | null> {
        const error = entryError(key)
        if (error) throw new RangeError(error)
        const settings = this.settings
        const getCode = settings.spec.lookup("get").code
        const box = { pkt: null as ds.Packet }
        const arrived = ds.emitter<boolean>()
        const unsubscribe = settings.report().subscribe(pkt => {
            if (box.pkt || pkt.serviceCommand !== getCode || pkt.decode()[0] !== key) return
            box.pkt = pkt
            arrived.emit(true)
        })
        try {
            for (let attempt = 0; attempt < GET_ATTEMPTS && !box.pkt; ++attempt) {
                await settings.get(key)
                if (!box.pkt) await ds.wait(arrived, GET_TIMEOUT_MS)
            }
        } finally {
            unsubscribe()
        }
        if (!box.pkt) throw new Error("settings: no answer reading " + key)
        const value: Buffer = box.pkt.decode()[1]
        if (!value || !value.length) return null
        return value
    }

    async set(key: string, value: Buffer): Promise<void> {
        const error = entryError(key, value)
        if (error) throw new RangeError(error)
        await this.settings.set(key, value)
    }
}
