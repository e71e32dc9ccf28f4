// Original file: proto/mechreward/v1/reward.proto

import type { DType as _mechreward_v1_DType, DType__Output as _mechreward_v1_DType__Output } from '../../mechreward/v1/DType.js';
import type { SharedMemoryRef as _mechreward_v1_SharedMemoryRef, SharedMemoryRef__Output as _mechreward_v1_SharedMemoryRef__Output } from '../../mechreward/v1/SharedMemoryRef.js';

export interface Sequence {
  'activations'?: (Buffer | Uint8Array | string);
  'dtype'?: (_mechreward_v1_DType);
  'num_tokens'?: (number);
  'score_from'?: (number);
  'text'?: (string);
  'expected_answer'?: (string);
  'tokens'?: (string)[];
  'shm'?: (_mechreward_v1_SharedMemoryRef | null);
}

export interface Sequence__Output {
  'activations': (Buffer);
  'dtype': (_mechreward_v1_DType__Output);
  'num_tokens': (number);
  'score_from': (number);
  'text': (string);
  'expected_answer': (string);
  'tokens': (string)[];
  'shm': (_mechreward_v1_SharedMemoryRef__Output | null);
}
