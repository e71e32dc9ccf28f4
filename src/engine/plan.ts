// Decides, for every loaded pack, which ONNX session computes it (pure; runs on the main thread).
// Ranking SAEs (TopK, AbsTopK, group-max) in exact mode share one full-encoder session per weights file;
// everything else gets a small
// session holding only the pack's columns. Direction and probe packs, and dual verifiers, get a linear session.
import type { LinearReadout } from '../packs/linear.js';
import { engineKey, type Pack } from '../packs/registry.js';
import { ranksAllFeatures } from '../packs/sae.js';
import type { ModelPlan, PackPlan } from './protocol.js';

export interface EnginePlan {
  readonly models: ModelPlan[];
  readonly packs: PackPlan[];
}

export function planEngine(packs: Iterable<Pack>): EnginePlan {
  const models = new Map<string, ModelPlan>();
  const plans: PackPlan[] = [];
  const linearModel = (readout: LinearReadout, pack: Pack): string => {
    const id = `linear:${readout.key}@${pack.fileStamps[readout.weightsPath] ?? ''}:${readout.output}`;
    if (!models.has(id)) models.set(id, { kind: 'linear', id, readout });
    return id;
  };
  for (const pack of packs) {
    const { spec, sae } = pack;
    const verifierModelId = pack.verifier ? linearModel(pack.verifier, pack) : undefined;
    if (!sae) {
      // Direction and probe packs: one small MatMul session per read-out file, shared by packs that use it.
      plans.push({ pack: engineKey(pack), modelId: linearModel(pack.linear!, pack), dModel: pack.dModel, numColumns: 0, recon: false, runtimeFeatures: undefined, verifierModelId });
      continue;
    }
    // Canary columns follow the reward columns with weight 0 and no feature threshold: they carry the raw
    // activation for the canary rules and add nothing to the reward.
    // Hack-signature features likewise carry raw activations for the monitor's ratio rule.
    const extra = [...spec.canaries.map((c) => c.feature), ...spec.monitor.hackSignatures.flatMap((h) => h.features)];
    const ids = [...spec.features.map((f) => f.id), ...extra];
    const weights = [...spec.features.map((f) => f.weight), ...extra.map(() => 0)];
    const thresholds = [...spec.features.map((f) => f.threshold), ...extra.map(() => 0)];
    const recon = spec.monitor.fvuBound !== undefined;
    if (ranksAllFeatures(sae.architecture) && (spec.encode === 'topk' || spec.encode === 'topk_int8')) {
      // A session with the decoder branch is a separate session: onnxruntime runs every node of a graph
      // whatever outputs are fetched, so packs without the off-distribution rule must not pay for it.
      const int8 = spec.encode === 'topk_int8';
      const id = `sae:${sae.key}@${pack.fileStamps[sae.weightsPath] ?? ''}${int8 ? ':int8' : ''}${recon ? ':recon' : ''}`;
      if (!models.has(id)) models.set(id, { kind: 'full', id, sae, recon, int8 });
      plans.push({ pack: engineKey(pack), modelId: id, dModel: sae.dModel, numColumns: ids.length, recon, runtimeFeatures: { ids, weights, thresholds }, verifierModelId });
    } else {
      const id = `pack:${engineKey(pack)}`;
      models.set(id, { kind: 'selected', id, sae, mode: spec.encode === 'topk' ? 'exact' : 'selected_relu', featureIds: ids, weights, thresholds });
      plans.push({ pack: engineKey(pack), modelId: id, dModel: sae.dModel, numColumns: ids.length, recon: false, runtimeFeatures: undefined, verifierModelId });
    }
  }
  return { models: [...models.values()], packs: plans };
}
