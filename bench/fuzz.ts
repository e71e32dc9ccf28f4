// The long fuzz run: the same generators and rules as test/integration/fuzz.test.ts, ~100k cases in all,
// against the real `mechreward serve` in a child process (so a crash shows as a dead process, not a dead
// test runner). Prints the count per outcome class and every violation; exits 1 on any.
//   npm run bench:fuzz                     # FUZZ_CASES=100000 split over the four families
//   FUZZ_CASES=10000 FUZZ_SEED=7 npm run bench:fuzz
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { execFile } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';

import type { ScoreRequest } from '../src/generated/mechreward/v1/ScoreRequest.js';
import { spawnServe } from '../test/helpers/child-server.js';
import { PARITY_PACKS, REPO_ROOT } from '../test/helpers/fixtures.js';
import { FuzzTally, fuzzHttp, fuzzPackLoad, fuzzRawScore, fuzzScore, httpCases, mutatedBytes, packMutations, runAll, scoreRequests, serializeScoreRequest, writeMutatedPack } from '../test/helpers/fuzz.js';
import { grpcClient, score } from '../test/helpers/server.js';

const TOTAL = Number(process.env.FUZZ_CASES ?? 100_000);
const SEED = Number(process.env.FUZZ_SEED ?? 20261124);
const PACKS = [
  { name: 'topk-saelens', dModel: 64 },
  { name: 'relu-saelens', dModel: 64 },
];
/** Shares of the total: gRPC structured, gRPC raw bytes, HTTP, pack folders (the slowest per case). */
const SHARES = { grpc: 0.33, raw: 0.3, http: 0.33, packs: 0.04 };
const CHUNK = 5000; // cases generated at a time, so 100k cases never sit in memory at once

async function main(): Promise<void> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'mechreward-fuzz-bench-'));
  for (const p of PACKS) cpSync(path.join(PARITY_PACKS, p.name), path.join(root, 'packs', p.name), { recursive: true });
  const server = await spawnServe(['--packs', path.join(root, 'packs'), '--grpc-port', '0', '--http-port', '0', '--allow-unvalidated', '--max-tokens-per-request', '4096', '--max-message-bytes', String(1024 * 1024)]);
  const client = grpcClient(server.grpcPort);
  const raw = new grpc.Client(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure());

  const good: ScoreRequest = { pack: 'topk-saelens', sequences: [{ activations: Buffer.from(new Float32Array(10 * 64).map((_, i) => Math.cos(i)).buffer), dtype: 'DTYPE_F32', num_tokens: 10, score_from: 2 }] };
  const goodAnswer = JSON.stringify((await score(client, good)).response);
  let goods = 0;
  let goodsDifferent = 0;
  const goodFailures: string[] = [];
  let stop = false;
  const goodLoop = (async () => {
    const own = grpcClient(server.grpcPort, { 'grpc.channel_id': 'good' } as grpc.ClientOptions);
    while (!stop) {
      const out = await score(own, good);
      goods++;
      if (!out.ok || JSON.stringify(out.response) !== goodAnswer) {
        goodsDifferent++;
        if (goodFailures.length < 10) goodFailures.push(out.ok ? `different answer: ${JSON.stringify(out.response).slice(0, 300)}` : `${grpc.status[out.code!]}: ${out.details}`);
      }
    }
    own.close();
  })();

  const tally = new FuzzTally();
  const started = performance.now();
  const family = async <T>(name: string, count: number, arb: fc.Arbitrary<T>, run: (c: T) => Promise<void>) => {
    const t0 = performance.now();
    for (let done = 0; done < count; done += CHUNK) {
      const cases = fc.sample(arb, { numRuns: Math.min(CHUNK, count - done), seed: SEED + done });
      await runAll(cases, 16, run);
    }
    console.error(`${name}: ${count} cases in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  };
  await family('gRPC Score', Math.round(TOTAL * SHARES.grpc), scoreRequests(PACKS), (c) => fuzzScore(client, c, tally));
  const base = serializeScoreRequest({ pack: 'topk-saelens', run_id: '', sequences: [{ activations: Buffer.from(new Float32Array(3 * 64).fill(0.5).buffer), dtype: 'DTYPE_F32', num_tokens: 3, score_from: 1, text: 'x = 4' }] });
  await family('gRPC raw bytes', Math.round(TOTAL * SHARES.raw), mutatedBytes(base), (c) => fuzzRawScore(raw, c, tally));
  await family('HTTP', Math.round(TOTAL * SHARES.http), httpCases(PACKS), (c) => fuzzHttp(server.httpPort, c, tally));

  // Pack folders: mutants in batches of 100 through the loader; each batch once through `mechreward packs`.
  const packCount = Math.round(TOTAL * SHARES.packs);
  const t0 = performance.now();
  const mutations = fc.sample(packMutations(), { numRuns: packCount, seed: SEED });
  for (let b = 0; b * 100 < packCount; b++) {
    const dir = path.join(root, `mutated-${b}`);
    mutations.slice(b * 100, (b + 1) * 100).forEach((m, i) => writeMutatedPack(path.join(PARITY_PACKS, 'topk-saelens'), path.join(dir, `m${i}`), m));
    fuzzPackLoad(dir, tally, () => `batch ${b}`);
    // Asynchronously, and yielding between batches: the good-request loop shares this event loop, and a
    // blocked loop would make its calls miss their deadline on the client side.
    const code = await promisify(execFile)(process.execPath, [path.join(REPO_ROOT, 'bin/mechreward.js'), 'packs', dir]).then(
      () => 0,
      (err: { code: number }) => err.code,
    );
    await new Promise((resolve) => setImmediate(resolve));
    tally.add(`mechreward packs exit ${code}`, code === 0 || code === 1, () => `batch ${b}`);
    rmSync(dir, { recursive: true, force: true });
  }
  console.error(`packs: ${packCount} mutants in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  stop = true;
  await goodLoop;
  const ready = (await fetch(`http://127.0.0.1:${server.httpPort}/readyz`)).status;
  const seconds = (performance.now() - started) / 1000;
  client.close();
  raw.close();
  const exit = await server.stop();
  rmSync(root, { recursive: true, force: true });

  console.log(`fuzz: ${tally.total} cases in ${seconds.toFixed(0)} s (seed ${SEED}); server alive throughout, /readyz ${ready} at the end, SIGTERM exit ${exit}`);
  console.log(`concurrent good requests: ${goods}, different or failed: ${goodsDifferent}${goodFailures.map((f) => `\n  ${f}`).join('')}`);
  console.log(tally.table());
  if (tally.violations.length > 0) console.log(`VIOLATIONS (first ${tally.violations.length}):\n${tally.violations.join('\n')}`);
  process.exit(tally.violations.length > 0 || goodsDifferent > 0 || ready !== 200 || exit !== 0 ? 1 : 0);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
