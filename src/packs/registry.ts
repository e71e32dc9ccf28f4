// Loads every pack folder under a packs directory, checks each against its SAE, and reports every problem at
// start-up with the file it comes from. Packs whose SAE resolves to the same weights file share one SaeSpec
// (and so one copy of the weights in each engine worker).
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';

import { MechRewardError } from '../errors.js';
import { loadLinearReadout, loadVerifierProbe, type LinearReadout } from './linear.js';
import { loadSae, type SaeSpec } from './sae.js';
import { parsePackJson, type PackSpec } from './schema.js';

export interface Pack {
  /** The wire name: the pack's folder name. */
  readonly name: string;
  readonly dir: string;
  readonly spec: PackSpec;
  /** The SAE of an SAE pack; undefined for direction and probe packs. */
  readonly sae: SaeSpec | undefined;
  /** The read-out of a direction or probe pack. */
  readonly linear: LinearReadout | undefined;
  /** The dual verifier's probe, when the pack names one. */
  readonly verifier: LinearReadout | undefined;
  /** Residual width the pack reads. */
  readonly dModel: number;
  /**
   * Which bytes this is: a hash of pack.json, the SAE's cfg.json and the size and modification time of every
   * weights file the pack reads. A hot reload treats a pack whose version changed as a new pack, and the
   * engine keys its sessions by it, so requests that started on the old version finish on the old sessions.
   */
  readonly version: string;
  /** Size and modification time of each weights file (by path): packs share a session only while equal. */
  readonly fileStamps: Readonly<Record<string, string>>;
}

/** The name the engine knows a pack version by (the wire name stays `name`). */
export function engineKey(pack: Pack): string {
  return `${pack.name}@${pack.version}`;
}

export interface PackProblem {
  readonly pack: string;
  readonly message: string;
}

export interface PackCatalogue {
  readonly packs: ReadonlyMap<string, Pack>;
  /** Distinct SAEs by weights-file key. */
  readonly saes: ReadonlyMap<string, SaeSpec>;
  readonly problems: readonly PackProblem[];
}

const PACK_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/**
 * A pack name is a folder name: letters, digits, `.`, `_`, `-`, not starting with a dot, at most 128
 * characters. Checked on every name a client sends, so no `..`, `/`, `%2e`, NUL or absolute path ever
 * reaches a lookup (names are only map keys today; the check keeps it so if that changes).
 */
export function isValidPackName(name: string): boolean {
  return PACK_NAME.test(name);
}

export interface LoadOptions {
  /**
   * Refuse a pack whose folder, SAE or weight files resolve (through a symlink, an absolute path or `..`)
   * outside the packs directory. The server sets it unless --allow-packs-outside.
   */
  readonly confine?: boolean;
}

/** Throws MR_ERR_PACK_INVALID unless `target` (resolved through symlinks) lies inside `root` (resolved). */
function assertInside(root: string, target: string, what: string, packName: string): void {
  const real = realpathSync(target);
  const rel = path.relative(root, real);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) {
    throw new MechRewardError('MR_ERR_PACK_INVALID', `${packName}: ${what} resolves outside the packs directory (start with --allow-packs-outside to serve it anyway)`);
  }
}

/** The files a loaded pack reads, each checked against the packs directory. */
function assertPackConfined(root: string, pack: Pack): void {
  assertInside(root, pack.dir, 'the pack folder', pack.name);
  if (pack.sae) assertInside(root, pack.sae.weightsPath, 'its SAE (pack.json "sae")', pack.name);
  if (pack.linear) assertInside(root, pack.linear.weightsPath, 'its read-out weights file', pack.name);
  if (pack.verifier) assertInside(root, pack.verifier.weightsPath, 'its verifier probe', pack.name);
}

export function loadPackDirectory(packsDir: string, options: LoadOptions = {}): PackCatalogue {
  if (!existsSync(packsDir) || !statSync(packsDir).isDirectory()) {
    throw new MechRewardError('MR_ERR_CONFIG_INVALID', `packs directory ${packsDir} does not exist or is not a directory`);
  }
  const packs = new Map<string, Pack>();
  const saes = new Map<string, SaeSpec>();
  const problems: PackProblem[] = [];
  const entries = readdirSync(packsDir, { withFileTypes: true })
    .filter((e) => e.isDirectory() || e.isSymbolicLink())
    .map((e) => e.name)
    .sort();
  for (const name of entries) {
    const dir = path.join(packsDir, name);
    if (!existsSync(path.join(dir, 'pack.json'))) continue; // not a pack (e.g. a shared SAE folder)
    try {
      if (!isValidPackName(name)) throw new MechRewardError('MR_ERR_PACK_INVALID', `${dir}: folder name is not a valid pack name (letters, digits, . _ -)`);
      if (options.confine) assertInside(realpathSync(packsDir), dir, 'the pack folder', name);
      const pack = loadPack(name, dir, saes);
      if (options.confine) assertPackConfined(realpathSync(packsDir), pack);
      packs.set(name, pack);
      if (pack.sae) saes.set(pack.sae.key, pack.sae);
    } catch (err) {
      problems.push({ pack: name, message: err instanceof Error ? err.message : String(err) });
    }
  }
  return { packs, saes, problems };
}

export function loadPack(name: string, dir: string, knownSaes: ReadonlyMap<string, SaeSpec> = new Map()): Pack {
  const file = path.join(dir, 'pack.json');
  let json: unknown;
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
    json = JSON.parse(text);
  } catch (err) {
    throw new MechRewardError('MR_ERR_PACK_INVALID', `${file}: cannot read JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  const spec = parsePackJson(file, json);
  const verifier = spec.verifier ? loadVerifierProbe(dir, spec.verifier.probe) : undefined;
  let pack: Omit<Pack, 'version' | 'fileStamps'>;
  if (spec.linear) {
    const linear = loadLinearReadout(path.resolve(dir, spec.linear.file), spec.linear.output);
    pack = { name, dir, spec, sae: undefined, linear, verifier, dModel: linear.dModel };
  } else {
    const loaded = loadSae(path.resolve(dir, spec.saePath));
    const sae = knownSaes.get(loaded.key) ?? loaded;
    checkPackAgainstSae(file, spec, sae);
    pack = { name, dir, spec, sae, linear: undefined, verifier, dModel: sae.dModel };
  }
  if (verifier && verifier.dModel !== pack.dModel) {
    throw new MechRewardError('MR_ERR_PACK_INVALID', `${file}: verifier.probe ${verifier.weightsPath} has d_model ${verifier.dModel}, the pack reads d_model ${pack.dModel}`);
  }
  const files = [pack.sae?.weightsPath, pack.linear?.weightsPath, verifier?.weightsPath].filter((f): f is string => f !== undefined);
  const fileStamps = Object.fromEntries(files.map((f) => {
    const st = statSync(f);
    return [f, `${st.size}:${st.mtimeMs}`];
  }));
  const cfgPath = pack.sae ? path.join(pack.sae.dir, 'cfg.json') : '';
  const cfgText = cfgPath && existsSync(cfgPath) ? readFileSync(cfgPath, 'utf8') : '';
  const version = createHash('sha256').update(text).update('\0').update(cfgText).update('\0').update(JSON.stringify(fileStamps)).digest('hex').slice(0, 12);
  return { ...pack, version, fileStamps };
}

function checkPackAgainstSae(file: string, spec: PackSpec, sae: SaeSpec): void {
  const fail = (what: string): never => {
    throw new MechRewardError('MR_ERR_PACK_INVALID', `${file}: ${what}`);
  };
  for (const f of spec.features) {
    if (f.id >= sae.dSae) fail(`feature id ${f.id} is out of range for the SAE at ${sae.dir} (d_sae = ${sae.dSae})`);
  }
  for (const c of spec.canaries) {
    if (c.feature >= sae.dSae) fail(`canary ${c.name} names feature ${c.feature}, out of range (d_sae = ${sae.dSae})`);
  }
  for (const h of spec.monitor.hackSignatures) {
    for (const f of h.features) if (f >= sae.dSae) fail(`monitor.hack_signatures ${h.name} names feature ${f}, out of range (d_sae = ${sae.dSae})`);
  }
  if (spec.encode === 'topk_int8' && sae.architecture !== 'topk') fail(`encode topk_int8 needs a TopK SAE; the SAE at ${sae.dir} is ${sae.architecture}`);
  if (spec.monitor.fvuBound !== undefined) {
    if (sae.architecture !== 'topk' || spec.encode === 'selected_relu') fail('monitor.fvu_bound needs a TopK SAE served in topk or topk_int8 mode (the reconstruction uses the TopK code)');
    if (!sae.tensors.wDec) fail(`monitor.fvu_bound needs W_dec, which ${sae.weightsPath} does not hold`);
  }
  const { dModel, dSae, k } = spec.claims;
  if (dModel !== undefined && dModel !== sae.dModel) fail(`metadata.d_model = ${dModel} but the SAE at ${sae.dir} has d_model ${sae.dModel}`);
  if (dSae !== undefined && dSae !== sae.dSae) fail(`metadata.d_sae = ${dSae} but the SAE at ${sae.dir} has d_sae ${sae.dSae}`);
  if (k !== undefined && sae.k !== 0 && k !== sae.k) fail(`metadata.k = ${k} but the SAE at ${sae.dir} has k ${sae.k}`);
  if (spec.layer !== undefined && sae.hookLayer !== undefined && spec.layer !== sae.hookLayer) {
    fail(`layer ${spec.layer} disagrees with the SAE's hook ${sae.hookName} (layer ${sae.hookLayer})`);
  }
}

/** The layer a pack reads: the pack's own claim, else the SAE's hook. */
export function packLayer(pack: Pack): number | undefined {
  return pack.spec.layer ?? pack.sae?.hookLayer;
}

export function poolingLabel(pack: Pack): string {
  const p = pack.spec.pooling;
  return p.method === 'last_k' ? `last_k:${p.k}` : p.method;
}
