// Reconnect delays: exponential backoff with full jitter ("Exponential Backoff And Jitter",
// AWS Architecture Blog, 2015), capped, reset by the caller after a successful CONNACK.
// Pure core: imports nothing from @devicescript.
import { nextParkMiller, PARK_MILLER_MODULUS } from "../util/park-miller"

/**
 * Delay before reconnect attempt number `attempt` (0 for the first retry): a uniformly random
 * value in [0, min(capMs, baseMs * 2^attempt)], never below `floorMs` so a refusing broker is
 * never hammered in a tight loop. `random01` is a value in [0, 1).
 */
export function backoffDelayMs(attempt: number, baseMs: number, capMs: number, floorMs: number, random01: number) {
    const exponent = Math.min(attempt, 30)
    const ceiling = Math.min(capMs, baseMs * Math.pow(2, exponent))
    return Math.max(floorMs, Math.floor(random01 * ceiling))
}

/**
 * The first state of a node's jitter: its client id (which holds the node id, by default the
 * device id) hashed with `entropy` (the uptime at the first reconnect). DeviceScript's
 * Math.random repeats one sequence on every run in the simulator, so without this every node of
 * a fleet would wait the same delays and reconnect in lockstep after a broker outage.
 */
export function jitterSeed(clientId: string, entropy: number) {
    let h = (Math.floor(Math.abs(entropy)) % (PARK_MILLER_MODULUS - 1)) + 1
    for (let i = 0; i < clientId.length; ++i) {
        h += clientId.charCodeAt(i)
        if (h >= PARK_MILLER_MODULUS) h -= PARK_MILLER_MODULUS - 1
        h = nextParkMiller(h)
    }
    // Ids that differ in their last character hash to neighbours: a few steps spread them apart.
    for (let i = 0; i < 3; ++i) h = nextParkMiller(h)
    return h
}

/**
 * A value in [0, 1) from a generator state (nextParkMiller's; state / PARK_MILLER_MODULUS is
 * uniform in (0, 1)) and `random01` (Math.random, real entropy on a board).
 */
export function jitter01(state: number, random01: number) {
    const v = state / PARK_MILLER_MODULUS + random01
    return v >= 1 ? v - 1 : v
}
