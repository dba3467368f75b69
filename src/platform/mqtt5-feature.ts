// MQTT 5 for an image composed with MQTT_VERSION auto or 5 (devs/lib/compose.ts): the session of
// src/mqtt/mqtt5-session.ts, and under auto the version that worked with the broker kept in flash,
// so the next boot starts with it (a 3.1.1 broker then sees no MQTT 5 CONNECT at every boot).
// Here rather than in the node, so that an image that speaks 3.1.1 carries none of it.
//
// Platform code: DeviceScript only.
import { NodeConfig } from "../config"
import { mqtt5Session } from "../mqtt/mqtt5-session"
import { SessionOptions } from "../mqtt/session"
import { readJsonSetting, writeVerified } from "./settings-store"

/** The Settings key of the version record (versionRecord: the broker's host:port and the version). */
export const MQTT_VERSION_KEY = "mn_mqtt"

export async function mqtt5Feature(options: SessionOptions, c: NodeConfig) {
    const session = mqtt5Session(options, c, c.mqttVersion ? "" : await readJsonSetting(MQTT_VERSION_KEY, ""))
    // Told on the fiber that reads the socket, where a Settings-store read is not safe: written
    // from a fiber of its own. A failed write only costs the next boot one refused attempt.
    session.onRemembered = record =>
        setTimeout(async () => {
            const error = await writeVerified(MQTT_VERSION_KEY, record)
            if (error) console.log(error)
        }, 0)
    return session
}
