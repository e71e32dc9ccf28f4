// The run monitor's tables. The SQLite text is the one earlier versions wrote plus the idle-order index and
// history.step: their files open as they are (CREATE ... IF NOT EXISTS adds the index, and the stores add the
// step column to an older history table). PostgreSQL gets the same tables in its types.
export const SQLITE_SCHEMA = `
CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, pack TEXT NOT NULL, sequences INTEGER NOT NULL,
  flagged INTEGER NOT NULL, first_seen_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS runs_idle ON runs (last_seen_ms);
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

export const POSTGRES_SCHEMA = `
CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, pack TEXT NOT NULL, sequences BIGINT NOT NULL,
  flagged BIGINT NOT NULL, first_seen_ms BIGINT NOT NULL, last_seen_ms BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_idle ON runs (last_seen_ms);
CREATE TABLE IF NOT EXISTS run_flags (run_id TEXT NOT NULL, name TEXT NOT NULL, count BIGINT NOT NULL,
  PRIMARY KEY (run_id, name));
CREATE TABLE IF NOT EXISTS history (id BIGSERIAL PRIMARY KEY, run_id TEXT NOT NULL, t_ms BIGINT NOT NULL,
  sequences BIGINT NOT NULL, flagged BIGINT NOT NULL, reward_mean DOUBLE PRECISION, reward_p10 DOUBLE PRECISION,
  reward_p50 DOUBLE PRECISION, reward_p90 DOUBLE PRECISION, step BIGINT);
CREATE INDEX IF NOT EXISTS history_run ON history (run_id, id);
CREATE TABLE IF NOT EXISTS flagged (id BIGSERIAL PRIMARY KEY, run_id TEXT NOT NULL, t_ms BIGINT NOT NULL,
  reward DOUBLE PRECISION NOT NULL, flags TEXT NOT NULL, tokens TEXT NOT NULL, token_rewards TEXT NOT NULL, text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS flagged_run ON flagged (run_id, id);
CREATE TABLE IF NOT EXISTS rewards (id BIGSERIAL PRIMARY KEY, run_id TEXT NOT NULL, pack TEXT NOT NULL, reward DOUBLE PRECISION NOT NULL);
CREATE INDEX IF NOT EXISTS rewards_run ON rewards (run_id, pack, id);
CREATE TABLE IF NOT EXISTS run_verifier (run_id TEXT PRIMARY KEY, sequences BIGINT NOT NULL, rate_sum DOUBLE PRECISION NOT NULL,
  tokens BIGINT NOT NULL, disagreeing BIGINT NOT NULL, downweighted BIGINT NOT NULL);
`;

/** Every table, for size accounting and eviction. */
export const TABLES = ['runs', 'run_flags', 'history', 'flagged', 'rewards', 'run_verifier'] as const;
