// The README's scoring examples, run as a user runs them against a server on the bundled packs: each scores the
// pack's held-out answers under its run_id (non-zero rewards, right answers above wrong ones on average), shows
// random activations getting 0 and off_distribution, and leaves its run on the monitor healthy (no ALARM).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';

import type { RunningServer } from '../../src/server.js';
import { BUNDLED_PACKS, REPO_ROOT } from '../helpers/fixtures.js';
import { httpUrl, startTestServer } from '../helpers/server.js';

const execFileAsync = promisify(execFile);
let server: RunningServer;

before(async () => {
  server = await startTestServer(BUNDLED_PACKS, { allowUnvalidated: false });
});

after(async () => {
  await server?.close();
});

interface Run {
  sequences: number;
  flagged: number;
  alarm: boolean;
  baseline: unknown;
}

/** Checks an example's printout and the run it left on the monitor. */
async function checkExample(stdout: string, runId: string): Promise<void> {
  const rows = [...stdout.matchAll(/^ {2}(right|wrong) {2}reward +(-?[\d.]+) {2}(\d+) of (\d+) response tokens rewarded {2}flags: (.*)$/gm)];
  assert.equal(rows.length, 8, stdout);
  for (const [, , reward, rewarded] of rows) {
    assert.ok(Number(reward) !== 0 && Number(rewarded) > 0, `real activations get real rewards: ${stdout}`);
  }
  const mean = (label: string) => {
    const r = rows.filter((m) => m[1] === label).map((m) => Number(m[2]));
    return r.reduce((a, b) => a + b, 0) / r.length;
  };
  assert.ok(mean('right') > mean('wrong'), 'on these answers the pack ranks right above wrong');
  assert.match(stdout, /^random activations instead: reward 0, flags: off_distribution \(SAE reconstruction FVU [\d.]+ > calibrated bound/m);
  const run = (await (await fetch(httpUrl(server, `/v1/runs/${runId}`))).json()) as Run;
  assert.ok(run.baseline, 'the bundled pack has a calibrated baseline, so the alarm is live');
  assert.deepEqual({ sequences: run.sequences, flagged: run.flagged, alarm: run.alarm }, { sequences: 8, flagged: 0, alarm: false }, 'the example run is healthy; the random call was sent without a run_id');
}

test('examples/score_grpc.mjs (Node, gRPC)', async () => {
  const { stdout } = await execFileAsync(process.execPath, [path.join(REPO_ROOT, 'examples/score_grpc.mjs'), `127.0.0.1:${server.grpcPort}`, 'smollm2-arith']);
  await checkExample(stdout, 'example-grpc');
});

test('examples/score_http.py (Python, HTTP JSON)', async () => {
  const { stdout } = await execFileAsync('python3', [path.join(REPO_ROOT, 'examples/score_http.py'), `http://127.0.0.1:${server.httpPort}`, 'smollm2-arith']);
  await checkExample(stdout, 'example-http');
});
