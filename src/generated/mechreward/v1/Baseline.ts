// Original file: proto/mechreward/v1/reward.proto

import type { Interval as _mechreward_v1_Interval, Interval__Output as _mechreward_v1_Interval__Output } from '../../mechreward/v1/Interval.js';
import type { Long } from '@grpc/proto-loader';

export interface Baseline {
  'present'?: (boolean);
  'rate'?: (number | string);
  'ci'?: (_mechreward_v1_Interval | null);
  'flagged'?: (number | string | Long);
  'n'?: (number | string | Long);
}

export interface Baseline__Output {
  'present': (boolean);
  'rate': (number);
  'ci': (_mechreward_v1_Interval__Output | null);
  'flagged': (string);
  'n': (string);
}
