// Writes a linear read-out (`weight` [d_model], `bias` [1], float32) as safetensors, with string metadata.
import { writeFileSync } from 'node:fs';

export function writeLinearSafetensors(file: string, weight: Float64Array, bias: number, metadata: Record<string, string>): void {
  const w = Float32Array.from(weight);
  const b = Float32Array.from([bias]);
  const header = {
    __metadata__: metadata,
    bias: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
    weight: { dtype: 'F32', shape: [w.length], data_offsets: [4, 4 + w.byteLength] },
  };
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8); // keep the data 8-byte aligned, as the reference writer does
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
  writeFileSync(file, Buffer.concat([len, Buffer.from(json, 'utf8'), Buffer.from(b.buffer), Buffer.from(w.buffer)]));
}
