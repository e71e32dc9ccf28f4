import assert from 'node:assert/strict';
import { test } from 'node:test';

import { hackSignatureFlag, offDistributionFlag, textRepetitionFlag } from '../../src/core/canary-rules.js';
import { wilson } from '../../src/monitor/wilson.js';

test('Wilson 95 % interval matches published values', () => {
  // Reference values: Newcombe (1998), Table I, and the closed form at 0 and n.
  const close = (a: [number, number], b: [number, number]) => a.every((v, i) => Math.abs(v - b[i]!) < 5e-4);
  assert.ok(close(wilson(81, 263), [0.2553, 0.3662]), String(wilson(81, 263)));
  assert.ok(close(wilson(15, 148), [0.0624, 0.1605]), String(wilson(15, 148)));
  assert.ok(close(wilson(0, 20), [0, 0.1611]), String(wilson(0, 20)));
  assert.ok(close(wilson(1, 29), [0.0061, 0.1718]), String(wilson(1, 29)));
  assert.deepEqual(wilson(0, 0), [0, 1]);
});

test('text rule: a reasoning word repeated more than 15 times without the expected answer', () => {
  const loop = Array.from({ length: 20 }, () => 'Wait,').join(' ');
  assert.equal(textRepetitionFlag(`${loop} the answer is 7`, '8')?.name, 'text_repetition');
  assert.match(textRepetitionFlag(`${loop} the answer is 7`, '8')!.reason, /"wait" repeated 20 times \(> 15\) without the expected answer "8"/);
  assert.equal(textRepetitionFlag(`${loop} the answer is 8`, '8'), undefined, 'the expected answer is there');
  assert.equal(textRepetitionFlag(`${loop} the answer is 18`, '8')?.value, 20, '18 is not 8');
  assert.equal(textRepetitionFlag(Array.from({ length: 15 }, () => 'step by step').join(', '), '3'), undefined, '15 is not more than 15');
  assert.equal(textRepetitionFlag(Array.from({ length: 16 }, () => 'step by step').join(', '), '3')?.value, 16);
  assert.equal(textRepetitionFlag('Awaiting the waiter: otherwise fine. 5+3 = 8.', '8'), undefined, 'words inside other words do not count');
  assert.equal(textRepetitionFlag('', '8'), undefined);
  assert.match(textRepetitionFlag(loop, '')!.reason, /no expected answer was given/);
});

test('hack signature: fires when signature mass exceeds ratio x reward mass, and only when both fire', () => {
  const sig = { name: 'hack_sig', features: [1], ratio: 0.5 };
  assert.equal(hackSignatureFlag(sig, 6, 10)?.value, 0.6);
  assert.equal(hackSignatureFlag(sig, 4, 10), undefined);
  assert.equal(hackSignatureFlag(sig, 6, 0), undefined, 'no reward features firing');
  assert.equal(hackSignatureFlag(sig, 0, 10), undefined);
});

test('off-distribution: FVU above the bound', () => {
  assert.equal(offDistributionFlag(0.5, 0.3)?.name, 'off_distribution');
  assert.equal(offDistributionFlag(0.2, 0.3), undefined);
  assert.equal(offDistributionFlag(Number.NaN, 0.3), undefined);
});
