// The packs shipped in packs/ (what `serve` serves with no arguments) pass stage gate 1, and rerunning the gate
// from this checkout reproduces the shipped rho within 0.01 (issue: "a fresh clone reproduces the shipped rho").
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

import { loadPackDirectory } from '../../src/packs/registry.js';
import { sha256File, validationProblem } from '../../src/packs/validation.js';
import { BUNDLED_PACKS, REPO_ROOT } from '../helpers/fixtures.js';

const execFileAsync = promisify(execFile);

const shipped = readdirSync(BUNDLED_PACKS, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);

test('every shipped pack loads and passes stage gate 1 as serve enforces it', () => {
  const catalogue = loadPackDirectory(BUNDLED_PACKS);
  assert.deepEqual(catalogue.problems, []);
  assert.ok(catalogue.packs.size >= 1);
  for (const pack of catalogue.packs.values()) assert.equal(validationProblem(pack), undefined, pack.name);
});

for (const name of shipped) {
  test(`gate g1 on packs/${name} reproduces its shipped rho within 0.01`, async () => {
    const dir = path.join(BUNDLED_PACKS, name);
    const shippedBlock = (JSON.parse(readFileSync(path.join(dir, 'pack.json'), 'utf8')) as { validation: { rho: number; n: number; data: string; data_sha256: string } }).validation;
    assert.equal(sha256File(path.join(dir, shippedBlock.data)), shippedBlock.data_sha256, 'shipped held-out data matches its hash');
    const { stdout } = await execFileAsync(process.execPath, [path.join(REPO_ROOT, 'bin/mechreward.js'), 'gate', 'g1', '--pack', dir, '--json', '--no-write']);
    const rerun = JSON.parse(stdout) as { rho: number; n: number; p: number; ci: [number, number] };
    assert.equal(rerun.n, shippedBlock.n);
    assert.ok(Math.abs(rerun.rho - shippedBlock.rho) <= 0.01, `rerun rho ${rerun.rho} vs shipped ${shippedBlock.rho}`);
  });
}
