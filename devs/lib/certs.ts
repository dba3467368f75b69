// A throwaway certificate authority and a server certificate for 127.0.0.1 / localhost, made with
// the openssl command line, for TLS tests against a local broker.
import { execFileSync } from "node:child_process"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

export interface TestCertificates {
    dir: string
    caFile: string
    certFile: string
    keyFile: string
}

export function makeTestCertificates(): TestCertificates {
    const dir = mkdtempSync(join(tmpdir(), "meternode-tls-"))
    const file = (name: string) => join(dir, name)
    const openssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" })
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=meternode test CA",
        "-keyout",
        file("ca.key"),
        "-out",
        file("ca.pem")
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        file("server.key"),
        "-out",
        file("server.csr")
    )
    writeFileSync(file("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509",
        "-req",
        "-in",
        file("server.csr"),
        "-CA",
        file("ca.pem"),
        "-CAkey",
        file("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        file("san.ext"),
        "-out",
        file("server.pem")
    )
    return { dir, caFile: file("ca.pem"), certFile: file("server.pem"), keyFile: file("server.key") }
}
