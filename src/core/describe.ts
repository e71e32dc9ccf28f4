// Transport-neutral descriptions of packs and of the server, shared by gRPC (ListPacks, GetInfo) and HTTP.
import { packLayer, poolingLabel, type Pack } from '../packs/registry.js';

export interface PackDescription {
  name: string;
  model: string;
  layer: number;
  d_model: number;
  d_sae: number;
  k: number;
  architecture: string;
  encode_mode: string;
  feature_count: number;
  validation: { present: boolean; verdict: string; spearman_rho: number; n: number; method: string };
  pooling: string;
  canaries: string[];
  schema: string;
  sae_format: string;
  synthetic: boolean;
  description: string;
}

export function describePack(pack: Pack): PackDescription {
  const { spec, sae } = pack;
  const v = spec.validation;
  return {
    name: pack.name,
    model: spec.model,
    layer: packLayer(pack) ?? -1,
    d_model: sae.dModel,
    d_sae: sae.dSae,
    k: sae.k,
    architecture: sae.architecture,
    encode_mode: spec.encode,
    feature_count: spec.features.length,
    validation: { present: v.present, verdict: v.verdict, spearman_rho: v.spearmanRho, n: v.n, method: v.method },
    pooling: poolingLabel(pack),
    canaries: spec.canaries.map((c) => c.name),
    schema: spec.schema,
    sae_format: sae.format,
    synthetic: spec.synthetic,
    description: spec.description,
  };
}
