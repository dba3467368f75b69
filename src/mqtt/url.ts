// Broker addresses as users write them: mqtt://host[:port] or mqtts://host[:port].
// Pure core: imports nothing from @devicescript.

export interface BrokerAddress {
    host: string
    port: number
    tls: boolean
}

/** Returns the address, or an error text naming what is wrong. */
export function parseBrokerUrl(url: string): BrokerAddress | string {
    if (typeof url !== "string" || !url) return "broker URL is empty"
    let tls: boolean
    let rest: string
    if (url.indexOf("mqtt://") === 0) {
        tls = false
        rest = url.slice(7)
    } else if (url.indexOf("mqtts://") === 0) {
        tls = true
        rest = url.slice(8)
    } else return `broker URL ${url} must start with mqtt:// or mqtts://`
    const slash = rest.indexOf("/")
    if (slash >= 0) rest = rest.slice(0, slash)
    const colon = rest.lastIndexOf(":")
    let host = rest
    let port = tls ? 8883 : 1883
    if (colon >= 0) {
        host = rest.slice(0, colon)
        const portText = rest.slice(colon + 1)
        port = parseInt(portText)
        if (!(port >= 1 && port <= 65535) || "" + port !== portText) return `broker URL ${url} has an invalid port`
    }
    if (!host) return `broker URL ${url} has no host`
    return { host, port, tls }
}
