// Hot reload of the packs directory (POST /admin/reload and SIGHUP) while requests keep flowing: new, changed
// and removed packs swap in at once; a broken pack, one failing stage-gate enforcement and one over
// max_packs are rejected with a reason while the old version keeps serving; a request that started before a
// swap finishes on the version it started with; no request fails because of a reload.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import * as grpc from '@grpc/grpc-js';

import type { ScoreRequest } from '../../src/generated/mechreward/v1/ScoreRequest.js';
import type { ReloadReport } from '../../src/reload.js';
import type { RunningServer } from '../../src/server.js';
import { spawnServe } from '../helpers/child-server.js';
import { BUNDLED_PACKS, PARITY_PACKS } from '../helpers/fixtures.js';
import { grpcClient, httpUrl, score, startTestServer } from '../helpers/server.js';

const PACK = 'smollm2-arith';
const D_MODEL = 576;
let root: string;

before(() => {
  root = mkdtempSync(path.join(os.tmpdir(), 'mechreward-reload-'));
  cpSync(path.join(BUNDLED_PACKS, PACK), path.join(root, PACK), { recursive: true });
});
after(() => rmSync(root, { recursive: true, force: true }));

function request(pack: string, numTokens: number, seed = 1): ScoreRequest {
  const rows = new Float32Array(numTokens * D_MODEL).map((_, i) => Math.sin(seed * 3.3 + i * 0.731) * 2);
  return { pack, sequences: [{ activations: Buffer.from(rows.buffer), dtype: 'DTYPE_F32', num_tokens: numTokens, score_from: 2 }] };
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Rewrites pack.json of `dir` with every feature weight multiplied by `factor` (a power of two: exact). */
function scaleWeights(dir: string, factor: number): void {
  const file = path.join(dir, 'pack.json');
  const json = JSON.parse(readFileSync(file, 'utf8')) as { features: { weight: number }[] };
  for (const f of json.features) f.weight *= factor;
  writeFileSync(file, JSON.stringify(json, null, 2));
}

async function reload(server: RunningServer, token?: string): Promise<{ status: number; body: ReloadReport & { code?: string } }> {
  const res = await fetch(httpUrl(server, '/admin/reload'), { method: 'POST', headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: res.status, body: (await res.json()) as ReloadReport & { code?: string } };
}

test('reloads swap new, changed and removed packs without failing a request; broken, unvalidated and over-limit packs are rejected with reasons', async () => {
  const token = 'reload-test-token';
  const server = await startTestServer(root, { allowUnvalidated: false, maxPacks: 3, authToken: token });
  const meta = new grpc.Metadata();
  meta.set('authorization', `Bearer ${token}`);
  const client = grpcClient(server.grpcPort, { interceptors: [(options, next) => new grpc.InterceptingCall(next(options), { start: (md, listener, nextStart) => (md.merge(meta), nextStart(md, listener)) })] });
  const probe = request(PACK, 20);
  let stop = false;
  let traffic: Promise<void> = Promise.resolve();
  try {
    const v1 = (await score(client, probe)).response!;
    assert.ok(v1, 'first score failed');

    // Background traffic through every reload: each answer must be one of the versions served, never an error.
    const answers: number[] = [];
    const failures: string[] = [];
    traffic = (async () => {
      while (!stop) {
        const batch = await Promise.all(Array.from({ length: 4 }, () => score(client, probe)));
        for (const o of batch) (o.ok ? answers.push(o.response!.results[0]!.reward) : failures.push(o.details!));
      }
    })();

    // Without the token the admin route is refused before anything is read.
    const anonymous = await reload(server);
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.body.code, 'MR_ERR_UNAUTHENTICATED');

    // 1. A new pack (a copy), and an unvalidated one that stage-gate enforcement refuses.
    cpSync(path.join(root, PACK), path.join(root, 'arith-copy'), { recursive: true });
    cpSync(path.join(PARITY_PACKS, 'topk-saelens'), path.join(root, 'unvalidated'), { recursive: true });
    const r1 = await reload(server, token);
    assert.equal(r1.status, 200);
    assert.deepEqual(r1.body.added, ['arith-copy']);
    assert.deepEqual(r1.body.unchanged, [PACK]);
    assert.deepEqual(r1.body.rejected.map((r) => r.pack), ['unvalidated']);
    assert.match(r1.body.rejected[0]!.reason, /has not passed stage gate 1/);
    const copy = await score(client, request('arith-copy', 20));
    assert.deepEqual(copy.response!.results, v1.results, 'the copy scores like the original');
    const gone = await score(client, request('unvalidated', 20));
    assert.equal(gone.code, grpc.status.NOT_FOUND);
    rmSync(path.join(root, 'unvalidated'), { recursive: true });

    // 2. A changed pack, while a long request on the old version is in flight: it finishes on the old version.
    const long = request(PACK, 8192, 1);
    const longAlone = (await score(client, long)).response!;
    const executions = async () => (await server.service.metrics.executions.get()).values[0]!.value;
    const before = await executions();
    const longCall = score(client, long);
    while ((await executions()) === before) await sleep(2);
    scaleWeights(path.join(root, PACK), 2);
    const r2 = await reload(server, token);
    assert.deepEqual(r2.body.changed, [PACK]);
    const longDuring = await longCall;
    assert.ok(longDuring.ok, longDuring.details);
    assert.deepEqual(longDuring.response, longAlone, 'the request that started before the swap finished on the old version');
    const v2 = (await score(client, probe)).response!;
    v2.results[0]!.token_rewards.forEach((t, i) => assert.equal(t, 2 * v1.results[0]!.token_rewards[i]!, `token ${i}: weights x2 must double the reward exactly`));

    // 3. A broken new version: the old one keeps serving; a third pack would exceed max_packs 3... with two, fine.
    writeFileSync(path.join(root, 'arith-copy', 'pack.json'), '{"schema": "mechreward.pack/v1", "features": [');
    cpSync(path.join(root, PACK), path.join(root, 'arith-third'), { recursive: true });
    cpSync(path.join(root, PACK), path.join(root, 'arith-fourth'), { recursive: true });
    const r3 = await reload(server, token);
    assert.deepEqual(r3.body.added, ['arith-fourth'], 'only one new pack fits under max_packs 3 (the first in name order)');
    const reasons = Object.fromEntries(r3.body.rejected.map((r) => [r.pack, r.reason]));
    assert.match(reasons['arith-copy']!, /arith-copy\/pack\.json: cannot read JSON/);
    assert.match(reasons['arith-third']!, /max_packs 3 reached/);
    assert.deepEqual((await score(client, request('arith-copy', 20))).response!.results, v1.results, 'the broken pack keeps serving its old version');

    // 4. Removal.
    rmSync(path.join(root, 'arith-copy'), { recursive: true });
    rmSync(path.join(root, 'arith-third'), { recursive: true });
    rmSync(path.join(root, 'arith-fourth'), { recursive: true });
    scaleWeights(path.join(root, PACK), 0.5);
    const r4 = await reload(server, token);
    assert.deepEqual(r4.body.removed, ['arith-copy', 'arith-fourth']);
    assert.deepEqual(r4.body.packs, [PACK]);
    assert.equal((await score(client, request('arith-copy', 20))).code, grpc.status.NOT_FOUND);
    assert.deepEqual((await score(client, probe)).response, v1);

    stop = true;
    await traffic;
    assert.deepEqual(failures, [], 'no request failed during the reloads');
    assert.ok(answers.length > 0);
    const allowed = new Set([v1.results[0]!.reward, v2.results[0]!.reward]);
    assert.ok(answers.every((a) => allowed.has(a)), 'every answer came from one whole version');

    // Old versions were dropped from the engine once no request used them.
    assert.deepEqual(server.engineKeys().map((k) => k.split('@')[0]), [PACK]);
    const metrics = await (await fetch(httpUrl(server, '/metrics'))).text();
    assert.match(metrics, /mechreward_pack_reloads_total\{outcome="rejected"\} 2/);
    assert.match(metrics, /mechreward_pack_reloads_total\{outcome="ok"\} 2/);
    assert.match(metrics, /mechreward_pack_reload_rejections_total\{pack="arith-third"\} 1/);
    assert.doesNotMatch(metrics, /mechreward_pack_ready\{pack="arith-copy"\}/);
    console.log(`# ${answers.length + failures.length} background requests during 4 reloads, ${failures.length} failed`);
  } finally {
    stop = true;
    await traffic;
    client.close();
    await server.close();
  }
});

test('SIGHUP reloads the packs directory of the real command', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mechreward-sighup-'));
  cpSync(path.join(PARITY_PACKS, 'topk-saelens'), path.join(dir, 'topk-saelens'), { recursive: true });
  const s = await spawnServe(['--packs', dir, '--grpc-port', '0', '--http-port', '0', '--allow-unvalidated']);
  try {
    cpSync(path.join(PARITY_PACKS, 'relu-saelens'), path.join(dir, 'relu-saelens'), { recursive: true });
    s.child.kill('SIGHUP');
    while (!s.logs.some((l) => l.includes('"msg":"reload finished"'))) await sleep(10);
    const report = (JSON.parse(s.logs.find((l) => l.includes('"msg":"reload finished"'))!) as { report: ReloadReport }).report;
    assert.deepEqual(report.added, ['relu-saelens']);
    const packs = (await (await fetch(`http://127.0.0.1:${s.httpPort}/v1/packs`)).json()) as { packs: { name: string }[] };
    assert.deepEqual(packs.packs.map((p) => p.name).sort(), ['relu-saelens', 'topk-saelens']);
  } finally {
    assert.equal(await s.stop(), 0);
    rmSync(dir, { recursive: true, force: true });
  }
});
