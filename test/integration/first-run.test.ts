// What a first-time user sees from `mechreward serve`, in a child process: the plain ready lines on stdout
// (addresses, the monitor page, the next command) beside the JSON logs on stderr; a port already in use named
// by the flag that changes it; `serve --help` in sections.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { test } from 'node:test';

import { SERVE_HELP_GROUPS } from '../../src/cli.js';
import { SERVE_OPTIONS } from '../../src/config.js';
import { PARITY_PACKS, REPO_ROOT } from '../helpers/fixtures.js';

const BIN = path.join(REPO_ROOT, 'bin/mechreward.js');
const BASE_ARGS = ['serve', '--packs', PARITY_PACKS, '--allow-unvalidated', '--host', '127.0.0.1', '--runs-db', ''];

/** Starts serve and collects stdout lines until the "Stop with" line that ends the ready banner. */
function startServe(args: string[]): Promise<{ child: ChildProcess; banner: string[]; stderr: string[] }> {
  const child = spawn(process.execPath, [BIN, ...BASE_ARGS, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (l) => stderr.push(l));
  return new Promise((resolve, reject) => {
    const banner: string[] = [];
    createInterface({ input: child.stdout! }).on('line', (line) => {
      banner.push(line);
      if (line.startsWith('Stop with')) resolve({ child, banner, stderr });
    });
    child.on('exit', (code) => reject(new Error(`serve exited ${code} before its ready lines:\n${stderr.join('\n')}`)));
  });
}

async function stop(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

test('ready: plain lines on stdout with both addresses, the monitor page and the next command; logs stay JSON on stderr', async () => {
  const { child, banner, stderr } = await startServe(['--grpc-port', '0', '--http-port', '0']);
  try {
    // Two pipes: the JSON line on stderr may arrive after the banner on stdout.
    const findReady = () => stderr.map((l) => JSON.parse(l) as { msg: string; grpcPort?: number; httpPort?: number }).find((e) => e.msg === 'mechreward ready');
    for (let i = 0; i < 100 && !findReady(); i++) await new Promise((r) => setTimeout(r, 50));
    const ready = findReady()!;
    assert.ok(ready, 'the JSON "mechreward ready" log line is still on stderr');
    const text = banner.join('\n');
    assert.match(banner[0]!, /^mechreward \S+ ready, serving \d+ pack\(s\): .*topk-saelens/);
    assert.ok(text.includes(`gRPC     127.0.0.1:${ready.grpcPort}`), text);
    assert.ok(text.includes(`HTTP     http://127.0.0.1:${ready.httpPort}`), text);
    assert.ok(text.includes(`monitor  http://127.0.0.1:${ready.httpPort}/monitor`), text);
    assert.ok(text.includes(`node examples/score_grpc.mjs 127.0.0.1:${ready.grpcPort}`), text);
    // The addresses it prints answer.
    assert.equal((await fetch(`http://127.0.0.1:${ready.httpPort}/readyz`)).status, 200);
  } finally {
    await stop(child);
  }
});

test('a port in use: exit 2 with one message naming the flag (and its variable) to change, for either port', async () => {
  const { child, banner } = await startServe(['--grpc-port', '0', '--http-port', '0']);
  try {
    const grpcPort = /gRPC {5}127\.0\.0\.1:(\d+)/.exec(banner.join('\n'))![1]!;
    const httpPort = /HTTP {5}http:\/\/127\.0\.0\.1:(\d+)/.exec(banner.join('\n'))![1]!;
    for (const [flag, env, args] of [
      ['--grpc-port', 'MECHREWARD_GRPC_PORT', ['--grpc-port', grpcPort, '--http-port', '0']],
      ['--http-port', 'MECHREWARD_HTTP_PORT', ['--grpc-port', '0', '--http-port', httpPort]],
    ] as const) {
      const out = spawnSync(process.execPath, [BIN, ...BASE_ARGS, ...args], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(out.status, 2, out.stderr);
      const port = flag === '--grpc-port' ? grpcPort : httpPort;
      const problems = out.stderr.split('\n').filter((l) => l && !l.startsWith('{'));
      assert.deepEqual(problems, [
        `mechreward: MR_ERR_CONFIG_INVALID: ${flag} (${env}): 127.0.0.1:${port} is already in use, by another program or another mechreward serve. Stop it, or pick another port with ${flag} <n> (0 lets the system pick a free one).`,
      ], 'one plain line, no grpc-js log line');
      assert.equal(out.stdout, '', 'no ready lines');
    }
    assert.equal((await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status, 200, 'the first server keeps serving');
  } finally {
    await stop(child);
  }
});

test('serve --help lists its options in sections, every option in one', () => {
  const out = spawnSync(process.execPath, [BIN, 'serve', '--help'], { encoding: 'utf8' });
  assert.equal(out.status, 0);
  const headings = out.stdout.split('\n').filter((l) => /^[A-Z][A-Za-z ]*:$/.test(l));
  assert.deepEqual(headings, [...SERVE_HELP_GROUPS.map(([name]) => `${name}:`), 'Options:']);
  const grouped = SERVE_HELP_GROUPS.flatMap(([, keys]) => keys);
  assert.deepEqual([...grouped].sort(), SERVE_OPTIONS.map((o) => o.key).sort(), 'each serve option is in exactly one section');
  for (const [name, keys] of SERVE_HELP_GROUPS) {
    const section = out.stdout.split(`\n${name}:\n`)[1]!.split('\n\n')[0]!;
    for (const key of keys) {
      const flag = SERVE_OPTIONS.find((o) => o.key === key)!.flag.split(' ')[0]!;
      assert.match(section, new RegExp(`^  ${flag} `, 'm'), `${flag} under ${name}`);
    }
  }
});
