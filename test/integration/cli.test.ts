// The real `mechreward` command in a child process: flags, environment variables, the bundled default pack,
// SIGTERM, and a configuration error.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import { writeBigPack } from '../helpers/bigpack.js';
import { spawnServe } from '../helpers/child-server.js';
import { BUNDLED_PACKS, PARITY_PACKS, REPO_ROOT } from '../helpers/fixtures.js';

const BIN = path.join(REPO_ROOT, 'bin/mechreward.js');

const serve = spawnServe;

test('serve with flags: --packs --grpc-port 0 --http-port 0 --host; SIGTERM exits 0', async () => {
  const s = await serve(['--packs', PARITY_PACKS, '--grpc-port', '0', '--http-port', '0', '--host', '127.0.0.1', '--workers', '1', '--allow-unvalidated']);
  const ready = await fetch(`http://127.0.0.1:${s.httpPort}/readyz`);
  assert.equal(ready.status, 200);
  const body = (await ready.json()) as { packs: string[] };
  assert.ok(body.packs.includes('topk-saelens'));
  assert.ok(s.grpcPort > 0);
  s.child.kill('SIGTERM');
  assert.equal(await s.exited, 0);
});

test('serve with no arguments serves the bundled packs (ports from environment variables)', async () => {
  // No --allow-unvalidated: the shipped packs (SAE, direction, probe) have passed stage gate 1.
  const s = await serve([], { MECHREWARD_GRPC_PORT: '0', MECHREWARD_HTTP_PORT: '0' });
  const info = (await (await fetch(`http://127.0.0.1:${s.httpPort}/v1/packs`)).json()) as { packs: Array<{ name: string; synthetic: boolean; validation: { passes: boolean } }> };
  assert.deepEqual(info.packs.map((p) => p.name), ['smollm2-arith', 'smollm2-arith-direction', 'smollm2-arith-probe']);
  for (const p of info.packs) {
    assert.equal(p.synthetic, false, p.name);
    assert.equal(p.validation.passes, true, p.name);
  }
  s.child.kill('SIGTERM');
  assert.equal(await s.exited, 0);
});

test('every flag is also an environment variable', async () => {
  const s = await serve([], { MECHREWARD_PACKS: PARITY_PACKS, MECHREWARD_GRPC_PORT: '0', MECHREWARD_HTTP_PORT: '0', MECHREWARD_MAX_INFLIGHT: '7', MECHREWARD_MAX_BATCH_TOKENS: '333', MECHREWARD_ALLOW_UNVALIDATED: 'true' });
  const info = (await (await fetch(`http://127.0.0.1:${s.httpPort}/info`)).json()) as { max_inflight: number; max_batch_tokens: number; packs: string[] };
  assert.equal(info.max_inflight, 7);
  assert.equal(info.max_batch_tokens, 333);
  assert.ok(info.packs.includes('jumprelu-saelens'));
  s.child.kill('SIGTERM');
  assert.equal(await s.exited, 0);
});

test('while a large SAE loads: /healthz 200, /readyz 503 with a reason, then 200 once warm', async () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'mechreward-loading-'));
  try {
    writeBigPack(root, 'large', 768, 32768, 64, false); // 100 MB of W_enc
    const s = await serve(['--packs', root, '--grpc-port', '0', '--http-port', '0', '--allow-unvalidated'], {}, 'listening; loading engine');
    const live = await fetch(`http://127.0.0.1:${s.httpPort}/healthz`);
    assert.equal(live.status, 200);
    const notYet = await fetch(`http://127.0.0.1:${s.httpPort}/readyz`);
    assert.equal(notYet.status, 503);
    assert.match(((await notYet.json()) as { reason: string }).reason, /loading/);
    let status = 503;
    for (let i = 0; i < 600 && status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      status = (await fetch(`http://127.0.0.1:${s.httpPort}/readyz`)).status;
    }
    assert.equal(status, 200);
    s.child.kill('SIGTERM');
    assert.equal(await s.exited, 0);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a bad configuration exits 2 with a message naming the option', () => {
  const out = spawnSync(process.execPath, [BIN, 'serve', '--workers', '3', '--intra-op-threads', '2', '--packs', BUNDLED_PACKS], { encoding: 'utf8' });
  assert.equal(out.status, 2);
  assert.match(out.stderr, /MR_ERR_CONFIG_INVALID: --workers 3 x --intra-op-threads 2 = 6 onnxruntime threads, more than the \d+ cores/);
  const bad = spawnSync(process.execPath, [BIN, 'serve', '--grpc-port', 'abc'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--grpc-port \(MECHREWARD_GRPC_PORT\): "abc" is not a non-negative integer/);
});
