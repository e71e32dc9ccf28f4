// Hot reload of the packs directory (SIGHUP or POST /admin/reload): reads the directory again, loads every new
// or changed pack into the engine workers (sessions built and warmed up) while the old versions keep serving,
// then switches the scorer to the new set in one assignment. A pack that fails to load, fails stage-gate
// enforcement or would exceed max_packs is rejected with a reason and its old version (if any) keeps serving.
// Requests that started before the switch finish on the version they looked up; the engine drops old
// versions once no job refers to them.
import type { ServeConfig } from './config.js';
import type { Scorer } from './core/scorer.js';
import { planEngine } from './engine/plan.js';
import type { EnginePool } from './engine/pool.js';
import { MechRewardError } from './errors.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import type { RunMonitor } from './monitor/monitor.js';
import { hidePaths } from './packs/public-path.js';
import { engineKey, loadPackDirectory, type Pack } from './packs/registry.js';
import { validationProblem } from './packs/validation.js';

export interface ReloadReport {
  /** Served after the reload, sorted. */
  readonly packs: string[];
  readonly added: string[];
  readonly changed: string[];
  readonly removed: string[];
  readonly unchanged: string[];
  /** Packs left out (or left at their old version) and why. */
  readonly rejected: { pack: string; reason: string }[];
}

export interface ReloadDeps {
  readonly config: ServeConfig;
  readonly scorer: Scorer;
  readonly monitor: RunMonitor;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly engine: () => EnginePool | undefined;
}

export class PackReloader {
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: ReloadDeps) {}

  /** One reload at a time: a second call waits for the first and then reads the directory again. */
  reload(): Promise<ReloadReport> {
    const { metrics, log } = this.deps;
    const next = this.chain.then(() => this.reloadNow()).then(
      (report) => {
        metrics.reloads.inc({ outcome: report.rejected.length > 0 ? 'rejected' : 'ok' });
        for (const r of report.rejected) metrics.reloadRejections.inc({ pack: r.pack });
        return report;
      },
      (err: unknown) => {
        metrics.reloads.inc({ outcome: 'failed' });
        log.error({ err }, 'pack reload failed; the packs served before keep serving');
        throw err;
      },
    );
    this.chain = next.catch(() => undefined);
    return next;
  }

  private async reloadNow(): Promise<ReloadReport> {
    const { config, scorer, log } = this.deps;
    const engine = this.deps.engine();
    if (!engine) throw new MechRewardError('MR_ERR_NOT_READY', 'engine is still loading; reload after start-up');
    const current = scorer.current;
    const rejected: { pack: string; reason: string }[] = [];
    const catalogue = loadPackDirectory(config.packs, { confine: !config.allowPacksOutside });
    rejected.push(...catalogue.problems.map((p) => ({ pack: p.pack, reason: p.message })));

    // The candidate set: every pack that loaded and passes stage-gate enforcement, unchanged ones as they are.
    const next = new Map<string, Pack>();
    for (const pack of catalogue.packs.values()) {
      const problem = config.allowUnvalidated ? undefined : validationProblem(pack);
      if (problem) {
        rejected.push({ pack: pack.name, reason: `has not passed stage gate 1 (serve --allow-unvalidated to serve it anyway): ${problem}` });
        continue;
      }
      const old = current.get(pack.name);
      next.set(pack.name, old && old.version === pack.version ? old : pack);
    }
    // A rejected pack that was being served keeps serving its old version.
    for (const r of rejected) {
      const old = current.get(r.pack);
      if (old) next.set(r.pack, old);
    }
    // max_packs: packs already served stay; new ones beyond the limit are refused (the last in name order first).
    for (const name of [...next.keys()].sort().reverse()) {
      if (next.size <= config.maxPacks) break;
      if (current.has(name)) continue;
      next.delete(name);
      rejected.push({ pack: name, reason: `max_packs ${config.maxPacks} reached; raise --max-packs to serve it` });
    }

    // Build every new version in the workers, one pack at a time so a failure names its pack.
    for (const pack of [...next.values()]) {
      if (current.get(pack.name) === pack) continue;
      try {
        await engine.load(planEngine([pack]));
      } catch (err) {
        const old = current.get(pack.name);
        if (old) next.set(pack.name, old);
        else next.delete(pack.name);
        rejected.push({ pack: pack.name, reason: err instanceof Error ? err.message : String(err) });
      }
    }

    // Reasons go to API clients: no absolute paths (the log below keeps them).
    rejected.sort((a, b) => a.pack.localeCompare(b.pack));
    const publicRejected = rejected.map((r) => ({ pack: r.pack, reason: hidePaths(r.reason, config.packs) }));
    const sorted = new Map([...next.entries()].sort(([a], [b]) => a.localeCompare(b)));
    const report: ReloadReport = {
      packs: [...sorted.keys()],
      added: [...sorted.keys()].filter((n) => !current.has(n)),
      changed: [...sorted.values()].filter((p) => current.has(p.name) && current.get(p.name) !== p).map((p) => p.name),
      removed: [...current.keys()].filter((n) => !sorted.has(n)),
      unchanged: [...sorted.values()].filter((p) => current.get(p.name) === p).map((p) => p.name),
      rejected: publicRejected,
    };
    this.swap(current, sorted);
    for (const r of rejected) log.warn({ pack: r.pack, reason: r.reason }, 'pack rejected by reload; the old version (if any) keeps serving');
    log.info({ added: report.added, changed: report.changed, removed: report.removed, rejected: report.rejected.length }, 'packs reloaded');
    return report;
  }

  /** The switch: scorer, monitor and metrics see the new set at once; the engine drops old versions when idle. */
  private swap(current: ReadonlyMap<string, Pack>, next: ReadonlyMap<string, Pack>): void {
    const { scorer, monitor, metrics } = this.deps;
    scorer.replacePacks(next);
    monitor.replacePacks(next);
    for (const name of current.keys()) {
      if (next.has(name)) continue;
      for (const gauge of [metrics.packReady, metrics.packValidated, metrics.packValidationN, metrics.packValidationRho]) gauge.remove({ pack: name });
    }
    for (const pack of next.values()) setPackGauges(metrics, pack);
    const keep = new Set([...next.values()].map(engineKey));
    this.deps.engine()?.retire([...current.values()].map(engineKey).filter((k) => !keep.has(k)));
  }
}

/** The per-pack validation gauges (start-up and every reload). */
export function setPackGauges(metrics: Metrics, pack: Pack): void {
  const v = pack.spec.validation;
  if (Number.isFinite(v.spearmanRho)) metrics.packValidationRho.set({ pack: pack.name }, v.spearmanRho);
  metrics.packValidationN.set({ pack: pack.name }, v.n);
  metrics.packValidated.set({ pack: pack.name }, validationProblem(pack) ? 0 : 1);
}
