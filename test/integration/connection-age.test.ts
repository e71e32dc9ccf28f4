// --grpc-max-connection-age-ms: the server sends a GOAWAY once a connection reaches that age, so a client
// balancing over replicas reconnects (and re-resolves); calls keep succeeding across it. Without the option a
// connection stays up.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as grpc from '@grpc/grpc-js';

import type { RewardServiceClient } from '../../src/generated/mechreward/v1/RewardService.js';
import { PARITY_PACKS } from '../helpers/fixtures.js';
import { grpcClient, startTestServer } from '../helpers/server.js';

function getInfo(client: RewardServiceClient): Promise<string> {
  return new Promise((resolve, reject) => client.GetInfo({}, (err, res) => (err ? reject(err) : resolve(res!.version!))));
}

/** Resolves with the channel's next state after `from`, or `from` again when nothing changed by `waitMs`. */
function nextState(client: RewardServiceClient, from: grpc.connectivityState, waitMs: number): Promise<grpc.connectivityState> {
  const channel = client.getChannel();
  return new Promise((resolve) => channel.watchConnectivityState(from, Date.now() + waitMs, () => resolve(channel.getConnectivityState(false))));
}

test('with a connection age the server ends the connection (GOAWAY) and the next call reconnects; without one it stays', async () => {
  const aged = await startTestServer(PARITY_PACKS, { grpcMaxConnectionAgeMs: 400 });
  const steady = await startTestServer(PARITY_PACKS);
  const toAged = grpcClient(aged.grpcPort);
  const toSteady = grpcClient(steady.grpcPort);
  try {
    const version = await getInfo(toAged);
    await getInfo(toSteady);
    assert.equal(toAged.getChannel().getConnectivityState(false), grpc.connectivityState.READY);
    // The age passes: the server's GOAWAY takes the channel out of READY (to IDLE, reconnecting on demand).
    assert.notEqual(await nextState(toAged, grpc.connectivityState.READY, 20_000), grpc.connectivityState.READY);
    assert.equal(await getInfo(toAged), version, 'a call after the GOAWAY reconnects and succeeds');
    // The server without an age keeps its connection for at least as long.
    assert.equal(await nextState(toSteady, grpc.connectivityState.READY, 2_000), grpc.connectivityState.READY);
  } finally {
    toAged.close();
    toSteady.close();
    await aged.close();
    await steady.close();
  }
});
