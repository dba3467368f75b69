// Reconnect delays: exponential backoff with full jitter ("Exponential Backoff And Jitter",
// AWS Architecture Blog, 2015), capped, reset by the caller after a successful CONNACK.
// Pure core: imports nothing from @devicescript.

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
