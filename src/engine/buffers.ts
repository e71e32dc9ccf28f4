// Reusable ArrayBuffers for the wire bytes the main thread hands to the engine workers. Each request's rows
// are copied once into one of these, transferred to a worker and transferred back with the result. Reusing
// them matters: a fresh multi-megabyte ArrayBuffer per request costs page faults and zeroing on the main
// thread and drives V8's external-memory GCs, which together cost more than the copy itself.
/** Smallest size class; smaller requests share it. */
const MIN_BYTES = 1 << 16;

export class BufferRecycler {
  /** Free buffers by size class (a power of two). */
  private readonly free = new Map<number, ArrayBuffer[]>();
  private freeBytes = 0;

  /** @param maxFreeBytes most bytes kept for reuse; more are left to the garbage collector. */
  constructor(private readonly maxFreeBytes: number) {}

  /** A buffer of at least `byteLength` bytes (its contents are arbitrary). */
  take(byteLength: number): ArrayBuffer {
    const size = sizeClass(byteLength);
    const list = this.free.get(size);
    const reused = list?.pop();
    if (reused) {
      this.freeBytes -= size;
      return reused;
    }
    return new ArrayBuffer(size);
  }

  /** Hands a buffer from take() back once nothing refers to it (detached or foreign buffers are ignored). */
  give(buffer: ArrayBuffer): void {
    const size = buffer.byteLength;
    if (size < MIN_BYTES || size !== sizeClass(size) || this.freeBytes + size > this.maxFreeBytes) return;
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(buffer);
    this.freeBytes += size;
  }
}

function sizeClass(byteLength: number): number {
  let size = MIN_BYTES;
  while (size < byteLength) size *= 2;
  return size;
}
