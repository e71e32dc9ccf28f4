// The shared runs database: PostgreSQL through `pg`, so several replicas keep one monitor. Counts are
// increments (INSERT ... ON CONFLICT DO UPDATE SET n = runs.n + excluded.n), so what two replicas acknowledge
// adds up whatever the interleaving. A commit returns after PostgreSQL has made it durable (its own
// synchronous_commit), so an acknowledged count survives a kill -9 of any replica.
import pg from 'pg';

import { MechRewardError } from '../errors.js';
import { redactUrl, type Row, type RunsDatabase, type SqlTx, type SqlValue } from './database.js';
import { POSTGRES_SCHEMA, TABLES } from './schema.js';

/** Any fixed key: replicas starting together create the tables one at a time. */
const SCHEMA_LOCK = 0x6d726577;
/** Rows per multi-row INSERT (PostgreSQL allows 65535 parameters per statement). */
const ROWS_PER_INSERT = 1000;

/** `?` placeholders → `$1, $2, …` (the monitor's SQL has no `?` inside literals). */
const numbered = new Map<string, string>();
function toPg(sql: string): string {
  let out = numbered.get(sql);
  if (out === undefined) {
    let n = 0;
    out = sql.replace(/\?/g, () => `$${++n}`);
    numbered.set(sql, out);
  }
  return out;
}

class PgTx implements SqlTx {
  constructor(private readonly client: pg.PoolClient | pg.Pool) {}

  async run(sql: string, params: readonly SqlValue[] = []): Promise<void> {
    await this.client.query(toPg(sql), params as SqlValue[]);
  }

  async all(sql: string, params: readonly SqlValue[] = []): Promise<Row[]> {
    return (await this.client.query(toPg(sql), params as SqlValue[])).rows as Row[];
  }

  async insertMany(table: string, columns: readonly string[], rows: readonly (readonly SqlValue[])[]): Promise<void> {
    for (let start = 0; start < rows.length; start += ROWS_PER_INSERT) {
      const part = rows.slice(start, start + ROWS_PER_INSERT);
      let n = 0;
      const values = part.map(() => `(${columns.map(() => `$${++n}`).join(', ')})`).join(', ');
      await this.client.query(`INSERT INTO ${table} (${columns.join(', ')}) VALUES ${values}`, part.flat() as SqlValue[]);
    }
  }
}

export async function openPostgresRuns(url: string): Promise<RunsDatabase> {
  const location = redactUrl(url);
  // A few connections: writes are grouped into one transaction at a time; reads (the page, /metrics) use the rest.
  const pool = new pg.Pool({ connectionString: url, max: 4, connectionTimeoutMillis: 10_000 });
  // An idle connection that the server drops must not crash the process; the next query reconnects.
  pool.on('error', () => undefined);
  try {
    const client = await pool.connect();
    try {
      await client.query('SELECT pg_advisory_lock($1)', [SCHEMA_LOCK]);
      await client.query(POSTGRES_SCHEMA);
      await client.query('SELECT pg_advisory_unlock($1)', [SCHEMA_LOCK]);
    } finally {
      client.release();
    }
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw new MechRewardError('MR_ERR_CONFIG_INVALID', `runs database ${location} cannot be opened: ${err instanceof Error ? err.message : String(err)}`, err);
  }
  return new PostgresRuns(pool, location);
}

class PostgresRuns implements RunsDatabase {
  readonly kind = 'postgres';
  private readonly reads: PgTx;

  constructor(
    private readonly pool: pg.Pool,
    readonly location: string,
  ) {
    this.reads = new PgTx(pool);
  }

  all(sql: string, params: readonly SqlValue[] = []): Promise<Row[]> {
    return this.reads.all(sql, params);
  }

  /** Retried on a deadlock or serialization failure (two replicas writing the same runs), which rolled back. */
  async transaction(work: (tx: SqlTx) => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.once(work);
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (attempt >= 5 || (code !== '40P01' && code !== '40001')) throw err;
      }
    }
  }

  private async once(work: (tx: SqlTx) => Promise<void>): Promise<void> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await work(new PgTx(client));
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  async sizeBytes(): Promise<number> {
    const rows = await this.reads.all(`SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) AS bytes FROM pg_class c
      WHERE c.relkind = 'r' AND c.relname = ANY(?) AND pg_table_is_visible(c.oid)`, [[...TABLES] as unknown as SqlValue]);
    return Number(rows[0]?.bytes ?? 0);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
