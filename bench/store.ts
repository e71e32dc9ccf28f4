// Runs-store benchmark: the cost of run-tagged scoring with a full store, on both backends, side by side.
// For each backend (an SQLite file; a private PostgreSQL from scripts/pg-test-server.sh with fsync on) the
// store is filled to 100 runs at their row caps (2,000 history points, 1,000 rewards, 50 flagged rollouts
// each: the "100 runs x 2,000 sequences" of issue 14), then the real `mechreward serve` (bundled
// smollm2-arith pack) is loaded from this process with the same payload, closed loop at concurrency 4, in
// alternating phases untagged / tagged (run_id round robin over the 100 runs) so machine drift hits both alike.
// Reported per backend: requests/s of each, the ratio tagged / untagged (target >= 0.8), /healthz p99 while
// loaded, the store's size, and that the stored counts grew by exactly what was acknowledged. Before the
// phases every run is scored once (steady state: each run's outlier window loaded).
//   npm run bench:store                       # ~2 minutes
//   STORE_PHASE_SECONDS=5 npm run bench:store # a quick check
//   STORE_TOKENS=160 npm run bench:store      # GRPO-sized sequences (4 x 160 tokens) instead of 4 x 32
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import type { ScoreRequest } from '../src/generated/mechreward/v1/ScoreRequest.js';
import { openRunsDatabase } from '../src/monitor/open.js';
import { FLAGGED_CAP, HISTORY_CAP, REWARD_WINDOW } from '../src/monitor/monitor.js';
import { spawnServe } from '../test/helpers/child-server.js';
import { startPostgres } from '../test/helpers/postgres.js';
import { grpcClient, score } from '../test/helpers/server.js';
import { randomFill } from './shapes.js';

const PHASE_SECONDS = Number(process.env.STORE_PHASE_SECONDS ?? 12);
const ROUNDS = Number(process.env.STORE_ROUNDS ?? 2);
const CONCURRENCY = 4;
const RUNS = 100;
const PACK = 'smollm2-arith';
const D_MODEL = 576;
const SEQS = 4;
/** Small requests by default: the store's cost shows against a short engine time (the probe measured 3 ms). */
const TOKENS = Number(process.env.STORE_TOKENS ?? 32);
const PROMPT = Math.floor(TOKENS / 4);

function bf16(values: Float32Array): Buffer {
  const u32 = new Uint32Array(values.buffer);
  const out = Buffer.alloc(values.length * 2);
  for (let i = 0; i < u32.length; i++) out.writeUInt16LE(u32[i]! >>> 16, 2 * i);
  return out;
}
const payload: ScoreRequest = {
  pack: PACK,
  sequences: Array.from({ length: SEQS }, (_, j) => ({ activations: bf16(randomFill(TOKENS * D_MODEL, 2, 100 + j)), dtype: 'DTYPE_BF16' as const, num_tokens: TOKENS, score_from: PROMPT })),
};

/** 100 runs at their row caps, written straight into the database the server will open. */
async function prefill(target: string): Promise<void> {
  const db = await openRunsDatabase(target, { moveAside: false });
  const t0 = Date.now() - 3_600_000;
  const tokens = JSON.stringify(Array.from({ length: TOKENS }, (_, i) => `tok${i}`));
  const tokenRewards = JSON.stringify(Array.from({ length: TOKENS }, (_, i) => (i >= PROMPT ? 0.01 * (i % 7) : 0)));
  for (let r = 0; r < RUNS; r++) {
    const runId = `bench-run-${r}`;
    await db.transaction(async (tx) => {
      await tx.run('INSERT INTO runs (run_id, pack, sequences, flagged, first_seen_ms, last_seen_ms) VALUES (?, ?, ?, ?, ?, ?)', [runId, PACK, HISTORY_CAP * SEQS, FLAGGED_CAP, t0, t0 + r]);
      await tx.insertMany('history', ['run_id', 't_ms', 'sequences', 'flagged', 'reward_mean', 'reward_p10', 'reward_p50', 'reward_p90'], Array.from({ length: HISTORY_CAP }, (_, i) => [runId, t0 + i, SEQS, 0, 0.1, 0, 0.1, 0.2]));
      await tx.insertMany('rewards', ['run_id', 'pack', 'reward'], Array.from({ length: REWARD_WINDOW }, (_, i) => [runId, PACK, Math.sin(i)]));
      await tx.insertMany('flagged', ['run_id', 't_ms', 'reward', 'flags', 'tokens', 'token_rewards', 'text'], Array.from({ length: FLAGGED_CAP }, (_, i) => [runId, t0 + i, 0.5, '[{"name":"x","reason":"prefill","value":1}]', tokens, tokenRewards, 'wait '.repeat(20)]));
    });
  }
  await db.close();
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

interface Phase {
  ok: number;
  errors: number;
  seconds: number;
}

async function measure(target: string): Promise<Record<string, unknown>> {
  await prefill(target);
  const server = await spawnServe(['--grpc-port', '0', '--http-port', '0', '--runs-db', target]);
  const client = grpcClient(server.grpcPort);
  const metrics = async (name: string): Promise<number> => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(await (await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)).text())?.[1]);
  const acked = new Map<string, number>();
  let n = 0;
  const phase = async (tagged: boolean): Promise<Phase & { healthz: number[] }> => {
    const out = { ok: 0, errors: 0, seconds: 0, healthz: [] as number[] };
    const start = performance.now();
    let probing = true;
    const probe = (async () => {
      while (probing) {
        const t = performance.now();
        await fetch(`http://127.0.0.1:${server.httpPort}/healthz`);
        out.healthz.push(performance.now() - t);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (performance.now() - start < PHASE_SECONDS * 1000) {
          const runId = tagged ? `bench-run-${n++ % RUNS}` : '';
          const r = await score(client, { ...payload, run_id: runId });
          if (!r.ok) {
            out.errors++;
            continue;
          }
          out.ok++;
          if (runId) acked.set(runId, (acked.get(runId) ?? 0) + SEQS);
        }
      }),
    );
    out.seconds = (performance.now() - start) / 1000;
    probing = false;
    await probe;
    return out;
  };
  for (let i = 0; i < 4; i++) await score(client, payload); // warm-up
  // Steady state: the server has seen every run once (its outlier window is loaded), as a server serving 100
  // long runs has; the cold first touch of each run is one indexed read of its last 1,000 rewards.
  for (let r = 0; r < RUNS; r += CONCURRENCY) {
    await Promise.all(Array.from({ length: CONCURRENCY }, async (_, j) => {
      const runId = `bench-run-${r + j}`;
      if ((await score(client, { ...payload, run_id: runId })).ok) acked.set(runId, (acked.get(runId) ?? 0) + SEQS);
    }));
  }
  const untagged: Phase[] = [];
  const tagged: Phase[] = [];
  const healthz: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    untagged.push(await phase(false));
    const t = await phase(true);
    tagged.push(t);
    healthz.push(...t.healthz);
  }
  const rate = (ps: Phase[]) => ps.reduce((a, p) => a + p.ok, 0) / ps.reduce((a, p) => a + p.seconds, 0);
  const storeBytes = await metrics('mechreward_runs_store_bytes');
  client.close();
  await server.stop();
  // Stored counts: the prefill plus exactly what was acknowledged.
  const db = await openRunsDatabase(target, { moveAside: false });
  const rows = await db.all('SELECT run_id, sequences FROM runs');
  await db.close();
  const mismatched = rows.filter((r) => Number(r.sequences) !== HISTORY_CAP * SEQS + (acked.get(String(r.run_id)) ?? 0)).length;
  healthz.sort((a, b) => a - b);
  return {
    untagged_rps: rate(untagged),
    tagged_rps: rate(tagged),
    ratio: rate(tagged) / rate(untagged),
    errors: [...untagged, ...tagged].reduce((a, p) => a + p.errors, 0),
    healthz_p99_ms_tagged: percentile(healthz, 99),
    store_mb: storeBytes / 2 ** 20,
    runs: rows.length,
    runs_with_wrong_count: mismatched,
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mechreward-bench-store-'));
  process.env.PG_FSYNC = 'on';
  const pg = await startPostgres();
  const results: Record<string, Record<string, unknown>> = {};
  try {
    results.sqlite = await measure(path.join(dir, 'runs.sqlite'));
    results.postgres = await measure(await pg.newDatabase());
  } finally {
    await pg.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const report = {
    conditions: { cpus: os.availableParallelism(), loadavg: os.loadavg(), pack: PACK, request: `${SEQS} x ${TOKENS} tokens bf16`, concurrency: CONCURRENCY, phase_seconds: PHASE_SECONDS, rounds: ROUNDS, store: `${RUNS} runs x ${HISTORY_CAP} history, ${REWARD_WINDOW} rewards, ${FLAGGED_CAP} flagged` },
    results,
  };
  console.log(JSON.stringify(report, null, 2));
  console.log('\n| backend | untagged req/s | tagged req/s | tagged / untagged | /healthz p99 (tagged load) | store size | wrong counts |');
  console.log('|---|---|---|---|---|---|---|');
  for (const [name, r] of Object.entries(results)) {
    const f = (k: string, d = 1) => Number(r[k]).toFixed(d);
    console.log(`| ${name} | ${f('untagged_rps')} | ${f('tagged_rps')} | ${f('ratio', 2)} | ${f('healthz_p99_ms_tagged')} ms | ${f('store_mb')} MB | ${r.runs_with_wrong_count} of ${r.runs} |`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
