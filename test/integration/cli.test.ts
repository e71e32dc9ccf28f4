// The real `mechreward` command in a child process: flags, environment variables, the bundled default pack,
// SIGTERM, and a configuration error.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';

import { BUNDLED_PACKS, PARITY_PACKS, REPO_ROOT } from '../helpers/fixtures.js';

const BIN = path.join(REPO_ROOT, 'bin/mechreward.js');

interface Started {
  child: ChildProcess;
  grpcPort: number;
  httpPort: number;
  exited: Promise<number | null>;
}

/** Spawns `mechreward serve ...` and waits for its "mechreward ready" log line (JSON on stderr). */
function serve(args: string[], env: Record<string, string> = {}): Promise<Started> {
  const child = spawn(process.execPath, [BIN, 'serve', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const lines: string[] = [];
    createInterface({ input: child.stderr! }).on('line', (line) => {
      lines.push(line);
      try {
        const entry = JSON.parse(line) as { msg?: string; grpcPort?: number; httpPort?: number };
        if (entry.msg === 'mechreward ready') resolve({ child, grpcPort: entry.grpcPort!, httpPort: entry.httpPort!, exited });
      } catch {
        /* not a log line */
      }
    });
    void exited.then((code) => reject(new Error(`serve exited with ${code} before ready:\n${lines.join('\n')}`)));
  });
}

test('serve with flags: --packs --grpc-port 0 --http-port 0 --host; SIGTERM exits 0', async () => {
  const s = await serve(['--packs', PARITY_PACKS, '--grpc-port', '0', '--http-port', '0', '--host', '127.0.0.1', '--workers', '1']);
  const ready = await fetch(`http://127.0.0.1:${s.httpPort}/readyz`);
  assert.equal(ready.status, 200);
  const body = (await ready.json()) as { packs: string[] };
  assert.ok(body.packs.includes('topk-saelens'));
  assert.ok(s.grpcPort > 0);
  s.child.kill('SIGTERM');
  assert.equal(await s.exited, 0);
});

test('serve with no arguments serves the bundled packs (ports from environment variables)', async () => {
  const s = await serve([], { MECHREWARD_GRPC_PORT: '0', MECHREWARD_HTTP_PORT: '0' });
  const info = (await (await fetch(`http://127.0.0.1:${s.httpPort}/v1/packs`)).json()) as { packs: Array<{ name: string; synthetic: boolean }> };
  assert.deepEqual(info.packs.map((p) => p.name), ['synthetic-tiny']);
  assert.equal(info.packs[0]!.synthetic, true);
  s.child.kill('SIGTERM');
  assert.equal(await s.exited, 0);
});

test('every flag is also an environment variable', async () => {
  const s = await serve([], { MECHREWARD_PACKS: PARITY_PACKS, MECHREWARD_GRPC_PORT: '0', MECHREWARD_HTTP_PORT: '0', MECHREWARD_MAX_INFLIGHT: '7', MECHREWARD_MAX_BATCH_TOKENS: '333' });
  const info = (await (await fetch(`http://127.0.0.1:${s.httpPort}/info`)).json()) as { max_inflight: number; max_batch_tokens: number; packs: string[] };
  assert.equal(info.max_inflight, 7);
  assert.equal(info.max_batch_tokens, 333);
  assert.ok(info.packs.includes('jumprelu-saelens'));
  s.child.kill('SIGTERM');
  assert.equal(await s.exited, 0);
});

test('a bad configuration exits 2 with a message naming the option', () => {
  const out = spawnSync(process.execPath, [BIN, 'serve', '--workers', '3', '--intra-op-threads', '2', '--packs', BUNDLED_PACKS], { encoding: 'utf8' });
  assert.equal(out.status, 2);
  assert.match(out.stderr, /MR_ERR_CONFIG_INVALID: --workers 3 x --intra-op-threads 2 = 6 onnxruntime threads, more than the \d+ cores/);
  const bad = spawnSync(process.execPath, [BIN, 'serve', '--grpc-port', 'abc'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--grpc-port \(MECHREWARD_GRPC_PORT\): "abc" is not a non-negative integer/);
});
