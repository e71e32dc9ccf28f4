// gRPC load generator, run as its own process by bench/run.ts so client work never shares the server's event
// loop. Closed loop (fixed concurrency) or open loop (fixed request rate). Prints one JSON line of results.
//   node dist/bench/load-client.js --target 127.0.0.1:50051 --pack P --d-model 2560 --tokens 512
//        --mode closed --concurrency 8 --seconds 10      |  --mode open --rate 6 --seconds 10
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
    mode: { type: 'string', default: 'closed' },
    concurrency: { type: 'string', default: '1' },
    rate: { type: 'string', default: '1' },
    seconds: { type: 'string', default: '10' },
    'deadline-ms': { type: 'string', default: '60000' },
  },
});

const tokens = Number(values.tokens);
const dModel = Number(values['d-model']);
const deadlineMs = Number(values['deadline-ms']);

/** bf16 payloads (top 16 bits of float32), prepared once so the client spends its time on the wire. */
function bf16Payload(seed: number): Buffer {
  const f32 = randomFill(tokens * dModel, 2, seed);
  const u32 = new Uint32Array(f32.buffer);
  const out = Buffer.alloc(tokens * dModel * 2);
  for (let i = 0; i < u32.length; i++) out.writeUInt16LE(u32[i]! >>> 16, 2 * i);
  return out;
}
const payloads = [1, 2, 3, 4].map(bf16Payload);

const contract = loadContract();
const client = new contract.mechreward.v1.RewardService(values.target!, grpc.credentials.createInsecure(), {
  'grpc.max_send_message_length': 512 * 1024 * 1024,
  'grpc.max_receive_message_length': 512 * 1024 * 1024,
});

const latencies: number[] = [];
const codes: Record<string, number> = {};
let sent = 0;
let finished = 0;

function once(i: number): Promise<void> {
  sent++;
  const t0 = performance.now();
  return new Promise((resolve) => {
    client.Score(
      { pack: values.pack!, sequences: [{ activations: payloads[i % payloads.length]!, dtype: 'DTYPE_BF16', num_tokens: tokens, score_from: 0 }] },
      { deadline: Date.now() + deadlineMs },
      (err) => {
        finished++;
        const code = err ? grpc.status[err.code] : 'OK';
        codes[code!] = (codes[code!] ?? 0) + 1;
        if (!err) latencies.push(performance.now() - t0);
        resolve();
      },
    );
  });
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function main(): Promise<void> {
  await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + 30_000, (err) => (err ? reject(err) : resolve())));
  const seconds = Number(values.seconds);
  const start = performance.now();
  const end = start + seconds * 1000;
  if (values.mode === 'closed') {
    let next = 0;
    await Promise.all(
      Array.from({ length: Number(values.concurrency) }, async () => {
        while (performance.now() < end) await once(next++);
      }),
    );
  } else {
    const interval = 1000 / Number(values.rate);
    const pending: Promise<void>[] = [];
    for (let i = 0; performance.now() < end; i++) {
      pending.push(once(i));
      const wait = start + (i + 1) * interval - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    // Every request must come back (answer or clean error) within its deadline; what does not is "hung".
    await Promise.race([Promise.all(pending), new Promise((r) => setTimeout(r, deadlineMs + 5000))]);
  }
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  const ok = codes.OK ?? 0;
  console.log(JSON.stringify({
    mode: values.mode, concurrency: Number(values.concurrency), rate: Number(values.rate), sent, finished, hung: sent - finished, codes,
    seconds: elapsed, tokens_per_s: (ok * tokens) / elapsed, requests_per_s: ok / elapsed,
    p50_ms: percentile(latencies, 50), p99_ms: percentile(latencies, 99),
  }));
  client.close();
  process.exit(0);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
