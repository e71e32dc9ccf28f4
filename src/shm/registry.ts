// Shared-memory regions of co-located clients (docs/shared-memory.md), modelled on Triton's system
// shared-memory extension: a client registers a POSIX segment once, then sends descriptors (region, offset,
// byte_size) instead of activation bytes. This module turns those descriptors back into the sequences' bytes
// before the scorer sees them, so decoding and everything after it are the same as for bytes on the wire.
//
// Confinement: the server opens only `<shm dir>/mechreward-…` (strict character class, O_NOFOLLOW, regular
// file, this process's uid), proves it sees the client's segment by a nonce the client wrote at offset 0,
// and keeps the file descriptor: the client unlinks the name at once, so after a SIGKILL of either side
// nothing stays in /dev/shm (the kernel frees the pages with the last descriptor or mapping). A descriptor
// reaches only a region registered by the same client id, and never reads past the registered size.
// Node has no mmap: a descriptor becomes a source that decoding preads straight into the engine's input slab
// (one copy out of tmpfs, no socket, no intermediate buffer).
import { closeSync, constants as fsConstants, fstatSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import { timingSafeEqual } from 'node:crypto';

import { MechRewardError } from '../errors.js';
import type { ActivationSource } from '../core/decode.js';

/** Metadata key naming the calling client; regions are scoped to it. */
export const CLIENT_ID_METADATA_KEY = 'x-mechreward-client-id';
/** Regions one client may hold at once (each holds a file descriptor open in the server). */
export const MAX_REGIONS_PER_CLIENT = 64;
export const MIN_NONCE_BYTES = 16;
export const MAX_NONCE_BYTES = 64;

const REGION_NAME = /^[A-Za-z0-9._-]{1,128}$/;
const SEGMENT_KEY = /^mechreward-[A-Za-z0-9._-]{1,189}$/;
const CLIENT_ID = /^[A-Za-z0-9._-]{8,128}$/;

export interface SharedMemoryOptions {
  readonly enabled: boolean;
  /** Where keys are opened: the POSIX shared-memory mount (/dev/shm). */
  readonly dir: string;
  readonly leaseMs: number;
  /** Bytes one request may read out of regions (the same bound as a gRPC message). */
  readonly maxRequestBytes: number;
}

export interface RegisterInput {
  readonly name: string;
  readonly key: string;
  /** uint64 as proto-loader delivers it (a decimal string) or a number. */
  readonly byte_size: string | number;
  readonly nonce: Uint8Array;
}

export interface SharedMemoryRefInput {
  readonly region: string;
  readonly offset: string | number;
  readonly byte_size: string | number;
}

/** Observes the registered totals (the mechreward_shm_* gauges). */
export interface SharedMemoryGauges {
  set(regions: number, bytes: number): void;
}

interface Region {
  readonly name: string;
  readonly clientId: string;
  readonly fd: number;
  readonly byteSize: number;
  lastUsed: number;
}

function invalid(message: string): MechRewardError {
  return new MechRewardError('MR_ERR_INVALID_ARGUMENT', message);
}

function unavailable(message: string, cause?: unknown): MechRewardError {
  return new MechRewardError('MR_ERR_SHM_UNAVAILABLE', message, cause);
}

/** A uint64 field as a safe integer, or INVALID_ARGUMENT naming it. */
function safeSize(raw: string | number, field: string): number {
  const n = typeof raw === 'number' ? raw : Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw invalid(`${field}: ${String(raw)} is not a byte count this server can address (at most 2^53 - 1)`);
  return n;
}

/** The client id from call metadata, checked. */
export function checkClientId(raw: string | undefined): string {
  if (!raw) throw invalid(`metadata ${CLIENT_ID_METADATA_KEY}: required for shared memory (a random id per client process)`);
  if (!CLIENT_ID.test(raw)) throw invalid(`metadata ${CLIENT_ID_METADATA_KEY}: ${JSON.stringify(raw.slice(0, 64))} is not 8-128 characters of [A-Za-z0-9._-]`);
  return raw;
}

export class SharedMemoryRegistry {
  private readonly regions = new Map<string, Region>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly options: SharedMemoryOptions,
    private readonly gauges?: SharedMemoryGauges,
    private readonly now: () => number = Date.now,
  ) {
    this.sweeper = setInterval(() => this.expire(), Math.max(250, Math.min(options.leaseMs / 4, 30_000)));
    this.sweeper.unref();
  }

  get leaseMs(): number {
    return this.options.leaseMs;
  }

  register(clientId: string, req: RegisterInput): void {
    if (!this.options.enabled) throw unavailable('shared memory is off on this server (--shm false); send activations as bytes');
    if (!REGION_NAME.test(req.name) || req.name.includes('..')) throw invalid(`name: ${JSON.stringify(req.name.slice(0, 64))} is not 1-128 characters of [A-Za-z0-9._-] (no '..')`);
    if (!SEGMENT_KEY.test(req.key) || req.key.includes('..')) {
      throw invalid(`key: ${JSON.stringify(req.key.slice(0, 64))} is not a segment name this server opens: "mechreward-" then [A-Za-z0-9._-], at most 200 characters, no '/' or '..'`);
    }
    const byteSize = safeSize(req.byte_size, 'byte_size');
    const nonce = req.nonce;
    if (nonce.byteLength < MIN_NONCE_BYTES || nonce.byteLength > MAX_NONCE_BYTES) throw invalid(`nonce: ${nonce.byteLength} bytes; send ${MIN_NONCE_BYTES}-${MAX_NONCE_BYTES} random bytes written at offset 0 of the segment`);
    if (byteSize < nonce.byteLength) throw invalid(`byte_size: ${byteSize} is smaller than the nonce (${nonce.byteLength} bytes) it must hold`);
    const existing = this.regions.get(req.name);
    if (existing && existing.clientId !== clientId) throw new MechRewardError('MR_ERR_SHM_FORBIDDEN', `name: region ${JSON.stringify(req.name)} is registered by another client`);
    if (!existing && this.countFor(clientId) >= MAX_REGIONS_PER_CLIENT) {
      throw new MechRewardError('MR_ERR_REQUEST_TOO_LARGE', `name: this client already holds ${MAX_REGIONS_PER_CLIENT} regions, the most one client may; unregister one first`);
    }

    const fd = this.open(req.key);
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw unavailable(`key: ${req.key} is not a regular file in ${this.options.dir}`);
      if (typeof process.getuid === 'function' && st.uid !== process.getuid()) throw unavailable(`key: ${req.key} belongs to another user; the server reads only its own user's segments`);
      if (byteSize > st.size) throw invalid(`byte_size: ${byteSize} exceeds the segment's ${st.size} bytes as this server sees it`);
      const seen = Buffer.alloc(nonce.byteLength);
      const got = readSync(fd, seen, 0, seen.byteLength, 0);
      if (got !== nonce.byteLength || !timingSafeEqual(seen, nonce)) {
        throw unavailable(`nonce: the segment ${req.key} this server opened does not hold the client's nonce: not the same segment (another host or mount namespace); send activations as bytes`);
      }
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    if (existing) closeSync(existing.fd);
    this.regions.set(req.name, { name: req.name, clientId, fd, byteSize, lastUsed: this.now() });
    this.publish();
  }

  unregister(clientId: string, name: string): void {
    const region = this.owned(clientId, name, 'name');
    this.regions.delete(name);
    closeSync(region.fd);
    this.publish();
  }

  /**
   * The bytes a descriptor names, as a source decoding copies from (checked now: region, owner, bounds,
   * budget). `field` names the descriptor in errors (sequences[i].shm). `budget` is what this request may
   * still read; the caller subtracts.
   */
  source(clientId: string, ref: SharedMemoryRefInput, field: string, budget: number): ActivationSource {
    const name = ref.region;
    const region = this.owned(clientId, name, `${field}.region`);
    const offset = safeSize(ref.offset, `${field}.offset`);
    const size = safeSize(ref.byte_size, `${field}.byte_size`);
    if (offset > region.byteSize || size > region.byteSize - offset) {
      throw invalid(`${field}: offset ${offset} + byte_size ${size} runs past the end of region ${JSON.stringify(region.name)} (${region.byteSize} bytes registered)`);
    }
    if (size > budget) {
      throw new MechRewardError('MR_ERR_REQUEST_TOO_LARGE', `${field}.byte_size: ${size} bytes would take this request past max_message_bytes ${this.options.maxRequestBytes}`);
    }
    region.lastUsed = this.now();
    return {
      byteLength: size,
      copyTo: (target, sourceOffset) => {
        // The region must still be the one checked above: unregistered or registered again since, its fd
        // may be closed or reused for another file.
        if (this.regions.get(name) !== region) {
          this.owned(clientId, name, `${field}.region`); // gone, or now another client's: NOT_FOUND / PERMISSION_DENIED
          throw new MechRewardError('MR_ERR_SHM_NOT_FOUND', `${field}.region: region ${JSON.stringify(name)} was registered again while this request was read; send it again`);
        }
        if (sourceOffset < 0 || target.byteLength > size - sourceOffset) throw new MechRewardError('MR_ERR_INTERNAL', `${field}: read of ${target.byteLength} bytes at ${sourceOffset} outside the descriptor's ${size}`);
        let done = 0;
        while (done < target.byteLength) {
          const at = offset + sourceOffset + done;
          const n = readSync(region.fd, target, done, target.byteLength - done, at);
          if (n === 0) throw invalid(`${field}: region ${JSON.stringify(region.name)} ended after ${at} bytes, before the ${offset + sourceOffset + target.byteLength} the descriptor needs: its segment was truncated`);
          done += n;
        }
      },
    };
  }

  /**
   * The request's sequences with every shm descriptor replaced by a source of the bytes it names; sequences
   * sent as bytes pass through untouched. Only called when some sequence has a descriptor.
   */
  resolve<S extends { activations: Uint8Array | ActivationSource; shm?: SharedMemoryRefInput | null }>(clientId: string, sequences: readonly S[]): S[] {
    let budget = this.options.maxRequestBytes;
    return sequences.map((s, i) => {
      if (!s.shm) return s;
      if (s.activations.byteLength > 0) throw invalid(`sequences[${i}]: set activations or shm, not both`);
      const bytes = this.source(clientId, s.shm, `sequences[${i}].shm`, budget);
      budget -= bytes.byteLength;
      return { ...s, activations: bytes };
    });
  }

  get totals(): { regions: number; bytes: number } {
    let bytes = 0;
    for (const r of this.regions.values()) bytes += r.byteSize;
    return { regions: this.regions.size, bytes };
  }

  /** Closes registrations idle longer than the lease. */
  expire(): void {
    const cutoff = this.now() - this.options.leaseMs;
    let changed = false;
    for (const [name, r] of this.regions) {
      if (r.lastUsed <= cutoff) {
        this.regions.delete(name);
        closeSync(r.fd);
        changed = true;
      }
    }
    if (changed) this.publish();
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const r of this.regions.values()) closeSync(r.fd);
    this.regions.clear();
    this.publish();
  }

  private open(key: string): number {
    // O_NOFOLLOW: a symlink planted under the key is refused; O_NONBLOCK: a FIFO cannot stall the event loop.
    const flags = fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK;
    try {
      return openSync(path.join(this.options.dir, key), flags);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw unavailable(`key: no segment ${key} in ${this.options.dir} on the server's host: client and server are not co-located; send activations as bytes`, err);
      if (code === 'ELOOP') throw unavailable(`key: ${key} is a symbolic link; the server opens only regular files`, err);
      throw unavailable(`key: cannot open ${key} (${code ?? 'error'}); send activations as bytes`, err);
    }
  }

  private owned(clientId: string, name: string, field: string): Region {
    const region = this.regions.get(name);
    if (!region) throw new MechRewardError('MR_ERR_SHM_NOT_FOUND', `${field}: no shared-memory region ${JSON.stringify(name.slice(0, 128))} is registered (never, unregistered, or idle past the ${this.options.leaseMs} ms lease); register it again`);
    if (region.clientId !== clientId) throw new MechRewardError('MR_ERR_SHM_FORBIDDEN', `${field}: region ${JSON.stringify(name)} is registered by another client`);
    return region;
  }

  private countFor(clientId: string): number {
    let n = 0;
    for (const r of this.regions.values()) if (r.clientId === clientId) n++;
    return n;
  }

  private publish(): void {
    const t = this.totals;
    this.gauges?.set(t.regions, t.bytes);
  }
}
