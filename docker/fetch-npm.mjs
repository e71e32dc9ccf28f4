// Build stage only: puts npm (the version the project's lockfile is made with) into /usr/local/lib/npm when
// the base image has Node but no npm, as Debian's `nodejs` package does. One pinned tarball from the npm
// registry, checked against its published sha512 before it is unpacked; much faster than Debian's `npm`
// package, which pulls a few hundred node-* packages. An official Node image has npm and never runs this.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';

const VERSION = '11.19.1';
const INTEGRITY = 'sha512-ztsxKxt/kkIaAs+2i0GU6I+DRmUdrNasxTZKJe9TCdSjKxlhah/4r/hl5ygMD6XAg1qZ9c2TNomR4qgOydp10g==';
const registry = (process.env.npm_config_registry ?? 'https://registry.npmjs.org').replace(/\/$/, '');
const url = `${registry}/npm/-/npm-${VERSION}.tgz`;

const response = await fetch(url);
if (!response.ok) throw new Error(`fetch-npm: ${url} answered ${response.status}`);
const tarball = Buffer.from(await response.arrayBuffer());
const actual = `sha512-${createHash('sha512').update(tarball).digest('base64')}`;
if (actual !== INTEGRITY) throw new Error(`fetch-npm: ${url} has integrity ${actual}, expected ${INTEGRITY}`);

writeFileSync('/tmp/npm.tgz', tarball);
mkdirSync('/usr/local/lib/npm', { recursive: true });
execFileSync('tar', ['-xzf', '/tmp/npm.tgz', '-C', '/usr/local/lib/npm', '--strip-components=1']);
writeFileSync('/usr/local/bin/npm', '#!/bin/sh\nexec node /usr/local/lib/npm/bin/npm-cli.js "$@"\n', { mode: 0o755 });
writeFileSync('/usr/local/bin/npx', '#!/bin/sh\nexec node /usr/local/lib/npm/bin/npx-cli.js "$@"\n', { mode: 0o755 });
console.log(`fetch-npm: npm ${VERSION} in /usr/local/lib/npm`);
