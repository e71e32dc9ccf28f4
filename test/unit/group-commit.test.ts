// Group commit: submissions close together share one write; each settles with its own group's outcome;
// drain() leaves nothing pending.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { GroupCommit } from '../../src/monitor/group-commit.js';

test('submissions in one burst are one write; a write in progress collects the next group', async () => {
  const writes: number[][] = [];
  let release: () => void = () => undefined;
  let first = true;
  const g = new GroupCommit<number>(2, async (items) => {
    writes.push(items);
    if (first) {
      first = false;
      await new Promise<void>((r) => (release = r));
    }
  });
  const a = [1, 2, 3].map((i) => g.submit(i));
  while (writes.length === 0) await new Promise((r) => setTimeout(r, 1));
  const b = [4, 5].map((i) => g.submit(i)); // while the first group is being written
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(writes, [[1, 2, 3]], 'the second group waits for the first write');
  release();
  await Promise.all([...a, ...b]);
  assert.deepEqual(writes, [[1, 2, 3], [4, 5]]);
});

test('a failed write rejects exactly its group; later groups are written', async () => {
  let fail = true;
  const g = new GroupCommit<string>(0, async () => {
    if (fail) {
      fail = false;
      throw new Error('disk full');
    }
  });
  const failed = await Promise.allSettled([g.submit('a'), g.submit('b')]);
  assert.deepEqual(failed.map((r) => r.status), ['rejected', 'rejected']);
  await g.submit('c');
  const pending = g.submit('d');
  await g.drain();
  await pending;
});
