// KeyValueStore over DeviceScript's Settings store (jacdac-c jd_fstor, an append-only log in
// flash with compaction). Values are raw bytes, unlike @devicescript/settings, which stores JSON.
// Platform code: DeviceScript only.
import * as ds from "@devicescript/core"
import { settings as sharedSettings } from "@devicescript/settings"
import { entryError, keyError, KeyValueStore } from "./kv"

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

    async get(key: string): Promise<Buffer | null> {
        const error = keyError(key)
        if (error) throw new RangeError(error)
        const settings = this.settings
        // The value arrives as a report to the get command; the filter picks the one for our key.
        const pkt = await ds.actionReport(
            settings,
            "get",
            async () => await settings.get(key),
            p => p.decode()[0] === key
        )
        const decoded = pkt.decode()
        const value: Buffer = decoded[1]
        if (!value || !value.length) return null
        return value
    }

    async set(key: string, value: Buffer): Promise<void> {
        const error = entryError(key, value)
        if (error) throw new RangeError(error)
        await this.settings.set(key, value)
    }
}
