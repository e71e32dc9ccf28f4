// Original file: proto/mechreward/v1/reward.proto

import type { Long } from '@grpc/proto-loader';

export interface RegisterSharedMemoryRequest {
  'name'?: (string);
  'key'?: (string);
  'byte_size'?: (number | string | Long);
  'nonce'?: (Buffer | Uint8Array | string);
}

export interface RegisterSharedMemoryRequest__Output {
  'name': (string);
  'key': (string);
  'byte_size': (string);
  'nonce': (Buffer);
}
