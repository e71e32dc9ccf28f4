// `npm run bench:shm`: the shared-memory path beside bytes on the wire, measured side by side in one run.
// A direction pack at d_model 2560 (its math is ~1.3 MFLOP per 512 tokens, so the sidecar's own overhead is
// what is timed), one 512-token bf16 sequence per request, concurrency 1 and 8:
//   - gRPC bytes vs shared memory from the Node client (bench/shm-client.ts, its own process);
//   - the same from the Python RewardClient (bench/shm_client.py, python-shims/.venv);
//   - the in-process ceiling: the server's own Scorer (copy + widen + the same graph on the engine worker),
//     no transport, in this process.
// Prints ratios and writes bench-results/shm.md and shm.json. BENCH_SECONDS (default 5) per measurement;
// BENCH_ROUNDS (default 3) rounds, each measuring every cell once in turn, and each cell's median is printed,
// so drift in the machine's load spreads over all paths instead of landing on one.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { Admission } from '../src/core/admission.js';
import { Scorer } from '../src/core/scorer.js';
import { planEngine } from '../src/engine/plan.js';
import { EnginePool } from '../src/engine/pool.js';
import { loadPackDirectory } from '../src/packs/registry.js';
import { spawnServe } from '../test/helpers/child-server.js';
import { encodeSafetensors } from '../test/helpers/safetensors.js';
import { randomFill } from './shapes.js';

const execFileAsync = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PYTHON = path.join(ROOT, 'python-shims/.venv/bin/python');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const D_MODEL = 2560;
const TOKENS = 512;
const PACK = 'direction-2560';
const CONCURRENCY = [1, 8] as const;
const out: string[] = [];

function log(line = ''): void {
  console.log(line);
  out.push(line);
}

const fmt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');
const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}x` : 'n/a');

function writeDirectionPack(dir: string): void {
  const packDir = path.join(dir, PACK);
  mkdirSync(packDir, { recursive: true });
  const weight = randomFill(D_MODEL, 1 / Math.sqrt(D_MODEL), 7);
  const tensors = { weight: { dtype: 'F32' as const, shape: [D_MODEL], bytes: new Uint8Array(weight.buffer) }, bias: { dtype: 'F32' as const, shape: [1], bytes: new Uint8Array(new Float32Array([0.1]).buffer) } };
  writeFileSync(path.join(packDir, 'direction.safetensors'), encodeSafetensors(tensors));
  writeFileSync(path.join(packDir, 'pack.json'), JSON.stringify({
    schema: 'mechreward.pack/v1', name: PACK, synthetic: true, model: 'synthetic', description: 'bench:shm direction pack',
    pooling: { method: 'mean' }, kind: 'direction', direction: { file: 'direction.safetensors' },
  }));
}

async function nodeClient(target: string, mode: 'bytes' | 'shm', concurrency: number): Promise<number> {
  const { stdout } = await execFileAsync(process.execPath, [path.join(ROOT, 'dist/bench/shm-client.js'), '--target', target, '--pack', PACK,
    '--d-model', String(D_MODEL), '--tokens', String(TOKENS), '--concurrency', String(concurrency), '--seconds', String(SECONDS), '--mode', mode], { maxBuffer: 1 << 20 });
  return (JSON.parse(stdout.trim().split('\n').pop()!) as { tokens_per_s: number }).tokens_per_s;
}

async function pythonClient(target: string, mode: 'bytes' | 'shm', concurrency: number): Promise<number> {
  if (!existsSync(PYTHON)) return NaN;
  const { stdout } = await execFileAsync(PYTHON, [path.join(ROOT, 'bench/shm_client.py'), target, PACK, String(D_MODEL), String(TOKENS), String(concurrency), String(SECONDS), mode],
    { maxBuffer: 1 << 20, env: { ...process.env, OMP_NUM_THREADS: '1' } });
  const result = JSON.parse(stdout.trim().split('\n').pop()!) as { tokens_per_s: number; transport_counts: Record<string, number> };
  // A shm row that silently went over bytes would be a lie: refuse to print it.
  if (mode === 'shm' && result.transport_counts.bytes! > 0) throw new Error(`Python shm run sent ${result.transport_counts.bytes} calls as bytes`);
  return result.tokens_per_s;
}

/** The server's Scorer with its engine pool, in this process: bytes already in memory, no transport. */
async function inProcess(packsDir: string): Promise<{ measure: (concurrency: number) => Promise<number>; close: () => Promise<void> }> {
  const catalogue = loadPackDirectory(packsDir);
  const pool = await EnginePool.start(planEngine(catalogue.packs.values()), {
    workers: 1,
    settings: { executionProvider: 'cpu', intraOpThreads: os.availableParallelism(), allowSpinning: false, cpuMemArena: true },
    batching: { maxBatchTokens: 1024, maxQueueTokens: 32768, maxQueueDelayMs: 0 },
  });
  const scorer = new Scorer(catalogue.packs, pool, new Admission(64), { maxTokensPerRequest: 65536, maxSequencesPerRequest: 4096, maxBatchTokens: 1024 });
  const payloads = [1, 2, 3, 4].map((seed) => {
    const u32 = new Uint32Array(randomFill(TOKENS * D_MODEL, 2, seed).buffer);
    const b = Buffer.alloc(TOKENS * D_MODEL * 2);
    for (let i = 0; i < u32.length; i++) b.writeUInt16LE(u32[i]! >>> 16, 2 * i);
    return b;
  });
  return {
    async measure(concurrency) {
      let ok = 0;
      let next = 0;
      const start = performance.now();
      const end = start + SECONDS * 1000;
      await Promise.all(Array.from({ length: concurrency }, async () => {
        while (performance.now() < end) {
          await scorer.score({ pack: PACK, runId: '', sequences: [{ activations: payloads[next++ % 4]!, dtype: 'DTYPE_BF16', num_tokens: TOKENS, score_from: 0 }] });
          ok++;
        }
      }));
      return (ok * TOKENS) / ((performance.now() - start) / 1000);
    },
    close: () => pool.close(),
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-shm-'));
  writeDirectionPack(dir);
  log(`# bench:shm — ${new Date().toISOString()}, ${os.availableParallelism()} cores, Node ${process.version}, ${SECONDS} s per cell, median of ${ROUNDS} interleaved rounds`);
  log(`direction pack, d_model ${D_MODEL}, one ${TOKENS}-token bf16 sequence (${(TOKENS * D_MODEL * 2 / 1e6).toFixed(2)} MB) per request; tokens/s`);
  log();
  const samples: Record<string, Record<number, number[]>> = {};
  const server = await spawnServe(['--packs', dir, '--grpc-port', '0', '--http-port', '0', '--allow-unvalidated']);
  const target = `127.0.0.1:${server.grpcPort}`;
  // Idle between its own cells, so it costs the server's cells nothing.
  const local = await inProcess(dir);
  try {
    const paths = [
      ['Node, gRPC bytes', (c: number) => nodeClient(target, 'bytes', c)],
      ['Node, shared memory', (c: number) => nodeClient(target, 'shm', c)],
      ['Python, gRPC bytes', (c: number) => pythonClient(target, 'bytes', c)],
      ['Python, shared memory', (c: number) => pythonClient(target, 'shm', c)],
      ['in-process ceiling (Scorer, no transport)', (c: number) => local.measure(c)],
    ] as const;
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, run] of paths) {
        for (const c of CONCURRENCY) ((samples[name] ??= {})[c] ??= []).push(await run(c));
      }
    }
  } finally {
    await local.close();
    await server.stop();
  }
  rmSync(dir, { recursive: true, force: true });
  const rows: Record<string, Record<number, number>> = {};
  for (const [name, byC] of Object.entries(samples)) rows[name] = Object.fromEntries(Object.entries(byC).map(([c, xs]) => [c, median(xs)]));

  const ceiling = rows['in-process ceiling (Scorer, no transport)']!;
  log('| path | c=1 | c=8 | vs gRPC bytes (same client) c=1 / c=8 | vs in-process ceiling c=1 / c=8 |');
  log('|---|---|---|---|---|');
  for (const [name, r] of Object.entries(rows)) {
    const base = name.startsWith('Node') ? rows['Node, gRPC bytes']! : name.startsWith('Python') ? rows['Python, gRPC bytes']! : undefined;
    const vsBytes = base ? `${ratio(r[1]!, base[1]!)} / ${ratio(r[8]!, base[8]!)}` : '';
    log(`| ${name} | ${fmt(r[1]!)} | ${fmt(r[8]!)} | ${vsBytes} | ${ratio(r[1]!, ceiling[1]!)} / ${ratio(r[8]!, ceiling[8]!)} |`);
  }
  log();
  log('Targets (issue 13): shared memory >= 200,000 tokens/s and >= 0.5x the in-process ceiling.');
  mkdirSync(path.join(ROOT, 'bench-results'), { recursive: true });
  writeFileSync(path.join(ROOT, 'bench-results/shm.md'), out.join('\n') + '\n');
  writeFileSync(path.join(ROOT, 'bench-results/shm.json'), JSON.stringify({ date: new Date().toISOString(), cores: os.availableParallelism(), seconds: SECONDS, rounds: ROUNDS, rows, samples }, null, 2));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
