// Original file: proto/mechreward/v1/reward.proto

import type { Long } from '@grpc/proto-loader';

export interface RegisterSharedMemoryResponse {
  'lease_ms'?: (number | string | Long);
}

export interface RegisterSharedMemoryResponse__Output {
  'lease_ms': (string);
}
