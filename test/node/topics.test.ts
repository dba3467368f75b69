import { describe, test } from "node:test"
import assert from "node:assert/strict"

import { topicMatches, validateTopicFilter, validateTopicName } from "../../src/mqtt/topics"

describe("validateTopicName", () => {
    const valid = [
        "a",
        "/",
        "//",
        "a/b/c",
        "/leading",
        "trailing/",
        " ",
        "$SYS/broker/load",
        "zähler/€/𝄞",
        "x".repeat(65535),
        "é".repeat(32767), // 65534 bytes
    ]
    for (const topic of valid) {
        test(`accepts ${JSON.stringify(topic.slice(0, 20))} (${Buffer.byteLength(topic)} bytes)`, () => {
            assert.equal(validateTopicName(topic), null)
        })
    }
    const invalid: [string, RegExp][] = [
        ["", /^\[MQTT-4\.7\.3-1\] topic must be at least one character long$/],
        ["a/+", /^\[MQTT-3\.3\.2-2\] topic name must not contain wildcards$/],
        ["+", /\[MQTT-3\.3\.2-2\]/],
        ["#", /\[MQTT-3\.3\.2-2\]/],
        ["a/#", /\[MQTT-3\.3\.2-2\]/],
        ["a+b", /\[MQTT-3\.3\.2-2\]/],
        ["a\u0000b", /^\[MQTT-4\.7\.3-2\] topic must not contain U\+0000$/],
        ["x".repeat(65536), /^\[MQTT-4\.7\.3-3\] topic must be at most 65535 bytes of UTF-8, got 65536$/],
        ["é".repeat(32768), /got 65536/],
    ]
    for (const [topic, expected] of invalid) {
        test(`rejects ${JSON.stringify(topic.slice(0, 20))}`, () => {
            assert.match(validateTopicName(topic) ?? "", expected)
        })
    }
})

describe("validateTopicFilter", () => {
    const valid = [
        "#",
        "+",
        "/",
        "+/+",
        "/+",
        "+/",
        "a/#",
        "a/+/b",
        "a/+/#",
        "+/tennis/#",
        "sport/tennis/player1",
        "$SYS/#",
        "zähler/+/€",
        "/#",
        "//#",
    ]
    for (const filter of valid) {
        test(`accepts ${JSON.stringify(filter)}`, () => {
            assert.equal(validateTopicFilter(filter), null)
        })
    }
    const invalid: [string, RegExp][] = [
        ["", /\[MQTT-4\.7\.3-1\]/],
        ["a\u0000", /\[MQTT-4\.7\.3-2\]/],
        ["x".repeat(65536), /\[MQTT-4\.7\.3-3\]/],
        ["sport/tennis#", /^\[MQTT-4\.7\.1-2\] multi-level wildcard # must be the last character/],
        ["sport/tennis/#/ranking", /\[MQTT-4\.7\.1-2\]/],
        ["#/", /\[MQTT-4\.7\.1-2\]/],
        ["##", /\[MQTT-4\.7\.1-2\]/],
        ["a#", /\[MQTT-4\.7\.1-2\]/],
        ["sport+", /^\[MQTT-4\.7\.1-3\] single-level wildcard \+ must occupy a whole level$/],
        ["sport/+tennis", /\[MQTT-4\.7\.1-3\]/],
        ["++", /\[MQTT-4\.7\.1-3\]/],
        ["a/b+/c", /\[MQTT-4\.7\.1-3\]/],
        ["+#", /\[MQTT-4\.7\.1/],
    ]
    for (const [filter, expected] of invalid) {
        test(`rejects ${JSON.stringify(filter.slice(0, 30))}`, () => {
            assert.match(validateTopicFilter(filter) ?? "", expected)
        })
    }
})

describe("topicMatches", () => {
    // [filter, topic, expected], mostly from the examples in [MQTT-4.7].
    const cases: [string, string, boolean][] = [
        ["sport/tennis/player1/#", "sport/tennis/player1", true],
        ["sport/tennis/player1/#", "sport/tennis/player1/ranking", true],
        ["sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true],
        ["sport/tennis/player1/#", "sport/tennis/player2", false],
        ["sport/tennis/player1/#", "sport/tennis", false],
        ["sport/#", "sport", true],
        ["sport/#", "sports", false],
        ["#", "sport", true],
        ["#", "/", true],
        ["#", "a/b/c", true],
        ["sport/tennis/+", "sport/tennis/player1", true],
        ["sport/tennis/+", "sport/tennis/player2", true],
        ["sport/tennis/+", "sport/tennis/player1/ranking", false],
        ["sport/+", "sport", false],
        ["sport/+", "sport/", true],
        ["+/+", "/finance", true],
        ["/+", "/finance", true],
        ["+", "/finance", false],
        ["+", "finance", true],
        ["+", "", false],
        ["+/+/+", "a//c", true],
        ["a/+/c", "a//c", true],
        ["a/+/c", "a/b/c/d", false],
        ["a/+/#", "a/b", true],
        ["a/+/#", "a", false],
        ["a/b", "a/b", true],
        ["a/b", "a/b/", false],
        ["a/b/", "a/b", false],
        ["a/b", "a/bc", false],
        ["a/bc", "a/b", false],
        ["A/b", "a/b", false],
        ["/", "/", true],
        ["/", "", false],
        ["zähler/+", "zähler/€", true],
        ["zähler/+", "zähler/€/x", false],
        ["+/€", "zähler/€", true],
        // [MQTT-4.7.2-1]: wildcards at the start do not match $ topics.
        ["#", "$SYS/broker", false],
        ["+/monitor/Clients", "$SYS/monitor/Clients", false],
        ["$SYS/#", "$SYS/monitor/Clients", true],
        ["$SYS/monitor/+", "$SYS/monitor/Clients", true],
        ["$SYS", "$SYS", true],
        ["a/#", "a/$x", true],
        ["+/$x", "a/$x", true],
        // Invalid inputs never match.
        ["a/#/b", "a/x/b", false],
        ["a+", "a+", false],
        ["a/b", "a/+", false],
        ["#", "a/#", false],
        ["", "", false],
    ]
    for (const [filter, topic, expected] of cases) {
        test(`${JSON.stringify(filter)} ${expected ? "matches" : "does not match"} ${JSON.stringify(topic)}`, () => {
            assert.equal(topicMatches(filter, topic), expected)
        })
    }

    test("agrees with a reference matcher on random levels", () => {
        // Reference: the obvious split-based implementation.
        const reference = (filter: string, topic: string): boolean => {
            if (topic.startsWith("$") && /^[+#]/.test(filter)) return false
            const filterLevels = filter.split("/")
            const topicLevels = topic.split("/")
            for (let i = 0; i < filterLevels.length; i++) {
                if (filterLevels[i] === "#") return true
                if (i >= topicLevels.length) return false
                if (filterLevels[i] !== "+" && filterLevels[i] !== topicLevels[i]) return false
            }
            return filterLevels.length === topicLevels.length
        }
        const topicParts = ["", "a", "b", "$s", "é"]
        const filterParts = [...topicParts, "+", "#"]
        let seed = 7
        const random = (n: number) => {
            seed = (seed * 1103515245 + 12345) & 0x7fffffff
            return seed % n
        }
        let checked = 0
        for (let round = 0; round < 20000; round++) {
            const pick = (parts: string[]) => {
                const levels: string[] = []
                const count = 1 + random(4)
                for (let i = 0; i < count; i++) levels.push(parts[random(parts.length)])
                return levels.join("/")
            }
            const filter = pick(filterParts)
            const topic = pick(topicParts)
            if (validateTopicFilter(filter) !== null) continue
            if (validateTopicName(topic) !== null) continue
            checked++
            assert.equal(topicMatches(filter, topic), reference(filter, topic), `${filter} vs ${topic}`)
        }
        assert.ok(checked > 5000, `only ${checked} valid pairs`)
    })
})
