// MQTT 3.1.1 control packets as plain values.
// Pure core: imports nothing from @devicescript, runs unchanged in Node and in the VM.
// Spec: http://docs.oasis-open.org/mqtt/mqtt/v3.1.1/os/mqtt-v3.1.1-os.html

/** Control packet types, [MQTT-2.2.1]. */
export enum PacketType {
    Connect = 1,
    Connack = 2,
    Publish = 3,
    Puback = 4,
    Pubrec = 5,
    Pubrel = 6,
    Pubcomp = 7,
    Subscribe = 8,
    Suback = 9,
    Unsubscribe = 10,
    Unsuback = 11,
    Pingreq = 12,
    Pingresp = 13,
    Disconnect = 14,
}

/** CONNACK return codes, [MQTT-3.2.2.3]. */
export enum ConnectReturnCode {
    Accepted = 0,
    UnacceptableProtocolVersion = 1,
    IdentifierRejected = 2,
    ServerUnavailable = 3,
    BadUsernameOrPassword = 4,
    NotAuthorized = 5,
}

/** SUBACK return code for a refused subscription, [MQTT-3.9.3]. */
export const SUBACK_FAILURE = 0x80

export interface Will {
    topic: string
    payload: Buffer
    qos: number
    retain: boolean
}

export interface ConnectPacket {
    type: PacketType.Connect
    clientId: string
    /** 0..65535; 0 turns keepalive off. */
    keepaliveS: number
    cleanSession: boolean
    will?: Will
    username?: string
    password?: Buffer
}

export interface ConnackPacket {
    type: PacketType.Connack
    sessionPresent: boolean
    returnCode: number
}

export interface PublishPacket {
    type: PacketType.Publish
    topic: string
    payload: Buffer
    qos: number
    dup: boolean
    retain: boolean
    /** Present when qos > 0. */
    packetId?: number
    /**
     * Set by the client's decoder when the message was over one of its limits (its size, its
     * topic's length): what it was, for the error. Its topic and payload were not decoded (topic
     * "" and no payload); it is still acknowledged.
     */
    skipped?: string
}

/** PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK: a packet id and nothing else. */
export interface AckPacket {
    type: PacketType.Puback | PacketType.Pubrec | PacketType.Pubrel | PacketType.Pubcomp | PacketType.Unsuback
    packetId: number
}

export interface Subscription {
    topic: string
    qos: number
}

export interface SubscribePacket {
    type: PacketType.Subscribe
    packetId: number
    subscriptions: Subscription[]
}

export interface SubackPacket {
    type: PacketType.Suback
    packetId: number
    /** One per requested filter: the granted QoS 0..2 or SUBACK_FAILURE. */
    returnCodes: number[]
}

export interface UnsubscribePacket {
    type: PacketType.Unsubscribe
    packetId: number
    topics: string[]
}

/** PINGREQ, PINGRESP, DISCONNECT: a fixed header and nothing else. */
export interface EmptyPacket {
    type: PacketType.Pingreq | PacketType.Pingresp | PacketType.Disconnect
}

export type Packet =
    | ConnectPacket
    | ConnackPacket
    | PublishPacket
    | AckPacket
    | SubscribePacket
    | SubackPacket
    | UnsubscribePacket
    | EmptyPacket
