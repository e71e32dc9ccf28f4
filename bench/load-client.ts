// gRPC load generator, run as its own process by bench/run.ts and bench/transport.ts so client work never
// shares the server's event loop. Closed loop (fixed concurrency) or open loop (fixed request rate). Prints one
// JSON line of results.
//   node dist/bench/load-client.js --target 127.0.0.1:50051 --pack P --d-model 2560 --tokens 512
//        --mode closed --concurrency 8 --seconds 10      |  --mode open --rate 6 --seconds 10
//   --concurrency 1,8               closed loop at each concurrency in turn, one JSON line each
//   --target unix:/path/to.sock     the server's --grpc-socket
//   --dtype bf16|f32                wire dtype of the activations (default bf16)
//   --echo                          call the bare echo server (bench/echo-server.ts) with the same bytes
// Each request message is serialized once, before the clock starts, and sent as raw bytes: the client spends
// its time on the wire, and the Score and echo runs send byte-identical messages. Replies are not decoded
// (one reply is, before timing, to check it is a real answer).
import { parseArgs } from 'node:util';

import * as grpc from '@grpc/grpc-js';

import { loadContract } from '../src/transports/grpc/contract.js';
import { ECHO_METHOD, randomFill } from './shapes.js';

const { values } = parseArgs({
  options: {
    target: { type: 'string' },
    pack: { type: 'string' },
    'd-model': { type: 'string' },
    tokens: { type: 'string', default: '512' },
    dtype: { type: 'string', default: 'bf16' },
    echo: { type: 'boolean', default: false },
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
const dtype = values.dtype === 'f32' ? 'DTYPE_F32' : 'DTYPE_BF16';

/** Activations in the wire dtype (bf16 = the top 16 bits of float32), prepared once. */
function payload(seed: number): Buffer {
  const f32 = randomFill(tokens * dModel, 2, seed);
  if (dtype === 'DTYPE_F32') return Buffer.from(f32.buffer);
  const u32 = new Uint32Array(f32.buffer);
  const u16 = new Uint16Array(u32.length); // little-endian host: the top half of each float32
  for (let i = 0; i < u32.length; i++) u16[i] = u32[i]! >>> 16;
  return Buffer.from(u16.buffer);
}

const contract = loadContract();
const score = contract.mechreward.v1.RewardService.service.Score;
const messages = [1, 2, 3, 4].map((seed) => score.requestSerialize({ pack: values.pack!, sequences: [{ activations: payload(seed), dtype, num_tokens: tokens, score_from: 0 }] }));
const method = values.echo ? ECHO_METHOD : score.path;
const raw = (b: Buffer): Buffer => b;
const client = new grpc.Client(values.target!, grpc.credentials.createInsecure(), {
  'grpc.max_send_message_length': 512 * 1024 * 1024,
  'grpc.max_receive_message_length': 512 * 1024 * 1024,
});

const latencies: number[] = [];
const codes: Record<string, number> = {};
let sent = 0;
let finished = 0;

function call(i: number): Promise<{ err: grpc.ServiceError | null; reply?: Buffer }> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(method, raw, raw, messages[i % messages.length]!, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err, reply) => resolve({ err, reply }));
  });
}

async function once(i: number): Promise<void> {
  sent++;
  const t0 = performance.now();
  const { err } = await call(i);
  finished++;
  const code = err ? grpc.status[err.code] : 'OK';
  codes[code!] = (codes[code!] ?? 0) + 1;
  if (!err) latencies.push(performance.now() - t0);
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** One untimed call: the server answers, and a Score reply really holds one result of `tokens` rewards. */
async function check(): Promise<void> {
  const { err, reply } = await call(0);
  if (err) throw new Error(`first call failed: ${grpc.status[err.code]} ${err.details}`);
  if (values.echo) return;
  const decoded = score.responseDeserialize(reply!);
  if (decoded.results.length !== 1 || decoded.results[0]!.token_rewards.length !== tokens) throw new Error(`unexpected Score reply: ${JSON.stringify(decoded).slice(0, 200)}`);
}

/** Closed loop at `concurrency` for `seconds`, or open loop at --rate; returns the result line. */
async function measure(concurrency: number, seconds: number): Promise<Record<string, unknown>> {
  latencies.length = 0;
  for (const k of Object.keys(codes)) delete codes[k];
  sent = finished = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  if (values.mode === 'closed') {
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
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
  return {
    mode: values.mode, concurrency, rate: Number(values.rate), sent, finished, hung: sent - finished, codes: { ...codes },
    seconds: elapsed, tokens_per_s: (ok * tokens) / elapsed, requests_per_s: ok / elapsed,
    p50_ms: percentile(latencies, 50), p99_ms: percentile(latencies, 99),
  };
}

async function main(): Promise<void> {
  await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + 30_000, (err) => (err ? reject(err) : resolve())));
  await check();
  for (const concurrency of values.concurrency!.split(',').map(Number)) console.log(JSON.stringify(await measure(concurrency, Number(values.seconds))));
  client.close();
  process.exit(0);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
