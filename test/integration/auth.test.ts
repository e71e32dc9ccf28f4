// The optional bearer token (--auth-token / MECHREWARD_AUTH_TOKEN) on both transports: refused without it or
// with a wrong one (UNAUTHENTICATED / 401), served with it; probes stay open; the token never reaches a log.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as grpc from '@grpc/grpc-js';

import type { GetInfoResponse__Output } from '../../src/generated/mechreward/v1/GetInfoResponse.js';
import { spawnServe } from '../helpers/child-server.js';
import { PARITY_PACKS } from '../helpers/fixtures.js';
import { grpcClient, score } from '../helpers/server.js';

const TOKEN = 'tok-7f3a-do-not-log';

function bearer(token: string): grpc.Metadata {
  const m = new grpc.Metadata();
  m.set('authorization', `Bearer ${token}`);
  return m;
}

test('with --auth-token: gRPC and HTTP need the bearer token, probes do not, and the token is never logged', async () => {
  const s = await spawnServe(['--packs', PARITY_PACKS, '--grpc-port', '0', '--http-port', '0', '--allow-unvalidated', '--log-level', 'debug'], { MECHREWARD_AUTH_TOKEN: TOKEN });
  const client = grpcClient(s.grpcPort);
  const http = (p: string, headers: Record<string, string> = {}) => fetch(`http://127.0.0.1:${s.httpPort}${p}`, { headers });
  try {
    const request = { pack: 'topk-saelens', sequences: [{ activations: Buffer.alloc(4 * 64 * 4, 1), dtype: 'DTYPE_F32' as const, num_tokens: 4, score_from: 1 }] };
    const none = await score(client, request);
    assert.equal(none.code, grpc.status.UNAUTHENTICATED);
    assert.match(none.details!, /MR_ERR_UNAUTHENTICATED: authorization: this server needs "Authorization: Bearer <token>"/);
    const wrong = await new Promise<grpc.ServiceError | null>((resolve) => client.Score(request, bearer('guess'), (err) => resolve(err)));
    assert.equal(wrong!.code, grpc.status.UNAUTHENTICATED);
    assert.match(wrong!.details, /bearer token is not valid/);
    const right = await new Promise<grpc.ServiceError | null>((resolve) => client.Score(request, bearer(TOKEN), (err) => resolve(err)));
    assert.equal(right, null);
    const info = await new Promise<GetInfoResponse__Output>((resolve, reject) => client.GetInfo({}, bearer(TOKEN), (err, r) => (err ? reject(err) : resolve(r!))));
    assert.equal(info.auth_required, true);

    for (const open of ['/', '/healthz', '/readyz', '/metrics', '/monitor', '/monitor/assets/monitor.js']) assert.equal((await http(open)).status, 200, open);
    for (const closed of ['/v1/packs', '/v1/runs', '/info']) {
      const res = await http(closed);
      assert.equal(res.status, 401, closed);
      assert.equal(((await res.json()) as { code: string }).code, 'MR_ERR_UNAUTHENTICATED');
      assert.equal((await http(closed, { authorization: `Bearer ${TOKEN}` })).status, 200, closed);
      assert.equal((await http(closed, { authorization: `Bearer ${TOKEN}x` })).status, 401, closed);
    }
    const posted = await fetch(`http://127.0.0.1:${s.httpPort}/v1/score`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    assert.equal(posted.status, 401, 'refused before the body is even parsed');
  } finally {
    client.close();
    await s.stop();
  }
  const logs = s.logs.join('\n');
  assert.ok(logs.includes('"authToken":"<redacted>"'), 'the resolved config shows the token as redacted');
  assert.ok(!logs.includes(TOKEN), 'the token appears in no log line');
});

test('without a token configured, nothing asks for one', async () => {
  const s = await spawnServe(['--packs', PARITY_PACKS, '--grpc-port', '0', '--http-port', '0', '--allow-unvalidated']);
  const client = grpcClient(s.grpcPort);
  try {
    assert.ok((await score(client, { pack: 'topk-saelens', sequences: [{ activations: Buffer.alloc(4 * 64 * 4, 1), dtype: 'DTYPE_F32', num_tokens: 4, score_from: 1 }] })).ok);
    assert.equal((await fetch(`http://127.0.0.1:${s.httpPort}/v1/packs`)).status, 200);
  } finally {
    client.close();
    await s.stop();
  }
});
