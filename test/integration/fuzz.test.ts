// Property-based fuzzing (fast-check) against the real server: structured and byte-mutated Score messages over
// gRPC, random HTTP requests on every route, mutated pack folders through the loader, `mechreward packs` and
// hot reload. No crash, no hang, only documented statuses, and a good request running alongside keeps getting
// the byte-identical answer. Modest counts here; `npm run bench:fuzz` runs ~100k cases and prints the classes.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';

import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';

import type { RewardServiceClient } from '../../src/generated/mechreward/v1/RewardService.js';
import type { ScoreRequest } from '../../src/generated/mechreward/v1/ScoreRequest.js';
import type { RunningServer } from '../../src/server.js';
import { PARITY_PACKS, REPO_ROOT } from '../helpers/fixtures.js';
import { FuzzTally, fuzzHttp, fuzzPackLoad, fuzzRawScore, fuzzScore, httpCases, mutatedBytes, packMutations, runAll, scoreRequests, serializeScoreRequest, writeMutatedPack } from '../helpers/fuzz.js';
import { grpcClient, score, startTestServer } from '../helpers/server.js';

const SEED = Number(process.env.MECHREWARD_FUZZ_SEED ?? 20261124);
const PACKS = [
  { name: 'topk-saelens', dModel: 64 },
  { name: 'relu-saelens', dModel: 64 },
];

let root: string;
let server: RunningServer;
let client: RewardServiceClient;
const good: ScoreRequest = { pack: 'topk-saelens', sequences: [{ activations: Buffer.from(new Float32Array(10 * 64).map((_, i) => Math.cos(i)).buffer), dtype: 'DTYPE_F32', num_tokens: 10, score_from: 2 }] };
let goodAnswer: unknown;

before(async () => {
  root = mkdtempSync(path.join(os.tmpdir(), 'mechreward-fuzz-'));
  for (const p of PACKS) cpSync(path.join(PARITY_PACKS, p.name), path.join(root, 'packs', p.name), { recursive: true });
  server = await startTestServer(path.join(root, 'packs'), { maxTokensPerRequest: 4096, maxMessageBytes: 1024 * 1024 });
  client = grpcClient(server.grpcPort);
  goodAnswer = (await score(client, good)).response;
  assert.ok(goodAnswer);
});

after(async () => {
  client.close();
  await server.close();
  rmSync(root, { recursive: true, force: true });
});

/** Runs `body` while a good request is sent in a loop on its own channel; every answer must be identical. */
async function alongsideGoodTraffic(body: () => Promise<void>): Promise<number> {
  const own = grpcClient(server.grpcPort, { 'grpc.channel_id': 'good' } as grpc.ClientOptions);
  let stop = false;
  let n = 0;
  const loop = (async () => {
    while (!stop) {
      const out = await score(own, good);
      assert.ok(out.ok, `good request failed during fuzzing: ${out.details}`);
      assert.deepEqual(out.response, goodAnswer, 'good request got a different answer during fuzzing');
      n++;
    }
  })();
  try {
    await body();
  } finally {
    stop = true;
    await loop;
    own.close();
  }
  return n;
}

function report(name: string, tally: FuzzTally, goods: number): void {
  console.log(`# ${name}: ${tally.total} cases, ${goods} concurrent good requests identical\n${tally.table().replace(/^/gm, '#   ')}`);
  assert.deepEqual(tally.violations, [], `${name}: outcomes outside their documented class`);
}

test('fuzz: random and edge-case Score messages over gRPC', async () => {
  const tally = new FuzzTally();
  const cases = fc.sample(scoreRequests(PACKS), { numRuns: 1500, seed: SEED });
  const goods = await alongsideGoodTraffic(() => runAll(cases, 8, (c) => fuzzScore(client, c, tally)));
  report('gRPC Score', tally, goods);
  assert.ok((tally.counts.get('grpc Score OK') ?? 0) > 0 && (tally.counts.get('grpc Score INVALID_ARGUMENT') ?? 0) > 0, 'the generator reaches both valid and invalid requests');
});

test('fuzz: byte-mutated serialized Score requests through a generic gRPC client', async () => {
  const tally = new FuzzTally();
  const base = serializeScoreRequest({ pack: 'topk-saelens', run_id: '', sequences: [{ activations: Buffer.from(new Float32Array(3 * 64).fill(0.5).buffer), dtype: 'DTYPE_F32', num_tokens: 3, score_from: 1, text: 'x = 4' }] });
  const raw = new grpc.Client(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure());
  const cases = fc.sample(mutatedBytes(base), { numRuns: 1000, seed: SEED });
  const goods = await alongsideGoodTraffic(() => runAll(cases, 8, (c) => fuzzRawScore(raw, c, tally)));
  raw.close();
  report('gRPC raw bytes', tally, goods);
});

test('fuzz: random HTTP requests on every route (JSON, msgpack, raw bytes, wrong content types)', async () => {
  const tally = new FuzzTally();
  const cases = fc.sample(httpCases(PACKS), { numRuns: 1500, seed: SEED });
  const goods = await alongsideGoodTraffic(() => runAll(cases, 8, (c) => fuzzHttp(server.httpPort, c, tally)));
  report('HTTP', tally, goods);
  assert.equal((await fetch(`http://127.0.0.1:${server.httpPort}/readyz`)).status, 200);
});

test('fuzz: mutated pack folders and safetensors files through the loader, `mechreward packs` and hot reload', async () => {
  const tally = new FuzzTally();
  const mutations = fc.sample(packMutations(), { numRuns: 300, seed: SEED });
  const batches = 6;
  const loadedDirs: string[] = [];
  for (let b = 0; b < batches; b++) {
    const dir = path.join(root, `mutated-${b}`);
    mutations.slice((b * mutations.length) / batches, ((b + 1) * mutations.length) / batches).forEach((m, i) => writeMutatedPack(path.join(PARITY_PACKS, 'topk-saelens'), path.join(dir, `m${i}`), m));
    for (const name of fuzzPackLoad(dir, tally, () => `batch ${b}`)) loadedDirs.push(path.join(dir, name));
  }
  // The command on one batch: exit 1 with a BROKEN line per bad pack, never a crash.
  const cli = await promisify(execFile)(process.execPath, [path.join(REPO_ROOT, 'bin/mechreward.js'), 'packs', path.join(root, 'mutated-0')]).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (err: { code: number; stdout: string; stderr: string }) => err,
  );
  tally.add(`mechreward packs exit ${cli.code}`, cli.code === 0 || cli.code === 1, () => cli.stderr);
  assert.doesNotMatch(cli.stderr, /at .*\.js:\d+/, 'no stack trace from `mechreward packs`');
  // Mutants the loader accepted go through a hot reload into the live server; its good answers stay identical.
  const reloadable = loadedDirs.slice(0, 8);
  const goods = await alongsideGoodTraffic(async () => {
    for (const [i, dir] of reloadable.entries()) {
      const name = `mutant-${i}`;
      cpSync(dir, path.join(root, 'packs', name), { recursive: true });
      const r = await server.reload();
      const accepted = r.added.includes(name);
      tally.add(`reload: mutant ${accepted ? 'accepted' : 'rejected'}`, accepted || r.rejected.some((x) => x.pack === name), () => JSON.stringify(r));
      if (accepted) {
        const out = await score(client, { ...good, pack: name });
        const allowed = out.ok || out.code === grpc.status.INVALID_ARGUMENT || (out.code === grpc.status.INTERNAL && /^MR_ERR_NONFINITE_OUTPUT/.test(out.details!));
        tally.add(`reload: mutant scored ${out.ok ? 'OK' : grpc.status[out.code!]}`, allowed, () => `${out.details}`);
      }
      rmSync(path.join(root, 'packs', name), { recursive: true });
      await server.reload();
    }
  });
  report('packs', tally, goods);
  assert.ok((tally.counts.get('pack load: rejected') ?? 0) > 0 && (tally.counts.get('pack load: loaded') ?? 0) > 0);
});
