// Original file: proto/mechreward/v1/reward.proto

import type { ValidationSummary as _mechreward_v1_ValidationSummary, ValidationSummary__Output as _mechreward_v1_ValidationSummary__Output } from '../../mechreward/v1/ValidationSummary.js';

export interface PackInfo {
  'name'?: (string);
  'model'?: (string);
  'layer'?: (number);
  'd_model'?: (number);
  'd_sae'?: (number);
  'k'?: (number);
  'architecture'?: (string);
  'encode_mode'?: (string);
  'feature_count'?: (number);
  'validation'?: (_mechreward_v1_ValidationSummary | null);
  'pooling'?: (string);
  'canaries'?: (string)[];
  'schema'?: (string);
  'sae_format'?: (string);
  'synthetic'?: (boolean);
  'description'?: (string);
  'kind'?: (string);
  'verifier_mode'?: (string);
}

export interface PackInfo__Output {
  'name': (string);
  'model': (string);
  'layer': (number);
  'd_model': (number);
  'd_sae': (number);
  'k': (number);
  'architecture': (string);
  'encode_mode': (string);
  'feature_count': (number);
  'validation': (_mechreward_v1_ValidationSummary__Output | null);
  'pooling': (string);
  'canaries': (string)[];
  'schema': (string);
  'sae_format': (string);
  'synthetic': (boolean);
  'description': (string);
  'kind': (string);
  'verifier_mode': (string);
}
