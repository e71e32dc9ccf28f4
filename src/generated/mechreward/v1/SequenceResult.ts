// Original file: proto/mechreward/v1/reward.proto

import type { CanaryFlag as _mechreward_v1_CanaryFlag, CanaryFlag__Output as _mechreward_v1_CanaryFlag__Output } from '../../mechreward/v1/CanaryFlag.js';

export interface SequenceResult {
  'token_rewards'?: (number | string)[];
  'reward'?: (number | string);
  'flags'?: (_mechreward_v1_CanaryFlag)[];
  'verifier_disagreement'?: (number | string);
  'has_verifier'?: (boolean);
  'verifier_factor'?: (number | string);
}

export interface SequenceResult__Output {
  'token_rewards': (number)[];
  'reward': (number);
  'flags': (_mechreward_v1_CanaryFlag__Output)[];
  'verifier_disagreement': (number);
  'has_verifier': (boolean);
  'verifier_factor': (number);
}
