// Original file: proto/mechreward/v1/reward.proto

import type { Long } from '@grpc/proto-loader';

export interface RunPoint {
  't_ms'?: (number | string | Long);
  'sequences'?: (number | string | Long);
  'flagged'?: (number | string | Long);
  'reward_mean'?: (number | string);
  'reward_p10'?: (number | string);
  'reward_p50'?: (number | string);
  'reward_p90'?: (number | string);
  'step'?: (number | string | Long);
  '_step'?: "step";
}

export interface RunPoint__Output {
  't_ms': (string);
  'sequences': (string);
  'flagged': (string);
  'reward_mean': (number);
  'reward_p10': (number);
  'reward_p50': (number);
  'reward_p90': (number);
  'step'?: (string);
  '_step'?: "step";
}
