// The engine's input slabs (src/engine/buffers.ts): reused by size class, and past the cache bound one-off.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { SlabPool } from '../../src/engine/buffers.js';

test('a slab given back serves the next request of its size class; sizes round up to a power of two', () => {
  const pool = new SlabPool(1 << 24);
  const a = pool.take(100_000);
  assert.equal(a.bytes.byteLength, 131_072);
  assert.ok(a.id >= 0);
  const b = pool.take(100_000);
  assert.notEqual(b.id, a.id, 'a slab in use is not handed out twice');
  pool.give(a);
  assert.equal(pool.take(70_000).id, a.id);
  assert.equal(pool.take(10).bytes.byteLength, 65_536, 'the smallest class');
});

test('beyond the cache bound slabs are one-off (id -1) and never cached', () => {
  const pool = new SlabPool(256 * 1024);
  const kept = [pool.take(200_000)];
  const extra = pool.take(200_000);
  assert.equal(kept[0]!.id, 0);
  assert.equal(extra.id, -1);
  pool.give(extra);
  pool.give(kept[0]!);
  assert.equal(pool.take(200_000).id, 0);
  assert.equal(pool.take(200_000).id, -1);
});
