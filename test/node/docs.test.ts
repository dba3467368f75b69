// The documentation stays true to the code and to itself: the settings table in
// docs/configuration.md is what `npm run docs` generates from src/config.ts, every relative link in
// README.md and docs/*.md leads to a file (and, with #anchor, to a heading of it), and the README
// stays a short path for a newcomer with the two commands at its top.
import { describe, test } from "node:test"
import assert from "node:assert/strict"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { dirname, join, relative, resolve } from "node:path"
import { CONFIGURATION_DOC, PROJECT_ROOT, renderConfigurationDoc } from "../../devs/gen-docs"

const README = join(PROJECT_ROOT, "README.md")
const README_MAX_BYTES = 12 * 1024

function documents() {
    const docs = join(PROJECT_ROOT, "docs")
    return [
        README,
        ...readdirSync(docs)
            .filter(f => f.endsWith(".md"))
            .sort()
            .map(f => join(docs, f)),
    ]
}

/** The text without fenced code blocks and inline code, line count kept: links in code are not links. */
function withoutCode(text: string) {
    let fenced = false
    return text
        .split("\n")
        .map(line => {
            if (/^\s*(```|~~~)/.test(line)) {
                fenced = !fenced
                return ""
            }
            return fenced ? "" : line.replace(/(`+)[^`]*?\1/g, "")
        })
        .join("\n")
}

/** Link targets of a Markdown text: inline links and images, and reference definitions. */
export function markdownLinks(text: string) {
    const body = withoutCode(text)
    const links: string[] = []
    for (const m of body.matchAll(/!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+["'(][^)]*)?\)/g))
        links.push(m[1])
    for (const m of body.matchAll(/^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/gm)) links.push(m[1])
    return links
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
export function slug(heading: string) {
    return heading
        .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1")
        .replace(/<[^>]+>/g, "")
        .trim()
        .toLowerCase()
        .replace(/[^\p{L}\p{M}\p{N}\p{Pc}\- ]/gu, "")
        .replace(/ /g, "-")
}

/** Every anchor a Markdown text defines: its headings (repeats get -1, -2...) and explicit ids. */
export function anchors(text: string) {
    const found = new Set<string>()
    const seen = new Map<string, number>()
    let fenced = false
    for (const line of text.split("\n")) {
        if (/^\s*(```|~~~)/.test(line)) fenced = !fenced
        if (fenced) continue
        const h = line.match(/^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$/)
        if (h) {
            const base = slug(h[1])
            const n = seen.get(base) ?? 0
            seen.set(base, n + 1)
            found.add(n ? `${base}-${n}` : base)
        }
        for (const m of line.matchAll(/<a\s+(?:name|id)="([^"]+)"/g)) found.add(m[1])
    }
    return found
}

/** Relative links of `files` that lead nowhere, as "file: target (why)". */
export function brokenLinks(files: string[], read: (path: string) => string = p => readFileSync(p, "utf-8")) {
    const broken: string[] = []
    for (const file of files) {
        for (const target of markdownLinks(read(file))) {
            if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue
            const hash = target.indexOf("#")
            const path = decodeURIComponent(hash < 0 ? target : target.slice(0, hash))
            const anchor = hash < 0 ? "" : decodeURIComponent(target.slice(hash + 1))
            const to = path ? resolve(dirname(file), path) : file
            const name = `${relative(PROJECT_ROOT, file)}: ${target}`
            if (path.startsWith("/")) broken.push(`${name} (absolute path)`)
            else if (path && !existsSync(to)) broken.push(`${name} (no such file)`)
            else if (anchor && to.endsWith(".md") && !anchors(read(to)).has(anchor))
                broken.push(`${name} (no heading with anchor #${anchor})`)
        }
    }
    return broken
}

describe("generated documentation", () => {
    test("docs/configuration.md holds the settings table npm run docs writes from src/config.ts", () => {
        const committed = readFileSync(CONFIGURATION_DOC, "utf-8")
        assert.equal(
            committed,
            renderConfigurationDoc(committed),
            "docs/configuration.md is out of date: run npm run docs"
        )
    })
})

describe("links", () => {
    test("every relative link in README.md and docs/*.md resolves, anchors included", () => {
        const files = documents()
        assert.ok(files.length > 2, "README.md and docs/*.md found")
        assert.deepEqual(brokenLinks(files), [])
    })

    test("the check finds a missing file, a missing anchor and an absolute path", () => {
        const fake = join(PROJECT_ROOT, "docs", "fake.md")
        const texts: Record<string, string> = {
            [fake]: [
                "# Fake",
                "[ok](../README.md) [ok too](#fake) [ok in code is ignored](`nowhere.md`)",
                "[gone](nowhere.md) [bad anchor](protocol.md#no-such-heading) [abs](/etc/hosts)",
                "`[in code](nowhere-either.md)`",
                "```",
                "[in a block](nowhere-at-all.md)",
                "```",
            ].join("\n"),
        }
        const read = (p: string) => texts[p] ?? readFileSync(p, "utf-8")
        assert.deepEqual(brokenLinks([fake], read), [
            "docs/fake.md: nowhere.md (no such file)",
            "docs/fake.md: protocol.md#no-such-heading (no heading with anchor #no-such-heading)",
            "docs/fake.md: /etc/hosts (absolute path)",
        ])
    })

    test("anchors follow GitHub's slugs", () => {
        const text = "# What `npm start` shows\n## Write policy: what a power cut can cost\n## Notes\n## Notes\n"
        assert.deepEqual(
            [...anchors(text)],
            ["what-npm-start-shows", "write-policy-what-a-power-cut-can-cost", "notes", "notes-1"]
        )
    })
})

describe("README", () => {
    test(`is at most ${README_MAX_BYTES} bytes`, () => {
        const bytes = readFileSync(README).length
        assert.ok(bytes <= README_MAX_BYTES, `README.md is ${bytes} bytes: move reference material to docs/`)
    })

    test("has npm start and npm test in its first 15 lines", () => {
        const head = readFileSync(README, "utf-8").split("\n").slice(0, 15).join("\n")
        assert.match(head, /npm start/)
        assert.match(head, /npm test/)
    })
})
