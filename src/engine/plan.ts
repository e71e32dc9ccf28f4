// Decides, for every loaded pack, which ONNX session computes it (pure; runs on the main thread).
// TopK SAEs in exact mode share one full-encoder session per weights file; everything else gets a small
// session holding only the pack's columns.
import type { Pack } from '../packs/registry.js';
import type { ModelPlan, PackPlan } from './protocol.js';

export interface EnginePlan {
  readonly models: ModelPlan[];
  readonly packs: PackPlan[];
}

export function planEngine(packs: Iterable<Pack>): EnginePlan {
  const models = new Map<string, ModelPlan>();
  const plans: PackPlan[] = [];
  for (const pack of packs) {
    const { spec, sae } = pack;
    // Canary columns follow the reward columns with weight 0 and no feature threshold: they carry the raw
    // activation for the canary rules and add nothing to the reward.
    const ids = [...spec.features.map((f) => f.id), ...spec.canaries.map((c) => c.feature)];
    const weights = [...spec.features.map((f) => f.weight), ...spec.canaries.map(() => 0)];
    const thresholds = [...spec.features.map((f) => f.threshold), ...spec.canaries.map(() => 0)];
    if (sae.architecture === 'topk' && spec.encode === 'topk') {
      const id = `sae:${sae.key}`;
      if (!models.has(id)) models.set(id, { kind: 'full', id, sae });
      plans.push({ pack: pack.name, modelId: id, dModel: sae.dModel, numColumns: ids.length, runtimeFeatures: { ids, weights, thresholds } });
    } else {
      const id = `pack:${pack.name}`;
      models.set(id, { kind: 'selected', id, sae, mode: spec.encode === 'topk' ? 'exact' : 'selected_relu', featureIds: ids, weights, thresholds });
      plans.push({ pack: pack.name, modelId: id, dModel: sae.dModel, numColumns: ids.length, runtimeFeatures: undefined });
    }
  }
  return { models: [...models.values()], packs: plans };
}
