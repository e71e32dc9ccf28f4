// Where the generated fixtures live. `npm test` runs scripts/parity/make_parity_fixtures.py first.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (tests run from dist/test/…). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const PARITY_DIR = path.join(REPO_ROOT, 'test/fixtures/parity');
export const PARITY_PACKS = path.join(PARITY_DIR, 'packs');
export const BUNDLED_PACKS = path.join(REPO_ROOT, 'packs');

if (!existsSync(PARITY_PACKS)) {
  throw new Error(`fixtures missing at ${PARITY_DIR}: run \`npm run fixtures\` (npm test does it first)`);
}
