// What an outside probe found, closed: slow or too many HTTP connections, oversized and malformed bodies, the
// auth scheme's case, an unauthenticated remote bind, packs reaching outside their directory, and absolute
// paths in API answers. Real servers on loopback ports, raw sockets for the slow clients.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { resolveServeConfig } from '../../src/config.js';
import { writeBigPack } from '../helpers/bigpack.js';
import { httpUrl, startTestServer } from '../helpers/server.js';

const D = 64;
let root: string;
let packs: string;

before(() => {
  root = mkdtempSync(path.join(os.tmpdir(), 'mechreward-harden-'));
  packs = path.join(root, 'packs');
  writeBigPack(packs, 'p', D, 256, 8);
});

after(() => rmSync(root, { recursive: true, force: true }));

function jsonBody(numTokens: number, activations?: string): string {
  const rows = new Float32Array(numTokens * D).map((_, i) => Math.sin(i));
  return JSON.stringify({ pack: 'p', sequences: [{ activations: activations ?? Buffer.from(rows.buffer).toString('base64'), dtype: 'F32', num_tokens: numTokens, score_from: 1 }] });
}

const post = (url: string, body: string, headers: Record<string, string> = {}) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });

/** Resolves when the server closes `socket` (bounded: the test fails instead of hanging). */
function closedByServer(socket: net.Socket, boundMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = '';
    socket.on('data', (d) => (data += d.toString()));
    const timer = setTimeout(() => reject(new Error('the server kept the connection open')), boundMs);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(data);
    });
    socket.on('error', () => undefined);
  });
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.on('error', reject);
  });
}

test('body limit is the largest legitimate request: that request is served, a larger body is 413; base64 is strict', async () => {
  const server = await startTestServer(packs, { maxTokensPerRequest: 300 });
  try {
    const largest = await post(httpUrl(server, '/v1/score'), jsonBody(300));
    assert.equal(largest.status, 200, await largest.clone().text());
    const tooBig = await post(httpUrl(server, '/v1/score'), JSON.stringify({ pack: 'p', sequences: [], pad: 'x'.repeat(2 * 1024 * 1024) }));
    assert.equal(tooBig.status, 413);
    assert.match(((await tooBig.json()) as { error: string }).error, /HTTP body limit of \d+ bytes/);
    for (const bad of ['!!!!', 'AAA', 'AA=A', 'AAAA AAAA', 'AAAA\nAAAA', 'AA-_']) {
      const res = await post(httpUrl(server, '/v1/score'), jsonBody(2, bad));
      assert.equal(res.status, 400, JSON.stringify(bad));
      assert.match(((await res.json()) as { error: string }).error, /^sequences\[0\]\.activations: not valid base64/);
    }
    const runId = await post(httpUrl(server, '/v1/score'), JSON.stringify({ ...JSON.parse(jsonBody(2)), run_id: 5 }));
    assert.equal(runId.status, 400);
    assert.match(((await runId.json()) as { error: string }).error, /^run_id: must be a string/);
  } finally {
    await server.close();
  }
});

test('slow clients: a request whose body never finishes is closed after --http-request-timeout-ms; past --http-max-connections connections are closed', async () => {
  const server = await startTestServer(packs, { httpRequestTimeoutMs: 1500, httpHeadersTimeoutMs: 1000, httpMaxConnections: 4 });
  try {
    const slow = await connect(server.httpPort);
    slow.write('POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"pack":');
    const answer = await closedByServer(slow);
    assert.match(answer, /^HTTP\/1\.1 408/, 'Node answers 408 Request Timeout, then closes');

    const headersOnly = await connect(server.httpPort);
    headersOnly.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
    await closedByServer(headersOnly);

    const held = await Promise.all([0, 1, 2, 3].map(() => connect(server.httpPort)));
    const extra = await connect(server.httpPort);
    extra.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(await closedByServer(extra), '', 'the connection over the cap is closed unanswered');
    held.forEach((s) => s.destroy());
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await fetch(httpUrl(server, '/healthz'))).status, 200);
  } finally {
    await server.close();
  }
});

test('the Bearer scheme is case-insensitive; the token is not', async () => {
  const server = await startTestServer(packs, { authToken: 's3cret' });
  try {
    for (const scheme of ['Bearer', 'bearer', 'BEARER', 'bEaReR']) {
      assert.equal((await fetch(httpUrl(server, '/v1/packs'), { headers: { authorization: `${scheme} s3cret` } })).status, 200, scheme);
    }
    assert.equal((await fetch(httpUrl(server, '/v1/packs'), { headers: { authorization: 'Bearer S3CRET' } })).status, 401);
    assert.equal((await fetch(httpUrl(server, '/v1/packs'), { headers: { authorization: 'Basic s3cret' } })).status, 401);
  } finally {
    await server.close();
  }
});

test('a bind beyond loopback needs --auth-token or --allow-remote-without-auth', () => {
  for (const host of ['0.0.0.0', '::', '192.168.1.10', 'example.org']) {
    assert.throws(() => resolveServeConfig({ host }, {}), /--host .* no --auth-token is set.*--allow-remote-without-auth/, host);
    assert.equal(resolveServeConfig({ host, authToken: 't' }, {}).host, host);
    assert.equal(resolveServeConfig({ host }, { MECHREWARD_ALLOW_REMOTE_WITHOUT_AUTH: '1' }).host, host);
  }
  for (const host of ['127.0.0.1', '127.3.2.1', '::1', '[::1]', 'localhost']) assert.equal(resolveServeConfig({ host }, {}).host, host);
});

test('packs are confined to the packs directory unless --allow-packs-outside; reload answers carry no absolute path', async () => {
  const outside = path.join(root, 'outside');
  writeBigPack(outside, 'elsewhere', D, 256, 8);
  const linked = path.join(root, 'linked-packs');
  mkdirSync(linked);
  symlinkSync(path.join(outside, 'elsewhere'), path.join(linked, 'elsewhere'));
  await assert.rejects(startTestServer(linked), /elsewhere: the pack folder resolves outside the packs directory \(start with --allow-packs-outside/);
  const allowed = await startTestServer(linked, { allowPacksOutside: true });
  await allowed.close();

  const absolute = path.join(root, 'absolute-packs');
  mkdirSync(path.join(absolute, 'abs'), { recursive: true });
  const json = JSON.parse(readFileSync(path.join(outside, 'elsewhere', 'pack.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(path.join(absolute, 'abs', 'pack.json'), JSON.stringify({ ...json, name: 'abs', sae: path.join(outside, 'elsewhere', 'sae') }));
  await assert.rejects(startTestServer(absolute), /abs: its SAE \(pack.json "sae"\) resolves outside the packs directory/);

  const server = await startTestServer(packs);
  try {
    mkdirSync(path.join(packs, 'broken'));
    writeFileSync(path.join(packs, 'broken', 'pack.json'), '{"schema": "mechreward.pack/v1", "name": "broken"');
    symlinkSync(path.join(outside, 'elsewhere'), path.join(packs, 'sneaky'));
    const res = await fetch(httpUrl(server, '/admin/reload'), { method: 'POST' });
    const text = await res.text();
    const report = JSON.parse(text) as { rejected: { pack: string; reason: string }[] };
    assert.deepEqual(report.rejected.map((r) => r.pack), ['broken', 'sneaky']);
    assert.ok(!text.includes(root) && !text.includes(os.tmpdir()), text);
    assert.match(report.rejected[0]!.reason, /^broken\/pack\.json: cannot read JSON/);
  } finally {
    rmSync(path.join(packs, 'broken'), { recursive: true, force: true });
    rmSync(path.join(packs, 'sneaky'), { force: true });
    await server.close();
  }
});
