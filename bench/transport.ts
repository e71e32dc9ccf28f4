// The transport benchmark: what shipping activations to the sidecar costs, next to what the wire alone costs
// and what the same work costs in process. Direction packs (their math is ~1 MFLOP per 512 tokens, so only the
// sidecar's own overhead is timed) at d_model 2560 and 576, one 512-token bf16 or f32 sequence per request,
// concurrency 1 and 8, every path measured side by side in one run against the same servers:
//   - bare grpc-js echo: bench/echo-server.ts, the same request bytes, no decoding, a reply of Score's size;
//   - sidecar over TCP and over the Unix socket (--grpc-socket), from the Node load client;
//   - the same from the Python client (RewardClient.score with torch tensors, bench/py_load.py);
//   - in-process ceiling: copy the wire bytes, widen them and run the same graph in this process, no transport;
//   - shared memory (co-located): bench/shm-client.ts (Node, bf16) and py_load.py --transport shm (Python).
// Each path is one entry of TRANSPORT_PATHS (a name and a measure function), so new paths are one more entry.
//   npm run bench:transport   (about 7 minutes: 3 rounds of 2 s windows, medians)
//   BENCH_QUICK=1: d_model 2560 only, 1 round (about 1 minute); BENCH_TRANSPORT_ROUNDS, BENCH_TRANSPORT_SECONDS override.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import * as ort from 'onnxruntime-node';

import { copyIntoShared, SlabPool } from '../src/engine/buffers.js';
import { buildLinearModel } from '../src/engine/graph.js';
import { widenChecked, type WireDType } from '../src/numerics/widen.js';
import { loadContract } from '../src/transports/grpc/contract.js';
import { spawnServe, type ChildServer } from '../test/helpers/child-server.js';
import { createSession } from './engine.js';
import { randomFill } from './shapes.js';

const execFileAsync = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TOKENS = 512;
export const TRANSPORT_CONCURRENCY = [1, 8] as const;

export interface TransportCase {
  readonly dModel: number;
  readonly dtype: 'bf16' | 'f32';
  readonly pack: string;
}

/** What every path may use: the running servers, the pack weights, the Python to run, the window length. */
export interface TransportEnv {
  readonly server: ChildServer;
  /** The sidecar's --grpc-socket. */
  readonly socket: string;
  readonly echo: { readonly port: number; readonly socket: string };
  readonly weights: ReadonlyMap<string, { weight: Float32Array; bias: number }>;
  /** The shims' virtualenv Python, or why there is none. */
  readonly python: { readonly path: string } | { readonly missing: string };
  readonly seconds: number;
}

/** tokens/s per concurrency, or a reason the path could not run. */
export type PathResult = Map<number, number> | string;

export interface TransportPath {
  readonly name: string;
  measure(env: TransportEnv, c: TransportCase): Promise<PathResult>;
}

async function nodeLoad(target: string, c: TransportCase, env: TransportEnv, extra: string[] = []): Promise<PathResult> {
  const args = ['--target', target, '--pack', c.pack, '--d-model', String(c.dModel), '--tokens', String(TOKENS), '--dtype', c.dtype, '--concurrency', TRANSPORT_CONCURRENCY.join(','), '--seconds', String(env.seconds), ...extra];
  const { stdout } = await execFileAsync(process.execPath, [path.join(ROOT, 'dist/bench/load-client.js'), ...args], { maxBuffer: 1 << 20, timeout: 5 * 60_000 });
  const out = new Map<number, number>();
  for (const line of stdout.trim().split('\n')) {
    const r = JSON.parse(line) as { concurrency: number; tokens_per_s: number; codes: Record<string, number> };
    if (Object.keys(r.codes).some((code) => code !== 'OK')) return `errors: ${JSON.stringify(r.codes)}`;
    out.set(r.concurrency, r.tokens_per_s);
  }
  return out;
}

async function pythonLoad(target: string, c: TransportCase, env: TransportEnv, transport: 'bytes' | 'shm' | 'echo' = 'bytes'): Promise<PathResult> {
  if ('missing' in env.python) return env.python.missing;
  const args = [path.join(ROOT, 'bench/py_load.py'), '--transport', transport, '--target', target, '--pack', c.pack, '--d-model', String(c.dModel), '--tokens', String(TOKENS), '--dtype', c.dtype, '--seconds', String(env.seconds), '--concurrency', ...TRANSPORT_CONCURRENCY.map(String)];
  const { stdout } = await execFileAsync(env.python.path, args, { maxBuffer: 1 << 20, timeout: 5 * 60_000 });
  const out = new Map<number, number>();
  for (const line of stdout.trim().split('\n')) {
    const r = JSON.parse(line) as { concurrency: number; tokens_per_s: number; errors: string[] };
    if (r.errors.length > 0) return `errors: ${r.errors.join('; ')}`;
    out.set(r.concurrency, r.tokens_per_s);
  }
  return out;
}

/** The Node shared-memory client (bench/shm-client.ts: one segment per concurrent slot, written per request). */
async function nodeShm(target: string, c: TransportCase, env: TransportEnv): Promise<PathResult> {
  if (c.dtype !== 'bf16') return 'bf16 only (bench/shm-client.ts)';
  const out = new Map<number, number>();
  for (const k of TRANSPORT_CONCURRENCY) {
    const { stdout } = await execFileAsync(process.execPath, [path.join(ROOT, 'dist/bench/shm-client.js'), '--target', target, '--pack', c.pack, '--d-model', String(c.dModel),
      '--tokens', String(TOKENS), '--concurrency', String(k), '--seconds', String(env.seconds), '--mode', 'shm'], { maxBuffer: 1 << 20, timeout: 5 * 60_000 });
    const r = JSON.parse(stdout.trim().split('\n').at(-1)!) as { tokens_per_s: number; errors?: number; codes?: Record<string, number> };
    if (r.errors || (r.codes && Object.keys(r.codes).some((code) => code !== 'OK'))) return `errors: ${stdout.trim()}`;
    out.set(k, r.tokens_per_s);
  }
  return out;
}

/** Wire bytes of one [TOKENS, d_model] sequence, in an unaligned Buffer as grpc-js hands them to the server. */
function wireBytes(c: TransportCase, seed: number): Buffer {
  const f32 = randomFill(TOKENS * c.dModel, 2, seed);
  const width = c.dtype === 'f32' ? 4 : 2;
  const out = Buffer.alloc(TOKENS * c.dModel * width + 1).subarray(1);
  if (c.dtype === 'f32') out.set(new Uint8Array(f32.buffer));
  else new Uint32Array(f32.buffer).forEach((bits, i) => out.writeUInt16LE(bits >>> 16, 2 * i));
  return out;
}

/**
 * The in-process ceiling: per request, the server's own work minus the transport, in one thread: copy the
 * bytes into a recycled aligned slab, widen and check them (the worker's pass), run the same graph with the
 * server's session settings. Concurrency does not apply; the same figure stands in both columns.
 */
async function inProcess(env: TransportEnv, c: TransportCase): Promise<PathResult> {
  const w = env.weights.get(c.pack)!;
  const session = await createSession(buildLinearModel(c.dModel, w.weight, w.bias, 'logit'));
  const inputs = [1, 2, 3, 4].map((seed) => wireBytes(c, seed));
  const dtype: WireDType = c.dtype === 'f32' ? 'F32' : 'BF16';
  const slabs = new SlabPool(64 << 20);
  const x = new Float32Array(TOKENS * c.dModel);
  const once = async (i: number): Promise<void> => {
    const src = inputs[i % inputs.length]!;
    const slab = slabs.take(src.byteLength);
    copyIntoShared(new Uint8Array(slab.bytes, 0, src.byteLength), src); // the server's copy (core/decode.ts)
    if (widenChecked(slab.bytes, 0, x.length, dtype, x, 0) >= 0) throw new Error('benchmark input is not finite');
    slabs.give(slab);
    await session.run({ x: new ort.Tensor('float32', x, [TOKENS, c.dModel]) }, ['reward']);
  };
  for (let i = 0; i < 3; i++) await once(i);
  let n = 0;
  const start = performance.now();
  const end = start + env.seconds * 1000;
  while (performance.now() < end) await once(n++);
  const perSecond = (n * TOKENS) / ((performance.now() - start) / 1000);
  await session.release();
  return new Map(TRANSPORT_CONCURRENCY.map((k) => [k, perSecond]));
}

export const TRANSPORT_PATHS: readonly TransportPath[] = [
  { name: 'bare grpc-js echo (TCP, no decoding)', measure: (env, c) => nodeLoad(`127.0.0.1:${env.echo.port}`, c, env, ['--echo']) },
  { name: 'sidecar gRPC TCP, Node client', measure: (env, c) => nodeLoad(`127.0.0.1:${env.server.grpcPort}`, c, env) },
  { name: 'sidecar gRPC Unix socket, Node client', measure: (env, c) => nodeLoad(`unix:${env.socket}`, c, env) },
  { name: 'sidecar gRPC TCP, Python client', measure: (env, c) => pythonLoad(`127.0.0.1:${env.server.grpcPort}`, c, env) },
  { name: 'sidecar gRPC Unix socket, Python client', measure: (env, c) => pythonLoad(`unix:${env.socket}`, c, env) },
  { name: 'in-process ceiling (copy + widen + graph)', measure: inProcess },
  // Co-located: the activations go through a registered /dev/shm segment, only a descriptor on the wire.
  { name: 'sidecar shared memory (Unix socket), Node client', measure: (env, c) => nodeShm(`unix:${env.socket}`, c, env) },
  { name: 'sidecar shared memory (Unix socket), Python client', measure: (env, c) => pythonLoad(`unix:${env.socket}`, c, env, 'shm') },
  // grpcio's floor for the Python rows: the client's own request bytes, encoded before timing, to the bare echo.
  { name: 'bare grpcio echo (TCP, Python, no decoding)', measure: (env, c) => pythonLoad(`127.0.0.1:${env.echo.port}`, c, env, 'echo') },
];

/** Names of the paths the targets compare (kept next to the list they name). */
const ECHO = TRANSPORT_PATHS[0]!.name;
const NODE_TCP = TRANSPORT_PATHS[1]!.name;
const PYTHON_TCP = TRANSPORT_PATHS[3]!.name;
const CEILING = TRANSPORT_PATHS[5]!.name;
const SHM_NODE = TRANSPORT_PATHS[6]!.name;
const SHM_PYTHON = TRANSPORT_PATHS[7]!.name;
const PYTHON_ECHO = TRANSPORT_PATHS[8]!.name;

/** A direction pack (weight [d_model], bias [1], float32 safetensors); returns its weights. */
export function writeDirectionPack(root: string, name: string, dModel: number): { weight: Float32Array; bias: number } {
  const dir = path.join(root, name);
  mkdirSync(dir, { recursive: true });
  const weight = randomFill(dModel, 1 / Math.sqrt(dModel), dModel);
  const bias = 0.125;
  const header = Buffer.from(JSON.stringify({ weight: { dtype: 'F32', shape: [dModel], data_offsets: [0, dModel * 4] }, bias: { dtype: 'F32', shape: [1], data_offsets: [dModel * 4, dModel * 4 + 4] } }));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(header.length));
  writeFileSync(path.join(dir, 'direction.safetensors'), Buffer.concat([length, header, Buffer.from(weight.buffer), Buffer.from(new Float32Array([bias]).buffer)]));
  writeFileSync(path.join(dir, 'pack.json'), JSON.stringify({ schema: 'mechreward.pack/v1', kind: 'direction', name, model: 'random (benchmark)', synthetic: true, pooling: { method: 'mean' }, direction: { file: 'direction.safetensors' } }));
  return { weight, bias };
}

function findPython(): TransportEnv['python'] {
  const venv = path.join(ROOT, 'python-shims/.venv/bin/python');
  if (!existsSync(venv)) return { missing: 'no python-shims/.venv (run `bash python-shims/scripts/setup.sh`)' };
  return { path: venv };
}

/** Starts the echo server (same bytes, Score-sized replies) and waits for its address line. */
export function startEcho(socket: string, nodeFlags: readonly string[] = []): Promise<{ child: ChildProcess; port: number; socket: string }> {
  const contract = loadContract();
  const replyBytes = contract.mechreward.v1.RewardService.service.Score.responseSerialize({ pack: 'bench-2560', results: [{ token_rewards: Array.from(randomFill(TOKENS, 1, 5)), reward: 0.5, flags: [], verifier_disagreement: 0, has_verifier: false, verifier_factor: 1 }] }).length;
  const child = spawn(process.execPath, [...nodeFlags, path.join(ROOT, 'dist/bench/echo-server.js'), '--reply-bytes', String(replyBytes), '--socket', socket], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', (line) => {
      const info = JSON.parse(line) as { port: number; socket: string };
      resolve({ child, ...info });
    });
    child.once('exit', (code) => reject(new Error(`echo server exited with ${code}`)));
  });
}

export interface TransportRow {
  readonly dModel: number;
  readonly dtype: string;
  readonly path: string;
  /** tokens/s by concurrency ("c1", "c8"), or the reason the path did not run. */
  readonly tokensPerS: Record<string, number> | string;
}

/**
 * Runs every path on every case, interleaved (all paths of one case back to back, then the next case), in
 * `rounds` rounds; each cell is the median of its rounds, which keeps one disturbed window on a shared machine
 * from deciding a ratio.
 */
export async function runTransport(quick: boolean): Promise<TransportRow[]> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'mechreward-transport-'));
  const dims = quick ? [2560] : [2560, 576];
  const rounds = Number(process.env.BENCH_TRANSPORT_ROUNDS ?? (quick ? 1 : 3));
  const weights = new Map(dims.map((d) => [`bench-${d}`, writeDirectionPack(root, `bench-${d}`, d)] as const));
  const socket = path.join(root, 'sidecar.sock');
  const server = await spawnServe(['--packs', root, '--grpc-port', '0', '--http-port', '0', '--allow-unvalidated', '--grpc-socket', socket]);
  const echo = await startEcho(path.join(root, 'echo.sock'));
  const env: TransportEnv = { server, socket, echo, weights, python: findPython(), seconds: Number(process.env.BENCH_TRANSPORT_SECONDS ?? 2) };
  const cases = dims.flatMap((dModel) => (['bf16', 'f32'] as const).map((dtype): TransportCase => ({ dModel, dtype, pack: `bench-${dModel}` })));
  const samples = new Map<string, PathResult[]>();
  try {
    for (let round = 0; round < rounds; round++) {
      for (const c of cases) {
        for (const p of TRANSPORT_PATHS) {
          const r = await p.measure(env, c).catch((err: unknown) => `failed: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
          const key = `${c.dModel}/${c.dtype}/${p.name}`;
          samples.set(key, [...(samples.get(key) ?? []), r]);
          process.stderr.write(`transport round ${round + 1}/${rounds}: d_model ${c.dModel} ${c.dtype} ${p.name}: ${typeof r === 'string' ? r : JSON.stringify(Object.fromEntries(r))}\n`);
        }
      }
    }
  } finally {
    echo.child.kill('SIGTERM');
    await server.stop();
    rmSync(root, { recursive: true, force: true });
  }
  return cases.flatMap((c) =>
    TRANSPORT_PATHS.map((p): TransportRow => {
      const runs = samples.get(`${c.dModel}/${c.dtype}/${p.name}`) ?? [];
      const failed = runs.find((r): r is string => typeof r === 'string');
      const tokensPerS = failed ?? Object.fromEntries(TRANSPORT_CONCURRENCY.map((k) => [`c${k}`, median(runs.map((r) => (r as Map<number, number>).get(k)!))]));
      return { dModel: c.dModel, dtype: c.dtype, path: p.name, tokensPerS };
    }),
  );
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const fmt = (n: number) => n.toLocaleString('en-US', { maximumFractionDigits: 0 });
const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined && b > 0 ? `${(a / b).toFixed(2)}x` : 'n/a');

/** The transport table and the target lines, as markdown lines. */
export function transportReport(rows: readonly TransportRow[]): string[] {
  const lines: string[] = [];
  const get = (r: TransportRow | undefined, c: number) => (r && typeof r.tokensPerS !== 'string' ? r.tokensPerS[`c${c}`] : undefined);
  const find = (dModel: number, dtype: string, name: string) => rows.find((r) => r.dModel === dModel && r.dtype === dtype && r.path === name);
  lines.push('| d_model | dtype | path | c=1 tok/s | c=8 tok/s | c=1 / echo | c=8 / echo | c=8 / in-process |');
  lines.push('|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const echo = find(r.dModel, r.dtype, ECHO);
    const ceiling = find(r.dModel, r.dtype, CEILING);
    if (typeof r.tokensPerS === 'string') {
      lines.push(`| ${r.dModel} | ${r.dtype} | ${r.path} | ${r.tokensPerS} | | | | |`);
      continue;
    }
    lines.push(`| ${r.dModel} | ${r.dtype} | ${r.path} | ${fmt(get(r, 1)!)} | ${fmt(get(r, 8)!)} | ${ratio(get(r, 1), get(echo, 1))} | ${ratio(get(r, 8), get(echo, 8))} | ${ratio(get(r, 8), get(ceiling, 8))} |`);
  }
  lines.push('');
  // The last two columns are the wire floor of the Python/Node ratios: grpcio vs grpc-js on the same bytes.
  lines.push('| d_model | dtype | TCP Node c=8 / bare echo c=8 (target ≥ 0.8) | Python / Node TCP c=1 (target ≥ 0.8) | Python / Node TCP c=8 (target ≥ 0.8) | grpcio echo / grpc-js echo c=1 | c=8 |');
  lines.push('|---|---|---|---|---|---|---|');
  for (const key of new Set(rows.map((r) => `${r.dModel}/${r.dtype}`))) {
    const [d, dtype] = key.split('/') as [string, string];
    const node = find(Number(d), dtype, NODE_TCP);
    const py = find(Number(d), dtype, PYTHON_TCP);
    const echo = find(Number(d), dtype, ECHO);
    const pyEcho = find(Number(d), dtype, PYTHON_ECHO);
    lines.push(`| ${d} | ${dtype} | ${ratio(get(node, 8), get(echo, 8))} | ${ratio(get(py, 1), get(node, 1))} | ${ratio(get(py, 8), get(node, 8))} | ${ratio(get(pyEcho, 1), get(echo, 1))} | ${ratio(get(pyEcho, 8), get(echo, 8))} |`);
  }
  lines.push('');
  // Issue 13's shared-memory targets: >= 200k tokens/s at d_model 2560 bf16, and >= 0.5x the in-process ceiling.
  lines.push('| d_model | dtype | shm Node c=8 tok/s (target ≥ 200k at 2560 bf16) | shm Node c=8 / in-process (target ≥ 0.5) | shm Python c=8 / in-process | shm Node c=8 / TCP Node c=8 |');
  lines.push('|---|---|---|---|---|---|');
  for (const key of new Set(rows.map((r) => `${r.dModel}/${r.dtype}`))) {
    const [d, dtype] = key.split('/') as [string, string];
    const shm = find(Number(d), dtype, SHM_NODE);
    if (!shm || typeof shm.tokensPerS === 'string') continue;
    const ceiling = find(Number(d), dtype, CEILING);
    lines.push(`| ${d} | ${dtype} | ${fmt(get(shm, 8)!)} | ${ratio(get(shm, 8), get(ceiling, 8))} | ${ratio(get(find(Number(d), dtype, SHM_PYTHON), 8), get(ceiling, 8))} | ${ratio(get(shm, 8), get(find(Number(d), dtype, NODE_TCP), 8))} |`);
  }
  lines.push('');
  return lines;
}

async function main(): Promise<void> {
  const quick = process.env.BENCH_QUICK === '1';
  const rows = await runTransport(quick);
  const report = [`# mechreward transport benchmark — ${new Date().toISOString()}`, '', `${os.cpus()[0]?.model ?? 'cpu'}, ${os.availableParallelism()} cores, Node ${process.version}; ${TOKENS}-token sequences, one per request.`, '', ...transportReport(rows)];
  console.log(report.join('\n'));
  const dir = path.join(ROOT, 'bench-results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'transport.md'), `${report.join('\n')}\n`);
  writeFileSync(path.join(dir, 'transport.json'), `${JSON.stringify({ date: new Date().toISOString(), cores: os.availableParallelism(), rows }, null, 2)}\n`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
