// The per-run canary monitor. Every Score request that names a run_id is observed here: the reward-outlier
// rule runs against the run's recent rewards (robust z-score: median and MAD), then counts, flags, a history
// point and the flagged rollouts are stored. Summaries carry the run's flag rate with a Wilson 95 % interval,
// the pack's baseline rate with its interval, and an alarm when the run's lower bound exceeds the baseline's
// upper bound (the original project's health criterion, made live).
import type { CanaryFlag, RunObserver, SequenceScore } from '../core/scorer.js';
import type { SequenceInput } from '../core/decode.js';
import { MechRewardError } from '../errors.js';
import type { Pack } from '../packs/registry.js';
import type { RunStore } from './store.js';
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
  /** The trainer's global step the call carried (ScoreRequest.step); absent when it sent none. */
  step?: number;
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

export class RunMonitor implements RunObserver {
  constructor(
    private readonly store: RunStore,
    private packs: ReadonlyMap<string, Pack>,
    private readonly now: () => number = Date.now,
  ) {}

  /** Hot reload: baselines come from the packs served now. */
  replacePacks(packs: ReadonlyMap<string, Pack>): void {
    this.packs = packs;
  }

  observe(runId: string, pack: Pack, sequences: readonly SequenceInput[], results: SequenceScore[], step?: number): void {
    this.addOutlierFlags(runId, pack, results);
    const t = this.now();
    const flaggedCount = results.filter((r) => r.flags.length > 0).length;
    const rewards = results.map((r) => r.reward).sort((a, b) => a - b);
    this.store.transaction(() => {
      const s = this.store;
      s.run(
        `INSERT INTO runs (run_id, pack, sequences, flagged, first_seen_ms, last_seen_ms) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT(run_id) DO UPDATE SET sequences = sequences + excluded.sequences, flagged = flagged + excluded.flagged, last_seen_ms = excluded.last_seen_ms`,
        [runId, pack.name, results.length, flaggedCount, t, t],
      );
      const byName = new Map<string, number>();
      for (const r of results) for (const name of new Set(r.flags.map((f) => f.name))) byName.set(name, (byName.get(name) ?? 0) + 1);
      for (const [name, count] of byName) {
        s.run('INSERT INTO run_flags (run_id, name, count) VALUES (?, ?, ?) ON CONFLICT(run_id, name) DO UPDATE SET count = count + excluded.count', [runId, name, count]);
      }
      const mean = rewards.reduce((a, b) => a + b, 0) / rewards.length;
      s.run('INSERT INTO history (run_id, t_ms, sequences, flagged, reward_mean, reward_p10, reward_p50, reward_p90, step) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)', [
        runId, t, results.length, flaggedCount, mean, quantile(rewards, 0.1), quantile(rewards, 0.5), quantile(rewards, 0.9), step ?? null,
      ]);
      for (const r of results) s.run('INSERT INTO rewards (run_id, pack, reward) VALUES (?, ?, ?)', [runId, pack.name, r.reward]);
      const checked = results.filter((r) => r.verifierTokens !== undefined);
      if (checked.length > 0) {
        const sum = (f: (r: SequenceScore) => number) => checked.reduce((a, r) => a + f(r), 0);
        s.run(
          `INSERT INTO run_verifier (run_id, sequences, rate_sum, tokens, disagreeing, downweighted) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT(run_id) DO UPDATE SET sequences = sequences + excluded.sequences, rate_sum = rate_sum + excluded.rate_sum,
             tokens = tokens + excluded.tokens, disagreeing = disagreeing + excluded.disagreeing, downweighted = downweighted + excluded.downweighted`,
          [runId, checked.length, sum((r) => r.verifierDisagreement!), sum((r) => r.verifierTokens!.considered), sum((r) => r.verifierTokens!.disagreeing), sum((r) => (r.verifierFactor !== 1 ? 1 : 0))],
        );
      }
      results.forEach((r, i) => {
        if (r.flags.length === 0) return;
        const seq = sequences[i]!;
        s.run('INSERT INTO flagged (run_id, t_ms, reward, flags, tokens, token_rewards, text) VALUES (?, ?, ?, ?, ?, ?, ?)', [
          runId, t, r.reward, JSON.stringify(r.flags), JSON.stringify(seq.tokens ?? []), JSON.stringify(Array.from(r.tokenRewards)), seq.text ?? '',
        ]);
      });
      // Keep each run's tables bounded.
      s.run('DELETE FROM rewards WHERE run_id = ? AND pack = ? AND id <= (SELECT id FROM rewards WHERE run_id = ? AND pack = ? ORDER BY id DESC LIMIT 1 OFFSET ?)', [runId, pack.name, runId, pack.name, REWARD_WINDOW]);
      s.run('DELETE FROM history WHERE run_id = ? AND id <= (SELECT id FROM history WHERE run_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)', [runId, runId, HISTORY_CAP]);
      s.run('DELETE FROM flagged WHERE run_id = ? AND id <= (SELECT id FROM flagged WHERE run_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)', [runId, runId, FLAGGED_CAP]);
    });
  }

  /** Robust z-score of each pooled reward against the run's earlier rewards: 0.6745 (r - median) / MAD. */
  private addOutlierFlags(runId: string, pack: Pack, results: SequenceScore[]): void {
    const { outlierZ, outlierMinHistory } = pack.spec.monitor;
    if (outlierZ <= 0) return;
    // Per run and pack: a run that scores with two packs has two reward scales.
    const past = this.store.rows('SELECT reward FROM rewards WHERE run_id = ? AND pack = ? ORDER BY id DESC LIMIT ?', [runId, pack.name, REWARD_WINDOW]).map((r) => Number(r.reward));
    if (past.length < outlierMinHistory) return;
    past.sort((a, b) => a - b);
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

  list(): RunSummary[] {
    return this.store.rows('SELECT * FROM runs ORDER BY last_seen_ms DESC').map((row) => this.summary(row));
  }

  get(runId: string): RunDetail {
    const row = this.store.rows('SELECT * FROM runs WHERE run_id = ?', [runId])[0];
    if (!row) throw new MechRewardError('MR_ERR_RUN_NOT_FOUND', `run_id: ${JSON.stringify(runId)} has not been seen (runs are created by Score requests that carry a run_id)`);
    const history = this.store
      .rows('SELECT t_ms, sequences, flagged, reward_mean, reward_p10, reward_p50, reward_p90, step FROM history WHERE run_id = ? ORDER BY id', [runId])
      .map((h) => ({
        t_ms: Number(h.t_ms), sequences: Number(h.sequences), flagged: Number(h.flagged), reward_mean: Number(h.reward_mean), reward_p10: Number(h.reward_p10), reward_p50: Number(h.reward_p50), reward_p90: Number(h.reward_p90),
        ...(h.step === null ? {} : { step: Number(h.step) }),
      }));
    const recent = this.store
      .rows('SELECT * FROM flagged WHERE run_id = ? ORDER BY id DESC', [runId])
      .map((f) => ({ t_ms: Number(f.t_ms), reward: Number(f.reward), flags: JSON.parse(String(f.flags)) as CanaryFlag[], tokens: JSON.parse(String(f.tokens)) as string[], token_rewards: JSON.parse(String(f.token_rewards)) as number[], text: String(f.text) }));
    return { ...this.summary(row), history, recent_flagged: recent };
  }

  /** Aggregate counts for /metrics (never labelled by run id). */
  totals(): { runs: number; alarms: number } {
    const runs = this.list();
    return { runs: runs.length, alarms: runs.filter((r) => r.alarm).length };
  }

  close(): void {
    this.store.close();
  }

  private summary(row: Record<string, unknown>): RunSummary {
    const runId = String(row.run_id);
    const sequences = Number(row.sequences);
    const flagged = Number(row.flagged);
    const ci = wilson(flagged, sequences);
    const base = this.packs.get(String(row.pack))?.spec.monitor.baseline;
    const baseline = base ? { rate: base.flagged / base.n, ci: wilson(base.flagged, base.n), flagged: base.flagged, n: base.n } : null;
    const flagsByName: Record<string, number> = {};
    for (const f of this.store.rows('SELECT name, count FROM run_flags WHERE run_id = ? ORDER BY name', [runId])) flagsByName[String(f.name)] = Number(f.count);
    const v = this.store.rows('SELECT * FROM run_verifier WHERE run_id = ?', [runId])[0];
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
      run_id: runId,
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
