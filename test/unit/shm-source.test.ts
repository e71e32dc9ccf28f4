// A shared-memory descriptor as decoding reads it (src/shm/registry.ts source()): checked when the request is
// resolved, then pread straight into the engine's slab. The read must see the very region that was checked:
// unregistered, registered again or truncated in between, it is refused naming the field, and nothing is
// read from another file that reused the descriptor's fd.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';

import { MechRewardError } from '../../src/errors.js';
import { SharedMemoryRegistry } from '../../src/shm/registry.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'mechreward-shm-source-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const CLIENT = 'client-0123456789';
const NONCE = 16;

/** A segment file holding a nonce and then `payload`; returns what RegisterSharedMemory carries. */
function segment(payload: Buffer): { name: string; key: string; byte_size: number; nonce: Buffer; file: string } {
  const key = `mechreward-${randomBytes(6).toString('hex')}`;
  const file = path.join(dir, key);
  const nonce = randomBytes(NONCE);
  const fd = openSync(file, 'w', 0o600);
  writeSync(fd, nonce, 0, NONCE, 0);
  writeSync(fd, payload, 0, payload.length, NONCE);
  closeSync(fd);
  return { name: 'r1', key, byte_size: NONCE + payload.length, nonce, file };
}

function registry(): SharedMemoryRegistry {
  return new SharedMemoryRegistry({ enabled: true, dir, leaseMs: 60_000, maxRequestBytes: 1 << 20 });
}

const code = (fn: () => void): string => {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof MechRewardError, String(err));
    return `${err.code}: ${err.message}`;
  }
  return 'no error';
};

test('a source preads the descriptor bytes into a shared slab at any offset within it', () => {
  const payload = randomBytes(10_000);
  const reg = registry();
  const seg = segment(payload);
  reg.register(CLIENT, seg);
  const src = reg.source(CLIENT, { region: seg.name, offset: NONCE + 100, byte_size: 5_000 }, 'sequences[0].shm', 1 << 20);
  assert.equal(src.byteLength, 5_000);
  const slab = new Uint8Array(new SharedArrayBuffer(8_192), 8, 3_000);
  src.copyTo(slab, 1_000);
  assert.ok(Buffer.from(slab).equals(payload.subarray(1_100, 4_100)));
  reg.close();
});

test('unregistered, registered again or truncated after the check: refused naming the field, nothing read', () => {
  const reg = registry();
  const first = segment(randomBytes(4_000));
  reg.register(CLIENT, first);
  const ref = { region: first.name, offset: NONCE, byte_size: 4_000 };
  const slab = () => new Uint8Array(new SharedArrayBuffer(4_000));

  const gone = reg.source(CLIENT, ref, 'sequences[2].shm', 1 << 20);
  reg.unregister(CLIENT, first.name);
  assert.match(code(() => gone.copyTo(slab(), 0)), /^MR_ERR_SHM_NOT_FOUND: sequences\[2\]\.shm\.region: no shared-memory region "r1"/);

  reg.register(CLIENT, first);
  const stale = reg.source(CLIENT, ref, 'sequences[0].shm', 1 << 20);
  reg.register(CLIENT, segment(randomBytes(4_000))); // same name, another segment
  assert.match(code(() => stale.copyTo(slab(), 0)), /^MR_ERR_SHM_NOT_FOUND: sequences\[0\]\.shm\.region: region "r1" was registered again/);

  const third = segment(randomBytes(4_000));
  reg.register(CLIENT, third);
  const cut = reg.source(CLIENT, ref, 'sequences[1].shm', 1 << 20);
  ftruncateSync(openSync(third.file, 'r+'), NONCE + 100);
  assert.match(code(() => cut.copyTo(slab(), 0)), /^MR_ERR_INVALID_ARGUMENT: sequences\[1\]\.shm: region "r1" ended after 116 bytes.*truncated/);
  reg.close();
});
