// Original file: proto/mechreward/v1/reward.proto

import type { Sequence as _mechreward_v1_Sequence, Sequence__Output as _mechreward_v1_Sequence__Output } from '../../mechreward/v1/Sequence.js';
import type { Long } from '@grpc/proto-loader';

export interface ScoreRequest {
  'pack'?: (string);
  'sequences'?: (_mechreward_v1_Sequence)[];
  'run_id'?: (string);
  'step'?: (number | string | Long);
  '_step'?: "step";
}

export interface ScoreRequest__Output {
  'pack': (string);
  'sequences': (_mechreward_v1_Sequence__Output)[];
  'run_id': (string);
  'step'?: (string);
  '_step'?: "step";
}
