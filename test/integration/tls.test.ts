// TLS on both transports with certificates the test makes: server TLS, then mutual TLS (client certificates
// required). Plaintext and unauthenticated-certificate clients are refused; the right ones are served.
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import { after, test } from 'node:test';

import * as grpc from '@grpc/grpc-js';

import { loadContract } from '../../src/transports/grpc/contract.js';
import type { RewardServiceClient } from '../../src/generated/mechreward/v1/RewardService.js';
import { makeTestCerts } from '../helpers/certs.js';
import { spawnServe } from '../helpers/child-server.js';
import { PARITY_PACKS } from '../helpers/fixtures.js';

const certs = makeTestCerts();
after(() => rmSync(certs.dir, { recursive: true, force: true }));

function client(port: number, credentials: grpc.ChannelCredentials): RewardServiceClient {
  return new (loadContract().mechreward.v1.RewardService)(`127.0.0.1:${port}`, credentials);
}

function listPacks(c: RewardServiceClient): Promise<{ ok: boolean; code?: grpc.status }> {
  return new Promise((resolve) => c.ListPacks({}, { deadline: Date.now() + 5000 }, (err) => resolve(err ? { ok: false, code: err.code } : { ok: true })));
}

function httpsGet(port: number, path: string, options: https.RequestOptions): Promise<number | string> {
  return new Promise((resolve) => {
    const req = https.get({ host: '127.0.0.1', port, path, ...options }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', (err) => resolve(`error: ${err.message}`));
  });
}

test('server TLS: TLS clients that trust the CA are served; plaintext ones are not', async () => {
  const s = await spawnServe(['--packs', PARITY_PACKS, '--grpc-port', '0', '--http-port', '0', '--allow-unvalidated', '--tls-cert', certs.serverCert, '--tls-key', certs.serverKey]);
  const ca = readFileSync(certs.ca);
  try {
    const secure = client(s.grpcPort, grpc.credentials.createSsl(ca));
    assert.deepEqual(await listPacks(secure), { ok: true });
    secure.close();
    const plain = client(s.grpcPort, grpc.credentials.createInsecure());
    const refused = await listPacks(plain);
    assert.equal(refused.ok, false);
    assert.equal(refused.code, grpc.status.UNAVAILABLE);
    plain.close();
    assert.equal(await httpsGet(s.httpPort, '/readyz', { ca }), 200);
    assert.match(String(await httpsGet(s.httpPort, '/readyz', {})), /error: .*(self.signed|unable to verify|certificate)/i, 'a client that does not trust the CA refuses the server');
  } finally {
    await s.stop();
  }
});

test('mutual TLS: a client certificate signed by --tls-client-ca is required on both transports', async () => {
  const s = await spawnServe(['--packs', PARITY_PACKS, '--grpc-port', '0', '--http-port', '0', '--allow-unvalidated', '--tls-cert', certs.serverCert, '--tls-key', certs.serverKey, '--tls-client-ca', certs.ca]);
  const ca = readFileSync(certs.ca);
  const cert = readFileSync(certs.clientCert);
  const key = readFileSync(certs.clientKey);
  try {
    const withCert = client(s.grpcPort, grpc.credentials.createSsl(ca, key, cert));
    assert.deepEqual(await listPacks(withCert), { ok: true });
    withCert.close();
    const withoutCert = client(s.grpcPort, grpc.credentials.createSsl(ca));
    assert.equal((await listPacks(withoutCert)).ok, false);
    withoutCert.close();
    assert.equal(await httpsGet(s.httpPort, '/readyz', { ca, cert, key }), 200);
    assert.match(String(await httpsGet(s.httpPort, '/readyz', { ca })), /error/, 'no client certificate, no HTTPS');
  } finally {
    await s.stop();
  }
});

test('--tls-cert without --tls-key is a configuration error', async () => {
  await assert.rejects(spawnServe(['--packs', PARITY_PACKS, '--tls-cert', certs.serverCert]), /--tls-cert and --tls-key go together/);
});
