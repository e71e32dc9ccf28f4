// `npm run bench`: everything measured in one run on this machine, printed as tables of ratios.
//   1. engine only (the server's graphs, in process) vs a MatMul-only graph of the same shape (GEMM ceiling),
//      and selected_relu vs exact topk, for 576x4608 k=32 and 2560x40960 k=128 at N in {1, 64, 512, 2048};
//   2. the in-process PyTorch baseline on the same shapes and thread count (bench/torch_encode.py);
//   3. end to end over gRPC from a separate client process (bench/load-client.ts), bf16 512-token sequences,
//      concurrency 1, 8, 32, against the real `mechreward serve` in a child process;
//   4. twice the sustainable load (open loop): every request answered or rejected cleanly, none hung;
//   5. resident memory per loaded SAE, with packs sharing an SAE and with two workers;
//   6. the transport table (bench/transport.ts): direction packs over TCP, the Unix socket and from Python,
//      beside a bare grpc-js echo of the same bytes and the in-process ceiling.
// Writes bench-results/latest.md and latest.json. Set BENCH_QUICK=1 to skip the large shape (smoke run).
import { execFile, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { spawnServe, type ChildServer } from '../test/helpers/child-server.js';
import { createSession, featureFeeds, fullModel, gemmCeilingModel, inputTensor, makeWeights, selectedModel, timeRuns } from './engine.js';
import { runTransport, transportReport } from './transport.js';
import { FEATURES, featureIds, gemmFlops, LARGE, ROWS, SMALL, type Shape } from './shapes.js';

const execFileAsync = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const QUICK = process.env.BENCH_QUICK === '1';
const CORES = os.availableParallelism();
const out: string[] = [];
const json: Record<string, unknown> = { date: new Date().toISOString(), cores: CORES, node: process.version };

function log(line = ''): void {
  console.log(line);
  out.push(line);
}

function table(header: string[], rows: (string | number)[][]): void {
  log(`| ${header.join(' | ')} |`);
  log(`|${header.map(() => '---').join('|')}|`);
  for (const r of rows) log(`| ${r.join(' | ')} |`);
  log();
}

const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}x` : 'n/a');

interface EngineRow {
  shape: string;
  rows: number;
  engine: number;
  gemm: number;
  selected: number;
  int8: number;
}

async function engineSection(shapes: Shape[]): Promise<EngineRow[]> {
  const results: EngineRow[] = [];
  for (const shape of shapes) {
    const w = makeWeights(shape);
    const full = await createSession(fullModel(shape, w));
    const ceiling = await createSession(gemmCeilingModel(shape, w));
    const selected = await createSession(selectedModel(shape, w));
    const int8 = await createSession(fullModel(shape, w, true));
    const feeds = featureFeeds(shape);
    for (const rows of ROWS) {
      const x = inputTensor(shape, rows);
      results.push({
        shape: shape.name,
        rows,
        engine: await timeRuns(full, { ...feeds, x }, ['reward']),
        gemm: await timeRuns(ceiling, { x }, ['y']),
        selected: await timeRuns(selected, { x }, ['reward']),
        int8: await timeRuns(int8, { ...feeds, x }, ['reward']),
      });
    }
    await Promise.all([full.release(), ceiling.release(), selected.release(), int8.release()]);
  }
  return results;
}

/** The first Python that can import torch: the shims' virtualenv, then the system python3. */
function findTorchPython(): string | undefined {
  for (const candidate of [path.join(ROOT, 'python-shims/.venv/bin/python'), 'python3']) {
    if (candidate.includes('/') && !existsSync(candidate)) continue;
    if (spawnSync(candidate, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0) return candidate;
  }
  return undefined;
}

interface TorchTimes {
  readonly fp32: Map<string, number>;
  readonly int8: Map<string, number>;
}

async function torchSection(): Promise<TorchTimes | string> {
  const python = findTorchPython();
  if (!python) return 'PyTorch is not installed (run `bash python-shims/scripts/setup.sh`, which installs torch==2.13.0 into python-shims/.venv)';
  const { stdout } = await execFileAsync(python, [path.join(ROOT, 'bench/torch_encode.py'), '--threads', String(CORES)], { maxBuffer: 1 << 20, timeout: 20 * 60_000 });
  const times = { fp32: new Map<string, number>(), int8: new Map<string, number>() };
  for (const line of stdout.trim().split('\n')) {
    const r = JSON.parse(line) as { shape: string; rows: number; seconds: number; seconds_int8: number; torch: string };
    times.fp32.set(`${r.shape}/${r.rows}`, r.seconds);
    times.int8.set(`${r.shape}/${r.rows}`, r.seconds_int8);
    json.torch = r.torch;
  }
  return times;
}

/** Writes a pack folder holding a random SAELens TopK SAE of `shape` (F32, no W_dec: not needed to encode). */
function writePack(root: string, name: string, shape: Shape): void {
  const dir = path.join(root, name);
  mkdirSync(path.join(dir, 'sae'), { recursive: true });
  const w = makeWeights(shape);
  const tensors: Array<[string, number[], Float32Array]> = [['W_enc', [shape.dModel, shape.dSae], w.encoder], ['b_enc', [shape.dSae], w.bEnc], ['b_dec', [shape.dModel], w.bDec]];
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [n, dims, data] of tensors) {
    header[n] = { dtype: 'F32', shape: dims, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
  }
  const headerBytes = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerBytes.length));
  writeFileSync(path.join(dir, 'sae/sae_weights.safetensors'), Buffer.concat([len, headerBytes, ...tensors.map(([, , d]) => Buffer.from(d.buffer, d.byteOffset, d.byteLength))]));
  writeFileSync(path.join(dir, 'sae/cfg.json'), JSON.stringify({ d_in: shape.dModel, d_sae: shape.dSae, architecture: 'topk', k: shape.k, apply_b_dec_to_input: true, normalize_activations: 'none' }));
  const ids = featureIds(shape);
  writeFileSync(path.join(dir, 'pack.json'), JSON.stringify({ schema: 'mechreward.pack/v1', name, model: 'random (benchmark)', synthetic: true, features: ids.map((id, i) => ({ id, weight: i % 2 ? -1 : 1 })) }));
}

function sharePack(root: string, name: string, of: string): void {
  mkdirSync(path.join(root, name), { recursive: true });
  writeFileSync(path.join(root, name, 'pack.json'), JSON.stringify({ schema: 'mechreward.pack/v1', name, sae: `../${of}/sae`, encode: 'selected_relu', features: [{ id: 1, weight: 1 }] }));
}

type Server = ChildServer;

function startServer(packs: string, extra: string[] = []): Promise<Server> {
  return spawnServe(['--packs', packs, '--grpc-port', '0', '--http-port', '0', '--allow-unvalidated', ...extra]);
}

async function stopServer(s: Server): Promise<void> {
  await s.stop();
}

async function rssBytes(s: Server): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${s.httpPort}/metrics`)).text();
  return Number(text.match(/^process_resident_memory_bytes (\S+)/m)![1]);
}

interface LoadResult {
  sent: number;
  finished: number;
  hung: number;
  codes: Record<string, number>;
  tokens_per_s: number;
  requests_per_s: number;
  p50_ms: number;
  p99_ms: number;
}

async function load(s: Server, pack: string, shape: Shape, args: string[]): Promise<LoadResult> {
  const { stdout } = await execFileAsync(process.execPath, [path.join(ROOT, 'dist/bench/load-client.js'), '--target', `127.0.0.1:${s.grpcPort}`, '--pack', pack, '--d-model', String(shape.dModel), '--tokens', '512', ...args], { maxBuffer: 1 << 20, timeout: 10 * 60_000 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as LoadResult;
}

async function main(): Promise<void> {
  const shapes = QUICK ? [SMALL] : [SMALL, LARGE];
  const e2eShape = QUICK ? SMALL : LARGE;
  log(`# mechreward benchmark — ${new Date().toISOString()}`);
  log();
  log(`${os.cpus()[0]?.model ?? 'cpu'}, ${CORES} cores, Node ${process.version}, onnxruntime-node 1.30.0; engine settings = server defaults (1 worker, ${CORES} intra-op threads, spinning off).`);
  log();

  const engine = await engineSection(shapes);
  json.engine = engine;
  const torch = await torchSection();
  json.torchTimes = typeof torch === 'string' ? torch : { fp32: Object.fromEntries(torch.fp32), int8: Object.fromEntries(torch.int8) };

  log('## Engine only vs GEMM ceiling vs PyTorch (same shapes, same threads, median of ≥3 runs)');
  log();
  table(
    ['shape', 'N', 'engine tok/s', 'engine GFLOP/s', 'MatMul-only tok/s', 'engine / ceiling', 'PyTorch tok/s', 'engine / PyTorch', 'selected_relu tok/s', 'selected / topk'],
    engine.map((r) => {
      const shape = shapes.find((s) => s.name === r.shape)!;
      const t = typeof torch === 'string' ? NaN : (torch.fp32.get(`${r.shape}/${r.rows}`) ?? NaN);
      return [r.shape, r.rows, fmt(r.rows / r.engine), fmt(gemmFlops(shape, r.rows) / r.engine / 1e9, 1), fmt(r.rows / r.gemm), ratio(r.gemm, r.engine), Number.isFinite(t) ? fmt(r.rows / t) : 'n/a', ratio(t, r.engine), fmt(r.rows / r.selected), ratio(r.engine, r.selected)];
    }),
  );
  if (typeof torch === 'string') log(`PyTorch baseline: ${torch}.\n`);
  else log(`PyTorch baseline: torch ${String(json.torch)} CPU, ${CORES} threads, dense TopK encode + pack reward (SAELens TopKSAE.encode semantics), in process.\n`);
  log(`The MatMul-only graph computes x @ W_enc and a row sum (so its [N, d_sae] output is not copied out). selected_relu computes only the pack's ${FEATURES} columns.`);
  log();

  log('## Opt-in `topk_int8` (int8 MatMulNBits, block 128, int8 activations) vs exact float32, same run');
  log();
  table(
    ['shape', 'N', 'int8 tok/s', 'int8 / exact engine', 'int8 / fp32 MatMul ceiling', 'int8 / PyTorch fp32', 'PyTorch int8 tok/s', 'int8 / PyTorch int8'],
    engine.map((r) => {
      const key = `${r.shape}/${r.rows}`;
      const t = typeof torch === 'string' ? NaN : (torch.fp32.get(key) ?? NaN);
      const t8 = typeof torch === 'string' ? NaN : (torch.int8.get(key) ?? NaN);
      return [r.shape, r.rows, fmt(r.rows / r.int8), ratio(r.engine, r.int8), ratio(r.gemm, r.int8), ratio(t, r.int8), Number.isFinite(t8) ? fmt(r.rows / t8) : 'n/a', ratio(t8, r.int8)];
    }),
  );
  log('PyTorch int8 = the same encode with `torch.ao.quantization.quantize_dynamic` (per-channel int8 weights, int8 activations, fbgemm).');
  log();
  const agreementFile = path.join(ROOT, 'test/fixtures/int8/agreement.json');
  if (existsSync(agreementFile)) {
    const a = JSON.parse(readFileSync(agreementFile, 'utf8')) as Record<string, number>;
    json.int8Agreement = a;
    log(`Accuracy (float64 reference, \`npm run fixtures\`), ${a.tokens} real held-out tokens of smollm2-arith: TopK set identical on ${(100 * a.topk_set_identical!).toFixed(1)} % of tokens, mean Jaccard ${a.topk_jaccard_mean!.toFixed(4)}; the pack's active features identical on ${(100 * a.pack_active_set_identical!).toFixed(1)} %; per-token reward relative error median ${a.token_reward_rel_error_median!.toExponential(1)}, p99 ${a.token_reward_rel_error_p99!.toFixed(2)}.`);
    log();
  }

  const root = mkdtempSync(path.join(os.tmpdir(), 'mechreward-bench-'));
  try {
    writePack(root, 'bench', e2eShape);
    const server = await startServer(root);
    const rows: (string | number)[][] = [];
    const e2e: Record<string, LoadResult> = {};
    for (const c of [1, 8, 32]) {
      const r = await load(server, 'bench', e2eShape, ['--mode', 'closed', '--concurrency', String(c), '--seconds', QUICK ? '3' : '12']);
      e2e[`c${c}`] = r;
      const engine512 = engine.find((x) => x.shape === e2eShape.name && x.rows === 512)!;
      rows.push([c, fmt(r.tokens_per_s), fmt(512 / engine512.engine), ratio(r.tokens_per_s, 512 / engine512.engine), fmt(r.p50_ms, 1), fmt(r.p99_ms, 1), JSON.stringify(r.codes)]);
    }
    await stopServer(server);
    json.e2e = e2e;
    log(`## End to end over gRPC (${e2eShape.name}, bf16 512-token sequences, client in a separate process)`);
    log();
    table(['concurrency', 'tok/s', 'engine-only tok/s (N=512)', 'e2e / engine', 'p50 ms', 'p99 ms', 'statuses'], rows);

    // Twice the sustainable load, open loop, against a server whose queue holds about 4 s of work.
    const sustainable = e2e.c8!.requests_per_s;
    const queueTokens = Math.max(1024, Math.round((e2e.c8!.tokens_per_s * 4) / 512) * 512);
    const overloaded = await startServer(root, ['--max-queue-tokens', String(queueTokens)]);
    const over = await load(overloaded, 'bench', e2eShape, ['--mode', 'open', '--rate', (2 * sustainable).toFixed(3), '--seconds', QUICK ? '4' : '15', '--deadline-ms', '60000']);
    await stopServer(overloaded);
    json.overload = { rate: 2 * sustainable, queueTokens, ...over };
    log(`## Twice the sustainable load (open loop at ${(2 * sustainable).toFixed(2)} req/s = 2 x the concurrency-8 rate; max_queue_tokens ${queueTokens})`);
    log();
    table(['sent', 'OK', 'RESOURCE_EXHAUSTED (clean rejection)', 'other errors', 'hung (no answer within deadline)', 'p50 ms (OK)', 'p99 ms (OK)'], [
      [over.sent, over.codes.OK ?? 0, over.codes.RESOURCE_EXHAUSTED ?? 0, over.sent - (over.codes.OK ?? 0) - (over.codes.RESOURCE_EXHAUSTED ?? 0) - over.hung, over.hung, fmt(over.p50_ms, 1), fmt(over.p99_ms, 1)],
    ]);

    // Resident memory: the tiny bundled pack as baseline, then the large SAE, shared by two packs, and in two workers.
    const baselineDir = path.join(root, 'baseline');
    cpSync(path.join(ROOT, 'examples/packs/synthetic-tiny'), path.join(baselineDir, 'synthetic-tiny'), { recursive: true });
    const measure = async (packs: string, extra: string[] = []) => {
      const s = await startServer(packs, extra);
      await new Promise((r) => setTimeout(r, 500));
      const rss = await rssBytes(s);
      await stopServer(s);
      return rss;
    };
    const base = await measure(baselineDir);
    const one = await measure(root);
    sharePack(root, 'bench-twin', 'bench');
    mkdirSync(path.join(root, 'bench-exact'), { recursive: true });
    writeFileSync(path.join(root, 'bench-exact', 'pack.json'), JSON.stringify({ schema: 'mechreward.pack/v1', name: 'bench-exact', sae: '../bench/sae', features: [{ id: 3, weight: 1 }] }));
    const shared = await measure(root);
    const twoWorkers = await measure(root, ['--workers', '2', '--intra-op-threads', '1']);
    const int8Root = path.join(root, 'int8-only');
    mkdirSync(path.join(int8Root, 'bench-int8'), { recursive: true });
    writeFileSync(path.join(int8Root, 'bench-int8', 'pack.json'), JSON.stringify({ schema: 'mechreward.pack/v1', name: 'bench-int8', sae: '../../bench/sae', encode: 'topk_int8', features: [{ id: 3, weight: 1 }] }));
    const int8Only = await measure(int8Root);
    const weightsMb = (e2eShape.dModel * e2eShape.dSae * 4) / 2 ** 20;
    json.memory = { base, one, shared, twoWorkers, int8Only, weightsMb };
    const mb = (b: number) => fmt(b / 2 ** 20);
    log(`## Resident memory (${e2eShape.name}; W_enc alone is ${fmt(weightsMb)} MiB in float32)`);
    log();
    table(['server', 'RSS MiB', 'over baseline MiB'], [
      ['baseline: synthetic-tiny only', mb(base), '0'],
      ['1 SAE, 1 pack, 1 worker', mb(one), mb(one - base)],
      ['1 SAE, 3 packs sharing it (2 exact topk + 1 selected_relu), 1 worker', mb(shared), mb(shared - base)],
      ['1 SAE, 3 packs, 2 workers x 1 thread', mb(twoWorkers), mb(twoWorkers - base)],
      ['1 SAE, 1 topk_int8 pack, 1 worker', mb(int8Only), mb(int8Only - base)],
    ]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }

  const transport = await runTransport(QUICK);
  json.transport = transport;
  log('## Transport (direction packs: only the sidecar\'s own overhead is timed; 512-token sequences, one per request)');
  log();
  for (const line of transportReport(transport)) log(line);

  const dir = path.join(ROOT, 'bench-results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'latest.md'), `${out.join('\n')}\n`);
  writeFileSync(path.join(dir, 'latest.json'), `${JSON.stringify(json, null, 2)}\n`);
  log(`Written to bench-results/latest.md and latest.json.`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
