import assert from 'node:assert/strict';
import os from 'node:os';
import { test } from 'node:test';

import { status } from '@grpc/grpc-js';

import { BUNDLED_PACKS_DIR, resolveServeConfig, SERVE_OPTIONS } from '../../src/config.js';
import { ERROR_CATALOGUE, MechRewardError, toGrpcStatus, toHttpError } from '../../src/errors.js';

test('config: explicit beats environment beats default', () => {
  const cfg = resolveServeConfig({ grpcPort: 1234 }, { MECHREWARD_GRPC_PORT: '999', MECHREWARD_HTTP_PORT: '4321' });
  assert.equal(cfg.grpcPort, 1234);
  assert.equal(cfg.httpPort, 4321);
  assert.equal(cfg.host, '127.0.0.1');
  assert.equal(cfg.packs, BUNDLED_PACKS_DIR);
  assert.equal(cfg.workers * cfg.intraOpThreads <= os.availableParallelism(), true);
});

test('config: every option has a flag, a MECHREWARD_ variable and help', () => {
  for (const o of SERVE_OPTIONS) {
    assert.match(o.flag, o.kind === "bool" ? /^--[a-z-]+ \[bool\]$/ : /^--[a-z-]+ <[a-z]+>$/);
    assert.match(o.env, /^MECHREWARD_[A-Z_]+$/);
    assert.ok(o.help.length > 10);
  }
  assert.equal(new Set(SERVE_OPTIONS.map((o) => o.env)).size, SERVE_OPTIONS.length);
});

test('config: onnxruntime threads may not exceed the cores', () => {
  const cores = os.availableParallelism();
  assert.throws(() => resolveServeConfig({ workers: cores + 1, intraOpThreads: 1 }, {}), /more than the \d+ cores/);
  assert.throws(() => resolveServeConfig({ executionProvider: 'tpu' }, {}), /not one of cpu, cuda/);
  assert.throws(() => resolveServeConfig({}, { MECHREWARD_ALLOW_SPINNING: 'maybe' }), /MECHREWARD_ALLOW_SPINNING.*not a boolean/);
});

test('errors: each catalogue code maps to one gRPC status and one HTTP code', () => {
  const expected: Record<string, [status, number]> = {
    MR_ERR_INVALID_TENSOR: [status.INVALID_ARGUMENT, 400],
    MR_ERR_PACK_NOT_FOUND: [status.NOT_FOUND, 404],
    MR_ERR_OVERLOADED: [status.RESOURCE_EXHAUSTED, 429],
    MR_ERR_REQUEST_TOO_LARGE: [status.RESOURCE_EXHAUSTED, 413],
    MR_ERR_NOT_READY: [status.UNAVAILABLE, 503],
    MR_ERR_DEADLINE: [status.DEADLINE_EXCEEDED, 504],
    MR_ERR_INTERNAL: [status.INTERNAL, 500],
  };
  for (const [code, [grpcCode, http]] of Object.entries(expected)) {
    const err = new MechRewardError(code as keyof typeof ERROR_CATALOGUE, 'x');
    assert.equal(toGrpcStatus(err).code, grpcCode, code);
    assert.equal(toHttpError(err).statusCode, http, code);
  }
});

test('errors: unknown errors become INTERNAL without leaking their message', () => {
  const leaked = new Error('/secret/path/weights.safetensors exploded');
  assert.deepEqual(toGrpcStatus(leaked), { code: status.INTERNAL, details: 'MR_ERR_INTERNAL: internal error' });
  assert.equal(toHttpError(leaked).body.error, 'internal error');
});
