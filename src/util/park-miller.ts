// The minimal standard generator (Park and Miller, 1988; multiplier 48271), computed by Schrage's
// method so that no intermediate value leaves 32 bits: the DeviceScript VM multiplies whole
// numbers in 32 bits and wraps (48271 x 1,000,000,000 comes out negative), where Node computes
// in doubles. Both therefore produce the same sequence.
//
// Pure core: imports nothing from @devicescript.

export const PARK_MILLER_MODULUS = 2147483647

/** The state after `state` (1 .. PARK_MILLER_MODULUS - 1). */
export function nextParkMiller(state: number) {
    // 48271 * 44488 + 3399 = PARK_MILLER_MODULUS.
    const next = 48271 * (state % 44488) - 3399 * Math.floor(state / 44488)
    return next > 0 ? next : next + PARK_MILLER_MODULUS
}
