// The embedded runs database: SQLite through better-sqlite3 (a maintained native binding; 12.x for Node 20),
// in WAL mode with prepared statements and incremental writes. synchronous=NORMAL: a commit is written to the
// WAL with write(2) before it returns, so a kill -9 of this process loses no committed transaction (the kernel
// holds the pages); a power cut may lose the last few, which a monitor of counts can afford.
//
// Opening is strict: a file that exists must be a readable SQLite database (header and quick_check), else
// start-up stops with the file's name and the way out (--runs-db-move-aside), so a damaged file is never
// silently replaced by an empty one. Temp files `<file>.tmp-<pid>` that earlier versions left behind when
// killed mid-write are removed.
import { closeSync, existsSync, openSync, readdirSync, readSync, renameSync, statSync, unlinkSync } from 'node:fs';
import path from 'node:path';

import Database from 'better-sqlite3';

import { MechRewardError } from '../errors.js';
import type { Row, RunsDatabase, SqlTx, SqlValue } from './database.js';
import { SQLITE_SCHEMA } from './schema.js';

const HEADER = 'SQLite format 3\0';

export interface SqliteOpenOptions {
  /** Move an unreadable file aside (`<file>.corrupt-<time>`) and start an empty database instead of stopping. */
  readonly moveAside: boolean;
  readonly log?: (message: string, detail: Record<string, unknown>) => void;
}

/** Why `file` cannot be used as it is, or undefined when it opens and checks clean. */
function damage(file: string): string | undefined {
  const size = statSync(file).size;
  if (size === 0) return 'the file is empty (0 bytes): truncated';
  const head = Buffer.alloc(16);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, head, 0, 16, 0);
  } finally {
    closeSync(fd);
  }
  if (head.toString('latin1') !== HEADER) return 'not an SQLite database (bad header)';
  try {
    const db = new Database(file, { fileMustExist: true });
    try {
      const result = db.pragma('quick_check', { simple: true });
      if (result !== 'ok') return `SQLite quick_check: ${String(result)}`;
    } finally {
      db.close();
    }
  } catch (err) {
    return `SQLite: ${err instanceof Error ? err.message : String(err)}`;
  }
  return undefined;
}

function removeStaleTemps(file: string, log: SqliteOpenOptions['log']): void {
  const dir = path.dirname(file);
  const prefix = `${path.basename(file)}.tmp-`;
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.startsWith(prefix) && /^\d+$/.test(n.slice(prefix.length)));
  } catch {
    return; // the directory does not exist yet: nothing to clean
  }
  for (const name of names) unlinkSync(path.join(dir, name));
  if (names.length > 0) log?.('removed stale temp files of the runs database', { files: names });
}

export function openSqliteRuns(file: string | undefined, options: SqliteOpenOptions): RunsDatabase {
  if (file) {
    removeStaleTemps(file, options.log);
    if (existsSync(file)) {
      const problem = damage(file);
      if (problem) {
        const aside = `${file}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
        if (!options.moveAside) {
          throw new MechRewardError(
            'MR_ERR_CONFIG_INVALID',
            `runs database ${file} cannot be opened: ${problem}. Nothing was changed. Start with --runs-db-move-aside to move it to ${path.basename(file)}.corrupt-<time> and begin an empty one, or point --runs-db at another file`,
          );
        }
        for (const suffix of ['', '-wal', '-shm']) if (existsSync(file + suffix)) renameSync(file + suffix, aside + suffix);
        options.log?.('moved an unreadable runs database aside (--runs-db-move-aside); starting an empty one', { file, movedTo: aside, problem });
      }
    }
  }
  let db: Database.Database;
  try {
    db = new Database(file ?? ':memory:');
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.exec(SQLITE_SCHEMA);
  } catch (err) {
    throw new MechRewardError('MR_ERR_CONFIG_INVALID', `runs database ${file ?? ':memory:'} cannot be opened: ${err instanceof Error ? err.message : String(err)}`, err);
  }
  return new SqliteRuns(db, file);
}

class SqliteRuns implements RunsDatabase, SqlTx {
  readonly kind = 'sqlite';
  readonly location: string;
  private readonly statements = new Map<string, Database.Statement>();

  constructor(
    private readonly db: Database.Database,
    private readonly file: string | undefined,
  ) {
    this.location = file ?? ':memory:';
  }

  private prepare(sql: string): Database.Statement {
    let stmt = this.statements.get(sql);
    if (!stmt) {
      stmt = this.db.prepare(sql);
      this.statements.set(sql, stmt);
    }
    return stmt;
  }

  async all(sql: string, params: readonly SqlValue[] = []): Promise<Row[]> {
    return this.prepare(sql).all(...params) as Row[];
  }

  async run(sql: string, params: readonly SqlValue[] = []): Promise<void> {
    this.prepare(sql).run(...params);
  }

  async insertMany(table: string, columns: readonly string[], rows: readonly (readonly SqlValue[])[]): Promise<void> {
    if (rows.length === 0) return;
    const stmt = this.prepare(`INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`);
    for (const row of rows) stmt.run(...row);
  }

  /**
   * The work's statements run synchronously under the hood (better-sqlite3), so nothing else touches the
   * connection between BEGIN and COMMIT: awaiting an already-settled promise yields only to microtasks.
   */
  async transaction(work: (tx: SqlTx) => Promise<void>): Promise<void> {
    this.db.exec('BEGIN IMMEDIATE');
    try {
      await work(this);
      this.db.exec('COMMIT');
    } catch (err) {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
      throw err;
    }
  }

  async sizeBytes(): Promise<number> {
    const pages = Number(this.db.pragma('page_count', { simple: true }));
    const pageSize = Number(this.db.pragma('page_size', { simple: true }));
    const wal = this.file && existsSync(`${this.file}-wal`) ? statSync(`${this.file}-wal`).size : 0;
    return pages * pageSize + wal;
  }

  async close(): Promise<void> {
    this.statements.clear();
    this.db.close();
  }
}
