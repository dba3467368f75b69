// Malformed MQTT 5 inputs and the exact ProtocolError each must produce, decoded with MQTT5 as the
// decoder's version. `server` marks a packet a server may send: the firmware's decoder must
// reject it the same way. Shared by the Node decoder test and the generator of the DeviceScript
// fixtures.

import { ProtocolError } from "../../src/mqtt/decoder"
import { MalformedFixture, packetHex, rawStr, str } from "./malformed-fixtures"

export interface MalformedFixture5 extends MalformedFixture {
    /** A packet a server may send, so the firmware's decoder sees it too. */
    server: boolean
}

/** A property block: its Variable Byte Integer length, then `hex`. */
function props(hex: string): string {
    const bytes = Buffer.from(hex.replace(/\s+/g, ""), "hex")
    let length = bytes.length
    let prefix = ""
    for (;;) {
        const digit = length % 128
        length = Math.floor(length / 128)
        prefix += (length > 0 ? digit | 0x80 : digit).toString(16).padStart(2, "0")
        if (length === 0) return prefix + bytes.toString("hex")
    }
}

const MQTT = str("MQTT")
const E = ProtocolError
const raw = (hex: string) => Buffer.from(hex.replace(/\s+/g, ""), "hex")
/** A PUBACK of packet id 1 and reason code 0 with properties `hex`. */
const puback = (hex: string) => packetHex(0x40, "0001 00" + props(hex))
/** A CONNACK (success) with properties `hex`. */
const connack = (hex: string) => packetHex(0x20, "00 00" + props(hex))
/** A QoS 0 PUBLISH to "t" with properties `hex`. */
const publish = (hex: string) => packetHex(0x30, str("t") + props(hex) + "61")

export const MALFORMED_FIXTURES_5: MalformedFixture5[] = (
    [
        // Unknown property identifiers.
        ["PUBACK with property 0x00", puback("00"), E.UnknownProperty, true, /PUBACK: 0x00/],
        ["PUBACK with property 0x04", puback("04 00"), E.UnknownProperty, true],
        ["CONNACK with property 0x2b", connack("2b 00"), E.UnknownProperty, true],
        ["PUBLISH with property 0x7f", publish("7f 00"), E.UnknownProperty, true],
        // Defined, but not allowed in the packet.
        ["PUBLISH with receive maximum", publish("21 0001"), E.PropertyNotAllowed, true, /PUBLISH: receiveMaximum/],
        ["CONNACK with topic alias", connack("23 0001"), E.PropertyNotAllowed, true],
        ["PUBACK with content type", puback("03" + str("x")), E.PropertyNotAllowed, true],
        [
            "SUBACK with subscription identifier",
            packetHex(0x90, "0001" + props("0b 01") + "00"),
            E.PropertyNotAllowed,
            true,
        ],
        ["DISCONNECT with topic alias", packetHex(0xe0, "00" + props("23 0001")), E.PropertyNotAllowed, true],
        ["AUTH with server reference", packetHex(0xf0, "18" + props("1c" + str("s"))), E.PropertyNotAllowed, true],
        [
            "UNSUBACK with session expiry",
            packetHex(0xb0, "0001" + props("11 00000001") + "00"),
            E.PropertyNotAllowed,
            true,
        ],
        [
            "CONNECT will with session expiry",
            packetHex(0x10, MQTT + "05 06 003c" + props("") + str("c") + props("11 00000001") + str("w") + str("p")),
            E.PropertyNotAllowed,
            false,
            /CONNECT: sessionExpiryInterval/,
        ],
        [
            "CONNECT with topic alias",
            packetHex(0x10, MQTT + "05 02 003c" + props("23 0001") + str("c")),
            E.PropertyNotAllowed,
            false,
        ],
        [
            "SUBSCRIBE with reason string",
            packetHex(0x82, "0001" + props("1f" + str("r")) + str("a") + "00"),
            E.PropertyNotAllowed,
            false,
        ],
        [
            "UNSUBSCRIBE with subscription identifier",
            packetHex(0xa2, "0001" + props("0b 01") + str("a")),
            E.PropertyNotAllowed,
            false,
        ],
        // Repeated where the spec allows once.
        [
            "CONNACK with receive maximum twice",
            connack("21 0001 21 0002"),
            E.DuplicateProperty,
            true,
            /CONNACK: receiveMaximum/,
        ],
        ["PUBLISH with topic alias twice", publish("23 0001 23 0001"), E.DuplicateProperty, true],
        ["PUBACK with reason string twice", puback("1f" + str("a") + "1f" + str("b")), E.DuplicateProperty, true],
        [
            "DISCONNECT with server reference twice",
            packetHex(0xe0, "9c" + props("1c" + str("a") + "1c" + str("b"))),
            E.DuplicateProperty,
            true,
        ],
        [
            "AUTH with authentication method twice",
            packetHex(0xf0, "18" + props("15" + str("a") + "15" + str("a"))),
            E.DuplicateProperty,
            true,
        ],
        [
            "SUBSCRIBE with two subscription identifiers",
            packetHex(0x82, "0001" + props("0b 01 0b 02") + str("a") + "00"),
            E.DuplicateProperty,
            false,
        ],
        [
            "CONNECT with session expiry twice",
            packetHex(0x10, MQTT + "05 02 003c" + props("11 00000000 11 00000000") + str("c")),
            E.DuplicateProperty,
            false,
        ],
        // Values out of range.
        ["CONNACK receive maximum 0", connack("21 0000"), E.InvalidPropertyValue, true, /CONNACK: receiveMaximum/],
        ["CONNACK maximum packet size 0", connack("27 00000000"), E.InvalidPropertyValue, true],
        ["CONNACK maximum QoS 2", connack("24 02"), E.InvalidPropertyValue, true],
        ["CONNACK retain available 2", connack("25 02"), E.InvalidPropertyValue, true],
        ["CONNACK wildcard subscription available 255", connack("28 ff"), E.InvalidPropertyValue, true],
        ["PUBLISH topic alias 0", publish("23 0000"), E.InvalidPropertyValue, true],
        ["PUBLISH payload format indicator 2", publish("01 02"), E.InvalidPropertyValue, true],
        ["PUBLISH subscription identifier 0", publish("0b 00"), E.InvalidPropertyValue, true],
        [
            "CONNECT request problem information 2",
            packetHex(0x10, MQTT + "05 02 003c" + props("17 02") + str("c")),
            E.InvalidPropertyValue,
            false,
        ],
        [
            "SUBSCRIBE subscription identifier 0",
            packetHex(0x82, "0001" + props("0b 00") + str("a") + "00"),
            E.InvalidPropertyValue,
            false,
        ],
        // Strings that are not well-formed, and a response topic that is not a topic name.
        [
            "PUBACK reason string with invalid UTF-8",
            puback("1f" + rawStr("c328")),
            E.InvalidUtf8,
            true,
            /PUBACK: reasonString/,
        ],
        ["CONNACK user property value with U+0000", connack("26" + str("k") + rawStr("6100")), E.NullCharacter, true],
        ["CONNACK user property name with invalid UTF-8", connack("26" + rawStr("ff") + str("v")), E.InvalidUtf8, true],
        ["PUBLISH response topic with a wildcard", publish("08" + str("a/#")), E.InvalidTopicName, true],
        ["PUBLISH empty response topic", publish("08" + str("")), E.InvalidTopicName, true],
        // The property length and the properties inside it.
        [
            "PUBACK property length past the packet",
            raw("40 05 0001 00 05 1f"),
            E.PropertyLengthOverrun,
            true,
            /PUBACK: property length/,
        ],
        ["CONNACK property length past the packet", raw("20 04 00 00 7f 00"), E.PropertyLengthOverrun, true],
        ["PUBLISH property length past the packet", raw("30 05 0001 74 10 00"), E.PropertyLengthOverrun, true],
        [
            "CONNACK four-byte property cut by the property length",
            packetHex(0x20, "00 00 03 11 0000 00"),
            E.PropertyLengthOverrun,
            true,
        ],
        [
            "CONNACK two-byte property cut by the property length",
            packetHex(0x20, "00 00 02 21 00 00"),
            E.PropertyLengthOverrun,
            true,
        ],
        [
            "PUBACK string longer than the properties",
            packetHex(0x40, "0001 00 04 1f 0005 61"),
            E.PropertyLengthOverrun,
            true,
        ],
        ["PUBACK string length cut", packetHex(0x40, "0001 00 02 1f 00"), E.PropertyLengthOverrun, true],
        [
            "CONNACK user property without its value",
            packetHex(0x20, "00 00 05 26 0001 6b 00"),
            E.PropertyLengthOverrun,
            true,
        ],
        [
            "CONNACK user property value longer than the properties",
            packetHex(0x20, "00 00 08 26 0001 6b 0005 7676"),
            E.PropertyLengthOverrun,
            true,
        ],
        [
            "PUBLISH subscription identifier cut by the property length",
            packetHex(0x30, str("t") + "02 0b 80 61"),
            E.PropertyLengthOverrun,
            true,
        ],
        ["CONNACK property length of 5 bytes", raw("20 07 00 00 80 80 80 80 01"), E.MalformedVariableByteInteger, true],
        [
            "PUBLISH subscription identifier of 5 bytes",
            publish("0b 80 80 80 80 01"),
            E.MalformedVariableByteInteger,
            true,
        ],
        // Reason codes a packet may not carry.
        [
            "CONNACK reason code 0x01",
            packetHex(0x20, "00 01 00"),
            E.InvalidReasonCode,
            true,
            /CONNACK: reason code 1 \(0x01\)/,
        ],
        ["CONNACK reason code 0x8b", packetHex(0x20, "00 8b 00"), E.InvalidReasonCode, true],
        ["PUBACK reason code 0x92", raw("40 03 0001 92"), E.InvalidReasonCode, true],
        ["PUBREC reason code 0x01", raw("50 04 0001 01 00"), E.InvalidReasonCode, true],
        ["PUBREL reason code 0x10", raw("62 03 0001 10"), E.InvalidReasonCode, true],
        ["PUBCOMP reason code 0x80", raw("70 03 0001 80"), E.InvalidReasonCode, true],
        ["SUBACK reason code 0x03", packetHex(0x90, "0001 00 00 03"), E.InvalidReasonCode, true, /0x03/],
        ["UNSUBACK reason code 0x10 after a good one", packetHex(0xb0, "0001 00 00 10"), E.InvalidReasonCode, true],
        ["DISCONNECT reason code 0x8c", raw("e0 01 8c"), E.InvalidReasonCode, true],
        ["DISCONNECT reason code 0x01", raw("e0 02 01 00"), E.InvalidReasonCode, true],
        ["AUTH reason code 0x01", raw("f0 02 01 00"), E.InvalidReasonCode, true],
        // The rest of MQTT 5's packet structure.
        [
            "PUBLISH empty topic without topic alias",
            packetHex(0x30, str("") + props("01 01") + "61"),
            E.InvalidTopicName,
            true,
            /no topic alias/,
        ],
        ["PUBLISH empty topic, no properties", packetHex(0x30, str("") + "00"), E.InvalidTopicName, true],
        [
            "PUBLISH without property length",
            packetHex(0x32, str("t") + "0001"),
            E.PacketTruncated,
            true,
            /property length/,
        ],
        ["CONNACK without property length", raw("20 02 00 00"), E.PacketTruncated, true],
        ["CONNACK with only the flags", raw("20 01 00"), E.PacketTruncated, true],
        ["SUBACK without property length", raw("90 02 0001"), E.PacketTruncated, true],
        ["UNSUBACK without reason codes", raw("b0 03 0001 00"), E.EmptyPayload, true],
        ["SUBACK without reason codes", raw("90 03 0001 00"), E.EmptyPayload, true],
        ["PUBACK with a byte after the properties", raw("40 05 0001 10 00 00"), E.TrailingBytes, true],
        ["CONNACK with a byte after the properties", raw("20 04 00 00 00 00"), E.TrailingBytes, true],
        ["DISCONNECT with a byte after the properties", raw("e0 03 00 00 00"), E.TrailingBytes, true],
        ["AUTH with a byte after the properties", raw("f0 03 18 00 00"), E.TrailingBytes, true],
        ["CONNACK session present with a refusal", raw("20 03 01 80 00"), E.SessionPresentWithRefusal, true],
        ["CONNACK reserved flag", raw("20 03 02 00 00"), E.ConnackReservedFlags, true],
        ["AUTH with header flags 1", raw("f1 00"), E.InvalidHeaderFlags, true],
        ["PINGRESP with remaining length 1", raw("d0 01 00"), E.UnexpectedRemainingLength, true],
        ["PUBACK packet id 0", raw("40 02 0000"), E.PacketIdZero, true],
        ["PUBREL with half a packet id", raw("62 01 00"), E.PacketTruncated, true],
        [
            "CONNECT protocol level 4",
            packetHex(0x10, MQTT + "04 02 003c" + str("c")),
            E.UnsupportedProtocolLevel,
            false,
        ],
        ["CONNECT without property length", packetHex(0x10, MQTT + "05 02 003c"), E.PacketTruncated, false],
        [
            "CONNECT will without will property length",
            packetHex(0x10, MQTT + "05 06 003c" + props("") + "0001 63"),
            E.PacketTruncated,
            false,
        ],
        [
            "SUBSCRIBE retain handling 3",
            packetHex(0x82, "0001" + props("") + str("a") + "30"),
            E.InvalidSubscriptionOptions,
            false,
        ],
        [
            "SUBSCRIBE reserved option bit 6",
            packetHex(0x82, "0001" + props("") + str("a") + "40"),
            E.InvalidSubscriptionOptions,
            false,
        ],
        ["SUBSCRIBE QoS 3", packetHex(0x82, "0001" + props("") + str("a") + "07"), E.InvalidSubscriptionOptions, false],
        [
            "SUBSCRIBE No Local on a shared subscription",
            packetHex(0x82, "0001" + props("") + str("$share/g/a") + "04"),
            E.InvalidSubscriptionOptions,
            false,
            /MQTT-3\.8\.3-4/,
        ],
        ["UNSUBSCRIBE without filters", packetHex(0xa2, "0001" + props("")), E.EmptyPayload, false],
        ["PINGREQ with remaining length 1", raw("c0 01 00"), E.UnexpectedRemainingLength, false],
    ] as [string, Buffer, ProtocolError, boolean, RegExp?][]
).map(([name, bytes, error, server, detail]) => ({ name, bytes, error, server, detail }))
