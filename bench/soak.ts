// Soak: the real `mechreward serve` (bundled smollm2-arith pack) as a child process, loaded from this separate
// process. First the sustainable rate is measured (closed loop, fixed concurrency); then an open-loop Poisson
// load at SOAK_LOAD_FRACTION (default 0.7) of it runs for SOAK_SECONDS (default 600). Reported: the server's
// resident memory (process_resident_memory_bytes from /metrics) over time and its growth, error counts by
// status, latency percentiles, and the machine's load average (other processes share it).
//   npm run bench:soak                      # ~10 minutes
//   SOAK_SECONDS=60 npm run bench:soak      # a quick check
// Every request carries a run_id (SOAK_RUNS runs, round robin) into an SQLite runs file, as training runs do.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import * as grpc from '@grpc/grpc-js';

import type { ScoreRequest } from '../src/generated/mechreward/v1/ScoreRequest.js';
import { spawnServe } from '../test/helpers/child-server.js';
import { grpcClient } from '../test/helpers/server.js';
import { randomFill } from './shapes.js';

const SOAK_SECONDS = Number(process.env.SOAK_SECONDS ?? 600);
const MEASURE_SECONDS = Number(process.env.SOAK_MEASURE_SECONDS ?? 30);
const LOAD_FRACTION = Number(process.env.SOAK_LOAD_FRACTION ?? 0.7);
const CONCURRENCY = Number(process.env.SOAK_CONCURRENCY ?? 8);
const SAMPLE_EVERY_S = 10;
const RUNS = Number(process.env.SOAK_RUNS ?? 16);
const PACK = 'smollm2-arith';
const D_MODEL = 576;
/** A GRPO-like request: 4 sequences of 160 tokens (32 prompt + 128 response), bf16. */
const SEQS = 4;
const TOKENS = 160;
const PROMPT = 32;

function bf16(values: Float32Array): Buffer {
  const u32 = new Uint32Array(values.buffer);
  const out = Buffer.alloc(values.length * 2);
  for (let i = 0; i < u32.length; i++) out.writeUInt16LE(u32[i]! >>> 16, 2 * i);
  return out;
}
const requests: ScoreRequest[] = [1, 2, 3, 4].map((seed) => ({
  pack: PACK,
  sequences: Array.from({ length: SEQS }, (_, j) => ({ activations: bf16(randomFill(TOKENS * D_MODEL, 2, seed * 100 + j)), dtype: 'DTYPE_BF16' as const, num_tokens: TOKENS, score_from: PROMPT })),
}));

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function main(): Promise<void> {
  const dbDir = mkdtempSync(path.join(os.tmpdir(), 'mechreward-soak-'));
  const server = await spawnServe(['--grpc-port', '0', '--http-port', '0', '--runs-db', path.join(dbDir, 'runs.sqlite')]);
  const client = grpcClient(server.grpcPort);
  const metricsUrl = `http://127.0.0.1:${server.httpPort}/metrics`;
  const rss = async (): Promise<number> => Number(/^process_resident_memory_bytes (\S+)/m.exec(await (await fetch(metricsUrl)).text())?.[1]);

  let sent = 0;
  const codes: Record<string, number> = {};
  let latencies: number[] = [];
  const once = (i: number): Promise<void> =>
    new Promise((resolve) => {
      sent++;
      const t0 = performance.now();
      client.Score({ ...requests[i % requests.length]!, run_id: `soak-${i % RUNS}` }, { deadline: Date.now() + 30_000 }, (err) => {
        const code = err ? grpc.status[err.code]! : 'OK';
        codes[code] = (codes[code] ?? 0) + 1;
        if (!err) latencies.push(performance.now() - t0);
        resolve();
      });
    });

  // 1. Sustainable rate: closed loop for MEASURE_SECONDS after a short warm-up.
  for (let i = 0; i < 8; i++) await once(i);
  latencies = [];
  for (const k of Object.keys(codes)) delete codes[k];
  const measureStart = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() - measureStart < MEASURE_SECONDS * 1000) await once(next++);
    }),
  );
  const sustainable = (codes.OK ?? 0) / ((performance.now() - measureStart) / 1000);
  const measured = { concurrency: CONCURRENCY, seconds: MEASURE_SECONDS, requests_per_s: sustainable, codes: { ...codes }, p99_ms: percentile(latencies.sort((a, b) => a - b), 99) };
  console.error(`sustainable: ${sustainable.toFixed(2)} req/s at concurrency ${CONCURRENCY}; soaking at ${(LOAD_FRACTION * sustainable).toFixed(2)} req/s for ${SOAK_SECONDS} s`);

  // 2. Soak: open loop, Poisson arrivals at LOAD_FRACTION of the sustainable rate.
  latencies = [];
  for (const k of Object.keys(codes)) delete codes[k];
  sent = 0;
  const rate = LOAD_FRACTION * sustainable;
  const samples: { t_s: number; rss_mb: number }[] = [];
  const loadStart = os.loadavg();
  const start = performance.now();
  samples.push({ t_s: 0, rss_mb: (await rss()) / 2 ** 20 });
  const sampler = setInterval(() => {
    void rss().then((v) => samples.push({ t_s: Math.round((performance.now() - start) / 1000), rss_mb: v / 2 ** 20 }));
  }, SAMPLE_EVERY_S * 1000);
  const pending: Promise<void>[] = [];
  let at = 0;
  for (let i = 0; ; i++) {
    at += -Math.log(1 - Math.random()) / rate;
    if (at > SOAK_SECONDS) break;
    const wait = start + at * 1000 - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    pending.push(once(i));
  }
  await Promise.all(pending);
  clearInterval(sampler);
  const elapsed = (performance.now() - start) / 1000;
  samples.push({ t_s: Math.round(elapsed), rss_mb: (await rss()) / 2 ** 20 });
  latencies.sort((a, b) => a - b);
  const errors = Object.entries(codes).filter(([c]) => c !== 'OK').reduce((n, [, v]) => n + v, 0);
  // Growth: the last minute's mean against the first minute's mean, so one sample's noise does not decide it.
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const first = samples.filter((s) => s.t_s <= 60).map((s) => s.rss_mb);
  const last = samples.filter((s) => s.t_s >= elapsed - 60).map((s) => s.rss_mb);
  const report = {
    conditions: { runs: RUNS, runs_db: 'sqlite', runs_store_bytes: Number(/^mechreward_runs_store_bytes (\S+)/m.exec(await (await fetch(metricsUrl)).text())?.[1]), cpus: os.availableParallelism(), loadavg_start: loadStart, loadavg_end: os.loadavg(), pack: PACK, request: `${SEQS} x ${TOKENS} tokens bf16 (score_from ${PROMPT})` },
    sustainable: measured,
    soak: {
      target_rate: rate,
      seconds: elapsed,
      sent,
      achieved_rate: sent / elapsed,
      codes,
      errors,
      p50_ms: percentile(latencies, 50),
      p90_ms: percentile(latencies, 90),
      p99_ms: percentile(latencies, 99),
      max_ms: latencies.at(-1),
      rss_first_minute_mb: mean(first),
      rss_last_minute_mb: mean(last),
      rss_growth_mb: mean(last) - mean(first),
      rss_max_mb: Math.max(...samples.map((s) => s.rss_mb)),
      rss_samples: samples,
    },
  };
  console.log(JSON.stringify(report, null, 2));
  client.close();
  await server.stop();
  rmSync(dbDir, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
