// Test helpers: a real server on ephemeral loopback ports and a real gRPC client for it.
import * as grpc from '@grpc/grpc-js';

import { resolveServeConfig, type ServeConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { loadContract } from '../../src/transports/grpc/contract.js';
import type { RewardServiceClient } from '../../src/generated/mechreward/v1/RewardService.js';
import type { ScoreRequest } from '../../src/generated/mechreward/v1/ScoreRequest.js';
import type { ScoreResponse__Output } from '../../src/generated/mechreward/v1/ScoreResponse.js';

export async function startTestServer(packs: string, overrides: Partial<Record<keyof ServeConfig, unknown>> = {}): Promise<RunningServer> {
  // Fixture packs are synthetic and carry no stage-gate-1 validation: tests opt in explicitly.
  const config = resolveServeConfig({ packs, host: '127.0.0.1', grpcPort: 0, httpPort: 0, logLevel: 'silent', shutdownGraceMs: 5000, allowUnvalidated: true, runsDb: '', ...overrides }, {});
  return startServer(config, createLogger(config.logLevel));
}

export function grpcClient(port: number, options: grpc.ClientOptions = {}): RewardServiceClient {
  const contract = loadContract();
  return new contract.mechreward.v1.RewardService(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': 256 * 1024 * 1024,
    'grpc.max_send_message_length': 256 * 1024 * 1024,
    ...options,
  });
}

export interface GrpcOutcome {
  ok: boolean;
  response?: ScoreResponse__Output;
  code?: grpc.status;
  details?: string;
}

export function score(client: RewardServiceClient, request: ScoreRequest, deadlineMs = 30_000): Promise<GrpcOutcome> {
  return new Promise((resolve) => {
    client.Score(request, { deadline: Date.now() + deadlineMs }, (err, response) => {
      if (err) resolve({ ok: false, code: err.code, details: err.details });
      else resolve({ ok: true, response: response! });
    });
  });
}

export function httpUrl(server: RunningServer, path: string): string {
  return `http://127.0.0.1:${server.httpPort}${path}`;
}
