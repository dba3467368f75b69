// Broker addresses as users write them: mqtt://host[:port] or mqtts://host[:port].
// Pure core: imports nothing from @devicescript.

export interface BrokerAddress {
    host: string
    port: number
    tls: boolean
}

/**
 * `url` as it may be printed: a password written into it (scheme://user:password@host) shown as
 * ***. Every log line and error that names a broker URL goes through this.
 */
export function maskUrl(url: string) {
    const scheme = url.indexOf("://")
    const at = url.indexOf("@", scheme + 3)
    if (scheme < 0 || at < 0) return url
    const colon = url.indexOf(":", scheme + 3)
    return colon >= 0 && colon < at ? url.slice(0, colon + 1) + "***" + url.slice(at) : url
}

/** Returns the address, or an error text naming what is wrong (the URL's password masked). */
export function parseBrokerUrl(url: string): BrokerAddress | string {
    if (typeof url !== "string" || !url) return "broker URL is empty"
    const shown = maskUrl(url)
    let tls: boolean
    let rest: string
    if (url.indexOf("mqtt://") === 0) {
        tls = false
        rest = url.slice(7)
    } else if (url.indexOf("mqtts://") === 0) {
        tls = true
        rest = url.slice(8)
    } else return `broker URL ${shown} must start with mqtt:// or mqtts://`
    const slash = rest.indexOf("/")
    if (slash >= 0) rest = rest.slice(0, slash)
    if (rest.indexOf("@") >= 0)
        return `broker URL ${shown} holds credentials: put them in MQTT_USER and MQTT_PASS (.env.local)`
    const colon = rest.lastIndexOf(":")
    let host = rest
    let port = tls ? 8883 : 1883
    if (colon >= 0) {
        host = rest.slice(0, colon)
        const portText = rest.slice(colon + 1)
        port = parseInt(portText)
        if (!(port >= 1 && port <= 65535) || "" + port !== portText) return `broker URL ${shown} has an invalid port`
    }
    if (!host) return `broker URL ${shown} has no host`
    return { host, port, tls }
}
