// Original file: proto/mechreward/v1/reward.proto

import type { Long } from '@grpc/proto-loader';

export interface VerifierStats {
  'present'?: (boolean);
  'sequences'?: (number | string | Long);
  'mean_disagreement'?: (number | string);
  'tokens'?: (number | string | Long);
  'disagreeing_tokens'?: (number | string | Long);
  'token_disagreement'?: (number | string);
  'downweighted_sequences'?: (number | string | Long);
}

export interface VerifierStats__Output {
  'present': (boolean);
  'sequences': (string);
  'mean_disagreement': (number);
  'tokens': (string);
  'disagreeing_tokens': (string);
  'token_disagreement': (number);
  'downweighted_sequences': (string);
}
