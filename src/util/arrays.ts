// Array helpers for the subset both runtimes share: DeviceScript arrays have no splice().
// Pure core: imports nothing from @devicescript.

/** Removes the element at `index` in place, keeping the order of the rest. */
export function removeAt<T>(items: T[], index: number) {
    if (index < 0 || index >= items.length) return
    for (let i = index; i < items.length - 1; ++i) items[i] = items[i + 1]
    items.pop()
}
