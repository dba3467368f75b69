// Commands are hostile input: each budget is checked before anything is allocated for the input.
import { describe, test } from "node:test"
import assert from "node:assert/strict"
import {
    COMMAND_WINDOW_MS,
    CommandRate,
    COMMANDS_PER_WINDOW,
    jsonDepth,
    MAX_COMMAND_BYTES,
    MAX_COMMAND_DEPTH,
    MAX_COMMAND_NAME_BYTES,
    MAX_ID_BYTES,
    MAX_REPLIES_WAITING,
    parseCommand,
} from "../../src/commands"

const json = (v: unknown) => Buffer.from(JSON.stringify(v))

describe("commands", () => {
    test("a well-formed command passes with its request and id", () => {
        const c = parseCommand("time", json({ id: "r1", utc_ms: 1764547200000 }), false)
        assert.deepEqual(c, { name: "time", request: { id: "r1", utc_ms: 1764547200000 }, id: "r1", error: "" })
        assert.equal(parseCommand("status", Buffer.alloc(0), false).error, "", "an empty payload is an empty request")
        assert.equal(parseCommand("status", json({ id: 7 }), false).id, 7)
    })

    test("an unknown, malformed or retained command is refused with the reason, its id kept when it can be", () => {
        assert.match(parseCommand("launch", json({ id: "c1" }), false).error, /^unknown command launch \(known: /)
        // Names are looked up in "/replay/restart/...": parts of it, or two names with a slash, are no command.
        for (const name of ["", "time/status", "stat", "/time", "replay/"])
            assert.equal(
                parseCommand(name, json({}), false).error,
                `unknown command ${name} (known: replay, restart, shutdown, status, time)`
            )
        for (const name of ["replay", "restart", "shutdown", "status", "time"])
            assert.equal(parseCommand(name, json({}), false).error, "", name)
        assert.equal(parseCommand("launch", json({ id: "c1" }), false).id, "c1")
        assert.equal(parseCommand("restart", Buffer.from("{not json"), false).error, "payload is not JSON")
        assert.equal(parseCommand("restart", json([1, 2]), false).error, "payload must be a JSON object")
        assert.equal(parseCommand("restart", json("x"), false).error, "payload must be a JSON object")
        assert.match(parseCommand("restart", json({ id: "r" }), true).error, /^retained commands are ignored/)
    })

    test("the errors name the limits in force (written out in the texts)", () => {
        const long = "x".repeat(MAX_COMMAND_NAME_BYTES + 1)
        assert.equal(parseCommand(long, json({}), false).error, `command name over ${MAX_COMMAND_NAME_BYTES} bytes`)
        const big = Buffer.alloc(MAX_COMMAND_BYTES + 1, 32)
        assert.equal(parseCommand("status", big, false).error, `payload over ${MAX_COMMAND_BYTES} bytes`)
        const nested = Buffer.from("[".repeat(MAX_COMMAND_DEPTH + 1))
        assert.equal(parseCommand("status", nested, false).error, `payload nested deeper than ${MAX_COMMAND_DEPTH}`)
        assert.equal(
            parseCommand("status", json({ id: "i".repeat(MAX_ID_BYTES + 1) }), false).error,
            `id must be a number or a string of at most ${MAX_ID_BYTES} characters`
        )
    })

    test("a name too long to echo in a reply topic is answered on reply/invalid", () => {
        const c = parseCommand("x".repeat(2048), json({ id: "n" }), false)
        assert.equal(c.name, "invalid")
        assert.match(c.error, /^command name over 16 bytes/)
    })

    test("a payload over the budget is refused without being parsed", () => {
        const big = Buffer.from(JSON.stringify({ id: "big", pad: "y".repeat(MAX_COMMAND_BYTES) }))
        const c = parseCommand("status", big, false)
        assert.equal(c.error, `payload over ${MAX_COMMAND_BYTES} bytes`)
        assert.equal(c.id, null, "nothing of an unparsed payload is echoed")
        const fits = Buffer.from(JSON.stringify({ id: "ok", pad: "" }).padEnd(MAX_COMMAND_BYTES, " "))
        assert.equal(parseCommand("status", fits, false).error, "")
    })

    test("deep nesting is refused before JSON.parse, brackets inside strings do not count", () => {
        const deep = Buffer.from('{"id":' + "[".repeat(250) + "]".repeat(250) + "}")
        assert.equal(parseCommand("status", deep, false).error, `payload nested deeper than ${MAX_COMMAND_DEPTH}`)
        assert.equal(jsonDepth(Buffer.from('{"a":"[[[[[[[[[[\\"[[[["}'), 4), 1)
        assert.equal(jsonDepth(Buffer.from('{"a":{"b":[{"c":1}]}}'), 4), 4)
        assert.equal(jsonDepth(Buffer.from('{"a":{"b":[{"c":[1]}]}}'), 4), -1)
    })

    test("an id too long to echo is refused, and the reply carries null", () => {
        const c = parseCommand("status", json({ id: "i".repeat(MAX_ID_BYTES + 1) }), false)
        assert.match(c.error, /^id must be a number or a string of at most 64 characters/)
        assert.equal(c.id, null)
        assert.equal(parseCommand("status", json({ id: "i".repeat(MAX_ID_BYTES) }), false).error, "")
        assert.match(parseCommand("status", json({ id: { a: 1 } }), false).error, /^id must be/)
    })

    test("at most COMMANDS_PER_WINDOW commands a window are admitted; the rest are counted", () => {
        const rate = new CommandRate()
        let admitted = 0
        for (let i = 0; i < 2000; ++i) if (rate.admit(1000 + i, 0)) admitted++
        assert.equal(admitted, COMMANDS_PER_WINDOW)
        assert.equal(rate.dropped, 2000 - COMMANDS_PER_WINDOW)
        assert.ok(rate.admit(1000 + COMMAND_WINDOW_MS, 0), "a new window admits again")
    })

    test("no command is admitted while MAX_REPLIES_WAITING replies wait for their acknowledgement", () => {
        const rate = new CommandRate()
        assert.equal(rate.admit(0, MAX_REPLIES_WAITING), false)
        assert.equal(rate.dropped, 1)
        assert.equal(rate.admit(0, MAX_REPLIES_WAITING - 1), true)
    })
})
