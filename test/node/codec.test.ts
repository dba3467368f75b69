import { describe, test } from "node:test"
import assert from "node:assert/strict"
import mqttPacket from "mqtt-packet"

import { encodePublishInto } from "../../src/mqtt/codec"
import { Packet, PacketType } from "../../src/mqtt/packets"
import { fromMqttPacket, PACKET_FIXTURES, toMqttPacket } from "./packet-fixtures"
import { encodePacket, encodeRemainingLength, MAX_REMAINING_LENGTH } from "../fixtures/mqtt-codec"

/** Parses bytes with mqtt-packet's parser, expecting exactly one packet. */
function parseWithMqttPacket(bytes: Buffer): any {
    const parser = mqttPacket.parser({ protocolVersion: 4 })
    const packets: any[] = []
    const errors: Error[] = []
    parser.on("packet", (p: any) => packets.push(p))
    parser.on("error", (e: Error) => errors.push(e))
    parser.parse(bytes)
    assert.deepEqual(errors, [])
    assert.equal(packets.length, 1)
    return packets[0]
}

describe("encodePacket matches mqtt-packet byte for byte", () => {
    for (const fixture of PACKET_FIXTURES) {
        test(fixture.name, () => {
            const ours = encodePacket(fixture.packet)
            const reference = mqttPacket.generate(toMqttPacket(fixture.packet), { protocolVersion: 4 })
            assert.ok(
                ours.equals(reference),
                `ours ${ours.toString("hex").slice(0, 80)} vs reference ${reference.toString("hex").slice(0, 80)}`
            )
        })
    }
})

describe("mqtt-packet parses what we encode", () => {
    for (const fixture of PACKET_FIXTURES) {
        test(fixture.name, () => {
            const parsed = parseWithMqttPacket(encodePacket(fixture.packet))
            assert.deepEqual(fromMqttPacket(parsed), fixture.packet)
        })
    }
})

describe("encodePublishInto writes a PUBLISH into a buffer of the caller's", () => {
    const publishes = PACKET_FIXTURES.filter(f => f.packet.type === PacketType.Publish)
    for (const fixture of publishes) {
        test(fixture.name, () => {
            const expected = encodePacket(fixture.packet)
            const room = Buffer.alloc(3 + expected.length + 5, 0xaa)
            assert.equal(encodePublishInto(fixture.packet as any, room, 3), 3 + expected.length)
            assert.ok(room.subarray(3, 3 + expected.length).equals(expected))
            assert.ok(room.subarray(0, 3).equals(Buffer.alloc(3, 0xaa)), "nothing before the offset")
            assert.ok(room.subarray(3 + expected.length).equals(Buffer.alloc(5, 0xaa)), "nothing after the packet")
            // One byte short: minus the size, and not a byte written.
            const short = Buffer.alloc(3 + expected.length - 1, 0xaa)
            assert.equal(encodePublishInto(fixture.packet as any, short, 3), -expected.length)
            assert.ok(short.equals(Buffer.alloc(short.length, 0xaa)))
        })
    }
})

describe("encodeRemainingLength", () => {
    const cases: [number, string][] = [
        [0, "00"],
        [1, "01"],
        [127, "7f"],
        [128, "8001"],
        [321, "c102"],
        [16383, "ff7f"],
        [16384, "808001"],
        [2097151, "ffff7f"],
        [2097152, "80808001"],
        [MAX_REMAINING_LENGTH, "ffffff7f"],
    ]
    for (const [length, hex] of cases) {
        test(`${length} -> ${hex}`, () => {
            assert.equal(encodeRemainingLength(length).toString("hex"), hex)
        })
    }
    for (const bad of [-1, MAX_REMAINING_LENGTH + 1, 1.5, NaN]) {
        test(`rejects ${bad}`, () => {
            assert.throws(() => encodeRemainingLength(bad), /\[MQTT-2\.2\.3\] remaining length/)
        })
    }
    test("header of each size matches a real packet", () => {
        for (const fixture of PACKET_FIXTURES) {
            const bytes = encodePacket(fixture.packet)
            let length = 0
            let multiplier = 1
            let i = 1
            for (;;) {
                length += (bytes[i] & 0x7f) * multiplier
                multiplier *= 128
                if ((bytes[i++] & 0x80) === 0) break
            }
            assert.equal(length, bytes.length - i)
            assert.ok(encodeRemainingLength(length).equals(bytes.slice(1, i)))
        }
    })
})

describe("encodePacket rejects invalid packets", () => {
    const publish = (fields: any): Packet => ({
        type: PacketType.Publish,
        topic: "a/b",
        payload: Buffer.from("x"),
        qos: 1,
        dup: false,
        retain: false,
        packetId: 1,
        ...fields,
    })
    const connect = (fields: any): Packet => ({
        type: PacketType.Connect,
        clientId: "c",
        keepaliveS: 10,
        cleanSession: true,
        ...fields,
    })
    const cases: [string, any, RegExp][] = [
        ["publish wildcard +", publish({ topic: "a/+" }), /\[MQTT-3\.3\.2-2\] topic name must not contain wildcards/],
        ["publish wildcard #", publish({ topic: "#" }), /\[MQTT-3\.3\.2-2\]/],
        ["publish empty topic", publish({ topic: "" }), /\[MQTT-4\.7\.3-1\]/],
        ["publish topic with U+0000", publish({ topic: "a\u0000b" }), /\[MQTT-4\.7\.3-2\]/],
        ["publish topic too long", publish({ topic: "x".repeat(65536) }), /\[MQTT-4\.7\.3-3\]/],
        ["publish topic not a string", publish({ topic: 5 }), /PUBLISH topic must be a string/],
        ["publish qos 3", publish({ qos: 3 }), /PUBLISH qos must be 0, 1 or 2, got 3/],
        ["publish qos -1", publish({ qos: -1 }), /qos must be 0, 1 or 2/],
        ["publish qos 1.5", publish({ qos: 1.5 }), /qos must be 0, 1 or 2/],
        [
            "publish packet id 0",
            publish({ packetId: 0 }),
            /\[MQTT-2\.3\.1-1\] PUBLISH packet id must be an integer 1\.\.65535, got 0/,
        ],
        ["publish packet id 65536", publish({ packetId: 65536 }), /got 65536/],
        ["publish packet id missing", publish({ packetId: undefined }), /packet id/],
        ["publish qos 0 with packet id", publish({ qos: 0, packetId: 5 }), /\[MQTT-2\.3\.1-5\]/],
        ["publish qos 0 with dup", publish({ qos: 0, packetId: undefined, dup: true }), /\[MQTT-3\.3\.1-2\]/],
        ["publish payload missing", publish({ payload: null }), /payload must be a Buffer/],
        [
            "publish remaining length over the maximum",
            publish({ payload: { length: MAX_REMAINING_LENGTH } }),
            /remaining length 268435462 exceeds 268435455/,
        ],
        ["connect keepalive 65536", connect({ keepaliveS: 65536 }), /keepalive must be an integer 0\.\.65535/],
        ["connect keepalive -1", connect({ keepaliveS: -1 }), /keepalive/],
        [
            "connect empty client id without clean session",
            connect({ clientId: "", cleanSession: false }),
            /\[MQTT-3\.1\.3-7\]/,
        ],
        ["connect client id with U+0000", connect({ clientId: "a\u0000" }), /\[MQTT-1\.5\.3-2\] CONNECT client id/],
        ["connect client id too long", connect({ clientId: "é".repeat(40000) }), /at most 65535 bytes/],
        ["connect password without username", connect({ password: Buffer.from("p") }), /\[MQTT-3\.1\.2-22\]/],
        [
            "connect password too long",
            connect({ username: "u", password: Buffer.alloc(65536) }),
            /password must be at most 65535/,
        ],
        [
            "connect will qos 3",
            connect({
                will: {
                    topic: "w",
                    payload: Buffer.alloc(0),
                    qos: 3,
                    retain: false,
                },
            }),
            /CONNECT will qos/,
        ],
        [
            "connect will topic wildcard",
            connect({
                will: {
                    topic: "w/#",
                    payload: Buffer.alloc(0),
                    qos: 0,
                    retain: false,
                },
            }),
            /will topic.*\[MQTT-3\.3\.2-2\]/,
        ],
        [
            "connect will payload too long",
            connect({
                will: {
                    topic: "w",
                    payload: Buffer.alloc(65536),
                    qos: 0,
                    retain: false,
                },
            }),
            /will payload must be at most/,
        ],
        [
            "connack return code 6",
            { type: PacketType.Connack, sessionPresent: false, returnCode: 6 },
            /CONNACK return code must be 0\.\.5, got 6/,
        ],
        [
            "connack session present with refusal",
            { type: PacketType.Connack, sessionPresent: true, returnCode: 5 },
            /\[MQTT-3\.2\.2-4\]/,
        ],
        ["puback packet id 0", { type: PacketType.Puback, packetId: 0 }, /PUBACK packet id/],
        ["pubrel packet id 70000", { type: PacketType.Pubrel, packetId: 70000 }, /PUBREL packet id/],
        ["unsuback packet id missing", { type: PacketType.Unsuback }, /UNSUBACK packet id/],
        [
            "subscribe without filters",
            { type: PacketType.Subscribe, packetId: 1, subscriptions: [] },
            /\[MQTT-3\.8\.3-3\]/,
        ],
        [
            "subscribe bad # filter",
            {
                type: PacketType.Subscribe,
                packetId: 1,
                subscriptions: [{ topic: "a/#/b", qos: 0 }],
            },
            /\[MQTT-4\.7\.1-2\]/,
        ],
        [
            "subscribe bad + filter",
            {
                type: PacketType.Subscribe,
                packetId: 1,
                subscriptions: [{ topic: "a+", qos: 0 }],
            },
            /\[MQTT-4\.7\.1-3\]/,
        ],
        [
            "subscribe qos 3",
            {
                type: PacketType.Subscribe,
                packetId: 1,
                subscriptions: [{ topic: "a", qos: 3 }],
            },
            /SUBSCRIBE requested qos/,
        ],
        [
            "subscribe packet id 0",
            {
                type: PacketType.Subscribe,
                packetId: 0,
                subscriptions: [{ topic: "a", qos: 0 }],
            },
            /SUBSCRIBE packet id/,
        ],
        ["suback without codes", { type: PacketType.Suback, packetId: 1, returnCodes: [] }, /at least one return code/],
        ["suback code 3", { type: PacketType.Suback, packetId: 1, returnCodes: [3] }, /\[MQTT-3\.9\.3-2\].*got 3/],
        [
            "unsubscribe without filters",
            { type: PacketType.Unsubscribe, packetId: 1, topics: [] },
            /\[MQTT-3\.10\.3-2\]/,
        ],
        ["unsubscribe empty filter", { type: PacketType.Unsubscribe, packetId: 1, topics: [""] }, /\[MQTT-4\.7\.3-1\]/],
        ["unknown type", { type: 15 }, /unknown packet type 15/],
        ["missing packet", null, /missing packet/],
    ]
    for (const [name, packet, expected] of cases) {
        test(name, () => {
            assert.throws(() => encodePacket(packet), expected)
        })
    }
})
