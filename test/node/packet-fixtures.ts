// Shared fixture table for the codec and decoder tests (MQTT 3.1.1; MQTT 5's is
// packet-fixtures-5.ts), plus conversions between our Packet values and mqtt-packet's objects (the
// reference implementation), for either version.

import { ConnectReturnCode, Packet, PacketType, SUBACK_FAILURE } from "../../src/mqtt/packets"

export interface PacketFixture {
    name: string
    packet: Packet
    /** Too big for the DeviceScript simulator's 64 KB heap. */
    nodeOnly?: boolean
}

const TOPIC = "a/b"

/** A QoS 0 PUBLISH to TOPIC whose remaining length is exactly `remainingLength`. */
function publishWithRemainingLength(remainingLength: number): Packet {
    const payloadLength = remainingLength - 2 - Buffer.from(TOPIC).length
    const payload = Buffer.alloc(payloadLength)
    for (let i = 0; i < payloadLength; i++) payload[i] = (i * 7 + 3) & 0xff
    return {
        type: PacketType.Publish,
        topic: TOPIC,
        payload: payload,
        qos: 0,
        dup: false,
        retain: false,
    }
}

function connackFixtures(): PacketFixture[] {
    const fixtures: PacketFixture[] = []
    for (let code = 0; code <= 5; code++) {
        fixtures.push({
            name: `CONNACK return code ${code}`,
            packet: {
                type: PacketType.Connack,
                sessionPresent: false,
                returnCode: code,
            },
        })
    }
    fixtures.push({
        name: "CONNACK session present",
        packet: {
            type: PacketType.Connack,
            sessionPresent: true,
            returnCode: ConnectReturnCode.Accepted,
        },
    })
    return fixtures
}

function publishFixtures(): PacketFixture[] {
    const fixtures: PacketFixture[] = []
    for (let qos = 0; qos <= 2; qos++) {
        for (const dup of qos === 0 ? [false] : [false, true]) {
            for (const retain of [false, true]) {
                fixtures.push({
                    name: `PUBLISH qos ${qos} dup ${dup} retain ${retain}`,
                    packet: {
                        type: PacketType.Publish,
                        topic: "meter/1/energy",
                        payload: Buffer.from('{"kWh":12.5}'),
                        qos: qos,
                        dup: dup,
                        retain: retain,
                        packetId: qos > 0 ? 10 + qos : undefined,
                    },
                })
            }
        }
    }
    // Drop the undefined packetId keys so values compare equal to decoded ones.
    for (const fixture of fixtures) {
        const packet = fixture.packet as { packetId?: number }
        if (packet.packetId === undefined) delete packet.packetId
    }
    fixtures.push(
        {
            name: "PUBLISH empty payload",
            packet: {
                type: PacketType.Publish,
                topic: "x",
                payload: Buffer.alloc(0),
                qos: 0,
                dup: false,
                retain: true,
            },
        },
        {
            name: "PUBLISH UTF-8 multibyte topic",
            packet: {
                type: PacketType.Publish,
                topic: "zähler/€/𝄞/東京",
                payload: Buffer.from("héllo"),
                qos: 1,
                dup: false,
                retain: false,
                packetId: 65535,
            },
        },
        {
            name: "PUBLISH packet id 1",
            packet: {
                type: PacketType.Publish,
                topic: "$SYS/x",
                payload: Buffer.from([0, 1, 2, 0xff]),
                qos: 2,
                dup: true,
                retain: false,
                packetId: 1,
            },
        },
        {
            name: "PUBLISH topic of one space",
            packet: {
                type: PacketType.Publish,
                topic: " ",
                payload: Buffer.from([]),
                qos: 0,
                dup: false,
                retain: false,
            },
        },
        {
            name: "PUBLISH remaining length 3 (smallest)",
            packet: {
                type: PacketType.Publish,
                topic: "t",
                payload: Buffer.alloc(0),
                qos: 0,
                dup: false,
                retain: false,
            },
        }
    )
    for (const length of [127, 128, 16383, 16384, 2097151, 2097152]) {
        fixtures.push({
            name: `PUBLISH remaining length ${length}`,
            packet: publishWithRemainingLength(length),
            nodeOnly: length > 200,
        })
    }
    return fixtures
}

function connectFixtures(): PacketFixture[] {
    return [
        {
            name: "CONNECT minimal clean session",
            packet: {
                type: PacketType.Connect,
                clientId: "meter-1",
                keepaliveS: 60,
                cleanSession: true,
            },
        },
        {
            name: "CONNECT persistent session keepalive 0",
            packet: {
                type: PacketType.Connect,
                clientId: "meter-2",
                keepaliveS: 0,
                cleanSession: false,
            },
        },
        {
            name: "CONNECT keepalive 65535 empty client id",
            packet: {
                type: PacketType.Connect,
                clientId: "",
                keepaliveS: 65535,
                cleanSession: true,
            },
        },
        {
            name: "CONNECT username and password",
            packet: {
                type: PacketType.Connect,
                clientId: "meter-3",
                keepaliveS: 30,
                cleanSession: true,
                username: "user",
                password: Buffer.from("secret"),
            },
        },
        {
            name: "CONNECT username only",
            packet: {
                type: PacketType.Connect,
                clientId: "meter-4",
                keepaliveS: 30,
                cleanSession: false,
                username: "jürgen",
            },
        },
        {
            name: "CONNECT empty username and password",
            packet: {
                type: PacketType.Connect,
                clientId: "m",
                keepaliveS: 1,
                cleanSession: true,
                username: "",
                password: Buffer.alloc(0),
            },
        },
        ...[0, 1, 2].map((qos): PacketFixture => ({
            name: `CONNECT will qos ${qos} retain ${qos === 1}`,
            packet: {
                type: PacketType.Connect,
                clientId: "meter-5",
                keepaliveS: 120,
                cleanSession: true,
                will: {
                    topic: "meter/5/status",
                    payload: Buffer.from("offline"),
                    qos: qos,
                    retain: qos === 1,
                },
            },
        })),
        {
            name: "CONNECT will retain qos 2, empty will payload, credentials",
            packet: {
                type: PacketType.Connect,
                clientId: "zähler-€",
                keepaliveS: 300,
                cleanSession: false,
                will: {
                    topic: "meter/€/status",
                    payload: Buffer.alloc(0),
                    qos: 2,
                    retain: true,
                },
                username: "u",
                password: Buffer.from([0, 0xff, 0x80]),
            },
        },
    ]
}

function ackFixtures(): PacketFixture[] {
    const fixtures: PacketFixture[] = []
    const types: [PacketType, string][] = [
        [PacketType.Puback, "PUBACK"],
        [PacketType.Pubrec, "PUBREC"],
        [PacketType.Pubrel, "PUBREL"],
        [PacketType.Pubcomp, "PUBCOMP"],
        [PacketType.Unsuback, "UNSUBACK"],
    ]
    for (const [type, name] of types) {
        for (const packetId of [1, 258, 65535]) {
            fixtures.push({
                name: `${name} packet id ${packetId}`,
                packet: { type: type, packetId: packetId } as Packet,
            })
        }
    }
    return fixtures
}

function subscriptionFixtures(): PacketFixture[] {
    return [
        {
            name: "SUBSCRIBE one filter",
            packet: {
                type: PacketType.Subscribe,
                packetId: 7,
                subscriptions: [{ topic: "meter/1/cmd", qos: 1 }],
            },
        },
        {
            name: "SUBSCRIBE wildcards, all qos",
            packet: {
                type: PacketType.Subscribe,
                packetId: 65535,
                subscriptions: [
                    { topic: "#", qos: 0 },
                    { topic: "meter/+/cmd", qos: 1 },
                    { topic: "zähler/€/#", qos: 2 },
                ],
            },
        },
        {
            name: "SUBACK granted qos",
            packet: {
                type: PacketType.Suback,
                packetId: 7,
                returnCodes: [1],
            },
        },
        {
            name: "SUBACK with failure 0x80",
            packet: {
                type: PacketType.Suback,
                packetId: 300,
                returnCodes: [0, 1, 2, SUBACK_FAILURE],
            },
        },
        {
            name: "UNSUBSCRIBE one filter",
            packet: {
                type: PacketType.Unsubscribe,
                packetId: 8,
                topics: ["meter/1/cmd"],
            },
        },
        {
            name: "UNSUBSCRIBE several filters",
            packet: {
                type: PacketType.Unsubscribe,
                packetId: 65535,
                topics: ["#", "a/+/b", "zähler"],
            },
        },
    ]
}

export const PACKET_FIXTURES: PacketFixture[] = [
    ...connectFixtures(),
    ...connackFixtures(),
    ...publishFixtures(),
    ...ackFixtures(),
    ...subscriptionFixtures(),
    { name: "PINGREQ", packet: { type: PacketType.Pingreq } },
    { name: "PINGRESP", packet: { type: PacketType.Pingresp } },
    { name: "DISCONNECT", packet: { type: PacketType.Disconnect } },
]

const COMMAND_NAMES: string[] = [
    "",
    "connect",
    "connack",
    "publish",
    "puback",
    "pubrec",
    "pubrel",
    "pubcomp",
    "subscribe",
    "suback",
    "unsubscribe",
    "unsuback",
    "pingreq",
    "pingresp",
    "disconnect",
    "auth",
]

/** Properties mqtt-packet holds as booleans: the Byte properties of 0 or 1, but Maximum QoS. */
const BOOLEAN_PROPERTIES = [
    "payloadFormatIndicator",
    "requestProblemInformation",
    "requestResponseInformation",
    "retainAvailable",
    "wildcardSubscriptionAvailable",
    "subscriptionIdentifiersAvailable",
    "sharedSubscriptionAvailable",
]

/**
 * Our properties as mqtt-packet's, key for key in the same order, so that both write them in the
 * same order: user properties become an object of names (a repeated name an array of its values,
 * which mqtt-packet writes together: fixtures keep a name's pairs together), subscription
 * identifiers one number or an array.
 */
export function toMqttProperties(properties: any): any {
    if (!properties) return undefined
    const result: any = {}
    for (const [name, value] of Object.entries<any>(properties)) {
        if (name === "subscriptionIdentifiers")
            result.subscriptionIdentifier = value.length === 1 ? value[0] : value.slice()
        else if (name === "userProperties") {
            const byName: any = {}
            for (const [key, v] of value as [string, string][])
                byName[key] = Object.hasOwn(byName, key) ? [].concat(byName[key], v as any) : v
            result.userProperties = byName
        } else if (BOOLEAN_PROPERTIES.includes(name)) result[name] = value === 1
        else result[name] = value
    }
    return result
}

/** mqtt-packet's properties as ours. */
export function fromMqttProperties(properties: any): any {
    const result: any = {}
    for (const [name, value] of Object.entries<any>(properties)) {
        if (name === "subscriptionIdentifier") result.subscriptionIdentifiers = Array.isArray(value) ? value : [value]
        else if (name === "userProperties") {
            const pairs: [string, string][] = []
            for (const key of Object.keys(value))
                for (const v of Array.isArray(value[key]) ? value[key] : [value[key]]) pairs.push([key, v])
            result.userProperties = pairs
        } else if (BOOLEAN_PROPERTIES.includes(name)) result[name] = value ? 1 : 0
        else if (Buffer.isBuffer(value)) result[name] = Buffer.from(value)
        else result[name] = value
    }
    return result
}

/** Sets `target.properties` from mqtt-packet's `parsed.properties`, when it has any. */
function withProperties(target: any, parsed: any) {
    if (parsed && parsed.properties) target.properties = fromMqttProperties(parsed.properties)
    return target
}

/** The same packet as an mqtt-packet object, for mqttPacket.generate with protocolVersion `version`. */
export function toMqttPacket(packet: Packet, version = 4): any {
    const cmd = COMMAND_NAMES[packet.type]
    const v5 = version === 5
    const p = packet as any
    const properties = toMqttProperties(p.properties)
    const reasonCode = p.reasonCode || 0
    switch (packet.type) {
        case PacketType.Connect: {
            const result: any = {
                cmd,
                protocolId: "MQTT",
                protocolVersion: version,
                clientId: packet.clientId,
                keepalive: packet.keepaliveS,
                clean: packet.cleanSession,
            }
            if (packet.will)
                result.will = {
                    topic: packet.will.topic,
                    payload: packet.will.payload,
                    qos: packet.will.qos,
                    retain: packet.will.retain,
                    properties: toMqttProperties(packet.will.properties),
                }
            if (packet.username !== undefined) result.username = packet.username
            if (packet.password !== undefined) result.password = packet.password
            if (properties) result.properties = properties
            return result
        }
        case PacketType.Connack:
            return v5
                ? { cmd, sessionPresent: packet.sessionPresent, reasonCode: packet.returnCode, properties }
                : {
                      cmd,
                      sessionPresent: packet.sessionPresent,
                      returnCode: packet.returnCode,
                  }
        case PacketType.Publish:
            return {
                cmd,
                topic: packet.topic,
                payload: packet.payload,
                qos: packet.qos,
                dup: packet.dup,
                retain: packet.retain,
                messageId: packet.packetId,
                properties,
            }
        case PacketType.Puback:
        case PacketType.Pubrec:
        case PacketType.Pubrel:
        case PacketType.Pubcomp:
            return v5
                ? { cmd, messageId: packet.packetId, reasonCode, properties }
                : { cmd, messageId: packet.packetId }
        case PacketType.Unsuback:
            return v5
                ? { cmd, messageId: packet.packetId, granted: p.reasonCodes.slice(), properties }
                : { cmd, messageId: packet.packetId }
        case PacketType.Subscribe:
            return {
                cmd,
                messageId: packet.packetId,
                subscriptions: packet.subscriptions.map(s =>
                    v5
                        ? {
                              topic: s.topic,
                              qos: s.qos,
                              nl: !!s.noLocal,
                              rap: !!s.retainAsPublished,
                              rh: s.retainHandling || 0,
                          }
                        : {
                              topic: s.topic,
                              qos: s.qos,
                          }
                ),
                properties,
            }
        case PacketType.Suback:
            return {
                cmd,
                messageId: packet.packetId,
                granted: packet.returnCodes.slice(),
                properties,
            }
        case PacketType.Unsubscribe:
            return {
                cmd,
                messageId: packet.packetId,
                unsubscriptions: packet.topics.slice(),
                properties,
            }
        case PacketType.Disconnect:
        case PacketType.Auth:
            return v5 ? { cmd, reasonCode, properties } : { cmd }
        default:
            return { cmd }
    }
}

/** Our Packet for an object mqtt-packet's parser produced, with protocolVersion `version`. */
export function fromMqttPacket(parsed: any, version = 4): Packet {
    const type = COMMAND_NAMES.indexOf(parsed.cmd) as PacketType
    if (version === 5) return fromMqttPacket5(parsed, type)
    switch (type) {
        case PacketType.Connect: {
            const result: any = {
                type,
                clientId: parsed.clientId,
                keepaliveS: parsed.keepalive,
                cleanSession: parsed.clean,
            }
            if (parsed.will)
                result.will = {
                    topic: parsed.will.topic,
                    payload: Buffer.from(parsed.will.payload),
                    qos: parsed.will.qos,
                    retain: parsed.will.retain,
                }
            if (parsed.username !== undefined) result.username = parsed.username
            if (parsed.password !== undefined) result.password = Buffer.from(parsed.password)
            return result
        }
        case PacketType.Connack:
            return {
                type,
                sessionPresent: parsed.sessionPresent,
                returnCode: parsed.returnCode,
            }
        case PacketType.Publish: {
            const result: any = {
                type,
                topic: parsed.topic,
                payload: Buffer.from(parsed.payload),
                qos: parsed.qos,
                dup: parsed.dup,
                retain: parsed.retain,
            }
            if (parsed.qos > 0) result.packetId = parsed.messageId
            return result
        }
        case PacketType.Puback:
        case PacketType.Pubrec:
        case PacketType.Pubrel:
        case PacketType.Pubcomp:
        case PacketType.Unsuback:
            return { type, packetId: parsed.messageId } as Packet
        case PacketType.Subscribe:
            return {
                type,
                packetId: parsed.messageId,
                subscriptions: parsed.subscriptions.map((s: any) => ({
                    topic: s.topic,
                    qos: s.qos,
                })),
            }
        case PacketType.Suback:
            return {
                type,
                packetId: parsed.messageId,
                returnCodes: parsed.granted.slice(),
            }
        case PacketType.Unsubscribe:
            return {
                type,
                packetId: parsed.messageId,
                topics: parsed.unsubscriptions.slice(),
            }
        default:
            return { type } as Packet
    }
}

/** fromMqttPacket for MQTT 5: a reason code of 0 and subscription options that are off left out. */
function fromMqttPacket5(parsed: any, type: PacketType): Packet {
    const withReason = (target: any) => {
        if (parsed.reasonCode) target.reasonCode = parsed.reasonCode
        return withProperties(target, parsed)
    }
    switch (type) {
        case PacketType.Connect: {
            const result: any = fromMqttPacket(parsed)
            if (parsed.will) withProperties(result.will, parsed.will)
            return withProperties(result, parsed)
        }
        case PacketType.Connack:
            return withProperties(
                { type, sessionPresent: parsed.sessionPresent, returnCode: parsed.reasonCode },
                parsed
            )
        case PacketType.Publish:
            return withProperties(fromMqttPacket(parsed), parsed)
        case PacketType.Puback:
        case PacketType.Pubrec:
        case PacketType.Pubrel:
        case PacketType.Pubcomp:
            return withReason({ type, packetId: parsed.messageId })
        case PacketType.Unsuback:
            return withProperties({ type, packetId: parsed.messageId, reasonCodes: parsed.granted.slice() }, parsed)
        case PacketType.Subscribe: {
            const result: any = fromMqttPacket(parsed)
            result.subscriptions = parsed.subscriptions.map((s: any) => {
                const subscription: any = { topic: s.topic, qos: s.qos }
                if (s.nl) subscription.noLocal = true
                if (s.rap) subscription.retainAsPublished = true
                if (s.rh) subscription.retainHandling = s.rh
                return subscription
            })
            return withProperties(result, parsed)
        }
        case PacketType.Suback:
        case PacketType.Unsubscribe:
            return withProperties(fromMqttPacket(parsed), parsed)
        case PacketType.Disconnect:
        case PacketType.Auth:
            return withReason({ type })
        default:
            return { type } as Packet
    }
}
