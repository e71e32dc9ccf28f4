// A real PostgreSQL server for tests: scripts/pg-test-server.sh starts a private one (own data directory and
// unix socket under a temp dir; a few seconds) and `stop` removes it. When MECHREWARD_PG_URL is set (a
// server someone already started, e.g. `eval "$(bash scripts/pg-test-server.sh start)"`), that one is used
// and left running. Each test asks for a fresh database, so tests never see each other's rows.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import pg from 'pg';

const run = promisify(execFile);
// Not fixtures.js's REPO_ROOT: that module insists on the parity fixtures, which store tests do not need.
const SCRIPT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../scripts/pg-test-server.sh');

export interface TestPostgres {
  /** URL of the server's `postgres` database (superuser). */
  readonly url: string;
  /** Creates an empty database and returns its URL. */
  newDatabase(): Promise<string>;
  /** Runs one query against a database URL (assertions read the stored rows directly). */
  query(url: string, sql: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
  /** Stops and removes the server if this helper started it. */
  stop(): Promise<void>;
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

async function query(url: string, sql: string, params: unknown[] = []): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as Record<string, unknown>[];
  } finally {
    await client.end();
  }
}

export async function startPostgres(): Promise<TestPostgres> {
  let url = process.env.MECHREWARD_PG_URL ?? '';
  let dir = '';
  if (!url) {
    const { stdout } = await run('bash', [SCRIPT, 'start'], { timeout: 120_000 });
    const vars = Object.fromEntries(stdout.trim().split('\n').map((line) => {
      const at = line.indexOf('=');
      return [line.slice(0, at), line.slice(at + 1).replace(/^'|'$/g, '')];
    }));
    url = vars.MECHREWARD_PG_URL!;
    dir = vars.MECHREWARD_PG_DIR!;
  }
  return {
    url,
    async newDatabase() {
      const name = `mr_test_${randomBytes(6).toString('hex')}`;
      await query(url, `CREATE DATABASE ${name}`);
      return withDatabase(url, name);
    },
    query,
    async stop() {
      if (dir) await run('bash', [SCRIPT, 'stop', dir], { timeout: 60_000 });
    },
  };
}
