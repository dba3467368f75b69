// MQTT 3.1.1 and MQTT 5 control packets as plain values. One set of types serves both versions: the
// fields MQTT 5 adds (reason codes, properties, subscription options) are optional, and a field left
// out has the protocol's default (reason code 0, no properties, option off).
// Pure core: imports nothing from @devicescript, runs unchanged in Node and in the VM.
// Spec: http://docs.oasis-open.org/mqtt/mqtt/v3.1.1/os/mqtt-v3.1.1-os.html
//       https://docs.oasis-open.org/mqtt/mqtt/v5.0/os/mqtt-v5.0-os.html

/** The protocol level byte of CONNECT, [MQTT-3.1.2-2]. */
export enum ProtocolVersion {
    Mqtt311 = 4,
    Mqtt5 = 5,
}

/**
 * The MQTT 5 half of the codec: MQTT5 in src/mqtt/mqtt5.ts. The encoder and the decoder take it as
 * their protocol version: given it they speak MQTT 5, without it 3.1.1. It is passed rather than
 * imported by them so that an image that speaks only 3.1.1 does not carry its code.
 */
export interface Mqtt5Codec {
    version: ProtocolVersion
    /**
     * Reads the property block at `at` of `body`, the properties of a packet of type `kind` (0: a
     * will's), into `holder.properties` (left unset when the block is empty); of a PUBLISH
     * (`holder`) with an empty topic, checks that a topic alias stands for it. Returns the offset
     * after the block, or minus the ProtocolError that ends decoding, with `detail` saying what.
     */
    readProperties(body: Buffer, at: number, kind: number, holder: any): number
    /** The detail of readProperties' last failure. */
    detail: string
    /**
     * The reason codes each packet type may carry [MQTT-2.4]: a pair for each, the type and the
     * code as decoder.ts hexByte writes them, one after the other ("0x020x87").
     */
    reasonCodes: string
    /**
     * Appends a property block to a packet body's parts (codec.ts BodyPart): the property length,
     * then the properties in the order of their keys (as mqtt-packet writes them), keys set to
     * undefined or null left out.
     */
    pushProperties(body: any[], properties: any): void
    /** The same property block as bytes. */
    propertyBlock(properties: any): Buffer
    /** The subscription options byte of `s` [MQTT-3.8.3.1]: its QoS, No Local, Retain As Published, Retain Handling. */
    subscriptionOptions(s: Subscription): number
    /**
     * Appends the reason code and properties of PUBACK, PUBREC, PUBREL, PUBCOMP or DISCONNECT
     * `p` to its body's parts.
     */
    pushReason(body: any[], p: AckPacket | DisconnectPacket): void
}

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
    /** MQTT 5 only; type 15 is reserved in 3.1.1. */
    Auth = 15,
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

/** SUBACK return code for a refused subscription, [MQTT-3.9.3]; in MQTT 5 every reason code from 0x80 up refuses. */
export const SUBACK_FAILURE = 0x80

/**
 * MQTT 5 reason codes, [MQTT-2.4]. Which packet may carry which is checked by the decoder
 * (src/mqtt/decoder.ts); codes below 0x80 report success, the others failure.
 */
export enum ReasonCode {
    Success = 0x00,
    GrantedQos1 = 0x01,
    GrantedQos2 = 0x02,
    DisconnectWithWillMessage = 0x04,
    NoMatchingSubscribers = 0x10,
    NoSubscriptionExisted = 0x11,
    ContinueAuthentication = 0x18,
    ReAuthenticate = 0x19,
    UnspecifiedError = 0x80,
    MalformedPacket = 0x81,
    ProtocolError = 0x82,
    ImplementationSpecificError = 0x83,
    UnsupportedProtocolVersion = 0x84,
    ClientIdentifierNotValid = 0x85,
    BadUserNameOrPassword = 0x86,
    NotAuthorized = 0x87,
    ServerUnavailable = 0x88,
    ServerBusy = 0x89,
    Banned = 0x8a,
    ServerShuttingDown = 0x8b,
    BadAuthenticationMethod = 0x8c,
    KeepAliveTimeout = 0x8d,
    SessionTakenOver = 0x8e,
    TopicFilterInvalid = 0x8f,
    TopicNameInvalid = 0x90,
    PacketIdentifierInUse = 0x91,
    PacketIdentifierNotFound = 0x92,
    ReceiveMaximumExceeded = 0x93,
    TopicAliasInvalid = 0x94,
    PacketTooLarge = 0x95,
    MessageRateTooHigh = 0x96,
    QuotaExceeded = 0x97,
    AdministrativeAction = 0x98,
    PayloadFormatInvalid = 0x99,
    RetainNotSupported = 0x9a,
    QosNotSupported = 0x9b,
    UseAnotherServer = 0x9c,
    ServerMoved = 0x9d,
    SharedSubscriptionsNotSupported = 0x9e,
    ConnectionRateExceeded = 0x9f,
    MaximumConnectTime = 0xa0,
    SubscriptionIdentifiersNotSupported = 0xa1,
    WildcardSubscriptionsNotSupported = 0xa2,
}

// MQTT 5 properties, [MQTT-2.2.2.2]. Each packet type has its own set; a property outside its
// packet's set, or repeated where the spec allows it once, is a protocol error. Names follow
// mqtt-packet's. Byte properties are numbers 0 or 1 as on the wire; Two and Four Byte Integers are
// numbers (a Four Byte Integer up to 4294967295). The two properties that may repeat are arrays:
// user properties (name-value pairs, in the order received [MQTT-3.3.2-18]) and subscription
// identifiers (several only in a PUBLISH from the server, one per matching subscription [MQTT-3.3.4-4]).

/** A User Property: a name and a value, both UTF-8 strings; a name may appear more than once. */
export type UserProperty = [string, string]

export interface UserProperties {
    userProperties?: UserProperty[]
}

/** PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK: a reason string and user properties. */
export interface ReasonProperties extends UserProperties {
    reasonString?: string
}

export interface ConnectProperties extends UserProperties {
    sessionExpiryInterval?: number
    receiveMaximum?: number
    maximumPacketSize?: number
    topicAliasMaximum?: number
    requestResponseInformation?: number
    requestProblemInformation?: number
    authenticationMethod?: string
    authenticationData?: Buffer
}

export interface ConnackProperties extends ReasonProperties {
    sessionExpiryInterval?: number
    receiveMaximum?: number
    maximumQoS?: number
    retainAvailable?: number
    maximumPacketSize?: number
    assignedClientIdentifier?: string
    topicAliasMaximum?: number
    wildcardSubscriptionAvailable?: number
    subscriptionIdentifiersAvailable?: number
    sharedSubscriptionAvailable?: number
    serverKeepAlive?: number
    responseInformation?: string
    serverReference?: string
    authenticationMethod?: string
    authenticationData?: Buffer
}

/** The properties of an application message: a PUBLISH's, and a will's (which adds willDelayInterval). */
export interface MessageProperties extends UserProperties {
    payloadFormatIndicator?: number
    messageExpiryInterval?: number
    contentType?: string
    responseTopic?: string
    correlationData?: Buffer
}

export interface PublishProperties extends MessageProperties {
    topicAlias?: number
    /** Only from the server [MQTT-3.3.4-6]. */
    subscriptionIdentifiers?: number[]
}

export interface WillProperties extends MessageProperties {
    willDelayInterval?: number
}

export interface SubscribeProperties extends UserProperties {
    /** At most one, 1..268435455. */
    subscriptionIdentifiers?: number[]
}

export interface DisconnectProperties extends ReasonProperties {
    /** Only from the client [MQTT-3.14.2-2]. */
    sessionExpiryInterval?: number
    serverReference?: string
}

export interface AuthProperties extends ReasonProperties {
    authenticationMethod?: string
    authenticationData?: Buffer
}

/** Every property of every packet: what the codec's property tables work on. */
export type Properties = ConnectProperties &
    ConnackProperties &
    PublishProperties &
    WillProperties &
    SubscribeProperties &
    DisconnectProperties &
    AuthProperties

export interface Will {
    topic: string
    payload: Buffer
    qos: number
    retain: boolean
    /** MQTT 5. */
    properties?: WillProperties
}

export interface ConnectPacket {
    type: PacketType.Connect
    clientId: string
    /** 0..65535; 0 turns keepalive off. */
    keepaliveS: number
    /** Clean Session in 3.1.1, Clean Start in MQTT 5: the same bit. */
    cleanSession: boolean
    will?: Will
    username?: string
    password?: Buffer
    /** MQTT 5. */
    properties?: ConnectProperties
}

export interface ConnackPacket {
    type: PacketType.Connack
    sessionPresent: boolean
    /** The Connect Return Code (0..5) in 3.1.1, the Connect Reason Code in MQTT 5. */
    returnCode: number
    /** MQTT 5. */
    properties?: ConnackProperties
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
    /** MQTT 5. With a topic alias the topic may be "" (the alias names it). */
    properties?: PublishProperties
    /**
     * Set by the client's decoder when the message was over one of its limits (its size, its
     * topic's length): what it was, for the error. Its topic and payload were not decoded (topic
     * "" and no payload); it is still acknowledged.
     */
    skipped?: string
}

/** PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK: a packet id, and in MQTT 5 reason codes and properties. */
export interface AckPacket {
    type: PacketType.Puback | PacketType.Pubrec | PacketType.Pubrel | PacketType.Pubcomp | PacketType.Unsuback
    packetId: number
    /** MQTT 5, PUBACK to PUBCOMP: absent means 0 (success). */
    reasonCode?: number
    /** MQTT 5, UNSUBACK: one per topic filter of the UNSUBSCRIBE. */
    reasonCodes?: number[]
    /** MQTT 5. */
    properties?: ReasonProperties
}

export interface Subscription {
    topic: string
    qos: number
    /** MQTT 5 subscription options [MQTT-3.8.3.1]; absent means false, false, 0. */
    noLocal?: boolean
    retainAsPublished?: boolean
    /** 0: send retained messages at subscribe, 1: only for a new subscription, 2: never. */
    retainHandling?: number
}

export interface SubscribePacket {
    type: PacketType.Subscribe
    packetId: number
    subscriptions: Subscription[]
    /** MQTT 5. */
    properties?: SubscribeProperties
}

export interface SubackPacket {
    type: PacketType.Suback
    packetId: number
    /** One per requested filter: the granted QoS 0..2 or SUBACK_FAILURE; in MQTT 5 the reason codes. */
    returnCodes: number[]
    /** MQTT 5. */
    properties?: ReasonProperties
}

export interface UnsubscribePacket {
    type: PacketType.Unsubscribe
    packetId: number
    topics: string[]
    /** MQTT 5. */
    properties?: UserProperties
}

/** PINGREQ, PINGRESP: a fixed header and nothing else. */
export interface EmptyPacket {
    type: PacketType.Pingreq | PacketType.Pingresp
}

/** DISCONNECT: nothing else in 3.1.1; in MQTT 5 a reason code and properties, from either side. */
export interface DisconnectPacket {
    type: PacketType.Disconnect
    /** MQTT 5: absent means 0 (normal disconnection). */
    reasonCode?: number
    properties?: DisconnectProperties
}

/** AUTH, MQTT 5 only: enhanced authentication, which the node does not use and never sends. */
export interface AuthPacket {
    type: PacketType.Auth
    /** Absent means 0 (success). */
    reasonCode?: number
    properties?: AuthProperties
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
    | DisconnectPacket
    | AuthPacket
