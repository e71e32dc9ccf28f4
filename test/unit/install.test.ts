// What `npm ci` on a fresh clone depends on: no locked package asks for a newer Node than package.json's
// engines (npm prints EBADENGINE for it), and the cookie override that keeps fastify's inject on a Node-20
// cookie still encodes cookies as light-my-request expects. (The CUDA download onnxruntime-node's install
// script would make is denied by allowScripts; checked here by the policy itself.)
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import Fastify from 'fastify';
import semver from 'semver';

import { REPO_ROOT } from '../helpers/fixtures.js';

const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { engines: { node: string }; overrides: Record<string, string>; allowScripts: Record<string, boolean> };
const lock = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version?: string; engines?: { node?: string } }> };

/** Whether the lowest Node that package.json's engines admits satisfies a package's engines range. */
function allowsMajor(range: string, major: number): boolean {
  return semver.satisfies(`${major}.0.0`, range);
}

test("every locked package runs on the Node package.json's engines promise (no EBADENGINE on npm ci)", () => {
  const minimum = Number(/^>=(\d+)$/.exec(pkg.engines.node)![1]);
  const tooNew = Object.entries(lock.packages)
    .filter(([name, p]) => name && p.engines?.node && !allowsMajor(p.engines.node, minimum))
    .map(([name, p]) => `${name}@${p.version} needs node ${p.engines!.node}`);
  assert.deepEqual(tooNew, [], `engines says node ${pkg.engines.node}`);
  assert.equal(allowsMajor('>=22', minimum), false, 'the check itself sees a Node-22-only package');
});

test('the cookie override: fastify inject sends cookies encoded as before (cookie 1.x stringifySetCookie)', async () => {
  assert.equal(pkg.overrides.cookie, '1.1.1');
  assert.equal(lock.packages['node_modules/light-my-request/node_modules/cookie']?.version, '1.1.1');
  const app = Fastify();
  app.get('/', async (req) => ({ cookie: req.headers.cookie }));
  const res = await app.inject({ method: 'GET', url: '/', cookies: { session: 'a b;c', plain: 'x' } });
  assert.deepEqual(res.json(), { cookie: 'session=a%20b%3Bc; plain=x' });
  await app.close();
});

test("onnxruntime-node's install script (a CUDA download from outside the npm registry) is denied; the CPU runtime loads", async () => {
  assert.equal(pkg.allowScripts['onnxruntime-node'], false);
  const ort = await import('onnxruntime-node');
  assert.ok(ort.listSupportedBackends().some((b) => b.name === 'cpu'));
});
