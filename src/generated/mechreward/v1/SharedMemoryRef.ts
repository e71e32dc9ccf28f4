// Original file: proto/mechreward/v1/reward.proto

import type { Long } from '@grpc/proto-loader';

export interface SharedMemoryRef {
  'region'?: (string);
  'offset'?: (number | string | Long);
  'byte_size'?: (number | string | Long);
}

export interface SharedMemoryRef__Output {
  'region': (string);
  'offset': (string);
  'byte_size': (string);
}
