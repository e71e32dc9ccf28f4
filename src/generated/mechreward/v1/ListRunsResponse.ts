// Original file: proto/mechreward/v1/reward.proto

import type { RunSummary as _mechreward_v1_RunSummary, RunSummary__Output as _mechreward_v1_RunSummary__Output } from '../../mechreward/v1/RunSummary.js';

export interface ListRunsResponse {
  'runs'?: (_mechreward_v1_RunSummary)[];
}

export interface ListRunsResponse__Output {
  'runs': (_mechreward_v1_RunSummary__Output)[];
}
