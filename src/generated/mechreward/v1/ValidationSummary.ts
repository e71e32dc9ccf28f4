// Original file: proto/mechreward/v1/reward.proto


export interface ValidationSummary {
  'present'?: (boolean);
  'verdict'?: (string);
  'spearman_rho'?: (number | string);
  'n'?: (number);
  'method'?: (string);
}

export interface ValidationSummary__Output {
  'present': (boolean);
  'verdict': (string);
  'spearman_rho': (number);
  'n': (number);
  'method': (string);
}
