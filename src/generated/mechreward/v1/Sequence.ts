// Original file: proto/mechreward/v1/reward.proto

import type { DType as _mechreward_v1_DType, DType__Output as _mechreward_v1_DType__Output } from '../../mechreward/v1/DType.js';

export interface Sequence {
  'activations'?: (Buffer | Uint8Array | string);
  'dtype'?: (_mechreward_v1_DType);
  'num_tokens'?: (number);
  'score_from'?: (number);
  'text'?: (string);
  'expected_answer'?: (string);
  'tokens'?: (string)[];
}

export interface Sequence__Output {
  'activations': (Buffer);
  'dtype': (_mechreward_v1_DType__Output);
  'num_tokens': (number);
  'score_from': (number);
  'text': (string);
  'expected_answer': (string);
  'tokens': (string)[];
}
