// Persistence of the run monitor: an SQLite database (sql.js: SQLite compiled to WebAssembly). Chosen over
// better-sqlite3 because it needs no native build or install script, which offline machines and npm's
// install-script policy make fragile; the cost is that the database lives in memory and is written out as a
// whole. It is small (counters, capped history), and is written atomically (temp file + rename) after every
// observed request, before the reply, so a crash or SIGKILL loses no count that a client saw.
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

import initSqlJs, { type Database, type SqlValue } from 'sql.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, pack TEXT NOT NULL, sequences INTEGER NOT NULL,
  flagged INTEGER NOT NULL, first_seen_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS run_flags (run_id TEXT NOT NULL, name TEXT NOT NULL, count INTEGER NOT NULL,
  PRIMARY KEY (run_id, name));
CREATE TABLE IF NOT EXISTS history (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, t_ms INTEGER NOT NULL,
  sequences INTEGER NOT NULL, flagged INTEGER NOT NULL, reward_mean REAL, reward_p10 REAL, reward_p50 REAL, reward_p90 REAL, step INTEGER);
CREATE INDEX IF NOT EXISTS history_run ON history (run_id, id);
CREATE TABLE IF NOT EXISTS flagged (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, t_ms INTEGER NOT NULL,
  reward REAL NOT NULL, flags TEXT NOT NULL, tokens TEXT NOT NULL, token_rewards TEXT NOT NULL, text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS flagged_run ON flagged (run_id, id);
CREATE TABLE IF NOT EXISTS rewards (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, pack TEXT NOT NULL, reward REAL NOT NULL);
CREATE INDEX IF NOT EXISTS rewards_run ON rewards (run_id, pack, id);
CREATE TABLE IF NOT EXISTS run_verifier (run_id TEXT PRIMARY KEY, sequences INTEGER NOT NULL, rate_sum REAL NOT NULL,
  tokens INTEGER NOT NULL, disagreeing INTEGER NOT NULL, downweighted INTEGER NOT NULL);
`;

export class RunStore {
  private constructor(
    readonly db: Database,
    /** Where the database is written; undefined keeps it in memory only. */
    private readonly file: string | undefined,
  ) {}

  static async open(file: string | undefined): Promise<RunStore> {
    const wasmDir = path.dirname(createRequire(import.meta.url).resolve('sql.js/dist/sql-wasm.wasm'));
    const SQL = await initSqlJs({ locateFile: (name: string) => path.join(wasmDir, name) });
    const db = file && existsSync(file) ? new SQL.Database(readFileSync(file)) : new SQL.Database();
    db.exec(SCHEMA);
    // Databases written before history had a step column (ScoreRequest.step): add it, NULL for old points.
    const historyColumns = db.exec('PRAGMA table_info(history)')[0]?.values.map((row) => row[1]) ?? [];
    if (!historyColumns.includes('step')) db.exec('ALTER TABLE history ADD COLUMN step INTEGER');
    return new RunStore(db, file);
  }

  rows(sql: string, params: SqlValue[] = []): Record<string, SqlValue>[] {
    const stmt = this.db.prepare(sql);
    try {
      stmt.bind(params);
      const out: Record<string, SqlValue>[] = [];
      while (stmt.step()) out.push(stmt.getAsObject());
      return out;
    } finally {
      stmt.free();
    }
  }

  run(sql: string, params: SqlValue[] = []): void {
    this.db.run(sql, params);
  }

  /** Runs `work` in a transaction and writes the database out atomically. */
  transaction(work: () => void): void {
    this.db.exec('BEGIN');
    try {
      work();
      this.db.exec('COMMIT');
    } catch (err) {
      this.db.exec('ROLLBACK');
      throw err;
    }
    this.flush();
  }

  flush(): void {
    if (!this.file) return;
    const tmp = `${this.file}.tmp-${process.pid}`;
    writeFileSync(tmp, this.db.export());
    renameSync(tmp, this.file);
  }

  close(): void {
    this.flush();
    this.db.close();
  }
}
