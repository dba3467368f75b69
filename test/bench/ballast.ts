// Heap headroom probe (runs in the simulator): holds `bytes` of the 64 KB heap in buffers for the
// whole run. The largest ballast with which a program still runs its workload without running out
// of memory bounds its peak heap use from above: peak <= heap - ballast. A module of its own that
// imports nothing: a composed image's generated entry calls it before it boots, and whatever this
// module imported would sit in the heap being measured.

const held: Buffer[] = []

/** Holds `bytes` of the heap for the rest of the run. */
export function holdBallast(bytes: number) {
    // 1 KB pieces: a fragmented heap cannot fit one large block, and the node's objects are small.
    for (let n = 0; n < bytes; n += 1024) held.push(Buffer.alloc(1024))
    console.log("BALLAST " + held.length + " KB")
}
