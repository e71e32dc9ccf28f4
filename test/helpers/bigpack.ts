// A larger random TopK SAE pack written on the fly, for tests that need a batch which keeps the engine busy
// for a while (event-loop and shutdown tests). Not a parity fixture: its numbers are never checked.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

function safetensors(tensors: Record<string, { shape: number[]; data: Float32Array }>): Buffer {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length), 0);
  return Buffer.concat([len, json, ...Object.values(tensors).map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))]);
}

export function writeBigPack(root: string, name = 'big', dModel = 512, dSae = 16384, k = 64, withDecoder = true): string {
  const dir = path.join(root, name);
  mkdirSync(path.join(dir, 'sae'), { recursive: true });
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648 - 0.5) * 0.1;
  const wEnc = new Float32Array(dModel * dSae).map(rand);
  const tensors: Record<string, { shape: number[]; data: Float32Array }> = {
    W_enc: { shape: [dModel, dSae], data: wEnc },
    b_enc: { shape: [dSae], data: new Float32Array(dSae) },
    b_dec: { shape: [dModel], data: new Float32Array(dModel) },
  };
  if (withDecoder) tensors.W_dec = { shape: [dSae, dModel], data: new Float32Array(dSae * dModel).map(rand) };
  writeFileSync(path.join(dir, 'sae', 'sae_weights.safetensors'), safetensors(tensors));
  writeFileSync(path.join(dir, 'sae', 'cfg.json'), JSON.stringify({ d_in: dModel, d_sae: dSae, architecture: 'topk', k, apply_b_dec_to_input: true, normalize_activations: 'none' }));
  writeFileSync(path.join(dir, 'pack.json'), JSON.stringify({ schema: 'mechreward.pack/v1', name, model: 'random', features: [{ id: 1, weight: 1 }, { id: 2, weight: -1 }] }));
  return dir;
}
