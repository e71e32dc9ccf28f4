// Loads the wire contract (proto/mechreward/v1/reward.proto) with the same options the type generator uses
// (scripts/generate-proto-types.mjs), so src/generated/ describes exactly what arrives here.
import { fileURLToPath } from 'node:url';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

import type { ProtoGrpcType } from '../../generated/reward.js';

export const PROTO_ROOT = fileURLToPath(new URL('../../../../proto', import.meta.url));
export const PROTO_FILE = 'mechreward/v1/reward.proto';
export const SERVICE_NAME = 'mechreward.v1.RewardService';

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
};

export function loadContract(): ProtoGrpcType {
  const definition = protoLoader.loadSync(PROTO_FILE, LOADER_OPTIONS);
  return grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType;
}
