// Topic names, topic filters and matching, [MQTT-4.7].
// Pure core: imports nothing from @devicescript, runs unchanged in Node and in the VM.
//
// Everything works on UTF-8 bytes: "/", "+", "#" and "$" are ASCII, and a UTF-8
// multi-byte sequence never contains an ASCII byte, so byte-wise scanning is exact
// and avoids relying on string APIs that differ between Node and DeviceScript.

const SLASH = 0x2f
const PLUS = 0x2b
const HASH = 0x23
const DOLLAR = 0x24

/** Longest UTF-8 string the 2-byte length prefix can carry, [MQTT-1.5.3]. */
export const MAX_STRING_BYTES = 65535

function checkLengthAndNull(bytes: Buffer): string | null {
    if (bytes.length < 1) return "[MQTT-4.7.3-1] topic must be at least one character long"
    if (bytes.length > MAX_STRING_BYTES)
        return `[MQTT-4.7.3-3] topic must be at most ${MAX_STRING_BYTES} bytes of UTF-8, got ${bytes.length}`
    for (let i = 0; i < bytes.length; i++) {
        // UTF-8 encodes U+0000 as a single zero byte and never uses zero elsewhere.
        if (bytes[i] === 0) return "[MQTT-4.7.3-2] topic must not contain U+0000"
    }
    return null
}

/**
 * Checks the UTF-8 bytes of a topic name (as sent in PUBLISH or as a will topic).
 * Returns null when valid, otherwise an error text citing the spec clause.
 * Does not check that the bytes are well-formed UTF-8: callers that received the
 * bytes from the network validate that first.
 */
export function validateTopicNameBytes(bytes: Buffer): string | null {
    const problem = checkLengthAndNull(bytes)
    if (problem !== null) return problem
    for (let i = 0; i < bytes.length; i++) {
        const byte = bytes[i]
        if (byte === PLUS || byte === HASH) return "[MQTT-3.3.2-2] topic name must not contain wildcards"
    }
    return null
}

/**
 * Checks the UTF-8 bytes of a topic filter (as sent in SUBSCRIBE or UNSUBSCRIBE).
 * Returns null when valid, otherwise an error text citing the spec clause.
 */
export function validateTopicFilterBytes(bytes: Buffer): string | null {
    const problem = checkLengthAndNull(bytes)
    if (problem !== null) return problem
    const length = bytes.length
    for (let i = 0; i < length; i++) {
        const byte = bytes[i]
        const startsLevel = i === 0 || bytes[i - 1] === SLASH
        const endsLevel = i === length - 1 || bytes[i + 1] === SLASH
        if (byte === HASH) {
            if (!startsLevel || i !== length - 1)
                return "[MQTT-4.7.1-2] multi-level wildcard # must be the last character and occupy a whole level"
        } else if (byte === PLUS) {
            if (!startsLevel || !endsLevel) return "[MQTT-4.7.1-3] single-level wildcard + must occupy a whole level"
        }
    }
    return null
}

/** Validates a topic name for PUBLISH or a will: null when valid, else an error text. */
export function validateTopicName(topic: string): string | null {
    return validateTopicNameBytes(Buffer.from(topic))
}

/** Validates a topic filter for SUBSCRIBE or UNSUBSCRIBE: null when valid, else an error text. */
export function validateTopicFilter(filter: string): string | null {
    return validateTopicFilterBytes(Buffer.from(filter))
}

/**
 * True when the topic name matches the topic filter, [MQTT-4.7.1].
 * "+" matches exactly one level (which may be empty), "#" matches the parent level
 * and any number of child levels, and a filter starting with a wildcard does not
 * match a topic starting with "$" [MQTT-4.7.2-1].
 * Returns false when the filter or the topic is invalid.
 */
export function topicMatches(filter: string, topic: string): boolean {
    const filterBytes = Buffer.from(filter)
    const topicBytes = Buffer.from(topic)
    if (validateTopicFilterBytes(filterBytes) !== null) return false
    if (validateTopicNameBytes(topicBytes) !== null) return false
    if (topicBytes[0] === DOLLAR && (filterBytes[0] === PLUS || filterBytes[0] === HASH)) return false

    let filterIndex = 0
    let topicIndex = 0
    const filterLength = filterBytes.length
    const topicLength = topicBytes.length
    // Invariant: both indexes sit at the start of a level.
    for (;;) {
        // Reading past the end is avoided: DeviceScript may not return undefined there.
        const filterByte = filterIndex < filterLength ? filterBytes[filterIndex] : -1
        if (filterByte === HASH) return true
        if (filterByte === PLUS) {
            // Skip the whole topic level, which may be empty.
            while (topicIndex < topicLength && topicBytes[topicIndex] !== SLASH) topicIndex++
            filterIndex++
        } else {
            while (filterIndex < filterLength && filterBytes[filterIndex] !== SLASH) {
                if (topicIndex >= topicLength || topicBytes[topicIndex] !== filterBytes[filterIndex]) return false
                filterIndex++
                topicIndex++
            }
            if (topicIndex < topicLength && topicBytes[topicIndex] !== SLASH) return false
        }
        // Both at the end of a level now.
        const filterDone = filterIndex >= filterLength
        const topicDone = topicIndex >= topicLength
        if (filterDone && topicDone) return true
        if (filterDone) return false
        if (topicDone) {
            // "sport/#" also matches "sport": the # stands for the parent level too.
            return filterIndex + 2 === filterLength && filterBytes[filterIndex + 1] === HASH
        }
        // Both sit on a "/": step over it into the next level.
        filterIndex++
        topicIndex++
    }
}
