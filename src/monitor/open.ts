// --runs-db → a runs database: a postgres:// URL opens PostgreSQL, a path an SQLite file, '' SQLite in memory.
import type { RunsDatabase } from './database.js';
import { isPostgresUrl } from './database.js';
import { openPostgresRuns } from './postgres.js';
import { openSqliteRuns, type SqliteOpenOptions } from './sqlite.js';

export async function openRunsDatabase(spec: string, options: SqliteOpenOptions): Promise<RunsDatabase> {
  if (isPostgresUrl(spec)) return openPostgresRuns(spec);
  return openSqliteRuns(spec || undefined, options);
}
