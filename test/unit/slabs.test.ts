// The engine's input slabs (src/engine/buffers.ts): reused by size class, and past the cache bound one-off; the
// copy into them gives the source's bytes exactly, whatever the two buffers' alignments.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { copyIntoShared, SlabPool } from '../../src/engine/buffers.js';

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

test('copyIntoShared copies every byte exactly at any source and target offset, across bounce-buffer boundaries', () => {
  const source = new Uint8Array(300_000 + 16);
  for (let i = 0; i < source.length; i++) source[i] = (i * 2654435761) >>> 24;
  const shared = new SharedArrayBuffer(source.length + 16);
  // Lengths below, at and across the 64 KiB bounce buffer; offsets aligned alike and not.
  for (const length of [0, 1, 7, 65_535, 65_536, 65_537, 200_003, 300_000]) {
    for (const [from, to] of [[0, 0], [8, 16], [1, 0], [5, 8], [3, 7], [16, 1]] as const) {
      const target = new Uint8Array(shared, to, length);
      target.fill(0xee);
      copyIntoShared(target, source.subarray(from, from + length));
      assert.ok(Buffer.from(target.buffer, to, length).equals(Buffer.from(source.buffer, from, length)), `length ${length}, source offset ${from}, target offset ${to}`);
    }
  }
});
