// POST /v1/openrlhf/{pack}: OpenRLHF's remote reward protocol on the real server. A small HTTP server in this
// test stands in for the Python reader (the real reader process is exercised end to end, with OpenRLHF's own
// executor, in python-shims/tests/test_openrlhf.py). Checked here: empty lists, the shape of the answer, that
// its rewards equal POST /v1/score on the same activations, bad input naming the field, 501 without a reader,
// and every reader failure (refused, error status, malformed body, past the deadline) giving 200 with the
// fallback reward and extra_logs.mechreward_unscored = 1; and `?run_id=` naming the monitor run.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';

import { PARITY_PACKS } from '../helpers/fixtures.js';
import { httpUrl, startTestServer } from '../helpers/server.js';

const PACK = 'topk-saelens';
const D_MODEL = 64;

type Handler = (body: { texts: string[]; prompts: string[]; layer: number }, res: ServerResponse) => void;

async function standInReader(handler: Handler): Promise<{ url: string; requests: unknown[]; close: () => Promise<void> }> {
  const requests: unknown[] = [];
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString()) as { texts: string[]; prompts: string[]; layer: number };
      requests.push(body);
      handler(body, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

/** Deterministic activations: num_tokens rows of d_model floats. */
function activations(numTokens: number, seed: number): Float32Array {
  const out = new Float32Array(numTokens * D_MODEL);
  for (let i = 0; i < out.length; i++) out[i] = Math.sin(seed * 1000 + i * 0.37) * 2;
  return out;
}

const post = (url: string, body: unknown) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

test('OpenRLHF route: empty lists, real scores equal to /v1/score, bad input, no reader', async () => {
  const reader = await standInReader((body, res) => {
    const sequences = body.texts.map((t, i) => {
      const n = t.split(' ').length;
      return { activations: Buffer.from(activations(n, i + 1).buffer).toString('base64'), dtype: 'f32', num_tokens: n, score_from: body.prompts[i]!.split(' ').length, tokens: t.split(' ') };
    });
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ d_model: D_MODEL, sequences }));
  });
  const server = await startTestServer(PARITY_PACKS, { readerUrl: reader.url });
  const bare = await startTestServer(PARITY_PACKS);
  try {
    const url = httpUrl(server, `/v1/openrlhf/${PACK}`);
    const empty = await post(url, { query: [], prompts: [], labels: [] });
    assert.equal(empty.status, 200);
    assert.deepEqual(await empty.json(), { rewards: [], scores: [], extra_logs: {} });
    assert.equal(reader.requests.length, 0, 'an empty request never reaches the reader');

    const query = ['a b c d e f', 'p q r s'];
    const prompts = ['a b c', 'p'];
    const res = await post(url, { query, prompts, labels: ['1', '2'] });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { rewards: number[]; scores: number[]; extra_logs: Record<string, number[]> };
    assert.equal(reader.requests.length, 1);
    assert.equal((reader.requests[0] as { layer: number }).layer, 3, "the pack's layer is asked for");
    assert.deepEqual(body.extra_logs.mechreward_unscored, [0, 0]);
    assert.equal(body.extra_logs.mechreward_flagged!.length, 2);
    assert.deepEqual(body.scores, body.rewards);

    // The same activations through the plain scoring route give the same rewards.
    const direct = await post(httpUrl(server, '/v1/score'), {
      pack: PACK,
      sequences: query.map((q, i) => ({ activations: Buffer.from(activations(q.split(' ').length, i + 1).buffer).toString('base64'), dtype: 'f32', num_tokens: q.split(' ').length, score_from: prompts[i]!.split(' ').length })),
    });
    const expected = ((await direct.json()) as { results: { reward: number }[] }).results.map((r) => r.reward);
    assert.deepEqual(body.rewards, expected);
    assert.ok(body.rewards.every((r) => Number.isFinite(r) && r !== 0));

    for (const [bad, field] of [[{ query: 'x', prompts: [] }, 'query'], [{ query: ['a'], prompts: ['a', 'b'] }, 'prompts'], [{ query: ['a'], prompts: ['a'], labels: [1] }, 'labels'], [[1], 'body']] as const) {
      const r = await post(url, bad);
      assert.equal(r.status, 400, JSON.stringify(bad));
      assert.match(((await r.json()) as { error: string }).error, new RegExp(`^${field}:`));
    }
    const unknown = await post(httpUrl(server, '/v1/openrlhf/nope'), { query: ['a b'], prompts: ['a'], labels: [''] });
    assert.equal(unknown.status, 404);
    const noReader = await post(httpUrl(bare, `/v1/openrlhf/${PACK}`), { query: ['a b'], prompts: ['a'], labels: [''] });
    assert.equal(noReader.status, 501);
    assert.equal(((await noReader.json()) as { code: string }).code, 'MR_ERR_READER_NOT_CONFIGURED');
    const emptyWithoutReader = await post(httpUrl(bare, `/v1/openrlhf/${PACK}`), { query: [], prompts: [], labels: [] });
    assert.equal(emptyWithoutReader.status, 200, "OpenRLHF's extra servers get empty lists: always 200");
  } finally {
    await server.close();
    await bare.close();
    await reader.close();
  }
});

test('OpenRLHF route: every reader failure answers 200 with the fallback reward and mechreward_unscored = 1', async () => {
  const modes: Record<string, Handler> = {
    error: (_b, res) => res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"boom"}'),
    malformed: (_b, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"d_model": 64, "sequences": []}'),
    hang: () => {}, // never answers: the sidecar's deadline must end the wait
  };
  for (const [mode, handler] of Object.entries(modes)) {
    const reader = await standInReader(handler);
    const server = await startTestServer(PARITY_PACKS, { readerUrl: reader.url, readerTimeoutMs: 300 });
    try {
      const res = await post(httpUrl(server, `/v1/openrlhf/${PACK}`), { query: ['a b c', 'd e'], prompts: ['a', 'd'], labels: ['', ''] });
      assert.equal(res.status, 200, mode);
      assert.deepEqual(await res.json(), { rewards: [0, 0], scores: [0, 0], extra_logs: { mechreward_unscored: [1, 1], mechreward_flagged: [0, 0] } }, mode);
      const metrics = await (await fetch(httpUrl(server, '/metrics'))).text();
      assert.match(metrics, /mechreward_request_failures_total\{reason="reader"\} 1/, mode);
    } finally {
      await server.close();
      await reader.close();
    }
  }
  // Refused: nothing listens on the reader's port any more.
  const gone = await standInReader(() => {});
  await gone.close();
  const server = await startTestServer(PARITY_PACKS, { readerUrl: gone.url });
  try {
    const res = await post(httpUrl(server, `/v1/openrlhf/${PACK}`), { query: ['a b'], prompts: ['a'], labels: [''] });
    assert.equal(res.status, 200);
    assert.deepEqual(((await res.json()) as { extra_logs: Record<string, number[]> }).extra_logs.mechreward_unscored, [1]);
  } finally {
    await server.close();
  }
});

test('OpenRLHF route: ?run_id= puts every sample on the run, with its tokens and text; a bad run_id is refused before the reader', async () => {
  const reader = await standInReader((body, res) => {
    const sequences = body.texts.map((t, i) => {
      const words = t.split(' ');
      return { activations: Buffer.from(activations(words.length, i + 7).buffer).toString('base64'), dtype: 'f32', num_tokens: words.length, score_from: body.prompts[i]!.split(' ').length, tokens: words };
    });
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ d_model: D_MODEL, sequences }));
  });
  const server = await startTestServer(PARITY_PACKS, { readerUrl: reader.url });
  try {
    const run = 'openrlhf-run.1';
    // The canary text rule's hack (a reasoning word more than 15 times, no expected answer): a flagged rollout.
    const hack = `p q${' wait'.repeat(20)}`;
    const query = ['a b c d', hack];
    const res = await post(httpUrl(server, `/v1/openrlhf/${PACK}?run_id=${run}`), { query, prompts: ['a b', 'p q'], labels: ['4', '8'] });
    assert.equal(res.status, 200);
    const { rewards } = (await res.json()) as { rewards: number[] };
    const detail = (await (await fetch(httpUrl(server, `/v1/runs/${run}`))).json()) as {
      sequences: number; history: { reward_mean: number; step?: number }[];
      recent_flagged: { reward: number; tokens: string[]; text: string; flags: { name: string }[] }[];
    };
    assert.equal(detail.sequences, 2);
    assert.equal(detail.history.length, 1);
    assert.ok(Math.abs(detail.history[0]!.reward_mean - (rewards[0]! + rewards[1]!) / 2) < 1e-6);
    assert.equal(detail.history[0]!.step, undefined, 'OpenRLHF sends no step');
    const flagged = detail.recent_flagged.find((f) => f.flags.some((x) => x.name === 'text_repetition'));
    assert.ok(flagged, `the hack is flagged: ${JSON.stringify(detail.recent_flagged.map((f) => f.flags))}`);
    assert.deepEqual(flagged.tokens, hack.split(' '), "the reader's token strings");
    assert.equal(flagged.text, ' wait'.repeat(20), 'the query after its prompt');
    assert.equal(flagged.reward, rewards[1]);

    const before = reader.requests.length;
    for (const bad of ['-starts-badly', 'has/slash', 'a'.repeat(129)]) {
      const r = await post(httpUrl(server, `/v1/openrlhf/${PACK}?run_id=${encodeURIComponent(bad)}`), { query: ['a b'], prompts: ['a'], labels: [''] });
      assert.equal(r.status, 400, bad);
      assert.match(((await r.json()) as { error: string }).error, /^run_id:/);
    }
    const twice = await post(httpUrl(server, `/v1/openrlhf/${PACK}?run_id=a&run_id=b`), { query: ['a b'], prompts: ['a'], labels: [''] });
    assert.equal(twice.status, 400);
    assert.equal(reader.requests.length, before, 'a refused run_id never reaches the reader');
  } finally {
    await server.close();
    await reader.close();
  }
});
