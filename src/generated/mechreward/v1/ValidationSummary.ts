// Original file: proto/mechreward/v1/reward.proto


export interface ValidationSummary {
  'present'?: (boolean);
  'verdict'?: (string);
  'spearman_rho'?: (number | string);
  'n'?: (number);
  'method'?: (string);
  'p'?: (number | string);
  'ci_low'?: (number | string);
  'ci_high'?: (number | string);
  'data_sha256'?: (string);
  'encode_mode'?: (string);
  'passes'?: (boolean);
  'problem'?: (string);
}

export interface ValidationSummary__Output {
  'present': (boolean);
  'verdict': (string);
  'spearman_rho': (number);
  'n': (number);
  'method': (string);
  'p': (number);
  'ci_low': (number);
  'ci_high': (number);
  'data_sha256': (string);
  'encode_mode': (string);
  'passes': (boolean);
  'problem': (string);
}
