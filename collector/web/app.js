// The collector's fleet page: every node's status and newest reading, kept live by the
// collector's event stream (/api/events), and a meter's completeness and energy. Plain script, no
// build step: the collector serves this file as it is. It asks only the collector that served it.
"use strict"

const HOUR_MS = 3_600_000
/** The chart's range when none is asked for. */
const DEFAULT_RANGE_MS = 24 * HOUR_MS
/** A month of one-minute readings is 44,640 points: the most the chart is asked to draw. */
const MAX_RANGE_MS = 31 * 24 * HOUR_MS

const $ = sel => document.querySelector(sel)

/** Node id -> { node, status, statusAt (ms), meters: [{ meter, unit, quantity, lastAt, lastSeq }] } */
const nodes = new Map()
/** Node id -> its <tr>. */
const rows = new Map()
let sortKey = "node"
let sortDir = 1

function escapeHtml(s) {
    return String(s).replace(
        /[&<>"']/g,
        c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]
    )
}

/** 42 s, 5 min, 3 h 10 min, 2 d 4 h. */
function duration(ms) {
    if (ms === null || ms === undefined || !Number.isFinite(ms)) return ""
    const s = Math.max(0, Math.round(ms / 1000))
    if (s < 60) return `${s} s`
    const m = Math.floor(s / 60)
    if (m < 60) return `${m} min`
    const h = Math.floor(m / 60)
    if (h < 24) return `${h} h ${m % 60} min`
    return `${Math.floor(h / 24)} d ${h % 24} h`
}

function utc(ms) {
    return new Date(ms).toISOString().slice(0, 16).replace("T", " ") + " UTC"
}

// ---- The fleet ----

/** online, offline, unset (online without UTC) or unknown (readings but no status yet). */
function stateOf(n) {
    const s = n.status
    if (!s || typeof s.state !== "string") return "unknown"
    if (s.state === "online") return s.clock === "unset" ? "unset" : "online"
    return s.state === "offline" ? "offline" : "unknown"
}

function stateText(n) {
    const s = n.status
    switch (stateOf(n)) {
        case "online":
            return "online"
        case "unset":
            return "online, clock unset"
        case "offline":
            return `offline (${s.reason ?? "no reason given"})`
        default:
            return s ? `${s.state}` : "no status yet"
    }
}

/** When the newest reading of any of the node's meters ended (or was received, in uptime). */
function lastReadingAt(n) {
    let best = null
    for (const m of n.meters) if (m.lastAt !== null && (best === null || m.lastAt > best)) best = m.lastAt
    return best
}

/** A meter of /api/fleet (or of an update) in the page's terms. */
function meterFromApi(m) {
    return {
        meter: m.meter,
        quantity: m.quantity,
        unit: m.unit,
        lastSeq: m.last_seq,
        lastAt: m.last_seq === null ? null : m.time === "utc_ms" ? m.end : Date.parse(m.received_at),
    }
}

/** A node of /api/fleet in the page's terms. */
function fromApi(n) {
    return {
        node: n.node,
        status: n.status,
        statusAt: n.status_at ? Date.parse(n.status_at) : null,
        meters: n.meters.map(meterFromApi),
    }
}

const num = v => (typeof v === "number" ? v : null)

/** The value a column sorts by. */
function sortValue(n, key, now) {
    const s = n.status || {}
    switch (key) {
        case "node":
            return n.node
        case "state":
            return stateText(n)
        case "since":
            return n.statusAt === null ? null : now - n.statusAt
        case "boot":
        case "queued":
        case "merged":
        case "dropped":
            return num(s[key])
        case "version":
            return s.version ?? null
        case "error":
            return s.error || null
        case "age": {
            const at = lastReadingAt(n)
            return at === null ? null : now - at
        }
    }
    return null
}

function compare(a, b, now) {
    const x = sortValue(a, sortKey, now)
    const y = sortValue(b, sortKey, now)
    // Blanks last, whichever the direction.
    if (x === null || y === null) return x === y ? a.node.localeCompare(b.node) : x === null ? 1 : -1
    const c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y))
    return c ? c * sortDir : a.node.localeCompare(b.node)
}

function cellsHtml(n, now) {
    const s = n.status || {}
    const state = stateOf(n)
    const at = lastReadingAt(n)
    const meterLinks = n.meters
        .map(
            m =>
                `<a href="#/meter/${encodeURIComponent(n.node)}/${encodeURIComponent(m.meter)}">${escapeHtml(m.meter)}</a>`
        )
        .join(" ")
    const v = x => (x === undefined || x === null ? "" : escapeHtml(x))
    return (
        `<th scope="row" class="c-node">${escapeHtml(n.node)}</th>` +
        `<td class="c-state" data-state="${state}"><span class="dot" aria-hidden="true"></span>${escapeHtml(stateText(n))}</td>` +
        `<td class="c-since" title="${n.statusAt === null ? "" : "status since " + utc(n.statusAt)}">${n.statusAt === null ? "" : duration(now - n.statusAt)}</td>` +
        `<td class="num">${v(s.boot)}</td>` +
        `<td>${v(s.version)}</td>` +
        `<td class="num c-queued">${v(s.queued)}</td>` +
        `<td class="num">${v(s.merged)}</td>` +
        `<td class="num${s.dropped ? " bad" : ""}">${v(s.dropped)}</td>` +
        `<td class="c-error">${v(s.error)}</td>` +
        `<td class="num c-age" title="${at === null ? "no reading yet" : "newest reading ended " + utc(at)}">${at === null ? "" : duration(now - at)}</td>` +
        `<td class="c-meters">${meterLinks}</td>`
    )
}

function matchesFilter(n) {
    const want = $("#state-filter").value
    if (want && stateOf(n) !== want) return false
    const text = $("#filter").value.trim().toLowerCase()
    if (!text) return true
    const s = n.status || {}
    return [n.node, stateText(n), s.version, s.error, ...n.meters.map(m => m.meter)].some(
        x => typeof x === "string" && x.toLowerCase().includes(text)
    )
}

/** Rows drawn at once: more than a screen. The others follow in chunks, a frame each. */
const FIRST_ROWS = 60
const CHUNK_ROWS = 300
/** Which renderFleet() the chunks being appended belong to: a newer one (a sort) stops them. */
let renderToken = 0
/** Nodes sorted but not in the table yet: their rows come with the next chunks. */
const notYetDrawn = new Set()

function appendRows(list) {
    const tbody = $("#fleet tbody")
    const now = Date.now()
    const before = tbody.children.length
    tbody.insertAdjacentHTML(
        "beforeend",
        list
            .map(
                n =>
                    `<tr data-node="${escapeHtml(n.node)}"${matchesFilter(n) ? "" : " hidden"}>${cellsHtml(n, now)}</tr>`
            )
            .join("")
    )
    for (let i = before; i < tbody.children.length; i++) {
        const tr = tbody.children[i]
        rows.set(tr.dataset.node, tr)
        notYetDrawn.delete(tr.dataset.node)
    }
}

/** Runs once the browser has painted what the script did. */
const afterPaint = fn => requestAnimationFrame(() => setTimeout(fn, 0))

/**
 * The whole table, sorted: the first screenful at once, the rest in chunks, so a thousand nodes
 * show in one frame and the page answers input while the rest is drawn.
 */
function renderFleet() {
    const token = ++renderToken
    const now = Date.now()
    const list = [...nodes.values()].sort((a, b) => compare(a, b, now))
    $("#fleet tbody").textContent = ""
    rows.clear()
    notYetDrawn.clear()
    for (const n of list) notYetDrawn.add(n.node)
    appendRows(list.slice(0, FIRST_ROWS))
    let next = FIRST_ROWS
    const more = () => {
        if (token !== renderToken) return
        if (next >= list.length) return markRendered("fleetCompleteMs")
        appendRows(list.slice(next, next + CHUNK_ROWS))
        next += CHUNK_ROWS
        afterPaint(more)
    }
    afterPaint(more)
    $("#fleet-empty").hidden = nodes.size > 0
    for (const th of document.querySelectorAll("#fleet th[data-key]"))
        th.setAttribute("aria-sort", th.dataset.key === sortKey ? (sortDir > 0 ? "ascending" : "descending") : "none")
    renderCounts()
}

function renderCounts() {
    const counts = { online: 0, offline: 0, unset: 0, unknown: 0 }
    for (const n of nodes.values()) counts[stateOf(n)]++
    $("#fleet-counts").textContent =
        `${nodes.size}: ${counts.online} online, ${counts.offline} offline, ${counts.unset} clock unset` +
        (counts.unknown ? `, ${counts.unknown} without status` : "")
}

/** One node changed: its row in place (a new node: the table again, in order). */
function renderNode(n) {
    const tr = rows.get(n.node)
    if (!tr && notYetDrawn.has(n.node)) return renderCounts()
    if (!tr) return renderFleet()
    tr.innerHTML = cellsHtml(n, Date.now())
    tr.hidden = !matchesFilter(n)
    renderCounts()
}

/** The "for" and "last reading" ages move on every second. */
function tick() {
    const now = Date.now()
    if (!$("#fleet-view").hidden)
        for (const [id, tr] of rows) {
            const n = nodes.get(id)
            const since = n.statusAt === null ? "" : duration(now - n.statusAt)
            const at = lastReadingAt(n)
            const age = at === null ? "" : duration(now - at)
            const cSince = tr.querySelector(".c-since")
            const cAge = tr.querySelector(".c-age")
            if (cSince.textContent !== since) cSince.textContent = since
            if (cAge.textContent !== age) cAge.textContent = age
        }
}

/** When the fleet was first drawn and painted, ms from navigation: what the tests hold to a second. */
function markRendered(name) {
    const root = document.documentElement
    if (!root.dataset[name]) afterPaint(() => (root.dataset[name] = String(Math.round(performance.now()))))
}

/** The fleet as the event stream's first event tells it (/api/fleet's answer). */
function loadFleet(snapshot) {
    nodes.clear()
    for (const n of snapshot) nodes.set(n.node, fromApi(n))
    renderFleet()
    markRendered("fleetRenderedMs")
    if (view.node) renderMeterHeader()
}

function applyUpdate(u) {
    const changed = new Set()
    for (const s of u.statuses) {
        let n = nodes.get(s.node)
        if (!n) nodes.set(s.node, (n = { node: s.node, status: null, statusAt: null, meters: [] }))
        // The collector keeps status_at when the same status comes again (a retained one redelivered).
        if (JSON.stringify(n.status) !== JSON.stringify(s.status)) {
            n.status = s.status
            n.statusAt = s.at
        }
        changed.add(n)
    }
    for (const r of u.readings) {
        let n = nodes.get(r.node)
        if (!n) nodes.set(r.node, (n = { node: r.node, status: null, statusAt: null, meters: [] }))
        const m = meterFromApi(r)
        const i = n.meters.findIndex(x => x.meter === r.meter)
        if (i < 0) {
            n.meters.push(m)
            n.meters.sort((a, b) => a.meter.localeCompare(b.meter))
        } else n.meters[i] = m
        changed.add(n)
        if (r.node === view.node && r.meter === view.meter) scheduleStrip()
    }
    for (const n of changed) renderNode(n)
    if (view.node && changed.has(nodes.get(view.node))) renderMeterHeader()
}

function connectEvents() {
    const live = $("#live")
    const events = new EventSource("/api/events")
    // Each (re)connection starts with the whole fleet, then what changes after it.
    events.addEventListener("fleet", e => {
        const data = JSON.parse(e.data)
        $("#commands").hidden = !data.commands?.length
        loadFleet(data.nodes)
        live.textContent = "live"
        live.dataset.state = "live"
    })
    events.addEventListener("update", e => applyUpdate(JSON.parse(e.data)))
    events.onerror = () => {
        live.textContent = "connection to the collector lost: trying again…"
        live.dataset.state = "lost"
    }
}

function setupFleetControls() {
    for (const th of document.querySelectorAll("#fleet th[data-key]"))
        th.querySelector("button").addEventListener("click", () => {
            const key = th.dataset.key
            sortDir = key === sortKey ? -sortDir : 1
            sortKey = key
            renderFleet()
        })
    const refilter = () => {
        for (const [id, tr] of rows) tr.hidden = !matchesFilter(nodes.get(id))
    }
    $("#filter").addEventListener("input", refilter)
    $("#state-filter").addEventListener("change", refilter)
    document.addEventListener("keydown", e => {
        if (e.key === "/" && document.activeElement?.tagName !== "INPUT" && !$("#fleet-view").hidden) {
            e.preventDefault()
            $("#filter").focus()
        }
    })
}

// ---- A meter ----

const view = { node: null, meter: null }
let stripTimer = null
let chart = null

/** #/meter/<node>/<meter>?from=<ms>&to=<ms> */
function route() {
    const m = location.hash.match(/^#\/meter\/([^/?]+)\/([^/?]+)(?:\?(.*))?$/)
    if (!m) {
        view.node = view.meter = null
        $("#meter-view").hidden = true
        $("#fleet-view").hidden = false
        document.title = "meternode fleet"
        tick()
        return
    }
    view.node = decodeURIComponent(m[1])
    view.meter = decodeURIComponent(m[2])
    const q = new URLSearchParams(m[3] ?? "")
    const to = Number(q.get("to")) || Math.ceil(Date.now() / 60_000) * 60_000
    const from = Number(q.get("from")) || to - DEFAULT_RANGE_MS
    $("#fleet-view").hidden = true
    $("#meter-view").hidden = false
    $("#meter-title").textContent = `${view.node} / ${view.meter}`
    document.title = `${view.node} / ${view.meter}: meternode`
    renderMeterHeader()
    loadStrip()
    showRange(from, to)
}

function renderMeterHeader() {
    const n = nodes.get(view.node)
    const el = $("#meter-node-state")
    if (!n) return (el.textContent = "")
    const s = n.status || {}
    const m = n.meters.find(x => x.meter === view.meter)
    el.textContent =
        `${stateText(n)}` +
        (n.statusAt !== null ? ` for ${duration(Date.now() - n.statusAt)}` : "") +
        (s.version ? `, version ${s.version}` : "") +
        (m ? `; ${m.quantity} in ${m.unit}` : "") +
        (m?.lastAt ? `, newest reading ${duration(Date.now() - m.lastAt)} ago (seq ${m.lastSeq})` : "")
}

function scheduleStrip() {
    // Readings arrive every few seconds under load: the strip follows at most every 2 s.
    if (stripTimer) return
    stripTimer = setTimeout(() => {
        stripTimer = null
        loadStrip()
    }, 2000)
}

const STATE_TEXT = {
    full: "full resolution",
    merged: "merged into a longer interval",
    gap: "a gap: readings may be missing",
    none: "nothing",
}
const STATE_LETTER = { full: "F", merged: "M", gap: "G", none: "·" }

async function loadStrip() {
    const { node, meter } = view
    const res = await fetch(
        `/api/completeness?node=${encodeURIComponent(node)}&meter=${encodeURIComponent(meter)}&days=7`
    )
    if (node !== view.node || meter !== view.meter) return
    const strip = $("#strip")
    if (!res.ok) return (strip.textContent = `completeness: ${(await res.json()).error}`)
    const c = await res.json()
    // A row per day, a column per UTC hour: every hour has its letter, pattern and label.
    let html = `<table class="strip"><thead><tr><th scope="col">day</th>`
    for (let h = 0; h < 24; h++) html += `<th scope="col">${String(h).padStart(2, "0")}</th>`
    html += "</tr></thead><tbody>"
    const dayMs = 24 * HOUR_MS
    for (let day = Math.floor(c.from / dayMs) * dayMs; day < c.to; day += dayMs) {
        html += `<tr><th scope="row">${new Date(day).toISOString().slice(0, 10)}</th>`
        for (let h = 0; h < 24; h++) {
            const start = day + h * HOUR_MS
            const hour = c.hours.find(x => x.start === start)
            if (!hour) {
                html += "<td></td>"
                continue
            }
            const detail =
                hour.state === "none"
                    ? ""
                    : ` (${Math.round(hour.full_ms / 60000)} min full, ${Math.round(hour.merged_ms / 60000)} min merged` +
                      (hour.gaps ? `, ${hour.gaps} gap${hour.gaps > 1 ? "s" : ""}` : "") +
                      ")"
            const label = `${utc(start)}: ${STATE_TEXT[hour.state]}${detail}`
            html += `<td class="h h-${hour.state}" data-start="${start}" data-state="${hour.state}" title="${escapeHtml(label)}" aria-label="${escapeHtml(label)}">${STATE_LETTER[hour.state]}</td>`
        }
        html += "</tr>"
    }
    strip.innerHTML = html + "</tbody></table>"
}

function toInput(ms) {
    return new Date(ms).toISOString().slice(0, 16)
}

async function showRange(from, to) {
    const { node, meter } = view
    $("#from").value = toInput(from)
    $("#to").value = toInput(to)
    const q = `node=${encodeURIComponent(node)}&meter=${encodeURIComponent(meter)}&from=${from}&to=${to}`
    $("#csv").href = `/api/readings?${q}&format=oed`
    const caption = $("#chart-sum")
    const figure = $("#chart-figure")
    figure.dataset.state = "loading"
    caption.textContent = "loading…"
    const res = await fetch(`/api/readings?${q}`)
    if (node !== view.node || meter !== view.meter) return
    if (!res.ok) {
        caption.textContent = `readings: ${(await res.json()).error}`
        figure.dataset.state = "error"
        return
    }
    const body = await res.json()
    await loadChartLibrary()
    drawChart(body.readings, from, to)
}

let chartLibrary = null

/** uPlot, from the collector, only once a chart is wanted: the fleet view starts without it. */
function loadChartLibrary() {
    chartLibrary ??= new Promise((resolve, reject) => {
        const script = document.createElement("script")
        script.src = "/vendor/uplot.js"
        script.onload = resolve
        script.onerror = () => reject(new Error("uPlot did not load"))
        document.head.append(script)
    })
    return chartLibrary
}

/**
 * Each reading is a step over its interval: its delta (a level: its mean) from its start to its
 * end, a break where readings do not meet. The sum is in whole mWh (deltas are to the thousandth),
 * so it is exact, and it is the sum of what is drawn.
 */
function drawChart(readings, from, to) {
    const xs = []
    const ys = []
    let sumMilli = 0
    let count = 0
    let merged = 0
    const unit = nodes.get(view.node)?.meters.find(m => m.meter === view.meter)?.unit ?? ""
    let amount = true
    for (const r of readings) {
        if (r.gap) continue
        amount = r.delta !== undefined
        const value = amount ? r.delta : r.mean
        if (xs.length && xs[xs.length - 1] < r.start / 1000) {
            xs.push(xs[xs.length - 1])
            ys.push(null)
        }
        if (xs.length && xs[xs.length - 1] === r.start / 1000) ys[ys.length - 1] = value
        else {
            xs.push(r.start / 1000)
            ys.push(value)
        }
        xs.push(r.end / 1000)
        ys.push(value)
        if (amount) sumMilli += Math.round(r.delta * 1000)
        count++
        if (r.first_seq !== undefined) merged++
    }
    const figure = $("#chart-figure")
    const caption = $("#chart-sum")
    figure.dataset.count = String(count)
    figure.dataset.sumMilli = amount ? String(sumMilli) : ""
    caption.textContent = count
        ? amount
            ? `${(sumMilli / 1000).toLocaleString("en", { maximumFractionDigits: 3 })} ${unit} in ${count} readings` +
              (merged ? ` (${merged} merged)` : "") +
              `, ${utc(from)} to ${utc(to)}`
            : `${count} readings of the mean, ${utc(from)} to ${utc(to)}`
        : `no readings from ${utc(from)} to ${utc(to)}`
    const el = $("#chart")
    if (chart) chart.destroy()
    chart = null
    el.textContent = ""
    figure.dataset.state = "drawn"
    if (!count || typeof uPlot === "undefined") return
    chart = new uPlot(
        {
            width: Math.min(1100, el.clientWidth || 900),
            height: 280,
            scales: { x: { time: true, range: [from / 1000, to / 1000] } },
            series: [
                { label: "UTC" },
                {
                    label: amount ? `${unit} per interval` : `mean, ${unit}`,
                    stroke: "#1f5fa8",
                    fill: "rgba(31, 95, 168, 0.15)",
                    paths: uPlot.paths.stepped({ align: 1 }),
                    points: { show: false },
                },
            ],
            axes: [{}, { label: unit }],
            tzDate: ts => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
        },
        [xs, ys],
        el
    )
}

function setupMeterControls() {
    $("#range").addEventListener("submit", e => {
        e.preventDefault()
        const from = Date.parse($("#from").value + ":00Z")
        let to = Date.parse($("#to").value + ":00Z")
        if (!(from < to)) return ($("#chart-sum").textContent = "From must be before to.")
        if (to - from > MAX_RANGE_MS) to = from + MAX_RANGE_MS
        location.hash = `#/meter/${encodeURIComponent(view.node)}/${encodeURIComponent(view.meter)}?from=${from}&to=${to}`
    })
    const token = $("#token")
    token.value = sessionStorage.getItem("operator-token") ?? ""
    for (const button of document.querySelectorAll("#commands button[data-command]"))
        button.addEventListener("click", async () => {
            sessionStorage.setItem("operator-token", token.value)
            const result = $("#command-result")
            result.textContent = "sending…"
            const res = await fetch("/api/command", {
                method: "POST",
                headers: { "content-type": "application/json", authorization: `Bearer ${token.value}` },
                body: JSON.stringify({ node: view.node, command: button.dataset.command }),
            })
            const body = await res.json()
            result.textContent = res.ok ? `${body.command} sent (id ${body.id})` : `refused: ${body.error}`
        })
}

function start() {
    setupFleetControls()
    setupMeterControls()
    window.addEventListener("hashchange", route)
    connectEvents()
    route()
    setInterval(tick, 1000)
}

start()
