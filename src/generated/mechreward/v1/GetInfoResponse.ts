// Original file: proto/mechreward/v1/reward.proto

import type { Long } from '@grpc/proto-loader';

export interface GetInfoResponse {
  'version'?: (string);
  'onnxruntime_version'?: (string);
  'max_message_bytes'?: (number | string | Long);
  'max_tokens_per_request'?: (number);
  'max_inflight'?: (number);
  'max_batch_tokens'?: (number);
  'workers'?: (number);
  'intra_op_threads'?: (number);
  'packs'?: (string)[];
  'max_queue_tokens'?: (number);
  'max_queue_delay_ms'?: (number);
  'allow_unvalidated'?: (boolean);
  'auth_required'?: (boolean);
}

export interface GetInfoResponse__Output {
  'version': (string);
  'onnxruntime_version': (string);
  'max_message_bytes': (string);
  'max_tokens_per_request': (number);
  'max_inflight': (number);
  'max_batch_tokens': (number);
  'workers': (number);
  'intra_op_threads': (number);
  'packs': (string)[];
  'max_queue_tokens': (number);
  'max_queue_delay_ms': (number);
  'allow_unvalidated': (boolean);
  'auth_required': (boolean);
}
