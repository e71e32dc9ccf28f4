// The runs store, the same suite on both backends: SQLite (a file) and PostgreSQL (a real server that
// scripts/pg-test-server.sh starts for this file). Real servers on loopback ports, real gRPC and HTTP
// clients; the stored rows are read back from the database itself.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import * as grpc from '@grpc/grpc-js';
import Database from 'better-sqlite3';

import type { RewardServiceClient } from '../../src/generated/mechreward/v1/RewardService.js';
import type { RunningServer } from '../../src/server.js';
import { writeBigPack } from '../helpers/bigpack.js';
import { spawnServe } from '../helpers/child-server.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { grpcClient, httpUrl, score, startTestServer } from '../helpers/server.js';

const D = 64;
let root: string;
let pg: TestPostgres;

before(async () => {
  root = mkdtempSync(path.join(os.tmpdir(), 'mechreward-store-'));
  writeBigPack(path.join(root, 'packs'), 'p', D, 256, 8);
  pg = await startPostgres();
});

after(async () => {
  await pg?.stop();
  rmSync(root, { recursive: true, force: true });
});

function sequences(n: number, seed = 1, text = '') {
  let s = seed;
  return Array.from({ length: n }, () => {
    const x = new Float32Array(4 * D).map(() => ((s = (s * 16807) % 2147483647) / 2147483647) - 0.5);
    return { activations: Buffer.from(x.buffer), dtype: 'DTYPE_F32' as const, num_tokens: 4, score_from: 1, text };
  });
}

/** A text the canary text rule flags (a reasoning word repeated 16 times, no expected answer). */
const FLAGGED_TEXT = Array.from({ length: 16 }, () => 'wait').join(' ');

interface Backend {
  readonly name: 'sqlite' | 'postgres';
  /** A fresh, empty runs database. */
  fresh(): Promise<string>;
  /** Stored run counts, read from the database directly. */
  stored(db: string): Promise<Map<string, { sequences: number; flagged: number }>>;
}

let files = 0;
const BACKENDS: Backend[] = [
  {
    name: 'sqlite',
    fresh: async () => path.join(root, `runs-${++files}.sqlite`),
    async stored(db) {
      const conn = new Database(db, { readonly: true });
      try {
        const rows = conn.prepare('SELECT run_id, sequences, flagged FROM runs').all() as Array<{ run_id: string; sequences: number; flagged: number }>;
        return new Map(rows.map((r) => [r.run_id, { sequences: r.sequences, flagged: r.flagged }]));
      } finally {
        conn.close();
      }
    },
  },
  {
    name: 'postgres',
    fresh: () => pg.newDatabase(),
    async stored(db) {
      const rows = await pg.query(db, 'SELECT run_id, sequences, flagged FROM runs');
      return new Map(rows.map((r) => [String(r.run_id), { sequences: Number(r.sequences), flagged: Number(r.flagged) }]));
    },
  },
];

function getRun(client: RewardServiceClient, runId: string): Promise<{ code: grpc.status; details?: string; sequences?: number }> {
  return new Promise((resolve) =>
    client.GetRun({ run_id: runId }, (err, r) => resolve(err ? { code: err.code, details: err.details } : { code: grpc.status.OK, sequences: Number(r!.summary!.sequences) })),
  );
}

async function metric(server: RunningServer, name: string): Promise<number> {
  const text = await (await fetch(httpUrl(server, '/metrics'))).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  assert.ok(m, `${name} not in /metrics`);
  return Number(m[1]);
}

for (const backend of BACKENDS) {
  describe(`runs store on ${backend.name}`, () => {
    test('counts from gRPC and HTTP are stored, served and kept across a restart', async () => {
      const db = await backend.fresh();
      let server = await startTestServer(path.join(root, 'packs'), { runsDb: db });
      let client = grpcClient(server.grpcPort);
      try {
        assert.ok((await score(client, { pack: 'p', run_id: 'run-a', sequences: sequences(5) })).ok);
        assert.ok((await score(client, { pack: 'p', run_id: 'run-a', sequences: sequences(3, 2, FLAGGED_TEXT) })).ok);
        const body = { pack: 'p', run_id: 'run-b', sequences: sequences(2).map((s) => ({ ...s, activations: s.activations.toString('base64') })) };
        const res = await fetch(httpUrl(server, '/v1/score'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
        assert.equal(res.status, 200, await res.clone().text());
        const run = (await (await fetch(httpUrl(server, '/v1/runs/run-a'))).json()) as { sequences: number; flagged: number; history: unknown[]; flags_by_name: Record<string, number> };
        assert.deepEqual([run.sequences, run.flagged, run.history.length, run.flags_by_name.text_repetition], [8, 3, 2, 3]);
        assert.deepEqual(Object.fromEntries(await backend.stored(db)), { 'run-a': { sequences: 8, flagged: 3 }, 'run-b': { sequences: 2, flagged: 0 } });
        assert.ok((await metric(server, 'mechreward_runs_store_bytes')) > 0);
        assert.equal(await metric(server, 'mechreward_runs'), 2);
      } finally {
        client.close();
        await server.close();
      }
      server = await startTestServer(path.join(root, 'packs'), { runsDb: db });
      client = grpcClient(server.grpcPort);
      try {
        assert.equal((await getRun(client, 'run-a')).sequences, 8);
        assert.ok((await score(client, { pack: 'p', run_id: 'run-a', sequences: sequences(1) })).ok);
        assert.equal((await backend.stored(db)).get('run-a')!.sequences, 9);
      } finally {
        client.close();
        await server.close();
      }
    });

    test('one run_id rule: invalid ids are INVALID_ARGUMENT / 400 naming run_id and write nothing; a 128-character id is reachable everywhere', async () => {
      const db = await backend.fresh();
      const server = await startTestServer(path.join(root, 'packs'), { runsDb: db });
      const client = grpcClient(server.grpcPort);
      try {
        for (const bad of ['x'.repeat(129), 'y'.repeat(100_000), 'team/run', ' lead', '.hidden', 'a\0b', 'é']) {
          const g = await score(client, { pack: 'p', run_id: bad, sequences: sequences(50) });
          assert.equal(g.code, grpc.status.INVALID_ARGUMENT, JSON.stringify(bad.slice(0, 20)));
          assert.match(g.details!, /^MR_ERR_INVALID_ARGUMENT: run_id: /);
          const body = { pack: 'p', run_id: bad, sequences: sequences(2).map((s) => ({ ...s, activations: s.activations.toString('base64') })) };
          const h = await fetch(httpUrl(server, '/v1/score'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
          assert.equal(h.status, 400);
          assert.match(((await h.json()) as { error: string }).error, /^run_id: /);
        }
        assert.equal((await backend.stored(db)).size, 0, 'nothing written');
        const longest = `L${'a1._:-'.repeat(21)}x`;
        assert.equal(longest.length, 128);
        assert.ok((await score(client, { pack: 'p', run_id: longest, sequences: sequences(2) })).ok);
        const res = await fetch(httpUrl(server, `/v1/runs/${longest}`));
        assert.equal(res.status, 200);
        assert.equal(((await res.json()) as { sequences: number }).sequences, 2);
        assert.equal((await getRun(client, longest)).sequences, 2);
        const tooLong = await fetch(httpUrl(server, `/v1/runs/${'z'.repeat(129)}`));
        assert.equal(tooLong.status, 400);
        assert.match(((await tooLong.json()) as { error: string }).error, /^run_id: /);
        assert.equal((await getRun(client, 'z'.repeat(129))).code, grpc.status.INVALID_ARGUMENT);
      } finally {
        client.close();
        await server.close();
      }
    });

    test('a flood of distinct run_ids stays within --max-runs: the runs idle longest are evicted and counted', async () => {
      const db = await backend.fresh();
      const server = await startTestServer(path.join(root, 'packs'), { runsDb: db, maxRuns: 20 });
      const client = grpcClient(server.grpcPort);
      try {
        for (let i = 0; i < 60; i++) {
          const out = await score(client, { pack: 'p', run_id: `flood-${i}`, sequences: sequences(2, i + 1) });
          assert.ok(out.ok, out.details);
          assert.ok((await backend.stored(db)).size <= 20);
        }
        const kept = [...(await backend.stored(db)).keys()].sort();
        assert.deepEqual(kept, Array.from({ length: 20 }, (_, i) => `flood-${40 + i}`).sort(), 'the 20 most recently active runs are kept');
        assert.equal(await metric(server, 'mechreward_runs_evicted_total'), 40);
        assert.equal(await metric(server, 'mechreward_runs'), 20);
        assert.equal((await fetch(httpUrl(server, '/v1/runs/flood-0'))).status, 404);
      } finally {
        client.close();
        await server.close();
      }
    });

    test('kill -9 during run-tagged traffic loses no acknowledged count', async () => {
      const db = await backend.fresh();
      const child = await spawnServe(['--packs', path.join(root, 'packs'), '--grpc-port', '0', '--http-port', '0', '--allow-unvalidated', '--runs-db', db]);
      const client = grpcClient(child.grpcPort);
      const acked = new Map<string, number>();
      const sent = new Map<string, number>();
      let oks = 0;
      let killed = false;
      const loop = async (worker: number): Promise<void> => {
        for (let i = 0; !killed; i++) {
          const runId = `kill-${(worker + i) % 3}`;
          const n = 1 + ((worker + i) % 4);
          sent.set(runId, (sent.get(runId) ?? 0) + n);
          const out = await score(client, { pack: 'p', run_id: runId, sequences: sequences(n, worker * 1000 + i + 1) }, 10_000);
          if (!out.ok) return; // the server is gone
          acked.set(runId, (acked.get(runId) ?? 0) + n);
          if (++oks === 60 && !killed) {
            killed = true;
            child.child.kill('SIGKILL'); // other requests are in flight right now
          }
        }
      };
      try {
        await Promise.all([0, 1, 2, 3].map(loop));
        await child.exited;
      } finally {
        client.close();
        if (!killed) child.child.kill('SIGKILL');
      }
      const stored = await backend.stored(db);
      for (const [runId, n] of acked) {
        const s = stored.get(runId)?.sequences ?? 0;
        assert.ok(s >= n, `${runId}: stored ${s} < acknowledged ${n}`);
        assert.ok(s <= sent.get(runId)!, `${runId}: stored ${s} > sent ${sent.get(runId)}`);
      }
      assert.ok(oks >= 60);
    });
  });
}

test('two servers on one PostgreSQL: the stored counts are the sum of what each acknowledged', async () => {
  const db = await pg.newDatabase();
  const servers = await Promise.all([0, 1].map(() => startTestServer(path.join(root, 'packs'), { runsDb: db })));
  const clients = servers.map((s) => grpcClient(s.grpcPort));
  const acked = new Map<string, number>();
  try {
    await Promise.all(
      [0, 1, 2, 3, 4, 5].map(async (w) => {
        const client = clients[w % 2]!;
        for (let i = 0; i < 15; i++) {
          const runId = `shared-${i % 3}`;
          const n = 1 + ((w + i) % 3);
          const out = await score(client, { pack: 'p', run_id: runId, sequences: sequences(n, w * 100 + i + 1) });
          assert.ok(out.ok, out.details);
          acked.set(runId, (acked.get(runId) ?? 0) + n);
        }
      }),
    );
  } finally {
    clients.forEach((c) => c.close());
    await Promise.all(servers.map((s) => s.close()));
  }
  const rows = await pg.query(db, 'SELECT run_id, sequences FROM runs ORDER BY run_id');
  assert.deepEqual(Object.fromEntries(rows.map((r) => [String(r.run_id), Number(r.sequences)])), Object.fromEntries([...acked].sort()));
});

describe('SQLite runs file: damage, stale temp files, files of earlier versions', () => {
  const packs = () => path.join(root, 'packs');

  for (const [what, write] of [
    ['truncated to 0 bytes', (f: string) => writeFileSync(f, '')],
    ['not SQLite at all', (f: string) => writeFileSync(f, 'this is not a database, it is a text file\n'.repeat(100))],
    ['truncated mid-file', (f: string) => {
      const conn = new Database(f);
      conn.exec('CREATE TABLE t (x TEXT)');
      const ins = conn.prepare('INSERT INTO t VALUES (?)');
      conn.transaction(() => {
        for (let i = 0; i < 2000; i++) ins.run('x'.repeat(200));
      })();
      conn.close();
      truncateSync(f, Math.floor(statSync(f).size / 2));
    }],
  ] as const) {
    test(`a runs file ${what} stops start-up naming the file and --runs-db-move-aside; with the flag it is moved aside`, async () => {
      const dir = mkdtempSync(path.join(root, 'damaged-'));
      const file = path.join(dir, 'runs.sqlite');
      write(file);
      const before = statSync(file).size;
      await assert.rejects(startTestServer(packs(), { runsDb: file }), (err: Error) => {
        assert.match(err.message, new RegExp(`runs database ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} cannot be opened`));
        assert.match(err.message, /--runs-db-move-aside/);
        return true;
      });
      assert.equal(statSync(file).size, before, 'the file is left as it was');
      const server = await startTestServer(packs(), { runsDb: file, runsDbMoveAside: true });
      try {
        assert.ok(readdirSync(dir).some((n) => n.startsWith('runs.sqlite.corrupt-')), readdirSync(dir).join(', '));
        const client = grpcClient(server.grpcPort);
        assert.ok((await score(client, { pack: 'p', run_id: 'after', sequences: sequences(1) })).ok);
        client.close();
      } finally {
        await server.close();
      }
    });
  }

  test('stale temp files of killed writers are removed at start', async () => {
    const dir = mkdtempSync(path.join(root, 'temps-'));
    const file = path.join(dir, 'runs.sqlite');
    writeFileSync(`${file}.tmp-4242`, 'partial');
    writeFileSync(path.join(dir, 'other.tmp-1'), 'not ours');
    const server = await startTestServer(packs(), { runsDb: file });
    await server.close();
    assert.equal(existsSync(`${file}.tmp-4242`), false);
    assert.equal(existsSync(path.join(dir, 'other.tmp-1')), true);
  });

  test('a runs file written by the earlier in-memory store (sql.js, rollback journal) opens as it is', async () => {
    const dir = mkdtempSync(path.join(root, 'old-'));
    const file = path.join(dir, 'runs.sqlite');
    const initSqlJs = (await import('sql.js')).default;
    const wasmDir = path.dirname(require_.resolve('sql.js/dist/sql-wasm.wasm'));
    const SQL = await initSqlJs({ locateFile: (name: string) => path.join(wasmDir, name) });
    const old = new SQL.Database();
    old.exec(OLD_SCHEMA);
    old.run('INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?)', ['legacy', 'p', 40, 4, 1000, 2000]);
    old.run('INSERT INTO run_flags VALUES (?, ?, ?)', ['legacy', 'text_repetition', 4]);
    old.run('INSERT INTO history (run_id, t_ms, sequences, flagged, reward_mean, reward_p10, reward_p50, reward_p90) VALUES (?, ?, ?, ?, ?, ?, ?, ?)', ['legacy', 2000, 40, 4, 0.1, 0, 0.1, 0.2]);
    writeFileSync(file, old.export());
    old.close();
    const server = await startTestServer(packs(), { runsDb: file });
    const client = grpcClient(server.grpcPort);
    try {
      const run = (await (await fetch(httpUrl(server, '/v1/runs/legacy'))).json()) as { sequences: number; flagged: number; flags_by_name: Record<string, number>; history: unknown[] };
      assert.deepEqual([run.sequences, run.flagged, run.flags_by_name.text_repetition, run.history.length], [40, 4, 4, 1]);
      assert.ok((await score(client, { pack: 'p', run_id: 'legacy', sequences: sequences(2) })).ok);
    } finally {
      client.close();
      await server.close();
    }
    const conn = new Database(file, { readonly: true });
    assert.equal((conn.prepare("SELECT sequences FROM runs WHERE run_id = 'legacy'").get() as { sequences: number }).sequences, 42);
    conn.close();
  });
});

const require_ = createRequire(import.meta.url);

/** The schema the sql.js store of earlier versions wrote. */
const OLD_SCHEMA = `
CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, pack TEXT NOT NULL, sequences INTEGER NOT NULL,
  flagged INTEGER NOT NULL, first_seen_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS run_flags (run_id TEXT NOT NULL, name TEXT NOT NULL, count INTEGER NOT NULL,
  PRIMARY KEY (run_id, name));
CREATE TABLE IF NOT EXISTS history (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, t_ms INTEGER NOT NULL,
  sequences INTEGER NOT NULL, flagged INTEGER NOT NULL, reward_mean REAL, reward_p10 REAL, reward_p50 REAL, reward_p90 REAL);
CREATE INDEX IF NOT EXISTS history_run ON history (run_id, id);
CREATE TABLE IF NOT EXISTS flagged (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, t_ms INTEGER NOT NULL,
  reward REAL NOT NULL, flags TEXT NOT NULL, tokens TEXT NOT NULL, token_rewards TEXT NOT NULL, text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS flagged_run ON flagged (run_id, id);
CREATE TABLE IF NOT EXISTS rewards (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, pack TEXT NOT NULL, reward REAL NOT NULL);
CREATE INDEX IF NOT EXISTS rewards_run ON rewards (run_id, pack, id);
CREATE TABLE IF NOT EXISTS run_verifier (run_id TEXT PRIMARY KEY, sequences INTEGER NOT NULL, rate_sum REAL NOT NULL,
  tokens INTEGER NOT NULL, disagreeing INTEGER NOT NULL, downweighted INTEGER NOT NULL);
`;
