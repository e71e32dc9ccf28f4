// Reads the header of a .safetensors file and checks it against the file before any byte is trusted.
// Format: 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets: [begin, end]}},
// then the raw tensor bytes; offsets are relative to the end of the header.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

import { MechRewardError } from '../errors.js';
import { DTYPE_BYTES, type WireDType, widenToFloat32 } from '../numerics/widen.js';

/** A real header for a large SAE is a few KB; anything near this is a corrupt or hostile file. */
const MAX_HEADER_BYTES = 16 * 1024 * 1024;

/** F64 only where the caller allows it (SAE weights, narrowed to float32 when read). */
export type SafetensorsDType = WireDType | 'F64';


export interface TensorEntry<D extends SafetensorsDType = SafetensorsDType> {
  readonly dtype: D;
  readonly shape: readonly number[];
  /** Absolute byte offset of the tensor's data in the file. */
  readonly fileOffset: number;
  readonly byteLength: number;
}

export interface SafetensorsHeader<D extends SafetensorsDType = SafetensorsDType> {
  readonly path: string;
  readonly fileBytes: number;
  readonly tensors: ReadonlyMap<string, TensorEntry<D>>;
  /** The optional `__metadata__` string map. */
  readonly metadata: Readonly<Record<string, string>>;
}

function invalid(path: string, what: string): MechRewardError {
  return new MechRewardError('MR_ERR_PACK_INVALID', `${path}: ${what}`);
}

export function readSafetensorsHeader(path: string): SafetensorsHeader<WireDType>;
export function readSafetensorsHeader(path: string, options: { allowF64: true }): SafetensorsHeader;
export function readSafetensorsHeader(path: string, options: { allowF64?: boolean } = {}): SafetensorsHeader {
  const fd = openSync(path, 'r');
  try {
    const fileBytes = fstatSync(fd).size;
    if (fileBytes < 8) throw invalid(path, `file is ${fileBytes} bytes, too short for a safetensors header`);
    const lenBuf = Buffer.alloc(8);
    readSync(fd, lenBuf, 0, 8, 0);
    const headerLen = lenBuf.readBigUInt64LE(0);
    if (headerLen > BigInt(MAX_HEADER_BYTES)) throw invalid(path, `header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte cap`);
    const n = Number(headerLen);
    if (8 + n > fileBytes) throw invalid(path, `header length ${n} runs past the end of the file (${fileBytes} bytes)`);
    const headerBuf = Buffer.alloc(n);
    readSync(fd, headerBuf, 0, n, 8);
    let header: unknown;
    try {
      header = JSON.parse(headerBuf.toString('utf8'));
    } catch {
      throw invalid(path, 'header is not valid JSON');
    }
    if (typeof header !== 'object' || header === null || Array.isArray(header)) throw invalid(path, 'header is not a JSON object');
    const dataStart = 8 + n;
    const dataBytes = fileBytes - dataStart;
    const tensors = new Map<string, TensorEntry>();
    const spans: Array<[number, number, string]> = [];
    const metadata: Record<string, string> = {};
    for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') {
        if (typeof raw !== 'object' || raw === null) throw invalid(path, '__metadata__ is not an object');
        for (const [k, v] of Object.entries(raw)) {
          if (typeof v !== 'string') throw invalid(path, `__metadata__.${k} is not a string`);
          metadata[k] = v;
        }
        continue;
      }
      tensors.set(name, parseEntry(path, name, raw, dataStart, dataBytes, options.allowF64 === true));
      const t = tensors.get(name)!;
      spans.push([t.fileOffset, t.fileOffset + t.byteLength, name]);
    }
    // Overlapping tensors mean a lying header: two names would alias the same bytes.
    spans.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < spans.length; i++) {
      if (spans[i]![0] < spans[i - 1]![1]) throw invalid(path, `tensors ${spans[i - 1]![2]} and ${spans[i]![2]} overlap`);
    }
    return { path, fileBytes, tensors, metadata };
  } finally {
    closeSync(fd);
  }
}

function parseEntry(path: string, name: string, raw: unknown, dataStart: number, dataBytes: number, allowF64: boolean): TensorEntry {
  if (typeof raw !== 'object' || raw === null) throw invalid(path, `tensor ${name}: entry is not an object`);
  const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
  if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16' && !(allowF64 && dtype === 'F64')) {
    throw invalid(path, `tensor ${name}: dtype ${JSON.stringify(dtype)} is not supported (F32, F16, BF16${allowF64 ? ', F64' : ''})`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw invalid(path, `tensor ${name}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw invalid(path, `tensor ${name}: data_offsets ${JSON.stringify(offsets)} is not [begin, end]`);
  }
  const [begin, end] = offsets as [number, number];
  const elements = (shape as number[]).reduce((a, b) => a * b, 1);
  const expected = elements * (dtype === 'F64' ? 8 : DTYPE_BYTES[dtype]);
  if (end < begin || end - begin !== expected) {
    throw invalid(path, `tensor ${name}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes, shape ${JSON.stringify(shape)} ${dtype} needs ${expected}`);
  }
  if (end > dataBytes) throw invalid(path, `tensor ${name}: data_offsets end ${end} is past the data section (${dataBytes} bytes); file truncated?`);
  return { dtype, shape: shape as number[], fileOffset: dataStart + begin, byteLength: expected };
}

/** Fills `into` with the tensor's raw little-endian bytes (one read loop for both readers below). */
function readTensorInto(path: string, entry: TensorEntry, into: Uint8Array): void {
  const fd = openSync(path, 'r');
  try {
    let done = 0;
    while (done < entry.byteLength) {
      const got = readSync(fd, into, done, entry.byteLength - done, entry.fileOffset + done);
      if (got === 0) throw invalid(path, 'file shrank while reading');
      done += got;
    }
  } finally {
    closeSync(fd);
  }
}

/** Reads one tensor's raw little-endian bytes. */
export function readTensorBytes(path: string, entry: TensorEntry): Buffer {
  const bytes = Buffer.alloc(entry.byteLength);
  readTensorInto(path, entry, bytes);
  return bytes;
}

/**
 * Reads one tensor as float32: F16 and BF16 are widened exactly (every value is representable); F64 is
 * narrowed by round-to-nearest-even, as torch's `.to(torch.float32)` does (a value beyond float32's range
 * becomes an infinity, which the engine then refuses).
 */
export function readTensorAsFloat32(path: string, entry: TensorEntry): Float32Array {
  if (entry.dtype === 'F64') {
    const wide = new Float64Array(entry.byteLength / 8);
    readTensorInto(path, entry, new Uint8Array(wide.buffer));
    return Float32Array.from(wide);
  }
  if (entry.dtype !== 'F32') return widenToFloat32(readTensorBytes(path, entry), entry.dtype);
  // F32 is read straight into the result (one copy of a possibly 400 MB tensor, not two).
  const out = new Float32Array(entry.byteLength / 4);
  readTensorInto(path, entry, new Uint8Array(out.buffer));
  return out;
}
