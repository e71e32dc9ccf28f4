// `mechreward pack build`: discover a pack from the discovery split, write it, and put it through stage gate 1
// on the held-out split. Methods:
//   direction    difference of the mean mean-pooled residuals, correct minus wrong (a direction pack);
//   probe        L2 logistic regression on the mean-pooled residuals (a probe pack, logit output);
//   effect-size  SAE features by effect size of their mean-pooled activations (an SAE pack, as the Python
//                pipeline does: top N positive +1, top N negative -1);
//   reasonscore  SAE features by how much more they fire on reasoning-vocabulary tokens than on other tokens
//                (needs token strings in the discovery data).
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { MechRewardError } from '../errors.js';
import { runG1, type G1Result } from '../gate/g1.js';
import { OWN_SCHEMA } from '../packs/schema.js';
import { loadDiscovery, meanPooledResiduals, type DiscoveryData } from './data.js';
import { fitDirection, fitLogisticProbe } from './linear-fit.js';
import { writeLinearSafetensors } from './write.js';
import type { BuildOptions, Method } from './options.js';
import { saeFeaturePack } from './sae-methods.js';

export { METHODS, type BuildOptions, type Method } from './options.js';

export interface BuildResult {
  readonly dir: string;
  readonly method: Method;
  readonly discovery: Record<string, unknown>;
  readonly g1: G1Result | undefined;
}

export async function buildPack(options: BuildOptions): Promise<BuildResult> {
  const dir = path.resolve(options.out);
  if (existsSync(path.join(dir, 'pack.json')) && !options.force) throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', `--out: ${dir} already holds a pack.json (pass --force to overwrite it)`);
  const data = loadDiscovery(options.data);
  mkdirSync(dir, { recursive: true });
  const y = data.responses.map((r) => r.correct as number);
  const nCorrect = y.reduce((a, b) => a + b, 0);
  const base = { n: y.length, n_correct: nCorrect, data: path.basename(data.path), data_sha256: data.sha256 };
  let json: Record<string, unknown>;
  let discovery: Record<string, unknown>;
  if (options.method === 'direction' || options.method === 'probe') {
    ({ json, discovery } = linearPack(options, data, y, dir));
  } else {
    if (!options.sae) throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', `--sae: the ${options.method} method scores SAE features and needs the SAE folder`);
    ({ json, discovery } = await saeFeaturePack(options, data, y, dir));
  }
  discovery = { ...base, ...discovery };
  json.discovery = discovery;
  writeFileSync(path.join(dir, 'pack.json'), `${JSON.stringify(json, null, 2)}\n`);
  const g1 = options.heldout ? await runG1(dir, { data: options.heldout, write: true }) : undefined;
  return { dir, method: options.method, discovery, g1 };
}

function header(options: BuildOptions, kind: string, description: string): Record<string, unknown> {
  return {
    schema: OWN_SCHEMA,
    kind,
    name: options.name,
    description,
    model: options.model,
    ...(options.layer !== undefined ? { layer: options.layer } : {}),
    pooling: { method: 'mean' },
  };
}

function linearPack(options: BuildOptions, data: DiscoveryData, y: number[], dir: string) {
  const x = meanPooledResiduals(data);
  const nCorrect = y.reduce((a, b) => a + b, 0);
  const where = `${y.length} discovery responses (${nCorrect} correct)`;
  if (options.method === 'direction') {
    const fit = fitDirection(x, y);
    writeLinearSafetensors(path.join(dir, 'direction.safetensors'), fit.weight, fit.bias, { method: 'direction', discovery_sha256: data.sha256 });
    return {
      json: {
        ...header(options, 'direction', `Raw residual direction: mean(correct) - mean(wrong) of the mean-pooled response residuals on ${where}, scaled so their pooled scores have unit standard deviation, biased so the midpoint of the class means scores 0. r_t = w . x_t + b. Built by \`mechreward pack build --method direction\`.`),
        direction: { file: 'direction.safetensors' },
      },
      discovery: { method: 'direction: difference of mean mean-pooled residuals (correct - wrong), unit-sd scale, midpoint bias', weight_norm: Math.hypot(...fit.weight), bias: fit.bias },
    };
  }
  const fit = fitLogisticProbe(x, y, { l2: options.l2 });
  if (!fit.converged) throw new MechRewardError('MR_ERR_INTERNAL', `probe fit did not converge in ${fit.iterations} Newton steps`);
  writeLinearSafetensors(path.join(dir, 'probe.safetensors'), fit.weight, fit.bias, { method: 'probe', l2: String(options.l2), discovery_sha256: data.sha256 });
  return {
    json: {
      ...header(options, 'probe', `Linear probe: L2-regularised logistic regression (l2 = ${options.l2} on standardised inputs, i.e. C = ${1 / options.l2}) of correctness on the mean-pooled response residuals of ${where}; the standardisation is folded into weight and bias. r_t = w . x_t + b (the logit), so the mean-pooled score is the probe's logit of the mean residual. Built by \`mechreward pack build --method probe\`.`),
      probe: { file: 'probe.safetensors', type: 'logistic', output: 'logit' },
    },
    discovery: { method: 'probe: L2 logistic regression (Newton/IRLS) on standardised mean-pooled residuals', l2: options.l2, newton_steps: fit.iterations, weight_norm: Math.hypot(...fit.weight), bias: fit.bias },
  };
}
