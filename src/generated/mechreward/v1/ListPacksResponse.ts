// Original file: proto/mechreward/v1/reward.proto

import type { PackInfo as _mechreward_v1_PackInfo, PackInfo__Output as _mechreward_v1_PackInfo__Output } from '../../mechreward/v1/PackInfo.js';

export interface ListPacksResponse {
  'packs'?: (_mechreward_v1_PackInfo)[];
}

export interface ListPacksResponse__Output {
  'packs': (_mechreward_v1_PackInfo__Output)[];
}
