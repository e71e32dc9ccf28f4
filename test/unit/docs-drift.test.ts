// The docs tables for errors and configuration must list exactly what the code declares.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { status } from '@grpc/grpc-js';

import { SERVE_OPTIONS } from '../../src/config.js';
import { ERROR_CATALOGUE } from '../../src/errors.js';
import { REPO_ROOT } from '../helpers/fixtures.js';

function tableRows(file: string): string[][] {
  return readFileSync(path.join(REPO_ROOT, file), 'utf8')
    .split('\n')
    .filter((l) => /^\| `?(MR_ERR|--)/.test(l))
    .map((l) => l.split('|').slice(1, -1).map((c) => c.trim().replace(/`/g, '')));
}

test('docs/errors.md lists every catalogue code with its gRPC status, HTTP code and retry rule', () => {
  const rows = tableRows('docs/errors.md');
  assert.deepEqual(rows.map((r) => r[0]).sort(), Object.keys(ERROR_CATALOGUE).sort());
  for (const [code, grpcName, http, retry] of rows) {
    const entry = ERROR_CATALOGUE[code as keyof typeof ERROR_CATALOGUE];
    assert.equal(grpcName, status[entry.grpc], code);
    assert.equal(Number(http), entry.http, code);
    assert.equal(retry, entry.retryable ? 'yes' : 'no', code);
  }
});

test('docs/configuration.md lists every option with its flag and variable', () => {
  const rows = tableRows('docs/configuration.md');
  assert.deepEqual(rows.map((r) => `${r[0]} ${r[1]}`).sort(), SERVE_OPTIONS.map((o) => `${o.flag.split(' ')[0]} ${o.env}`).sort());
});
