// The MQTT 5 fixture table for the codec and decoder tests: every packet type, every property in
// every packet that may carry it, every reason code, and the length boundaries (remaining length
// and property length at 127/128 and 16383/16384, Variable Byte Integers of 1 to 4 bytes, Four
// Byte Integers up to 2^32 - 1). Values are as the decoder returns them: a reason code of 0 and
// subscription options that are off are left out. A user property name's pairs stay together,
// as mqtt-packet (an object of names) writes them.

import { Packet, PacketType, ReasonCode } from "../../src/mqtt/packets"
import { PacketFixture } from "./packet-fixtures"

const PAYLOAD = Buffer.from('{"kWh":12.5}')

/** A PUBLISH whose remaining length is `remainingLength`, with a message expiry interval (7 bytes of properties). */
function publishWithRemainingLength(remainingLength: number): Packet {
    // Topic "a/b" (2 + 3), packet id (2), property length (1) and the property (5).
    const payload = Buffer.alloc(remainingLength - 5 - 2 - 6)
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7 + 3) & 0xff
    return {
        type: PacketType.Publish,
        topic: "a/b",
        payload,
        qos: 1,
        dup: false,
        retain: false,
        packetId: 9,
        properties: { messageExpiryInterval: 60 },
    }
}

/** A PUBACK whose property length is `propertyLength`: one user property ("k" and a value). */
function pubackWithPropertyLength(propertyLength: number): Packet {
    // Identifier (1), name (2 + 1), value (2 + n).
    const value = "v".repeat(propertyLength - 6)
    return {
        type: PacketType.Puback,
        packetId: 3,
        reasonCode: ReasonCode.NoMatchingSubscribers,
        properties: { userProperties: [["k", value]] },
    }
}

function connectFixtures(): PacketFixture[] {
    return [
        {
            name: "CONNECT v5 without properties",
            packet: { type: PacketType.Connect, clientId: "meter-1", keepaliveS: 60, cleanSession: true },
        },
        {
            name: "CONNECT v5 with every CONNECT property",
            packet: {
                type: PacketType.Connect,
                clientId: "meter-2",
                keepaliveS: 30,
                cleanSession: false,
                properties: {
                    sessionExpiryInterval: 4294967295,
                    receiveMaximum: 65535,
                    maximumPacketSize: 2048,
                    topicAliasMaximum: 0,
                    requestResponseInformation: 1,
                    requestProblemInformation: 0,
                    userProperties: [
                        ["node", "meter-2"],
                        ["node", "zähler"],
                        ["fw", ""],
                    ],
                    authenticationMethod: "SCRAM-SHA-1",
                    authenticationData: Buffer.from([0, 1, 0xfe, 0xff]),
                },
            },
        },
        {
            name: "CONNECT v5 with the smallest values",
            packet: {
                type: PacketType.Connect,
                clientId: "m",
                keepaliveS: 0,
                cleanSession: true,
                properties: {
                    sessionExpiryInterval: 0,
                    receiveMaximum: 1,
                    maximumPacketSize: 1,
                    topicAliasMaximum: 65535,
                    requestResponseInformation: 0,
                    requestProblemInformation: 1,
                },
            },
        },
        {
            name: "CONNECT v5 will with every will property, credentials",
            packet: {
                type: PacketType.Connect,
                clientId: "meter-3",
                keepaliveS: 120,
                cleanSession: true,
                will: {
                    topic: "meter/3/status",
                    payload: Buffer.from("offline"),
                    qos: 1,
                    retain: true,
                    properties: {
                        willDelayInterval: 2147483648,
                        payloadFormatIndicator: 1,
                        messageExpiryInterval: 3600,
                        contentType: "text/plain; charset=utf-8",
                        responseTopic: "meter/3/€",
                        correlationData: Buffer.from([7, 0, 7]),
                        userProperties: [["reason", "power lost"]],
                    },
                },
                username: "user",
                password: Buffer.from("secret"),
            },
        },
        {
            name: "CONNECT v5 will without will properties, session properties",
            packet: {
                type: PacketType.Connect,
                clientId: "meter-4",
                keepaliveS: 65535,
                cleanSession: false,
                will: { topic: "w", payload: Buffer.alloc(0), qos: 2, retain: false },
                properties: { sessionExpiryInterval: 86400 },
            },
        },
        {
            name: "CONNECT v5 will delay 0, payload format 0",
            packet: {
                type: PacketType.Connect,
                clientId: "meter-5",
                keepaliveS: 10,
                cleanSession: true,
                will: {
                    topic: "meter/5/status",
                    payload: Buffer.from("{}"),
                    qos: 0,
                    retain: false,
                    properties: { willDelayInterval: 0, payloadFormatIndicator: 0, messageExpiryInterval: 4294967295 },
                },
            },
        },
    ]
}

function connackFixtures(): PacketFixture[] {
    const fixtures: PacketFixture[] = [
        {
            name: "CONNACK v5 success without properties",
            packet: { type: PacketType.Connack, sessionPresent: false, returnCode: 0 },
        },
        {
            name: "CONNACK v5 session present with every CONNACK property",
            packet: {
                type: PacketType.Connack,
                sessionPresent: true,
                returnCode: 0,
                properties: {
                    sessionExpiryInterval: 0,
                    receiveMaximum: 1,
                    maximumQoS: 1,
                    retainAvailable: 0,
                    maximumPacketSize: 4294967295,
                    assignedClientIdentifier: "auto-5E3F",
                    topicAliasMaximum: 10,
                    reasonString: "welcome",
                    userProperties: [["broker", "test"]],
                    wildcardSubscriptionAvailable: 1,
                    subscriptionIdentifiersAvailable: 0,
                    sharedSubscriptionAvailable: 1,
                    serverKeepAlive: 0,
                    responseInformation: "responses/meter",
                    serverReference: "other.example:1883",
                    authenticationMethod: "SCRAM-SHA-1",
                    authenticationData: Buffer.from("server-final"),
                },
            },
        },
        {
            name: "CONNACK v5 the other values",
            packet: {
                type: PacketType.Connack,
                sessionPresent: false,
                returnCode: 0,
                properties: {
                    maximumQoS: 0,
                    retainAvailable: 1,
                    wildcardSubscriptionAvailable: 0,
                    subscriptionIdentifiersAvailable: 1,
                    sharedSubscriptionAvailable: 0,
                    serverKeepAlive: 65535,
                    receiveMaximum: 65535,
                },
            },
        },
    ]
    const refusals = [0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8c, 0x90, 0x95, 0x97, 0x99]
    for (const code of [...refusals, 0x9a, 0x9b, 0x9c, 0x9d, 0x9f])
        fixtures.push({
            name: `CONNACK v5 reason code 0x${code.toString(16)}`,
            packet: {
                type: PacketType.Connack,
                sessionPresent: false,
                returnCode: code,
                properties: code === 0x9c ? { serverReference: "b:1883", reasonString: "use b" } : undefined,
            },
        })
    for (const f of fixtures) if ((f.packet as any).properties === undefined) delete (f.packet as any).properties
    return fixtures
}

function publishFixtures(): PacketFixture[] {
    const fixtures: PacketFixture[] = [
        {
            name: "PUBLISH v5 qos 0 without properties",
            packet: {
                type: PacketType.Publish,
                topic: "meter/1/energy",
                payload: PAYLOAD,
                qos: 0,
                dup: false,
                retain: false,
            },
        },
        {
            name: "PUBLISH v5 qos 1 with every PUBLISH property, six subscription identifiers",
            packet: {
                type: PacketType.Publish,
                topic: "meters/n/cmd",
                payload: PAYLOAD,
                qos: 1,
                dup: false,
                retain: false,
                packetId: 65535,
                properties: {
                    payloadFormatIndicator: 1,
                    messageExpiryInterval: 0,
                    topicAlias: 1,
                    responseTopic: "meters/n/reply",
                    correlationData: Buffer.from("req-1"),
                    userProperties: [
                        ["a", "1"],
                        ["a", "2"],
                        ["b", "zähler €"],
                    ],
                    subscriptionIdentifiers: [1, 127, 128, 16383, 16384, 268435455],
                    contentType: "application/json",
                },
            },
        },
        {
            name: "PUBLISH v5 qos 2 dup retain, empty topic and topic alias 65535",
            packet: {
                type: PacketType.Publish,
                topic: "",
                payload: Buffer.from([0, 1, 2, 0xff]),
                qos: 2,
                dup: true,
                retain: true,
                packetId: 1,
                properties: { topicAlias: 65535 },
            },
        },
        {
            name: "PUBLISH v5 subscription identifiers of 3 and 4 bytes, message expiry 2^32 - 1",
            packet: {
                type: PacketType.Publish,
                topic: "t",
                payload: Buffer.alloc(0),
                qos: 0,
                dup: false,
                retain: false,
                properties: { subscriptionIdentifiers: [2097151, 2097152], messageExpiryInterval: 4294967295 },
            },
        },
        {
            name: "PUBLISH v5 payload format 0, empty strings and data",
            packet: {
                type: PacketType.Publish,
                topic: "x",
                payload: PAYLOAD,
                qos: 1,
                dup: false,
                retain: false,
                packetId: 258,
                properties: {
                    payloadFormatIndicator: 0,
                    contentType: "",
                    correlationData: Buffer.alloc(0),
                    userProperties: [["", ""]],
                },
            },
        },
    ]
    for (const length of [127, 128, 16383, 16384])
        fixtures.push({
            name: `PUBLISH v5 remaining length ${length}`,
            packet: publishWithRemainingLength(length),
            nodeOnly: length > 200,
        })
    return fixtures
}

function ackFixtures(): PacketFixture[] {
    const fixtures: PacketFixture[] = []
    const codes: [PacketType, string, number[]][] = [
        [PacketType.Puback, "PUBACK", [0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]],
        [PacketType.Pubrec, "PUBREC", [0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]],
        [PacketType.Pubrel, "PUBREL", [0x92]],
        [PacketType.Pubcomp, "PUBCOMP", [0x92]],
    ]
    for (const [type, name, reasonCodes] of codes) {
        fixtures.push({
            name: `${name} v5 success, nothing after the packet id`,
            packet: { type, packetId: 1 } as Packet,
        })
        for (const reasonCode of reasonCodes)
            fixtures.push({
                name: `${name} v5 reason code 0x${reasonCode.toString(16)}`,
                packet: { type, packetId: 258, reasonCode } as Packet,
            })
        fixtures.push({
            name: `${name} v5 success with a reason string and user properties`,
            packet: {
                type,
                packetId: 65535,
                properties: { reasonString: "fine", userProperties: [["k", "v"]] },
            } as Packet,
        })
        fixtures.push({
            name: `${name} v5 failure with a reason string`,
            packet: {
                type,
                packetId: 7,
                reasonCode: reasonCodes[reasonCodes.length - 1],
                properties: { reasonString: "no" },
            } as Packet,
        })
    }
    for (const length of [127, 128, 16383, 16384])
        fixtures.push({
            name: `PUBACK v5 property length ${length}`,
            packet: pubackWithPropertyLength(length),
            nodeOnly: length > 200,
        })
    return fixtures
}

function subscriptionFixtures(): PacketFixture[] {
    return [
        {
            name: "SUBSCRIBE v5 one filter, no options",
            packet: { type: PacketType.Subscribe, packetId: 7, subscriptions: [{ topic: "meters/n/cmd", qos: 1 }] },
        },
        {
            name: "SUBSCRIBE v5 every option, subscription identifier, user properties",
            packet: {
                type: PacketType.Subscribe,
                packetId: 65535,
                subscriptions: [
                    { topic: "#", qos: 0, noLocal: true },
                    { topic: "meters/+/cmd", qos: 1, retainAsPublished: true, retainHandling: 1 },
                    { topic: "zähler/€/#", qos: 2, noLocal: true, retainAsPublished: true, retainHandling: 2 },
                    { topic: "$share/g/meters/#", qos: 1, retainHandling: 2 },
                ],
                properties: { subscriptionIdentifiers: [268435455], userProperties: [["who", "node"]] },
            },
        },
        {
            name: "SUBSCRIBE v5 subscription identifier 1",
            packet: {
                type: PacketType.Subscribe,
                packetId: 1,
                subscriptions: [{ topic: "t", qos: 0 }],
                properties: { subscriptionIdentifiers: [1] },
            },
        },
        {
            name: "SUBACK v5 every reason code, reason string, user properties",
            packet: {
                type: PacketType.Suback,
                packetId: 65535,
                returnCodes: [0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8f, 0x91, 0x97, 0x9e, 0xa1, 0xa2],
                properties: { reasonString: "partly", userProperties: [["k", "v"]] },
            },
        },
        {
            name: "SUBACK v5 granted QoS 1",
            packet: { type: PacketType.Suback, packetId: 7, returnCodes: [1] },
        },
        {
            name: "UNSUBSCRIBE v5 filters and user properties",
            packet: {
                type: PacketType.Unsubscribe,
                packetId: 8,
                topics: ["meters/n/cmd", "a/+/b", "#"],
                properties: { userProperties: [["k", "v"]] },
            },
        },
        {
            name: "UNSUBSCRIBE v5 one filter",
            packet: { type: PacketType.Unsubscribe, packetId: 1, topics: ["x"] },
        },
        {
            name: "UNSUBACK v5 every reason code, reason string, user properties",
            packet: {
                type: PacketType.Unsuback,
                packetId: 8,
                reasonCodes: [0x00, 0x11, 0x80, 0x83, 0x87, 0x8f, 0x91],
                properties: { reasonString: "done", userProperties: [["k", "v"]] },
            },
        },
        {
            name: "UNSUBACK v5 success",
            packet: { type: PacketType.Unsuback, packetId: 65535, reasonCodes: [0] },
        },
    ]
}

function disconnectAndAuthFixtures(): PacketFixture[] {
    const fixtures: PacketFixture[] = [
        { name: "DISCONNECT v5 normal", packet: { type: PacketType.Disconnect } },
        {
            name: "DISCONNECT v5 with will message and session expiry (from a client)",
            packet: {
                type: PacketType.Disconnect,
                reasonCode: ReasonCode.DisconnectWithWillMessage,
                properties: { sessionExpiryInterval: 0, userProperties: [["k", "v"]] },
            },
        },
        {
            name: "DISCONNECT v5 server moved, with server reference and reason string",
            packet: {
                type: PacketType.Disconnect,
                reasonCode: ReasonCode.ServerMoved,
                properties: { serverReference: "b.example", reasonString: "maintenance" },
            },
        },
        { name: "AUTH v5 success", packet: { type: PacketType.Auth } },
        {
            name: "AUTH v5 continue, with every AUTH property",
            packet: {
                type: PacketType.Auth,
                reasonCode: ReasonCode.ContinueAuthentication,
                properties: {
                    authenticationMethod: "SCRAM-SHA-1",
                    authenticationData: Buffer.from("client-first"),
                    reasonString: "go on",
                    userProperties: [["k", "v"]],
                },
            },
        },
        {
            name: "AUTH v5 re-authenticate",
            packet: {
                type: PacketType.Auth,
                reasonCode: ReasonCode.ReAuthenticate,
                properties: { authenticationMethod: "SCRAM-SHA-1" },
            },
        },
    ]
    const codes = [0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8b, 0x8d, 0x8e, 0x8f, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97]
    for (const code of [...codes, 0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9e, 0x9f, 0xa0, 0xa1, 0xa2])
        fixtures.push({
            name: `DISCONNECT v5 reason code 0x${code.toString(16)}`,
            packet: { type: PacketType.Disconnect, reasonCode: code },
        })
    return fixtures
}

export const PACKET_FIXTURES_5: PacketFixture[] = [
    ...connectFixtures(),
    ...connackFixtures(),
    ...publishFixtures(),
    ...ackFixtures(),
    ...subscriptionFixtures(),
    ...disconnectAndAuthFixtures(),
    { name: "PINGREQ v5", packet: { type: PacketType.Pingreq } },
    { name: "PINGRESP v5", packet: { type: PacketType.Pingresp } },
]

/** Packet types only clients send, in MQTT 5: the firmware's decoder refuses them. */
export const CLIENT_ONLY_TYPES_5: number[] = [
    PacketType.Connect,
    PacketType.Subscribe,
    PacketType.Unsubscribe,
    PacketType.Pingreq,
]

/** Packet types only servers send: the firmware's encoder never writes them. */
export const SERVER_ONLY_TYPES: number[] = [
    PacketType.Connack,
    PacketType.Suback,
    PacketType.Unsuback,
    PacketType.Pingresp,
]
