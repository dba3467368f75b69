// Array helpers for the subset both runtimes share: DeviceScript arrays have no splice().
// Pure core: imports nothing from @devicescript.

/** Removes the element at `index` in place, keeping the order of the rest. */
export function removeAt<T>(items: T[], index: number) {
    if (index < 0 || index >= items.length) return
    for (let i = index; i < items.length - 1; ++i) items[i] = items[i + 1]
    items.pop()
}

/**
 * `text` cut at every `separator`, as String.split does. In the VM, String.split runs as byte code,
 * around a hundred operations per character (a 2 KB table is enough to exceed the ~128K operations
 * a fiber may run without waiting), while String.indexOf is native.
 */
export function splitAt(text: string, separator: string): string[] {
    const parts: string[] = []
    let from = 0
    for (;;) {
        const at = text.indexOf(separator, from)
        if (at < 0) break
        parts.push(text.slice(from, at))
        from = at + separator.length
    }
    parts.push(text.slice(from))
    return parts
}
