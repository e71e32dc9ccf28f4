// Parses pack.json in any of the three accepted schemas into one PackSpec:
//   - mechreward.pack/v1, this project's own (docs/packs.md);
//   - catalog A of the original project: `features: [{feature_id, weight, activation_threshold, ...}]`;
//   - catalog B of the original project: `helpful_features` / `harmful_features` / `validation` / `metadata`.
// Pure: reads nothing but the parsed JSON, so every rule here is unit-testable.
import { MechRewardError } from '../errors.js';

/** `topk_int8`: the exact TopK rule applied to int8 pre-activations (opt-in, faster, approximate). */
export type EncodeMode = 'topk' | 'topk_int8' | 'selected_relu';
export type Pooling = { method: 'mean' | 'sum' | 'max' } | { method: 'last_k'; k: number };
export type PackSchema = 'mechreward.pack/v1' | 'catalog-a' | 'catalog-b';
/** What computes r_t: SAE features (`sae`), a raw residual direction or a linear probe on the residual. */
export type PackKind = 'sae' | 'direction' | 'probe';
export const PACK_KINDS: readonly PackKind[] = ['sae', 'direction', 'probe'];

/**
 * A linear read-out of the residual, r_t = w . x_t + b (tensors `weight` [d_model] and `bias` [1] in a
 * safetensors file), optionally through a sigmoid. Used by direction and probe packs and by dual verifiers.
 */
export interface LinearSpec {
  /** The safetensors file, relative to the pack folder. */
  readonly file: string;
  /** `direction` for direction packs; the probe's own type otherwise. */
  readonly type: 'direction' | 'linear' | 'logistic';
  readonly output: 'logit' | 'probability';
}

export type VerifierMode = 'token_gate' | 'batch_downweight';

/** An independent probe that checks the sign of every token's reward (the dual verifier). */
export interface VerifierSpec {
  /** A probe safetensors file, or a probe pack folder, relative to the pack folder. */
  readonly probe: string;
  readonly mode: VerifierMode;
  /** batch_downweight: a request whose disagreement rate exceeds this is scaled by `factor`. */
  readonly threshold: number;
  readonly factor: number;
}

export interface PackFeature {
  readonly id: number;
  readonly weight: number;
  /** The feature counts only where its activation is strictly above this (default 0). */
  readonly threshold: number;
  readonly name: string | undefined;
}

export interface CanarySpec {
  readonly name: string;
  readonly feature: number;
  readonly threshold: number;
}

export interface HackSignatureSpec {
  readonly name: string;
  readonly features: readonly number[];
  readonly ratio: number;
}

/** Per-rollout canary rules beyond feature thresholds, and the baseline a run's flag rate is compared with. */
export interface MonitorSpec {
  readonly hackSignatures: readonly HackSignatureSpec[];
  /** Robust z-score above which a pooled reward is an outlier for its run; 0 disables the rule. */
  readonly outlierZ: number;
  /** Rewards a run must have before the outlier rule applies. */
  readonly outlierMinHistory: number;
  /** Off-distribution bound on the SAE's reconstruction FVU of a response (calibrated); undefined disables. */
  readonly fvuBound: number | undefined;
  /** Flag rate of healthy rollouts (e.g. the held-out set): `flagged` of `n`. */
  readonly baseline: { readonly flagged: number; readonly n: number } | undefined;
}

export const DEFAULT_MONITOR: MonitorSpec = { hackSignatures: [], outlierZ: 4, outlierMinHistory: 30, fvuBound: undefined, baseline: undefined };

export interface ValidationSummary {
  readonly present: boolean;
  readonly verdict: string;
  readonly spearmanRho: number;
  readonly n: number;
  readonly method: string;
  readonly p: number;
  /** Bootstrap 95 % interval of rho; [NaN, NaN] when the block has none. */
  readonly ci: readonly [number, number];
  /** Held-out data file, relative to the pack folder. */
  readonly data: string;
  readonly dataSha256: string;
  /** Encode mode the pack was validated with ('' when the block does not say). */
  readonly encode: string;
  /** Pack kind the pack was validated as ('' when the block does not say). */
  readonly kind: string;
}

export interface PackSpec {
  readonly schema: PackSchema;
  /** Display name from pack.json; the wire name of a pack is its folder name. */
  readonly title: string;
  readonly description: string;
  readonly model: string;
  readonly layer: number | undefined;
  /** SAE folder relative to the pack folder. */
  readonly saePath: string;
  readonly encode: EncodeMode;
  readonly pooling: Pooling;
  readonly features: readonly PackFeature[];
  readonly canaries: readonly CanarySpec[];
  readonly monitor: MonitorSpec;
  readonly validation: ValidationSummary;
  readonly synthetic: boolean;
  readonly kind: PackKind;
  /** The read-out of direction and probe packs (undefined for SAE packs). */
  readonly linear: LinearSpec | undefined;
  readonly verifier: VerifierSpec | undefined;
  /** Shape claims made by the pack itself (catalog B metadata), checked against the SAE. */
  readonly claims: { dModel?: number; dSae?: number; k?: number };
}

export const OWN_SCHEMA = 'mechreward.pack/v1';

type Json = Record<string, unknown>;

class Reader {
  constructor(private readonly file: string) {}

  fail(field: string, what: string): never {
    throw new MechRewardError('MR_ERR_PACK_INVALID', `${this.file}: ${field} ${what}`);
  }

  obj(v: unknown, field: string): Json {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(field, `must be an object, got ${JSON.stringify(v)}`);
    return v as Json;
  }

  arr(v: unknown, field: string): unknown[] {
    if (!Array.isArray(v)) this.fail(field, `must be a list, got ${JSON.stringify(v)}`);
    return v;
  }

  featureId(v: unknown, field: string): number {
    if (!Number.isSafeInteger(v) || (v as number) < 0) this.fail(field, `must be a non-negative integer, got ${JSON.stringify(v)}`);
    return v as number;
  }

  finite(v: unknown, field: string, fallback?: number): number {
    if (v === undefined && fallback !== undefined) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(field, `must be a finite number, got ${JSON.stringify(v)}`);
    return v;
  }

  str(v: unknown, fallback = ''): string {
    return typeof v === 'string' ? v : fallback;
  }

  optInt(v: unknown): number | undefined {
    return Number.isSafeInteger(v) ? (v as number) : undefined;
  }
}

export function parsePackJson(file: string, json: unknown): PackSpec {
  const r = new Reader(file);
  const root = r.obj(json, 'pack.json');
  if (root.schema === OWN_SCHEMA) return parseOwn(r, root);
  if (root.schema !== undefined) r.fail('schema', `${JSON.stringify(root.schema)} is not known (expected ${JSON.stringify(OWN_SCHEMA)} or no schema field for the original catalogs)`);
  if ('helpful_features' in root || 'harmful_features' in root) return parseCatalogB(r, root);
  if ('features' in root) return parseCatalogA(r, root);
  return r.fail('pack.json', `has no "schema": ${JSON.stringify(OWN_SCHEMA)}, no "features" (catalog A) and no "helpful_features"/"harmful_features" (catalog B)`);
}

function parseEncode(r: Reader, v: unknown): EncodeMode {
  if (v === undefined) return 'topk';
  if (v === 'topk' || v === 'topk_int8' || v === 'selected_relu') return v;
  return r.fail('encode', `must be "topk", "topk_int8" or "selected_relu", got ${JSON.stringify(v)}`);
}

function parsePooling(r: Reader, v: unknown): Pooling {
  if (v === undefined) return { method: 'mean' };
  const spec = typeof v === 'string' ? { method: v } : r.obj(v, 'pooling');
  const method = spec.method;
  if (method === 'mean' || method === 'sum' || method === 'max') return { method };
  if (method === 'last_k') {
    if (!Number.isSafeInteger(spec.k) || (spec.k as number) < 1) r.fail('pooling.k', `must be a positive integer for last_k, got ${JSON.stringify(spec.k)}`);
    return { method, k: spec.k as number };
  }
  return r.fail('pooling.method', `must be mean, sum, max or last_k, got ${JSON.stringify(method)}`);
}

function checkUnique(r: Reader, features: PackFeature[]): PackFeature[] {
  if (features.length === 0) r.fail('features', 'must name at least one feature');
  const seen = new Set<number>();
  for (const f of features) {
    if (seen.has(f.id)) r.fail('features', `lists feature ${f.id} twice`);
    seen.add(f.id);
  }
  return features;
}

function summariseValidation(r: Reader, v: unknown): ValidationSummary {
  const num = (x: unknown) => (typeof x === 'number' && Number.isFinite(x) ? x : NaN);
  if (v === undefined || v === null) return { present: false, verdict: '', spearmanRho: NaN, n: 0, method: '', p: NaN, ci: [NaN, NaN], data: '', dataSha256: '', encode: '', kind: '' };
  const o = r.obj(v, 'validation');
  const n = o.n ?? o.n_questions;
  const ci = Array.isArray(o.ci) && o.ci.length === 2 ? ([num(o.ci[0]), num(o.ci[1])] as const) : ([NaN, NaN] as const);
  return {
    present: true,
    verdict: r.str(o.verdict),
    spearmanRho: num(o.rho ?? o.spearman_rho),
    n: Number.isSafeInteger(n) ? (n as number) : 0,
    method: r.str(o.method),
    p: num(o.p ?? o.spearman_p),
    ci,
    data: r.str(o.data),
    dataSha256: r.str(o.data_sha256),
    encode: r.str(o.encode),
    kind: r.str(o.kind),
  };
}

function parseMonitor(r: Reader, v: unknown): MonitorSpec {
  if (v === undefined) return DEFAULT_MONITOR;
  const o = r.obj(v, 'monitor');
  const hackSignatures = (o.hack_signatures === undefined ? [] : r.arr(o.hack_signatures, 'monitor.hack_signatures')).map((raw, i) => {
    const h = r.obj(raw, `monitor.hack_signatures[${i}]`);
    const features = r.arr(h.features, `monitor.hack_signatures[${i}].features`).map((f, j) => r.featureId(f, `monitor.hack_signatures[${i}].features[${j}]`));
    if (features.length === 0) r.fail(`monitor.hack_signatures[${i}].features`, 'must name at least one feature');
    const ratio = r.finite(h.ratio, `monitor.hack_signatures[${i}].ratio`);
    if (ratio <= 0) r.fail(`monitor.hack_signatures[${i}].ratio`, `must be > 0, got ${ratio}`);
    return { name: typeof h.name === 'string' && h.name ? h.name : 'hack_signature', features, ratio };
  });
  const outlierZ = r.finite(o.outlier_z, 'monitor.outlier_z', DEFAULT_MONITOR.outlierZ);
  if (outlierZ < 0) r.fail('monitor.outlier_z', `must be >= 0 (0 disables), got ${outlierZ}`);
  const minHistory = o.outlier_min_history ?? DEFAULT_MONITOR.outlierMinHistory;
  if (!Number.isSafeInteger(minHistory) || (minHistory as number) < 2) r.fail('monitor.outlier_min_history', `must be an integer >= 2, got ${JSON.stringify(minHistory)}`);
  let fvuBound: number | undefined;
  if (o.fvu_bound !== undefined) {
    fvuBound = r.finite(o.fvu_bound, 'monitor.fvu_bound');
    if (fvuBound <= 0) r.fail('monitor.fvu_bound', `must be > 0, got ${fvuBound}`);
  }
  let baseline: MonitorSpec['baseline'];
  if (o.baseline !== undefined) {
    const b = r.obj(o.baseline, 'monitor.baseline');
    const n = b.n;
    const flagged = b.flagged;
    if (!Number.isSafeInteger(n) || (n as number) < 1) r.fail('monitor.baseline.n', `must be a positive integer, got ${JSON.stringify(n)}`);
    if (!Number.isSafeInteger(flagged) || (flagged as number) < 0 || (flagged as number) > (n as number)) r.fail('monitor.baseline.flagged', `must be an integer in [0, n], got ${JSON.stringify(flagged)}`);
    baseline = { flagged: flagged as number, n: n as number };
  }
  return { hackSignatures, outlierZ, outlierMinHistory: minHistory as number, fvuBound, baseline };
}

function parseKind(r: Reader, v: unknown): PackKind {
  if (v === undefined) return 'sae';
  if (PACK_KINDS.includes(v as PackKind)) return v as PackKind;
  return r.fail('kind', `must be one of ${PACK_KINDS.join(', ')}, got ${JSON.stringify(v)}`);
}

function parseLinear(r: Reader, kind: 'direction' | 'probe', v: unknown): LinearSpec {
  const o = r.obj(v, kind);
  if (typeof o.file !== 'string' || o.file === '') r.fail(`${kind}.file`, 'must name the safetensors file holding `weight` [d_model] and `bias` [1]');
  if (kind === 'direction') {
    if (o.output !== undefined && o.output !== 'logit') r.fail('direction.output', `must be "logit" (a direction has no sigmoid), got ${JSON.stringify(o.output)}`);
    return { file: o.file, type: 'direction', output: 'logit' };
  }
  const type = o.type ?? 'linear';
  if (type !== 'linear' && type !== 'logistic') r.fail('probe.type', `must be "linear" or "logistic", got ${JSON.stringify(type)}`);
  const output = o.output ?? 'logit';
  if (output !== 'logit' && output !== 'probability') r.fail('probe.output', `must be "logit" or "probability", got ${JSON.stringify(output)}`);
  if (output === 'probability' && type !== 'logistic') r.fail('probe.output', '"probability" needs a logistic probe (probe.type "logistic")');
  return { file: o.file, type, output };
}

export const DEFAULT_VERIFIER_THRESHOLD = 0.3;
export const DEFAULT_VERIFIER_FACTOR = 0.5;

function parseVerifier(r: Reader, v: unknown): VerifierSpec | undefined {
  if (v === undefined) return undefined;
  const o = r.obj(v, 'verifier');
  if (typeof o.probe !== 'string' || o.probe === '') r.fail('verifier.probe', 'must name a probe safetensors file or a probe pack folder');
  const mode = o.mode ?? 'token_gate';
  if (mode !== 'token_gate' && mode !== 'batch_downweight') r.fail('verifier.mode', `must be "token_gate" or "batch_downweight", got ${JSON.stringify(mode)}`);
  const threshold = r.finite(o.threshold, 'verifier.threshold', DEFAULT_VERIFIER_THRESHOLD);
  if (threshold < 0 || threshold > 1) r.fail('verifier.threshold', `must be a disagreement rate in [0, 1], got ${threshold}`);
  const factor = r.finite(o.factor, 'verifier.factor', DEFAULT_VERIFIER_FACTOR);
  if (factor < 0 || factor > 1) r.fail('verifier.factor', `must be in [0, 1], got ${factor}`);
  return { probe: o.probe, mode, threshold, factor };
}

function parseOwn(r: Reader, root: Json): PackSpec {
  const kind = parseKind(r, root.kind);
  if (kind !== 'sae') return parseLinearPack(r, root, kind);
  const features = r.arr(root.features, 'features').map((raw, i) => {
    const f = r.obj(raw, `features[${i}]`);
    return {
      id: r.featureId(f.id, `features[${i}].id`),
      weight: r.finite(f.weight, `features[${i}].weight`),
      threshold: r.finite(f.threshold, `features[${i}].threshold`, 0),
      name: typeof f.name === 'string' ? f.name : undefined,
    };
  });
  const canaries = (root.canaries === undefined ? [] : r.arr(root.canaries, 'canaries')).map((raw, i) => {
    const c = r.obj(raw, `canaries[${i}]`);
    if (typeof c.name !== 'string' || c.name === '') r.fail(`canaries[${i}].name`, 'must be a non-empty string');
    return { name: c.name, feature: r.featureId(c.feature, `canaries[${i}].feature`), threshold: r.finite(c.threshold, `canaries[${i}].threshold`) };
  });
  return {
    monitor: parseMonitor(r, root.monitor),
    schema: OWN_SCHEMA,
    title: r.str(root.name),
    description: r.str(root.description),
    model: r.str(root.model),
    layer: r.optInt(root.layer),
    saePath: r.str(root.sae, 'sae'),
    encode: parseEncode(r, root.encode),
    pooling: parsePooling(r, root.pooling),
    features: checkUnique(r, features),
    canaries,
    validation: summariseValidation(r, root.validation),
    synthetic: root.synthetic === true,
    kind,
    linear: undefined,
    verifier: parseVerifier(r, root.verifier),
    claims: {},
  };
}

/** A direction or probe pack: no SAE, no features; its r_t is the linear read-out. */
function parseLinearPack(r: Reader, root: Json, kind: 'direction' | 'probe'): PackSpec {
  // Everything that reads SAE features has nothing to read here: refuse it rather than ignore it.
  for (const field of ['features', 'canaries', 'sae', 'encode'] as const) {
    if (root[field] !== undefined) r.fail(field, `is for SAE packs; a ${kind} pack has none (remove it or use "kind": "sae")`);
  }
  const monitor = parseMonitor(r, root.monitor);
  if (monitor.hackSignatures.length > 0) r.fail('monitor.hack_signatures', `read SAE features; a ${kind} pack has none`);
  if (monitor.fvuBound !== undefined) r.fail('monitor.fvu_bound', `needs an SAE reconstruction; a ${kind} pack has none`);
  const other = kind === 'direction' ? 'probe' : 'direction';
  if (root[other] !== undefined) r.fail(other, `does not belong in a ${kind} pack`);
  return {
    monitor,
    schema: OWN_SCHEMA,
    title: r.str(root.name),
    description: r.str(root.description),
    model: r.str(root.model),
    layer: r.optInt(root.layer),
    saePath: '',
    encode: 'topk',
    pooling: parsePooling(r, root.pooling),
    features: [],
    canaries: [],
    validation: summariseValidation(r, root.validation),
    synthetic: root.synthetic === true,
    kind,
    linear: parseLinear(r, kind, root[kind]),
    verifier: parseVerifier(r, root.verifier),
    claims: {},
  };
}

function parseCatalogA(r: Reader, root: Json): PackSpec {
  const features = r.arr(root.features, 'features').map((raw, i) => {
    const f = r.obj(raw, `features[${i}]`);
    return {
      id: r.featureId(f.feature_id, `features[${i}].feature_id`),
      weight: r.finite(f.weight, `features[${i}].weight`),
      threshold: r.finite(f.activation_threshold, `features[${i}].activation_threshold`, 0),
      name: typeof f.name === 'string' ? f.name : undefined,
    };
  });
  const metadata = root.metadata === undefined ? {} : r.obj(root.metadata, 'metadata');
  return {
    monitor: DEFAULT_MONITOR,
    schema: 'catalog-a',
    title: r.str(root.name),
    description: r.str(root.description),
    model: r.str(root.model_name),
    layer: r.optInt(metadata.target_layer),
    saePath: 'sae',
    encode: parseEncode(r, root.encode),
    pooling: parsePooling(r, root.pooling),
    features: checkUnique(r, features),
    canaries: [],
    validation: summariseValidation(r, root.validation),
    synthetic: false,
    kind: 'sae',
    linear: undefined,
    verifier: undefined,
    claims: {},
  };
}

function parseCatalogB(r: Reader, root: Json): PackSpec {
  const list = (key: 'helpful_features' | 'harmful_features', sign: 1 | -1): PackFeature[] =>
    (root[key] === undefined ? [] : r.arr(root[key], key)).map((raw, i) => {
      const f = r.obj(raw, `${key}[${i}]`);
      // The catalog's weights are +1 / -1; a helpful feature with a negative weight would be a contradiction.
      const weight = r.finite(f.weight, `${key}[${i}].weight`, sign);
      if (Math.sign(weight) !== sign) r.fail(`${key}[${i}].weight`, `must be ${sign > 0 ? 'positive' : 'negative'} in ${key}, got ${weight}`);
      return { id: r.featureId(f.feature_id, `${key}[${i}].feature_id`), weight, threshold: 0, name: undefined };
    });
  const metadata = root.metadata === undefined ? {} : r.obj(root.metadata, 'metadata');
  return {
    monitor: DEFAULT_MONITOR,
    schema: 'catalog-b',
    title: r.str(root.name),
    description: r.str(root.description),
    model: r.str(root.model_name),
    layer: r.optInt(metadata.target_layer),
    saePath: 'sae',
    encode: parseEncode(r, root.encode),
    pooling: parsePooling(r, root.pooling),
    features: checkUnique(r, [...list('helpful_features', 1), ...list('harmful_features', -1)]),
    canaries: [],
    validation: summariseValidation(r, root.validation),
    synthetic: false,
    kind: 'sae',
    linear: undefined,
    verifier: undefined,
    claims: { dModel: r.optInt(metadata.d_model), dSae: r.optInt(metadata.d_sae), k: r.optInt(metadata.k) },
  };
}
