// Original file: proto/mechreward/v1/reward.proto

import type { Interval as _mechreward_v1_Interval, Interval__Output as _mechreward_v1_Interval__Output } from '../../mechreward/v1/Interval.js';
import type { Baseline as _mechreward_v1_Baseline, Baseline__Output as _mechreward_v1_Baseline__Output } from '../../mechreward/v1/Baseline.js';
import type { VerifierStats as _mechreward_v1_VerifierStats, VerifierStats__Output as _mechreward_v1_VerifierStats__Output } from '../../mechreward/v1/VerifierStats.js';
import type { Long } from '@grpc/proto-loader';

export interface RunSummary {
  'run_id'?: (string);
  'pack'?: (string);
  'sequences'?: (number | string | Long);
  'flagged'?: (number | string | Long);
  'flag_rate'?: (number | string);
  'ci'?: (_mechreward_v1_Interval | null);
  'baseline'?: (_mechreward_v1_Baseline | null);
  'alarm'?: (boolean);
  'flags_by_name'?: ({[key: string]: number | string | Long});
  'first_seen_ms'?: (number | string | Long);
  'last_seen_ms'?: (number | string | Long);
  'verifier'?: (_mechreward_v1_VerifierStats | null);
}

export interface RunSummary__Output {
  'run_id': (string);
  'pack': (string);
  'sequences': (string);
  'flagged': (string);
  'flag_rate': (number);
  'ci': (_mechreward_v1_Interval__Output | null);
  'baseline': (_mechreward_v1_Baseline__Output | null);
  'alarm': (boolean);
  'flags_by_name': ({[key: string]: string});
  'first_seen_ms': (string);
  'last_seen_ms': (string);
  'verifier': (_mechreward_v1_VerifierStats__Output | null);
}
