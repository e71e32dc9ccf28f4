// Server variants measured side by side: one `mechreward serve` per variant (its own node flags, environment,
// serve options, or another build's bin/mechreward.js) and the bare grpc-js echo (bench/echo-server.ts), all
// running at once and driven in turn with the transport table's request (a direction pack, one 512-token
// sequence): over TCP by the Node load client (bench/load-client.ts), or with BENCH_PATH=shm through a
// shared-memory segment by bench/shm-client.ts (bf16; the echo is then left out). Interleaved rounds: every
// variant once per round, in a rotating order; each cell is the median of its rounds. Besides tokens/s it
// prints each server's CPU per request from /proc (all threads; the main thread; the other threads: engine
// worker, onnxruntime, V8's GC helpers), steadier than throughput on a shared machine.
//   npm run bench:variants                           the default variants below
//   node dist/bench/variants.js --variant 'none=' --variant 'semi1=--max-semi-space-size=1' [--echo-flags]
//     a variant is name=[@other/bin/mechreward.js] [NAME=value ...] [node flags] [-- mechreward serve options],
//     e.g. 'before=@/tmp/base/bin/mechreward.js' or 'one-thread= -- --intra-op-threads 1'
//   BENCH_ROUNDS (default 5), BENCH_SECONDS (default 3), BENCH_DMODEL (2560), BENCH_DTYPE (bf16|f32),
//   BENCH_CONCURRENCY (8), BENCH_PATH (tcp|shm)
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';

import { spawnServe, type ChildServer } from '../test/helpers/child-server.js';
import { startEcho, writeDirectionPack } from './transport.js';

const execFileAsync = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TOKENS = 512;

/** Variants run by default: no flags, then the V8 flags docs/benchmarks.md reports on. */
const DEFAULT_VARIANTS = ['none=', 'semi1=--max-semi-space-size=1', 'semi64=--max-semi-space-size=64', 'single-gc=--single-threaded-gc'];

interface Variant {
  readonly name: string;
  /** Flags of the node process. */
  readonly flags: string[];
  /** Extra `mechreward serve` options (after ' -- ' in the spec). */
  readonly serveArgs: string[];
  /** Environment variables of the server (NAME=value words before ' -- '). */
  readonly env: Record<string, string>;
  /** Another build's bin/mechreward.js (an @path word before ' -- '), to compare builds side by side. */
  readonly bin: string | undefined;
}

function parseVariant(spec: string): Variant {
  const eq = spec.indexOf('=');
  if (eq <= 0) throw new Error(`--variant ${JSON.stringify(spec)}: expected name=node flags [-- serve options]`);
  const [flags = '', serve = ''] = spec.slice(eq + 1).split(/(?:^|\s)--(?:\s|$)/);
  const words = (s: string) => s.split(/\s+/).filter(Boolean);
  const isEnv = (w: string) => /^[A-Z][A-Z0-9_]*=/.test(w);
  const isBin = (w: string) => w.startsWith('@');
  const env = Object.fromEntries(words(flags).filter(isEnv).map((w) => [w.slice(0, w.indexOf('=')), w.slice(w.indexOf('=') + 1)]));
  const bin = words(flags).find(isBin)?.slice(1);
  return { name: spec.slice(0, eq), flags: words(flags).filter((w) => !isEnv(w) && !isBin(w)), serveArgs: words(serve), env, bin };
}

/** CPU ticks of every thread of `pid`, by thread: the main thread (tid = pid), the rest by name. */
function threadTicks(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // the thread ended
    }
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]); // utime + stime
    const key = Number(tid) === pid ? 'main' : comm;
    out.set(key, (out.get(key) ?? 0) + ticks);
  }
  return out;
}

interface Sample {
  readonly tokensPerS: number;
  /** CPU milliseconds per request, by thread group, and 'all'. */
  readonly cpuMs: Record<string, number>;
}

const TICK_MS = 10; // USER_HZ is 100 on Linux

async function measure(pid: number, target: string, pack: string, dModel: number, dtype: string, concurrency: number, seconds: number, echo: boolean, shm: boolean): Promise<Sample> {
  const before = threadTicks(pid);
  const common = ['--target', target, '--pack', pack, '--d-model', String(dModel), '--tokens', String(TOKENS), '--concurrency', String(concurrency), '--seconds', String(seconds)];
  const args = shm ? [path.join(ROOT, 'dist/bench/shm-client.js'), ...common, '--mode', 'shm'] : [path.join(ROOT, 'dist/bench/load-client.js'), ...common, '--dtype', dtype, ...(echo ? ['--echo'] : [])];
  const { stdout } = await execFileAsync(process.execPath, args, { maxBuffer: 1 << 20, timeout: 5 * 60_000 });
  const after = threadTicks(pid);
  // Both clients end with one result line: tokens/s and how many requests (load-client: codes; shm-client: requests).
  const r = JSON.parse(stdout.trim().split('\n').at(-1)!) as { tokens_per_s: number; seconds: number; requests?: number; requests_per_s?: number; codes?: Record<string, number> };
  if (r.codes && Object.keys(r.codes).some((c) => c !== 'OK')) throw new Error(`errors: ${JSON.stringify(r.codes)}`);
  const requests = r.requests ?? r.requests_per_s! * r.seconds;
  const cpuMs: Record<string, number> = { all: 0 };
  for (const [k, t] of after) {
    const ms = ((t - (before.get(k) ?? 0)) * TICK_MS) / requests;
    cpuMs.all! += ms;
    cpuMs[k] = (cpuMs[k] ?? 0) + ms;
  }
  return { tokensPerS: r.tokens_per_s, cpuMs };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { variant: { type: 'string', multiple: true }, 'echo-flags': { type: 'boolean', default: false } } });
  const variants = (values.variant?.length ? values.variant : DEFAULT_VARIANTS).map(parseVariant);
  const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
  const seconds = Number(process.env.BENCH_SECONDS ?? 3);
  const dModel = Number(process.env.BENCH_DMODEL ?? 2560);
  const dtype = process.env.BENCH_DTYPE ?? 'bf16';
  const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 8);
  const shm = process.env.BENCH_PATH === 'shm';
  if (shm && dtype !== 'bf16') throw new Error('BENCH_PATH=shm: bench/shm-client.ts sends bf16 only');
  const pack = `bench-${dModel}`;
  const root = mkdtempSync(path.join(os.tmpdir(), 'mechreward-variants-'));
  writeDirectionPack(root, pack, dModel);

  interface Target { readonly name: string; readonly pid: number; readonly address: string; readonly echo: boolean; stop(): Promise<unknown> }
  const targets: Target[] = [];
  try {
    const echoes = shm ? [] : values['echo-flags'] ? variants : [variants[0]!];
    for (const v of echoes) {
      const e = await startEcho(path.join(root, `echo-${v.name}.sock`), v.flags);
      targets.push({ name: `echo ${v.name}`, pid: e.child.pid!, address: `127.0.0.1:${e.port}`, echo: true, stop: async () => e.child.kill('SIGTERM') });
    }
    for (const v of variants) {
      const s: ChildServer = await spawnServe(['--packs', root, '--grpc-port', '0', '--http-port', '0', '--allow-unvalidated', ...v.serveArgs], v.env, 'mechreward ready', { nodeFlags: v.flags, bin: v.bin });
      targets.push({ name: `sidecar ${v.name}`, pid: s.child.pid!, address: `127.0.0.1:${s.grpcPort}`, echo: false, stop: () => s.stop() });
    }
    const samples = new Map<string, Sample[]>(targets.map((t) => [t.name, []]));
    for (let round = 0; round < rounds; round++) {
      // Rotate the order each round so no variant always follows the same one.
      const order = targets.map((_, i) => targets[(i + round) % targets.length]!);
      for (const t of order) {
        const s = await measure(t.pid, t.address, pack, dModel, dtype, concurrency, seconds, t.echo, shm);
        samples.get(t.name)!.push(s);
        process.stderr.write(`round ${round + 1}/${rounds} ${t.name}: ${Math.round(s.tokensPerS)} tok/s, ${s.cpuMs.all!.toFixed(1)} ms CPU/request\n`);
      }
    }
    // The ratio to the first target is taken within each round (both measured minutes apart at most), then
    // the median over rounds: steadier than a ratio of medians when the machine's load drifts.
    const first = samples.get(targets[0]!.name)!;
    const pairedRatio = (list: Sample[]) => median(list.map((s, round) => s.tokensPerS / first[round]!.tokensPerS));
    const groups = [...new Set([...samples.values()].flatMap((list) => list.flatMap((s) => Object.keys(s.cpuMs))))].filter((g) => g !== 'all' && g !== 'main');
    console.log(`# server variants, side by side (${new Date().toISOString()}): ${shm ? 'shared memory (bench/shm-client.ts)' : 'TCP (bench/load-client.ts)'}, d_model ${dModel} ${dtype}, ${TOKENS} tokens/request, c=${concurrency}, ${rounds} rounds x ${seconds} s, medians; ${os.availableParallelism()} cores, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
    console.log('');
    console.log(`| server | flags | tok/s | / ${targets[0]!.name} (median of per-round ratios) | server CPU ms/request | main | ${groups.join(' | ')} |`);
    console.log(`|---|---|---|---|---|---|${groups.map(() => '---|').join('')}`);
    for (const t of targets) {
      const list = samples.get(t.name)!;
      const tok = median(list.map((s) => s.tokensPerS));
      const cpu = (k: string) => median(list.map((s) => s.cpuMs[k] ?? 0)).toFixed(1);
      const v = variants.find((x) => t.name.endsWith(` ${x.name}`));
      const flags = [...(v?.bin && !t.echo ? [`@${path.relative(ROOT, v.bin)}`] : []), ...Object.entries(v?.env ?? {}).map(([k, x]) => `${k}=${x}`), ...(v?.flags ?? []), ...(v?.serveArgs.length && !t.echo ? ['--', ...v.serveArgs] : [])].join(' ') || '(none)';
      console.log(`| ${t.name} | ${flags} | ${Math.round(tok).toLocaleString('en-US')} | ${pairedRatio(list).toFixed(2)}x | ${cpu('all')} | ${cpu('main')} | ${groups.map(cpu).join(' | ')} |`);
    }
  } finally {
    for (const t of targets) await t.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
