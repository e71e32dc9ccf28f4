// The per-run canary monitor. Every Score request that names a run_id reaches it as a ScoredBatch: the
// reward-outlier rule runs against the run's recent rewards (robust z-score: median and MAD), then counts,
// flags, a history point and the flagged rollouts are written, grouped with other requests' writes into one
// transaction every few milliseconds (group-commit.ts); the scorer replies once that transaction committed.
// Summaries carry the run's flag rate with a Wilson 95 % interval, the pack's baseline rate with its interval,
// and an alarm when the run's lower bound exceeds the baseline's upper bound.
//
// Bounds: at most maxRuns runs are kept; past that the runs idle longest (oldest last_seen) are evicted with
// all their rows, in the same transaction that added the new ones. Per run, rewards (per pack), history and
// flagged rollouts are capped (REWARD_WINDOW, HISTORY_CAP, FLAGGED_CAP).
import type { CanaryFlag, ScoredBatch, ScoredBatchSink, SequenceScore } from '../core/scorer.js';
import { checkRunId } from '../core/run-id.js';
import { MechRewardError } from '../errors.js';
import type { Pack } from '../packs/registry.js';
import type { Row, RunsDatabase, SqlTx } from './database.js';
import { GroupCommit } from './group-commit.js';
import { TABLES } from './schema.js';
import { wilson } from './wilson.js';

/** Rewards kept per run for the outlier rule, history points and flagged rollouts kept per run. */
export const REWARD_WINDOW = 1000;
export const HISTORY_CAP = 2000;
export const FLAGGED_CAP = 50;

export interface RunSummary {
  run_id: string;
  pack: string;
  sequences: number;
  flagged: number;
  flag_rate: number;
  ci: [number, number];
  baseline: { rate: number; ci: [number, number]; flagged: number; n: number } | null;
  alarm: boolean;
  flags_by_name: Record<string, number>;
  first_seen_ms: number;
  last_seen_ms: number;
  /** Dual-verifier disagreement over the run (null when its pack has no verifier). */
  verifier: VerifierStats | null;
}

export interface VerifierStats {
  sequences: number;
  /** Mean of the responses' disagreement rates. */
  mean_disagreement: number;
  /** Rewarded (r_t != 0) response tokens checked, and those the probe contradicted. */
  tokens: number;
  disagreeing_tokens: number;
  /** disagreeing_tokens / tokens. */
  token_disagreement: number;
  /** Responses whose rewards batch_downweight scaled. */
  downweighted_sequences: number;
}

export interface RunPoint {
  t_ms: number;
  sequences: number;
  flagged: number;
  reward_mean: number;
  reward_p10: number;
  reward_p50: number;
  reward_p90: number;
}

export interface FlaggedRollout {
  t_ms: number;
  reward: number;
  flags: CanaryFlag[];
  tokens: string[];
  token_rewards: number[];
  text: string;
}

export interface RunDetail extends RunSummary {
  history: RunPoint[];
  recent_flagged: FlaggedRollout[];
}

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export interface RunMonitorOptions {
  /** Runs kept; past it the runs idle longest are evicted. */
  readonly maxRuns: number;
  /** How long a write waits to be grouped with others (ms). */
  readonly flushMs: number;
  /** Called with the number of runs each eviction removed (a metric). */
  readonly onEvicted?: (runs: number) => void;
  readonly now?: () => number;
}

/** What one request leaves in the store. */
interface Observation {
  readonly batch: ScoredBatch;
  readonly t: number;
}

export class RunMonitor implements ScoredBatchSink {
  private readonly writes: GroupCommit<Observation>;
  /**
   * Recent rewards per run and pack for the outlier rule, loaded from the database on first sight and then
   * kept here (bounded LRU). With several replicas on one PostgreSQL each judges a reward against the rewards
   * it loaded plus those it scored since.
   */
  private readonly windows = new Map<string, number[]>();
  private readonly now: () => number;

  constructor(
    readonly db: RunsDatabase,
    private packs: ReadonlyMap<string, Pack>,
    private readonly options: RunMonitorOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.writes = new GroupCommit(options.flushMs, (items) => this.write(items));
  }

  /** Hot reload: baselines come from the packs served now. */
  replacePacks(packs: ReadonlyMap<string, Pack>): void {
    this.packs = packs;
  }

  /** The scorer's hand-off: flags outliers, then resolves once the batch's counts are committed. */
  async accept(batch: ScoredBatch): Promise<void> {
    const key = `${batch.runId}\0${batch.pack.name}`;
    const window = await this.window(key, batch.runId, batch.pack.name);
    this.addOutlierFlags(batch.pack, window, batch.results);
    try {
      await this.writes.submit({ batch, t: this.now() });
    } catch (err) {
      throw new MechRewardError('MR_ERR_STORE_UNAVAILABLE', `runs database ${this.db.location}: the write failed and was rolled back, so nothing of this request was counted; retrying is safe`, err);
    }
    for (const r of batch.results) window.push(r.reward);
    if (window.length > REWARD_WINDOW) window.splice(0, window.length - REWARD_WINDOW);
  }

  private async window(key: string, runId: string, pack: string): Promise<number[]> {
    let window = this.windows.get(key);
    if (window) {
      this.windows.delete(key); // re-insert: the Map's order is the LRU order
    } else {
      const rows = await this.db.all('SELECT reward FROM rewards WHERE run_id = ? AND pack = ? ORDER BY id DESC LIMIT ?', [runId, pack, REWARD_WINDOW]);
      window = this.windows.get(key) ?? rows.map((r) => Number(r.reward)).reverse();
    }
    this.windows.set(key, window);
    const cap = Math.max(64, this.options.maxRuns);
    for (const old of this.windows.keys()) {
      if (this.windows.size <= cap) break;
      this.windows.delete(old);
    }
    return window;
  }

  /** One transaction for a group of requests; runs in run_id order so concurrent replicas lock rows alike. */
  private async write(items: Observation[]): Promise<void> {
    const sorted = [...items].sort((a, b) => (a.batch.runId < b.batch.runId ? -1 : a.batch.runId > b.batch.runId ? 1 : 0));
    let evicted: string[] = [];
    await this.db.transaction(async (tx) => {
      const trimRewards = new Map<string, [string, string]>();
      const trimRuns = new Set<string>();
      for (const o of sorted) {
        await this.writeOne(tx, o);
        trimRewards.set(`${o.batch.runId}\0${o.batch.pack.name}`, [o.batch.runId, o.batch.pack.name]);
        trimRuns.add(o.batch.runId);
      }
      for (const [runId, pack] of trimRewards.values()) {
        await tx.run('DELETE FROM rewards WHERE run_id = ? AND pack = ? AND id <= (SELECT id FROM rewards WHERE run_id = ? AND pack = ? ORDER BY id DESC LIMIT 1 OFFSET ?)', [runId, pack, runId, pack, REWARD_WINDOW]);
      }
      for (const runId of trimRuns) {
        await tx.run('DELETE FROM history WHERE run_id = ? AND id <= (SELECT id FROM history WHERE run_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)', [runId, runId, HISTORY_CAP]);
        await tx.run('DELETE FROM flagged WHERE run_id = ? AND id <= (SELECT id FROM flagged WHERE run_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)', [runId, runId, FLAGGED_CAP]);
      }
      evicted = await this.evict(tx, trimRuns);
    });
    if (evicted.length > 0) {
      const gone = new Set(evicted);
      for (const key of [...this.windows.keys()]) if (gone.has(key.slice(0, key.indexOf('\0')))) this.windows.delete(key);
      this.options.onEvicted?.(evicted.length);
    }
  }

  private async writeOne(tx: SqlTx, { batch, t }: Observation): Promise<void> {
    const { runId, pack, sequences, results } = batch;
    const flaggedCount = results.filter((r) => r.flags.length > 0).length;
    const rewards = results.map((r) => r.reward).sort((a, b) => a - b);
    await tx.run(
      `INSERT INTO runs (run_id, pack, sequences, flagged, first_seen_ms, last_seen_ms) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT(run_id) DO UPDATE SET sequences = runs.sequences + excluded.sequences, flagged = runs.flagged + excluded.flagged, last_seen_ms = excluded.last_seen_ms`,
      [runId, pack.name, results.length, flaggedCount, t, t],
    );
    const byName = new Map<string, number>();
    for (const r of results) for (const name of new Set(r.flags.map((f) => f.name))) byName.set(name, (byName.get(name) ?? 0) + 1);
    for (const [name, count] of [...byName].sort()) {
      await tx.run('INSERT INTO run_flags (run_id, name, count) VALUES (?, ?, ?) ON CONFLICT(run_id, name) DO UPDATE SET count = run_flags.count + excluded.count', [runId, name, count]);
    }
    const mean = rewards.reduce((a, b) => a + b, 0) / rewards.length;
    await tx.run('INSERT INTO history (run_id, t_ms, sequences, flagged, reward_mean, reward_p10, reward_p50, reward_p90) VALUES (?, ?, ?, ?, ?, ?, ?, ?)', [
      runId, t, results.length, flaggedCount, mean, quantile(rewards, 0.1), quantile(rewards, 0.5), quantile(rewards, 0.9),
    ]);
    // Only the newest REWARD_WINDOW rewards are ever read back.
    await tx.insertMany('rewards', ['run_id', 'pack', 'reward'], results.slice(-REWARD_WINDOW).map((r) => [runId, pack.name, r.reward]));
    const checked = results.filter((r) => r.verifierTokens !== undefined);
    if (checked.length > 0) {
      const sum = (f: (r: SequenceScore) => number) => checked.reduce((a, r) => a + f(r), 0);
      await tx.run(
        `INSERT INTO run_verifier (run_id, sequences, rate_sum, tokens, disagreeing, downweighted) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT(run_id) DO UPDATE SET sequences = run_verifier.sequences + excluded.sequences, rate_sum = run_verifier.rate_sum + excluded.rate_sum,
           tokens = run_verifier.tokens + excluded.tokens, disagreeing = run_verifier.disagreeing + excluded.disagreeing, downweighted = run_verifier.downweighted + excluded.downweighted`,
        [runId, checked.length, sum((r) => r.verifierDisagreement!), sum((r) => r.verifierTokens!.considered), sum((r) => r.verifierTokens!.disagreeing), sum((r) => (r.verifierFactor !== 1 ? 1 : 0))],
      );
    }
    const flagged = results.flatMap((r, i) => {
      if (r.flags.length === 0) return [];
      const seq = sequences[i]!;
      return [[runId, t, r.reward, JSON.stringify(r.flags), JSON.stringify(seq.tokens ?? []), JSON.stringify(Array.from(r.tokenRewards)), seq.text ?? '']];
    });
    // Only the newest FLAGGED_CAP are kept.
    await tx.insertMany('flagged', ['run_id', 't_ms', 'reward', 'flags', 'tokens', 'token_rewards', 'text'], flagged.slice(-FLAGGED_CAP));
  }

  /** Past maxRuns, the runs idle longest go (never one this transaction wrote). Returns their ids. */
  private async evict(tx: SqlTx, written: ReadonlySet<string>): Promise<string[]> {
    const count = Number((await tx.all('SELECT COUNT(*) AS n FROM runs'))[0]?.n ?? 0);
    const excess = count - this.options.maxRuns;
    if (excess <= 0) return [];
    const victims = (await tx.all('SELECT run_id FROM runs ORDER BY last_seen_ms ASC, run_id ASC LIMIT ?', [excess + written.size]))
      .map((r) => String(r.run_id))
      .filter((id) => !written.has(id))
      .slice(0, excess);
    for (const runId of victims) for (const table of TABLES) await tx.run(`DELETE FROM ${table} WHERE run_id = ?`, [runId]);
    return victims;
  }

  /** Robust z-score of each pooled reward against the run's earlier rewards: 0.6745 (r - median) / MAD. */
  private addOutlierFlags(pack: Pack, window: readonly number[], results: SequenceScore[]): void {
    const { outlierZ, outlierMinHistory } = pack.spec.monitor;
    if (outlierZ <= 0) return;
    // Per run and pack: a run that scores with two packs has two reward scales.
    if (window.length < outlierMinHistory) return;
    const past = [...window].sort((a, b) => a - b);
    const median = quantile(past, 0.5);
    const deviations = past.map((r) => Math.abs(r - median)).sort((a, b) => a - b);
    const mad = quantile(deviations, 0.5);
    if (!(mad > 0)) return;
    for (const r of results) {
      const z = (0.6745 * (r.reward - median)) / mad;
      if (Math.abs(z) > outlierZ) {
        r.flags.push({ name: 'reward_outlier', reason: `reward ${r.reward.toPrecision(4)} is ${z.toFixed(1)} robust SDs from the run's median ${median.toPrecision(4)} (|z| > ${outlierZ}, ${past.length} earlier rewards)`, value: z });
      }
    }
  }

  async list(): Promise<RunSummary[]> {
    const [runs, flags, verifiers] = await Promise.all([
      this.db.all('SELECT * FROM runs ORDER BY last_seen_ms DESC, run_id ASC'),
      this.db.all('SELECT run_id, name, count FROM run_flags ORDER BY run_id, name'),
      this.db.all('SELECT * FROM run_verifier'),
    ]);
    const flagsOf = new Map<string, Row[]>();
    for (const f of flags) {
      const id = String(f.run_id);
      flagsOf.set(id, [...(flagsOf.get(id) ?? []), f]);
    }
    const verifierOf = new Map(verifiers.map((v) => [String(v.run_id), v]));
    return runs.map((row) => this.summary(row, flagsOf.get(String(row.run_id)) ?? [], verifierOf.get(String(row.run_id))));
  }

  async get(runId: string): Promise<RunDetail> {
    checkRunId(runId, false);
    const [row] = await this.db.all('SELECT * FROM runs WHERE run_id = ?', [runId]);
    if (!row) throw new MechRewardError('MR_ERR_RUN_NOT_FOUND', `run_id: ${JSON.stringify(runId)} has not been seen (runs are created by Score requests that carry a run_id)`);
    const [flags, verifier, historyRows, flaggedRows] = await Promise.all([
      this.db.all('SELECT run_id, name, count FROM run_flags WHERE run_id = ? ORDER BY name', [runId]),
      this.db.all('SELECT * FROM run_verifier WHERE run_id = ?', [runId]),
      this.db.all('SELECT t_ms, sequences, flagged, reward_mean, reward_p10, reward_p50, reward_p90 FROM history WHERE run_id = ? ORDER BY id', [runId]),
      this.db.all('SELECT * FROM flagged WHERE run_id = ? ORDER BY id DESC', [runId]),
    ]);
    const history = historyRows.map((h) => ({ t_ms: Number(h.t_ms), sequences: Number(h.sequences), flagged: Number(h.flagged), reward_mean: Number(h.reward_mean), reward_p10: Number(h.reward_p10), reward_p50: Number(h.reward_p50), reward_p90: Number(h.reward_p90) }));
    const recent = flaggedRows.map((f) => ({ t_ms: Number(f.t_ms), reward: Number(f.reward), flags: JSON.parse(String(f.flags)) as CanaryFlag[], tokens: JSON.parse(String(f.tokens)) as string[], token_rewards: JSON.parse(String(f.token_rewards)) as number[], text: String(f.text) }));
    return { ...this.summary(row, flags, verifier[0]), history, recent_flagged: recent };
  }

  /** Aggregates for /metrics (never labelled by run id). */
  async totals(): Promise<{ runs: number; alarms: number; storeBytes: number }> {
    const [runs, storeBytes] = await Promise.all([this.list(), this.db.sizeBytes()]);
    return { runs: runs.length, alarms: runs.filter((r) => r.alarm).length, storeBytes };
  }

  /** Writes what is pending, then closes the database. */
  async close(): Promise<void> {
    await this.writes.drain();
    await this.db.close();
  }

  private summary(row: Row, flags: readonly Row[], v: Row | undefined): RunSummary {
    const sequences = Number(row.sequences);
    const flagged = Number(row.flagged);
    const ci = wilson(flagged, sequences);
    const base = this.packs.get(String(row.pack))?.spec.monitor.baseline;
    const baseline = base ? { rate: base.flagged / base.n, ci: wilson(base.flagged, base.n), flagged: base.flagged, n: base.n } : null;
    const flagsByName: Record<string, number> = {};
    for (const f of flags) flagsByName[String(f.name)] = Number(f.count);
    const verifier = v
      ? {
          sequences: Number(v.sequences),
          mean_disagreement: Number(v.rate_sum) / Number(v.sequences),
          tokens: Number(v.tokens),
          disagreeing_tokens: Number(v.disagreeing),
          token_disagreement: Number(v.tokens) > 0 ? Number(v.disagreeing) / Number(v.tokens) : 0,
          downweighted_sequences: Number(v.downweighted),
        }
      : null;
    return {
      run_id: String(row.run_id),
      pack: String(row.pack),
      sequences,
      flagged,
      flag_rate: sequences > 0 ? flagged / sequences : 0,
      ci,
      baseline,
      alarm: baseline !== null && ci[0] > baseline.ci[1],
      flags_by_name: flagsByName,
      first_seen_ms: Number(row.first_seen_ms),
      last_seen_ms: Number(row.last_seen_ms),
      verifier,
    };
  }
}
