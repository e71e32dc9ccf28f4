// Original file: proto/mechreward/v1/reward.proto

import type { SequenceResult as _mechreward_v1_SequenceResult, SequenceResult__Output as _mechreward_v1_SequenceResult__Output } from '../../mechreward/v1/SequenceResult.js';

export interface ScoreResponse {
  'results'?: (_mechreward_v1_SequenceResult)[];
  'pack'?: (string);
}

export interface ScoreResponse__Output {
  'results': (_mechreward_v1_SequenceResult__Output)[];
  'pack': (string);
}
