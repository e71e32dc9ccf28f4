// The `mechreward` command. Subcommands:
//   serve  start the sidecar (flags and MECHREWARD_* variables from config.ts)
//   packs  list and check the packs in a directory, exit 1 if any is broken
//   pack build  discover a pack from discovery data and put it through gate g1
//   gate g1     stage gate 1 on held-out data
//   sae inspect what the SAE loader understood from an SAE folder (exit 1 when it refuses the folder)
import path from 'node:path';

import { Command, Option } from 'commander';

import { BUNDLED_PACKS_DIR, redactedConfig, resolveServeConfig, SERVE_OPTIONS, type ServeConfig } from './config.js';
import type { RunningServer } from './server.js';
import { MechRewardError } from './errors.js';
import { createLogger } from './log.js';
import { formatInspection, inspectSae, type SaeInspection } from './packs/inspect.js';
import { loadPackDirectory } from './packs/registry.js';
import { describePack } from './core/describe.js';
import { buildPack, METHODS, type Method } from './discovery/build.js';
import { runG1 } from './gate/g1.js';
import { PASS_THRESHOLD, validationProblem } from './packs/validation.js';
import { startServer } from './server.js';
import { VERSION } from './version.js';

/** `serve --help` in sections; an option missing here is listed under "Other options". */
export const SERVE_HELP_GROUPS: ReadonlyArray<readonly [string, ReadonlyArray<keyof ServeConfig>]> = [
  ['Network', ['host', 'grpcPort', 'grpcSocket', 'grpcMaxConnectionAgeMs', 'httpPort', 'shm', 'shmDir', 'shmLeaseMs']],
  ['Packs', ['packs', 'allowUnvalidated', 'allowPacksOutside', 'maxPacks']],
  ['Engine', ['workers', 'intraOpThreads', 'executionProvider', 'allowSpinning', 'cpuMemArena', 'maxBatchTokens', 'maxQueueDelayMs']],
  ['Limits', ['maxInflight', 'maxTokensPerRequest', 'maxSequencesPerRequest', 'maxQueueTokens', 'maxMessageBytes', 'maxBodyBytes', 'httpRequestTimeoutMs', 'httpHeadersTimeoutMs', 'httpKeepAliveTimeoutMs', 'httpMaxConnections', 'shutdownGraceMs']],
  ['Security', ['authToken', 'allowRemoteWithoutAuth', 'tlsCert', 'tlsKey', 'tlsClientCa']],
  ['Monitor', ['runsDb', 'runsDbMoveAside', 'maxRuns', 'runsFlushMs']],
  ['OpenRLHF reader', ['readerUrl', 'readerTimeoutMs']],
  ['Logging and testing', ['logLevel', 'faultInjection']],
];

function helpGroupIndex(key: keyof ServeConfig): number {
  const i = SERVE_HELP_GROUPS.findIndex(([, keys]) => keys.includes(key));
  return i < 0 ? SERVE_HELP_GROUPS.length : i;
}

/** The plain lines `serve` prints on stdout once ready (the JSON logs go to stderr): where, and what next. */
export function readyBanner(config: ServeConfig, server: Pick<RunningServer, 'grpcPort' | 'httpPort' | 'service'>): string {
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const http = `${config.tlsCert ? 'https' : 'http'}://${host}:${server.httpPort}`;
  const grpc = `${host}:${server.grpcPort}`;
  const packs = [...server.service.packs.keys()];
  const pack = packs.includes('smollm2-arith') ? 'smollm2-arith' : (packs[0] ?? 'PACK');
  const token = config.authToken ? '#token=<your --auth-token>' : '';
  return [
    `mechreward ${VERSION} ready, serving ${packs.length} pack(s): ${packs.join(', ') || '(none)'}`,
    `  gRPC     ${grpc}   (mechreward.v1.RewardService)`,
    `  HTTP     ${http}   (POST /v1/score, /readyz, /metrics)`,
    `  monitor  ${http}/monitor${token}`,
    'Next:',
    `  node examples/score_grpc.mjs ${grpc} ${pack}            # score held-out activations, see the run on the monitor`,
    `  python-shims/.venv/bin/python examples/trl_grpo.py --target ${grpc}   # a 2-step GRPO run (README: "From a TRL trainer")`,
    'Stop with Ctrl-C (in-flight requests finish first).',
  ].join('\n');
}

function buildProgram(): Command {
  const program = new Command('mechreward').version(VERSION).description('SAE-feature reward sidecar for RL training loops');

  const serve = program.command('serve').description('serve rewards over gRPC and HTTP (no flags: the bundled packs on 127.0.0.1:50051 / :8080)');
  // Commander lists the sections in the order their first option was added: add them section by section.
  const byGroup = [...SERVE_OPTIONS].sort((a, b) => helpGroupIndex(a.key) - helpGroupIndex(b.key));
  for (const spec of byGroup) {
    const group = SERVE_HELP_GROUPS[helpGroupIndex(spec.key)]?.[0] ?? 'Other options';
    const defaultText = spec.key === 'packs' ? 'bundled packs/' : JSON.stringify(spec.defaultValue());
    serve.addOption(new Option(spec.flag, `${spec.help} [env ${spec.env}; default ${defaultText}]`).helpGroup(`${group}:`));
  }
  serve.action(async (opts: Partial<Record<keyof ServeConfig, unknown>>) => {
    const config = resolveServeConfig(opts);
    const log = createLogger(config.logLevel);
    log.info({ config: redactedConfig(config) }, 'starting');
    const server = await startServer(config, log);
    console.log(readyBanner(config, server));
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'shutting down');
      server.close().then(
        ({ forced }) => {
          log.info({ forced }, 'stopped');
          process.exit(forced ? 1 : 0);
        },
        (err: unknown) => {
          log.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    };
    // SIGHUP reloads the packs directory (as POST /admin/reload does); the report goes to the log.
    process.on('SIGHUP', () => {
      if (stopping) return;
      server.reload().then(
        (report) => log.info({ report }, 'reload finished'),
        () => undefined, // already logged by the reloader
      );
    });
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });

  program
    .command('packs')
    .description('list the packs in DIR and check each against its SAE; exit 1 if any fails')
    .argument('[dir]', 'packs directory', BUNDLED_PACKS_DIR)
    .option('--json', 'print JSON instead of a table')
    .action((dir: string, opts: { json?: boolean }) => {
      const catalogue = loadPackDirectory(dir);
      const packs = [...catalogue.packs.values()].map(describePack);
      if (opts.json) {
        console.log(JSON.stringify({ packs, problems: catalogue.problems }, null, 2));
      } else {
        const rows = [...catalogue.packs.values()].map((pack) => {
          const p = describePack(pack);
          const problem = validationProblem(pack);
          const validation = problem ? `UNVALIDATED (${problem.split(';')[0]})` : `${p.validation.verdict} rho=${p.validation.spearman_rho.toFixed(3)} n=${p.validation.n}`;
          // Direction and probe packs have no SAE: their shape is d_model, and no k, encode mode or features.
          const sae = p.kind === 'sae';
          const extra = [p.synthetic ? 'SYNTHETIC' : '', p.verifier_mode ? `verifier ${p.verifier_mode}` : ''].filter(Boolean).join(' ');
          return [p.name, p.architecture, sae ? `${p.d_model}x${p.d_sae}` : String(p.d_model), sae ? String(p.k) : '-', sae ? p.encode_mode : '-', p.pooling, sae ? String(p.feature_count) : '-', validation, extra];
        });
        printTable(['pack', 'arch', 'shape', 'k', 'encode', 'pooling', 'features', 'validation', ''], rows);
        for (const p of catalogue.problems) console.log(`BROKEN ${p.pack}: ${p.message}`);
      }
      if (catalogue.problems.length > 0) process.exitCode = 1;
    });
  program
    .command('pack')
    .description('build packs')
    .command('build')
    .description('discover a pack (direction, probe, effect-size or reasonscore) from discovery data, write it to --out and run gate g1 on --heldout')
    .addOption(new Option('--method <method>', 'discovery method').choices([...METHODS]).makeOptionMandatory())
    .requiredOption('--data <path>', 'discovery data (held-out format; responses[i].tokens for reasonscore)')
    .requiredOption('--out <dir>', 'pack folder to write (its name is the pack name on the wire)')
    .option('--heldout <path>', 'held-out data for gate g1 (omit to skip the gate)')
    .option('--sae <dir>', 'SAE folder (effect-size, reasonscore); the pack refers to it by relative path')
    .option('--name <name>', 'display name (default: the folder name)')
    .option('--model <id>', 'model the residuals come from', '')
    .option('--layer <n>', 'layer whose resid_post the data holds', (v) => Number.parseInt(v, 10))
    .option('--l2 <x>', 'probe: L2 penalty on standardised weights (C = 1/l2)', Number.parseFloat, 1)
    .option('--top <n>', 'effect-size: features per sign; reasonscore: features', (v) => Number.parseInt(v, 10), 10)
    .option('--force', 'overwrite an existing pack.json in --out')
    .option('--json', 'print the result as JSON')
    .action(async (opts: { method: Method; data: string; out: string; heldout?: string; sae?: string; name?: string; model: string; layer?: number; l2: number; top: number; force?: boolean; json?: boolean }) => {
      const r = await buildPack({ ...opts, name: opts.name ?? path.basename(path.resolve(opts.out)), force: opts.force === true });
      const g1 = r.g1 && { rho: r.g1.rho, n: r.g1.n, p: r.g1.p, ci: r.g1.ci, verdict: r.g1.verdict };
      if (opts.json) {
        console.log(JSON.stringify({ pack: r.dir, method: r.method, discovery: { n: r.discovery.n, n_correct: r.discovery.n_correct }, g1 }));
        return;
      }
      console.log(`${r.method} pack written to ${r.dir} (discovery n ${String(r.discovery.n)}, ${String(r.discovery.n_correct)} correct)`);
      if (r.g1) {
        printTable(['pack', 'method', 'n', 'spearman rho', 'p', '95% CI (bootstrap)', 'verdict'], [
          [r.g1.pack, r.method, String(r.g1.n), r.g1.rho.toFixed(4), r.g1.p.toExponential(2), `[${r.g1.ci[0].toFixed(3)}, ${r.g1.ci[1].toFixed(3)}]`, `${r.g1.verdict} (threshold ${PASS_THRESHOLD})`],
        ]);
      } else {
        console.log('no --heldout: gate g1 not run; `mechreward serve` will refuse this pack until it passes');
      }
    });
  program
    .command('sae')
    .description('SAE folders')
    .command('inspect')
    .description('print what the loader understood from each SAE folder (architecture, encode formula, normalisation, k or thresholds, dtypes, shapes); exit 1 if it refuses any')
    .argument('<dirs...>', 'SAE folders (SAELens cfg.json + sae_weights.safetensors, or sparsify cfg.json + sae.safetensors)')
    .option('--json', 'print JSON (an object for one folder, a list for several; refused folders are left out)')
    .action((dirs: string[], opts: { json?: boolean }) => {
      const understood: SaeInspection[] = [];
      for (const dir of dirs) {
        try {
          understood.push(inspectSae(dir));
        } catch (err) {
          if (!(err instanceof MechRewardError)) throw err;
          console.error(`mechreward: refused: ${err.message}`);
          process.exitCode = 1;
        }
      }
      if (opts.json) console.log(JSON.stringify(dirs.length === 1 ? (understood[0] ?? null) : understood, null, 2));
      else if (understood.length > 0) console.log(understood.map((i) => formatInspection(i).join('\n')).join('\n\n'));
    });
  const gate = program.command('gate').description('stage gates');
  gate
    .command('g1')
    .description("stage gate 1: Spearman rho of the pack's pooled score vs correctness on its held-out data; writes the validation block")
    .requiredOption('--pack <dir>', 'pack folder')
    .option('--data <path>', "held-out data (default: the pack's validation.data)")
    .option('--json', 'print {"rho", "n", "p", "ci"} as JSON')
    .option('--no-write', 'do not write the validation block into pack.json')
    .action(async (opts: { pack: string; data?: string; json?: boolean; write: boolean }) => {
      const r = await runG1(opts.pack, { data: opts.data, write: opts.write });
      if (opts.json) {
        console.log(JSON.stringify({ rho: r.rho, n: r.n, p: r.p, ci: r.ci, ...(r.block.verifier ? { verifier: r.block.verifier } : {}) }));
      } else {
        printTable(['pack', 'n', 'correct', 'accuracy', 'spearman rho', 'p', '95% CI (bootstrap)', 'verdict'], [
          [r.pack, String(r.n), String(r.n_correct), r.accuracy.toFixed(3), r.rho.toFixed(4), r.p.toExponential(2), `[${r.ci[0].toFixed(3)}, ${r.ci[1].toFixed(3)}]`, `${r.verdict} (threshold ${PASS_THRESHOLD})`],
        ]);
        if (r.block.verifier) console.log(`dual verifier: ${JSON.stringify(r.block.verifier)}`);
        if (r.calibration) console.log(`monitor calibration: fvu_bound ${r.calibration.fvu_bound.toFixed(4)} (quantile ${r.calibration.fvu_quantile}, median ${r.calibration.fvu_median.toFixed(4)}), baseline ${r.calibration.baseline.flagged}/${r.calibration.baseline.n} flagged`);
        if (opts.write) console.log(`validation block${r.calibration ? ' and monitor calibration' : ''} written to ${opts.pack}/pack.json`);
      }
    });
  return program;
}

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const r of [header, ...rows]) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd());
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    const message = err instanceof MechRewardError ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err);
    console.error(`mechreward: ${message}`);
    process.exit(2);
  }
}
