// Node client of bench/shm.ts, run as its own process: closed-loop Score requests of one bf16 sequence, either
// as bytes on the wire or through a shared-memory segment per concurrent slot (written once per request, as a
// trainer's capture would, then sent as a descriptor). Prints one JSON line.
//   node dist/bench/shm-client.js --target 127.0.0.1:P --pack P --d-model 2560 --tokens 512 --concurrency 8 --seconds 5 --mode shm
import { randomBytes } from 'node:crypto';
import { openSync, unlinkSync, writeSync } from 'node:fs';
import { parseArgs } from 'node:util';

import * as grpc from '@grpc/grpc-js';

import { loadContract } from '../src/transports/grpc/contract.js';
import { randomFill } from './shapes.js';

const { values } = parseArgs({
  options: {
    target: { type: 'string' },
    pack: { type: 'string' },
    'd-model': { type: 'string' },
    tokens: { type: 'string', default: '512' },
    concurrency: { type: 'string', default: '1' },
    seconds: { type: 'string', default: '5' },
    mode: { type: 'string', default: 'bytes' },
  },
});
const tokens = Number(values.tokens);
const dModel = Number(values['d-model']);
const HEADER = 64; // the nonce lives in the first 16 bytes; data starts here, as in the Python client

function bf16Payload(seed: number): Buffer {
  const u32 = new Uint32Array(randomFill(tokens * dModel, 2, seed).buffer);
  const out = Buffer.alloc(tokens * dModel * 2);
  for (let i = 0; i < u32.length; i++) out.writeUInt16LE(u32[i]! >>> 16, 2 * i);
  return out;
}
const payloads = [1, 2, 3, 4].map(bf16Payload);
const bytes = payloads[0]!.length;

const contract = loadContract();
const client = new contract.mechreward.v1.RewardService(values.target!, grpc.credentials.createInsecure(), {
  'grpc.max_send_message_length': 512 * 1024 * 1024,
  'grpc.max_receive_message_length': 512 * 1024 * 1024,
});
const metadata = new grpc.Metadata();
metadata.set('x-mechreward-client-id', `bench-${randomBytes(8).toString('hex')}`);

function unary<Req, Res>(method: 'Score' | 'RegisterSharedMemory', req: Req): Promise<Res> {
  return new Promise((resolve, reject) => {
    (client[method] as unknown as (r: Req, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: Res) => void) => void)(
      req, metadata, { deadline: Date.now() + 60_000 }, (err, res) => (err ? reject(err) : resolve(res!)));
  });
}

/** One segment per slot: created, registered, unlinked at once; the fd is this client's "mapping". */
async function segment(slot: number): Promise<{ fd: number; region: string }> {
  const key = `mechreward-bench-${randomBytes(6).toString('hex')}-${slot}`;
  const path = `/dev/shm/${key}`;
  const fd = openSync(path, 'w+', 0o600);
  const nonce = randomBytes(16);
  writeSync(fd, nonce, 0, 16, 0);
  writeSync(fd, payloads[0]!, 0, bytes, HEADER);
  try {
    await unary('RegisterSharedMemory', { name: key, key, byte_size: HEADER + bytes, nonce });
  } finally {
    unlinkSync(path);
  }
  return { fd, region: key };
}

async function main(): Promise<void> {
  await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + 30_000, (err) => (err ? reject(err) : resolve())));
  const concurrency = Number(values.concurrency);
  const shm = values.mode === 'shm';
  const segments = shm ? await Promise.all(Array.from({ length: concurrency }, (_, i) => segment(i))) : [];
  let ok = 0;
  let next = 0;
  const start = performance.now();
  const end = start + Number(values.seconds) * 1000;
  await Promise.all(Array.from({ length: concurrency }, async (_, slot) => {
    while (performance.now() < end) {
      const payload = payloads[next++ % payloads.length]!;
      const seq = { dtype: 'DTYPE_BF16' as const, num_tokens: tokens, score_from: 0 };
      if (shm) {
        const s = segments[slot]!;
        writeSync(s.fd, payload, 0, bytes, HEADER);
        await unary('Score', { pack: values.pack!, sequences: [{ ...seq, shm: { region: s.region, offset: HEADER, byte_size: bytes } }] });
      } else {
        await unary('Score', { pack: values.pack!, sequences: [{ ...seq, activations: payload }] });
      }
      ok++;
    }
  }));
  const seconds = (performance.now() - start) / 1000;
  console.log(JSON.stringify({ mode: values.mode, concurrency, requests: ok, seconds, tokens_per_s: (ok * tokens) / seconds }));
  client.close();
  process.exit(0);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
