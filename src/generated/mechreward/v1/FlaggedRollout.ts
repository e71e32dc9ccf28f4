// Original file: proto/mechreward/v1/reward.proto

import type { CanaryFlag as _mechreward_v1_CanaryFlag, CanaryFlag__Output as _mechreward_v1_CanaryFlag__Output } from '../../mechreward/v1/CanaryFlag.js';
import type { Long } from '@grpc/proto-loader';

export interface FlaggedRollout {
  't_ms'?: (number | string | Long);
  'reward'?: (number | string);
  'flags'?: (_mechreward_v1_CanaryFlag)[];
  'tokens'?: (string)[];
  'token_rewards'?: (number | string)[];
  'text'?: (string);
}

export interface FlaggedRollout__Output {
  't_ms': (string);
  'reward': (number);
  'flags': (_mechreward_v1_CanaryFlag__Output)[];
  'tokens': (string)[];
  'token_rewards': (number)[];
  'text': (string);
}
