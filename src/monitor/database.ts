// What the run monitor needs from a database, so one monitor runs on SQLite (embedded, the default) or
// PostgreSQL (shared by replicas). Statements use `?` placeholders and SQL both dialects accept; the
// PostgreSQL backend numbers the placeholders. Integers may come back as strings (PostgreSQL BIGINT): callers
// read every value through Number().
export type SqlValue = string | number | null;
export type Row = Record<string, unknown>;

/** Statements inside one transaction. */
export interface SqlTx {
  run(sql: string, params?: readonly SqlValue[]): Promise<void>;
  all(sql: string, params?: readonly SqlValue[]): Promise<Row[]>;
  /** Inserts rows into `table` (one prepared statement per row on SQLite, multi-row VALUES on PostgreSQL). */
  insertMany(table: string, columns: readonly string[], rows: readonly (readonly SqlValue[])[]): Promise<void>;
}

export interface RunsDatabase {
  readonly kind: 'sqlite' | 'postgres';
  /** Where the data lives, for logs and messages (a file, ':memory:', or a URL without its password). */
  readonly location: string;
  all(sql: string, params?: readonly SqlValue[]): Promise<Row[]>;
  /** Runs `work` in one transaction; resolves once it is committed (durable against a kill of this process). */
  transaction(work: (tx: SqlTx) => Promise<void>): Promise<void>;
  /** Bytes the monitor's tables take (file + WAL on SQLite, relation sizes on PostgreSQL). */
  sizeBytes(): Promise<number>;
  close(): Promise<void>;
}

/** `postgres://` and `postgresql://` URLs go to PostgreSQL; anything else is an SQLite file ('' = in memory). */
export function isPostgresUrl(spec: string): boolean {
  return /^postgres(ql)?:\/\//i.test(spec);
}

/** The URL with its password masked, for logs and error messages. */
export function redactUrl(spec: string): string {
  try {
    const url = new URL(spec);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return 'postgres://<unparsable URL>';
  }
}
