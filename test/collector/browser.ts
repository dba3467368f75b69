// Chromium from Debian's packages, driven by playwright-core, and what the page tests ask of the
// fleet page: a row's state text, waited for as it changes live.
import { existsSync } from "node:fs"
import { chromium, type Page } from "playwright-core"

// What runs inside the page (page.evaluate and friends) sees the browser's globals; this project
// type-checks against Node's only.
declare const document: any, CSS: any

const CHROMIUM_PATHS = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
export const chromiumPath = [process.env.CHROMIUM, ...CHROMIUM_PATHS].find(p => p && existsSync(p))
/** Why the browser tests are skipped, or undefined when Chromium is there. */
export const chromiumMissing = chromiumPath
    ? undefined
    : "Chromium is not installed: apt-get install chromium, or set CHROMIUM"

export function launchChromium() {
    return chromium.launch({ executablePath: chromiumPath, headless: true, args: ["--no-sandbox"] })
}

/**
 * Waits until the fleet row's state text is `text` (or matches it); the milliseconds it took from
 * `since`.
 */
export async function waitForState(page: Page, node: string, text: string | RegExp, since: number, timeoutMs: number) {
    const pattern = typeof text === "string" ? undefined : text.source
    await page.waitForFunction(
        ([id, want, source]) => {
            const shown = document.querySelector(`#fleet tr[data-node="${CSS.escape(id)}"] .c-state`)?.textContent
            return source ? new RegExp(source).test(shown ?? "") : shown === want
        },
        [node, typeof text === "string" ? text : "", pattern] as const,
        { timeout: timeoutMs, polling: 50 }
    )
    return Date.now() - since
}
