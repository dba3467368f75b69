// Malformed inputs and the exact ProtocolError the decoder must report for each.
// Shared by the Node decoder test and the generator of the DeviceScript fixtures.

import { ProtocolError } from "../../src/mqtt/decoder"
import { encodeRemainingLength } from "../fixtures/mqtt-codec"

export interface MalformedFixture {
    name: string
    bytes: Buffer
    error: ProtocolError
    /** Expected detail in the failure message, checked in Node only. */
    detail?: RegExp
}

/** A packet with the given first byte and body, remaining length computed. */
export function packetHex(firstByte: number, bodyHex: string): Buffer {
    const body = Buffer.from(bodyHex.replace(/\s+/g, ""), "hex")
    return Buffer.concat([Buffer.from([firstByte]), encodeRemainingLength(body.length), body])
}

/** Hex of a length-prefixed UTF-8 string. */
export function str(text: string): string {
    const bytes = Buffer.from(text)
    return bytes.length.toString(16).padStart(4, "0") + bytes.toString("hex")
}

/** Hex of a length-prefixed raw byte string given as hex. */
export function rawStr(hex: string): string {
    return (hex.length / 2).toString(16).padStart(4, "0") + hex
}

const MQTT = str("MQTT")

const E = ProtocolError
const raw = (hex: string) => Buffer.from(hex.replace(/\s+/g, ""), "hex")

export const MALFORMED_FIXTURES: MalformedFixture[] = (
    [
        ["reserved type 0", raw("00 00"), E.ReservedPacketType, /type 0/],
        ["reserved type 15", raw("f0 00"), E.ReservedPacketType, /type 15/],
        [
            "CONNECT with flags 1",
            packetHex(0x11, MQTT + "04 02 003c" + str("c")),
            E.InvalidHeaderFlags,
            /CONNECT needs flags 0x00, got 0x01/,
        ],
        ["CONNACK with flags 2", raw("22 02 00 00"), E.InvalidHeaderFlags],
        ["PUBACK with flags 2", raw("42 02 00 01"), E.InvalidHeaderFlags],
        ["PUBREC with flags 1", raw("51 02 00 01"), E.InvalidHeaderFlags],
        ["PUBREL with flags 0", raw("60 02 00 01"), E.InvalidHeaderFlags, /PUBREL needs flags 0x02, got 0x00/],
        ["PUBREL with flags 3", raw("63 02 00 01"), E.InvalidHeaderFlags],
        ["PUBCOMP with flags 8", raw("78 02 00 01"), E.InvalidHeaderFlags],
        ["SUBSCRIBE with flags 0", packetHex(0x80, "0001" + str("a") + "00"), E.InvalidHeaderFlags],
        ["SUBACK with flags 2", raw("92 03 00 01 00"), E.InvalidHeaderFlags],
        ["UNSUBSCRIBE with flags 0", packetHex(0xa0, "0001" + str("a")), E.InvalidHeaderFlags],
        ["UNSUBACK with flags 2", raw("b2 02 00 01"), E.InvalidHeaderFlags],
        ["PINGREQ with flags 1", raw("c1 00"), E.InvalidHeaderFlags],
        ["PINGRESP with flags 4", raw("d4 00"), E.InvalidHeaderFlags],
        ["DISCONNECT with flags 15", raw("ef 00"), E.InvalidHeaderFlags],
        ["PUBLISH qos 3", packetHex(0x36, str("a") + "0001"), E.InvalidQos],
        ["PUBLISH qos 3 dup retain", raw("3f"), E.InvalidQos],
        ["PUBLISH qos 0 with dup", packetHex(0x38, str("a")), E.DupWithQos0],
        ["remaining length of 5 bytes", raw("30 ff ff ff ff 01"), E.MalformedRemainingLength],
        ["remaining length continued in byte 4", raw("c0 80 80 80 80"), E.MalformedRemainingLength],
        ["SUBACK larger than the limit", raw("90 63"), E.PacketTooLarge, /SUBACK of 101 bytes, limit 100/],
        ["maximum remaining length against the limit", raw("90 ff ff ff 7f"), E.PacketTooLarge],
        [
            "PINGREQ with remaining length 1",
            raw("c0 01 00"),
            E.UnexpectedRemainingLength,
            /PINGREQ needs remaining length 0, got 1/,
        ],
        ["PINGRESP with remaining length 2", raw("d0 02 00 00"), E.UnexpectedRemainingLength],
        ["DISCONNECT with remaining length 127", raw("e0 7f"), E.UnexpectedRemainingLength],
        ["CONNACK with remaining length 1", raw("20 01 00"), E.UnexpectedRemainingLength],
        ["CONNACK with remaining length 3", raw("20 03 00 00 00"), E.UnexpectedRemainingLength],
        ["PUBACK with remaining length 3", raw("40 03 00 01 00"), E.UnexpectedRemainingLength],
        ["PUBREL with remaining length 0", raw("62 00"), E.UnexpectedRemainingLength],
        ["UNSUBACK with remaining length 4", raw("b0 04 00 01 00 02"), E.UnexpectedRemainingLength],
        ["PUBLISH with a 1-byte body", raw("30 01 00"), E.PacketTruncated, /PUBLISH: no room for length of topic/],
        ["PUBLISH with an empty body", raw("30 00"), E.PacketTruncated],
        ["PUBLISH qos 1 without packet id", packetHex(0x32, str("a")), E.PacketTruncated, /packet id/],
        ["PUBLISH qos 2 with half a packet id", packetHex(0x34, str("a") + "01"), E.PacketTruncated],
        ["CONNECT ends after the protocol name", packetHex(0x10, MQTT), E.PacketTruncated, /protocol level/],
        ["CONNECT ends after the flags", packetHex(0x10, MQTT + "04 02"), E.PacketTruncated, /keepalive/],
        ["CONNECT without client id", packetHex(0x10, MQTT + "04 02 003c"), E.PacketTruncated, /client id/],
        [
            "CONNECT with will flag but no will",
            packetHex(0x10, MQTT + "04 06 003c" + str("c")),
            E.PacketTruncated,
            /will topic/,
        ],
        [
            "CONNECT with username flag but no username",
            packetHex(0x10, MQTT + "04 82 003c" + str("c")),
            E.PacketTruncated,
            /username/,
        ],
        [
            "CONNECT with password flag but no password",
            packetHex(0x10, MQTT + "04 c2 003c" + str("c") + str("u")),
            E.PacketTruncated,
            /password/,
        ],
        ["SUBSCRIBE without packet id", raw("82 01 00"), E.PacketTruncated],
        [
            "SUBSCRIBE filter without requested QoS",
            packetHex(0x82, "0001" + str("a")),
            E.PacketTruncated,
            /requested QoS/,
        ],
        ["SUBACK without packet id", raw("90 00"), E.PacketTruncated],
        ["UNSUBSCRIBE with half a packet id", raw("a2 01 00"), E.PacketTruncated],
        [
            "PUBLISH topic longer than the body",
            raw("30 03 00 05 61"),
            E.FieldOverrunsPacket,
            /topic claims 5 bytes, 1 left/,
        ],
        ["PUBLISH topic length 65535 in a short body", raw("30 04 ff ff 61 62"), E.FieldOverrunsPacket],
        ["CONNECT protocol name longer than the body", raw("10 04 00 04 4d 51"), E.FieldOverrunsPacket],
        [
            "CONNECT client id longer than the body",
            packetHex(0x10, MQTT + "04 02 003c 0009 6161"),
            E.FieldOverrunsPacket,
            /client id/,
        ],
        [
            "CONNECT will payload longer than the body",
            packetHex(0x10, MQTT + "04 06 003c" + str("c") + str("w") + "0003 6161"),
            E.FieldOverrunsPacket,
            /will payload/,
        ],
        [
            "CONNECT password longer than the body",
            packetHex(0x10, MQTT + "04 c2 003c" + str("c") + str("u") + "0002 61"),
            E.FieldOverrunsPacket,
            /password/,
        ],
        ["SUBSCRIBE filter longer than the body", packetHex(0x82, "0001 0005 61 00"), E.FieldOverrunsPacket],
        [
            "UNSUBSCRIBE second filter longer than the body",
            packetHex(0xa2, "0001" + str("a") + "0002 61"),
            E.FieldOverrunsPacket,
        ],
        [
            "CONNECT with a trailing byte",
            packetHex(0x10, MQTT + "04 02 003c" + str("c") + "00"),
            E.TrailingBytes,
            /1 bytes after the last field/,
        ],
        ["PUBLISH topic with invalid byte C3 28", packetHex(0x30, rawStr("c328")), E.InvalidUtf8, /topic is not UTF-8/],
        ["PUBLISH topic with overlong C0 AF", packetHex(0x30, rawStr("c0af")), E.InvalidUtf8],
        ["PUBLISH topic with overlong E0 80 AF", packetHex(0x30, rawStr("e080af")), E.InvalidUtf8],
        ["PUBLISH topic with overlong F0 80 80 AF", packetHex(0x30, rawStr("f08080af")), E.InvalidUtf8],
        ["PUBLISH topic with surrogate ED A0 80", packetHex(0x30, rawStr("eda080")), E.InvalidUtf8],
        ["PUBLISH topic above U+10FFFF", packetHex(0x30, rawStr("f4908080")), E.InvalidUtf8],
        ["PUBLISH topic with F5 lead byte", packetHex(0x30, rawStr("f5808080")), E.InvalidUtf8],
        ["PUBLISH topic with FF", packetHex(0x30, rawStr("61ff")), E.InvalidUtf8],
        ["PUBLISH topic with a lone continuation byte", packetHex(0x30, rawStr("80")), E.InvalidUtf8],
        ["PUBLISH topic cut inside a sequence", packetHex(0x30, rawStr("61e282")), E.InvalidUtf8],
        ["PUBLISH topic with a bad third byte", packetHex(0x30, rawStr("e28228")), E.InvalidUtf8],
        [
            "CONNECT client id with invalid UTF-8",
            packetHex(0x10, MQTT + "04 02 003c" + rawStr("fe")),
            E.InvalidUtf8,
            /client id/,
        ],
        [
            "CONNECT username with invalid UTF-8",
            packetHex(0x10, MQTT + "04 82 003c" + str("c") + rawStr("c1bf")),
            E.InvalidUtf8,
            /username/,
        ],
        ["SUBSCRIBE filter with invalid UTF-8", packetHex(0x82, "0001" + rawStr("edbfbf") + "00"), E.InvalidUtf8],
        ["PUBLISH topic with U+0000", packetHex(0x30, rawStr("610062")), E.NullCharacter, /topic contains U\+0000/],
        ["CONNECT client id with U+0000", packetHex(0x10, MQTT + "04 02 003c" + rawStr("00")), E.NullCharacter],
        ["UNSUBSCRIBE filter with U+0000", packetHex(0xa2, "0001" + rawStr("2300")), E.NullCharacter],
        [
            "CONNECT protocol name MQIsdp",
            packetHex(0x10, str("MQIsdp") + "03 02 003c" + str("c")),
            E.InvalidProtocolName,
            /got "MQIsdp"/,
        ],
        ["CONNECT protocol name mqtt", packetHex(0x10, str("mqtt") + "04 02 003c" + str("c")), E.InvalidProtocolName],
        [
            "CONNECT protocol level 3",
            packetHex(0x10, MQTT + "03 02 003c" + str("c")),
            E.UnsupportedProtocolLevel,
            /got 3/,
        ],
        ["CONNECT protocol level 5", packetHex(0x10, MQTT + "05 02 003c" + str("c")), E.UnsupportedProtocolLevel],
        ["CONNECT reserved flag", packetHex(0x10, MQTT + "04 03 003c" + str("c")), E.ConnectReservedFlag],
        [
            "CONNECT will qos 3",
            packetHex(0x10, MQTT + "04 1e 003c" + str("c") + str("w") + str("p")),
            E.InvalidWillFlags,
        ],
        ["CONNECT will qos without will flag", packetHex(0x10, MQTT + "04 0a 003c" + str("c")), E.InvalidWillFlags],
        ["CONNECT will retain without will flag", packetHex(0x10, MQTT + "04 22 003c" + str("c")), E.InvalidWillFlags],
        [
            "CONNECT password without username",
            packetHex(0x10, MQTT + "04 42 003c" + str("c") + str("p")),
            E.PasswordWithoutUsername,
        ],
        ["CONNACK reserved flag bit 1", raw("20 02 02 00"), E.ConnackReservedFlags],
        ["CONNACK reserved flag bit 7", raw("20 02 80 00"), E.ConnackReservedFlags],
        ["CONNACK return code 6", raw("20 02 00 06"), E.InvalidConnackReturnCode, /return code 6/],
        ["CONNACK return code 255", raw("20 02 00 ff"), E.InvalidConnackReturnCode],
        ["CONNACK session present with refusal", raw("20 02 01 05"), E.SessionPresentWithRefusal],
        ["PUBLISH qos 1 packet id 0", packetHex(0x32, str("a") + "0000"), E.PacketIdZero, /PUBLISH: packet id is 0/],
        ["PUBLISH qos 2 packet id 0", packetHex(0x34, str("a") + "0000 ff"), E.PacketIdZero],
        ["PUBACK packet id 0", raw("40 02 00 00"), E.PacketIdZero],
        ["PUBREC packet id 0", raw("50 02 00 00"), E.PacketIdZero],
        ["PUBREL packet id 0", raw("62 02 00 00"), E.PacketIdZero],
        ["PUBCOMP packet id 0", raw("70 02 00 00"), E.PacketIdZero],
        ["SUBSCRIBE packet id 0", packetHex(0x82, "0000" + str("a") + "00"), E.PacketIdZero],
        ["SUBACK packet id 0", raw("90 03 00 00 00"), E.PacketIdZero],
        ["UNSUBSCRIBE packet id 0", packetHex(0xa2, "0000" + str("a")), E.PacketIdZero],
        ["UNSUBACK packet id 0", raw("b0 02 00 00"), E.PacketIdZero],
        ["PUBLISH empty topic", packetHex(0x30, str("") + "61"), E.InvalidTopicName, /PUBLISH: topic is empty/],
        ["PUBLISH topic with +", packetHex(0x30, str("a/+")), E.InvalidTopicName, /PUBLISH: topic contains a wildcard/],
        ["PUBLISH topic with #", packetHex(0x32, str("#") + "0001"), E.InvalidTopicName],
        [
            "CONNECT will topic with wildcard",
            packetHex(0x10, MQTT + "04 06 003c" + str("c") + str("w/#") + str("p")),
            E.InvalidTopicName,
            /will topic/,
        ],
        [
            "CONNECT empty will topic",
            packetHex(0x10, MQTT + "04 06 003c" + str("c") + str("") + str("p")),
            E.InvalidTopicName,
        ],
        ["SUBSCRIBE filter a#", packetHex(0x82, "0001" + str("a#") + "00"), E.InvalidTopicFilter, /\[MQTT-4\.7\.1-2\]/],
        ["SUBSCRIBE filter a+", packetHex(0x82, "0001" + str("a+") + "00"), E.InvalidTopicFilter, /\[MQTT-4\.7\.1-3\]/],
        ["SUBSCRIBE empty filter", packetHex(0x82, "0001" + str("") + "00"), E.InvalidTopicFilter],
        ["UNSUBSCRIBE filter #/a", packetHex(0xa2, "0001" + str("#/a")), E.InvalidTopicFilter],
        ["SUBSCRIBE without filters", raw("82 02 00 01"), E.EmptyPayload],
        ["SUBACK without return codes", raw("90 02 00 01"), E.EmptyPayload],
        ["UNSUBSCRIBE without filters", raw("a2 02 00 01"), E.EmptyPayload],
        ["SUBSCRIBE requested QoS 3", packetHex(0x82, "0001" + str("a") + "03"), E.InvalidSubscriptionOptions, /0x03/],
        ["SUBSCRIBE reserved option bit 2", packetHex(0x82, "0001" + str("a") + "04"), E.InvalidSubscriptionOptions],
        [
            "SUBSCRIBE reserved option bit 7 on the second filter",
            packetHex(0x82, "0001" + str("a") + "01" + str("b") + "81"),
            E.InvalidSubscriptionOptions,
        ],
        ["SUBACK return code 3", raw("90 03 00 01 03"), E.InvalidSubackReturnCode, /0x03/],
        ["SUBACK return code 0x81 after good ones", raw("90 05 00 01 00 80 81"), E.InvalidSubackReturnCode],
    ] as [string, Buffer, ProtocolError, RegExp?][]
).map(([name, bytes, error, detail]) => ({ name, bytes, error, detail }))
