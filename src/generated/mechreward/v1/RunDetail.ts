// Original file: proto/mechreward/v1/reward.proto

import type { RunSummary as _mechreward_v1_RunSummary, RunSummary__Output as _mechreward_v1_RunSummary__Output } from '../../mechreward/v1/RunSummary.js';
import type { RunPoint as _mechreward_v1_RunPoint, RunPoint__Output as _mechreward_v1_RunPoint__Output } from '../../mechreward/v1/RunPoint.js';
import type { FlaggedRollout as _mechreward_v1_FlaggedRollout, FlaggedRollout__Output as _mechreward_v1_FlaggedRollout__Output } from '../../mechreward/v1/FlaggedRollout.js';

export interface RunDetail {
  'summary'?: (_mechreward_v1_RunSummary | null);
  'history'?: (_mechreward_v1_RunPoint)[];
  'recent_flagged'?: (_mechreward_v1_FlaggedRollout)[];
}

export interface RunDetail__Output {
  'summary': (_mechreward_v1_RunSummary__Output | null);
  'history': (_mechreward_v1_RunPoint__Output)[];
  'recent_flagged': (_mechreward_v1_FlaggedRollout__Output)[];
}
