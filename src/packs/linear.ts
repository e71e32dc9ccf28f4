// Reads the safetensors file of a linear read-out (a direction, a probe, or a dual verifier's probe): tensor
// `weight` [d_model] and `bias` [1], F32/F16/BF16. Only the header is read here; the engine reads the values.
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';

import { MechRewardError } from '../errors.js';
import { readSafetensorsHeader, type TensorEntry } from './safetensors.js';
import { parsePackJson, type LinearSpec } from './schema.js';

export interface LinearReadout {
  readonly weightsPath: string;
  /** Real path of the file: one key per distinct file. */
  readonly key: string;
  readonly dModel: number;
  readonly weight: TensorEntry;
  readonly bias: TensorEntry;
  /** `probability` applies a sigmoid to w . x + b. */
  readonly output: LinearSpec['output'];
}

function invalid(where: string, what: string): MechRewardError {
  return new MechRewardError('MR_ERR_PACK_INVALID', `${where}: ${what}`);
}

export function loadLinearReadout(file: string, output: LinearSpec['output']): LinearReadout {
  if (!existsSync(file) || !statSync(file).isFile()) throw invalid(file, 'file not found (expected a safetensors file with tensors weight [d_model] and bias [1])');
  const header = readSafetensorsHeader(file);
  const weight = header.tensors.get('weight');
  const bias = header.tensors.get('bias');
  if (!weight) throw invalid(file, 'missing tensor weight ([d_model])');
  if (!bias) throw invalid(file, 'missing tensor bias ([1])');
  if (weight.shape.length !== 1 || weight.shape[0]! < 1) throw invalid(file, `tensor weight has shape [${weight.shape.join(', ')}], expected [d_model]`);
  if (bias.shape.length !== 1 || bias.shape[0] !== 1) throw invalid(file, `tensor bias has shape [${bias.shape.join(', ')}], expected [1]`);
  return { weightsPath: file, key: realpathSync(file), dModel: weight.shape[0]!, weight, bias, output };
}

/**
 * The dual verifier's probe: a safetensors file, or a probe pack folder (its pack.json's `probe.file`). The
 * verifier's sign test always uses the logit w . x + b, whatever the probe's own output.
 */
export function loadVerifierProbe(packDir: string, probe: string): LinearReadout {
  const target = path.resolve(packDir, probe);
  if (existsSync(target) && statSync(target).isDirectory()) {
    const file = path.join(target, 'pack.json');
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw invalid(file, `verifier.probe names a folder whose pack.json cannot be read (${err instanceof Error ? err.message : String(err)})`);
    }
    const spec = parsePackJson(file, json);
    if (spec.kind !== 'probe' || !spec.linear) throw invalid(file, `verifier.probe must name a probe pack, this one is a ${spec.kind} pack`);
    return loadLinearReadout(path.resolve(target, spec.linear.file), 'logit');
  }
  return loadLinearReadout(target, 'logit');
}
