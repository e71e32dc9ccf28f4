// gRPC on a Unix domain socket (--grpc-socket): the same service as the TCP port, bit for bit; a socket file
// left behind by a killed server is replaced; one a live server owns, or a file that is not a socket, is
// refused without touching it; the socket is removed on shutdown.
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';

import * as grpc from '@grpc/grpc-js';

import { loadContract } from '../../src/transports/grpc/contract.js';
import type { RewardServiceClient } from '../../src/generated/mechreward/v1/RewardService.js';
import { spawnServe } from '../helpers/child-server.js';
import { PARITY_DIR, PARITY_PACKS } from '../helpers/fixtures.js';
import { grpcClient, score, startTestServer } from '../helpers/server.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'mechreward-sock-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function unixClient(socket: string): RewardServiceClient {
  return new (loadContract().mechreward.v1.RewardService)(`unix:${socket}`, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 64 << 20 });
}

const request = {
  pack: 'direction-f32',
  sequences: [
    { activations: readFileSync(path.join(PARITY_DIR, 'inputs/direction-f32.f32.1.bin')), dtype: 'DTYPE_F32' as const, num_tokens: 16, score_from: 15 },
    { activations: readFileSync(path.join(PARITY_DIR, 'inputs/direction-f32.f32.2.bin')), dtype: 'DTYPE_F32' as const, num_tokens: 19, score_from: 3 },
  ],
};

const bits = (values: number[]) => Buffer.from(new Float32Array(values).buffer).toString('hex');

test('Score over the Unix socket equals Score over TCP bit for bit; the socket is removed on shutdown', async () => {
  const socket = path.join(dir, 'a.sock');
  const server = await startTestServer(PARITY_PACKS, { grpcSocket: `unix:${socket}` });
  assert.equal(server.grpcSocket, socket, 'the unix: prefix is accepted and stripped');
  assert.ok(lstatSync(socket).isSocket());
  const viaUnix = unixClient(socket);
  const viaTcp = grpcClient(server.grpcPort);
  try {
    const [u, t] = await Promise.all([score(viaUnix, request), score(viaTcp, request)]);
    assert.ok(u.ok && t.ok, `${u.details ?? ''} ${t.details ?? ''}`);
    assert.equal(u.response!.results.length, 2);
    u.response!.results.forEach((r, i) => {
      assert.equal(bits(r.token_rewards), bits(t.response!.results[i]!.token_rewards));
      assert.equal(r.reward, t.response!.results[i]!.reward);
    });
  } finally {
    viaUnix.close();
    viaTcp.close();
    await server.close();
  }
  assert.equal(existsSync(socket), false, 'socket file removed on shutdown');
});

test('a socket left by a killed server is replaced; a live one and a non-socket file are refused', async () => {
  const socket = path.join(dir, 'b.sock');
  const killed = await spawnServe(['--packs', PARITY_PACKS, '--grpc-port', '0', '--http-port', '0', '--allow-unvalidated', '--grpc-socket', socket]);
  assert.equal(await killed.stop('SIGKILL'), null);
  assert.ok(lstatSync(socket).isSocket(), 'SIGKILL leaves the socket file behind');

  const live = await startTestServer(PARITY_PACKS, { grpcSocket: socket });
  const client = unixClient(socket);
  try {
    assert.ok((await score(client, request)).ok, 'the stale socket was replaced and serves');
    // A second server on the same path must not steal the first one's clients.
    await assert.rejects(startTestServer(PARITY_PACKS, { grpcSocket: socket }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'MR_ERR_CONFIG_INVALID');
      assert.match(err.message, /--grpc-socket .*b\.sock: another server is listening/);
      return true;
    });
    assert.ok((await score(client, request)).ok, 'the live server still serves on its socket');
  } finally {
    client.close();
    await live.close();
  }

  const file = path.join(dir, 'not-a-socket');
  writeFileSync(file, 'keep me');
  await assert.rejects(startTestServer(PARITY_PACKS, { grpcSocket: file }), /exists and is not a socket; refusing to replace it/);
  assert.equal(readFileSync(file, 'utf8'), 'keep me');
  await assert.rejects(startTestServer(PARITY_PACKS, { grpcSocket: path.join(dir, 'x'.repeat(120)) }), /Unix socket paths may have at most 103/);
});
