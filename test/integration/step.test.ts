// ScoreRequest.step (the trainer's global step): carried by gRPC and HTTP into the run's history points, read
// back by GetRun and GET /v1/runs/:id; a bad step is INVALID_ARGUMENT / 400 naming the field; a runs database
// written before the step column existed opens and gains it.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import * as grpc from '@grpc/grpc-js';
import initSqlJs from 'sql.js';

import type { RunningServer } from '../../src/server.js';
import type { RewardServiceClient } from '../../src/generated/mechreward/v1/RewardService.js';
import type { RunDetail__Output } from '../../src/generated/mechreward/v1/RunDetail.js';
import { PARITY_PACKS } from '../helpers/fixtures.js';
import { grpcClient, httpUrl, score, startTestServer } from '../helpers/server.js';

const PACK = 'topk-saelens'; // d_model 64
const D_MODEL = 64;

function sequence(seed: number) {
  const rows = new Float32Array(10 * D_MODEL).map((_, i) => Math.sin(seed + i * 0.37) * 3);
  return { activations: Buffer.from(rows.buffer), dtype: 'DTYPE_F32' as const, num_tokens: 10, score_from: 4 };
}

let root: string;
let server: RunningServer;
let client: RewardServiceClient;

before(async () => {
  root = mkdtempSync(path.join(os.tmpdir(), 'mechreward-step-'));
  cpSync(path.join(PARITY_PACKS, PACK), path.join(root, 'packs', PACK), { recursive: true });
  // A runs database in the layout before ScoreRequest.step: its history table has no step column.
  const wasm = path.dirname(createRequire(import.meta.url).resolve('sql.js/dist/sql-wasm.wasm'));
  const SQL = await initSqlJs({ locateFile: (f: string) => path.join(wasm, f) });
  const old = new SQL.Database();
  old.exec(`CREATE TABLE runs (run_id TEXT PRIMARY KEY, pack TEXT NOT NULL, sequences INTEGER NOT NULL, flagged INTEGER NOT NULL, first_seen_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL);
    CREATE TABLE history (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, t_ms INTEGER NOT NULL, sequences INTEGER NOT NULL, flagged INTEGER NOT NULL, reward_mean REAL, reward_p10 REAL, reward_p50 REAL, reward_p90 REAL);
    INSERT INTO runs VALUES ('old-run', '${PACK}', 2, 0, 1000, 1000);
    INSERT INTO history (run_id, t_ms, sequences, flagged, reward_mean, reward_p10, reward_p50, reward_p90) VALUES ('old-run', 1000, 2, 0, 0.5, 0.1, 0.5, 0.9);`);
  writeFileSync(path.join(root, 'runs.sqlite'), old.export());
  old.close();
  server = await startTestServer(path.join(root, 'packs'), { runsDb: path.join(root, 'runs.sqlite') });
  client = grpcClient(server.grpcPort);
});

after(async () => {
  client?.close();
  await server?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

function getRun(runId: string): Promise<RunDetail__Output> {
  return new Promise((resolve, reject) => client.GetRun({ run_id: runId }, (err, res) => (err ? reject(err) : resolve(res!))));
}

test('gRPC: the step of each call is in the run\'s history; calls without one have none', async () => {
  for (const step of [0, 7, 12]) assert.ok((await score(client, { pack: PACK, run_id: 'stepped', step, sequences: [sequence(step)] })).ok);
  assert.ok((await score(client, { pack: PACK, run_id: 'unstepped', sequences: [sequence(1)] })).ok);
  assert.deepEqual((await getRun('stepped')).history.map((p) => p.step), ['0', '7', '12']);
  const http = (await (await fetch(httpUrl(server, '/v1/runs/stepped'))).json()) as { history: Array<{ step?: number }> };
  assert.deepEqual(http.history.map((p) => p.step), [0, 7, 12]);
  const none = (await (await fetch(httpUrl(server, '/v1/runs/unstepped'))).json()) as { history: Array<Record<string, unknown>> };
  assert.equal(none.history.length, 1);
  assert.ok(!('step' in none.history[0]!), 'no step key when the call sent none');
  assert.equal((await getRun('unstepped')).history[0]!.step, undefined);
});

test('HTTP: "step" in POST /v1/score is stored the same way', async () => {
  const s = sequence(3);
  const body = { pack: PACK, run_id: 'http-stepped', step: 41, sequences: [{ ...s, activations: s.activations.toString('base64'), dtype: 'f32' }] };
  const res = await fetch(httpUrl(server, '/v1/score'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal(res.status, 200);
  const run = (await (await fetch(httpUrl(server, '/v1/runs/http-stepped'))).json()) as { history: Array<{ step?: number }> };
  assert.deepEqual(run.history.map((p) => p.step), [41]);
});

test('a bad step is refused naming the field, and the server keeps serving', async () => {
  const bad = await score(client, { pack: PACK, run_id: 'bad', step: '-1', sequences: [sequence(1)] });
  assert.equal(bad.code, grpc.status.INVALID_ARGUMENT);
  assert.match(bad.details!, /^MR_ERR_INVALID_ARGUMENT: step: must be a whole number >= 0/);
  const s = sequence(2);
  for (const step of [-3, 1.5, 'ten', 2 ** 60]) {
    const body = { pack: PACK, run_id: 'bad', step, sequences: [{ ...s, activations: s.activations.toString('base64'), dtype: 'f32' }] };
    const res = await fetch(httpUrl(server, '/v1/score'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    assert.equal(res.status, 400, `step ${step}`);
    assert.match(((await res.json()) as { error: string }).error, /^step: /);
  }
  assert.equal((await fetch(httpUrl(server, '/v1/runs/bad'))).status, 404, 'a refused request creates no run');
  assert.ok((await score(client, { pack: PACK, run_id: 'after', step: 1, sequences: [sequence(1)] })).ok);
});

test('a runs database from before the step column opens; its old points have no step', async () => {
  const run = (await (await fetch(httpUrl(server, '/v1/runs/old-run'))).json()) as { sequences: number; history: Array<Record<string, unknown>> };
  assert.equal(run.sequences, 2);
  assert.equal(run.history.length, 1);
  assert.ok(!('step' in run.history[0]!));
});
