// The gRPC Score reply is encoded by hand (src/transports/grpc/score-reply.ts): its bytes must be exactly what
// proto-loader encodes for the same response, and decode to the same message.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { loadContract } from '../../src/transports/grpc/contract.js';
import { encodeScoreResponse, type PackedScoreResponse } from '../../src/transports/grpc/score-reply.js';

const score = loadContract().mechreward.v1.RewardService.service.Score;

function viaProtoLoader(r: PackedScoreResponse): Buffer {
  return score.responseSerialize({ pack: r.pack, results: r.results.map((x) => ({ ...x, token_rewards: Array.from(x.token_rewards) })) });
}

const cases: Array<[string, PackedScoreResponse]> = [
  ['one sequence, no flags, no verifier', { pack: 'p', results: [{ token_rewards: new Float32Array([0, 0, 1.5, -2.25, 3e-8]), reward: 0.75, flags: [], verifier_disagreement: 0, has_verifier: false, verifier_factor: 1 }] }],
  [
    'several sequences, flags with non-ASCII reasons, a verifier, -0 and extreme floats',
    {
      pack: 'smollm2-arith-v1.2',
      results: [
        { token_rewards: new Float32Array([-0, 3.4028234663852886e38, -1.401298464324817e-45]), reward: -0, flags: [{ name: 'reasoning_loop', reason: 'feature 12 reached 9.1 > threshold 4 at token 3 — “quoted”', value: 9.123456789 }, { name: 'x', reason: '', value: -1e300 }], verifier_disagreement: 0.25, has_verifier: true, verifier_factor: 0.5 },
        { token_rewards: new Float32Array(5000).map((_, i) => Math.sin(i)), reward: 1e-3, flags: [], verifier_disagreement: 0, has_verifier: true, verifier_factor: 1 },
      ],
    },
  ],
  ['a long pack name and a reason over 127 bytes', { pack: 'p'.repeat(130), results: [{ token_rewards: new Float32Array(40).fill(2), reward: 2, flags: [{ name: 'n', reason: 'r'.repeat(300), value: 1 }], verifier_disagreement: 0, has_verifier: false, verifier_factor: 1 }] }],
];

for (const [name, response] of cases) {
  test(`ScoreResponse bytes equal proto-loader's: ${name}`, () => {
    const ours = encodeScoreResponse(response);
    const theirs = viaProtoLoader(response);
    assert.equal(ours.toString('hex'), theirs.toString('hex'));
    const decoded = score.responseDeserialize(ours);
    assert.equal(decoded.pack, response.pack);
    decoded.results.forEach((r, i) => {
      assert.deepEqual(new Float32Array(r.token_rewards), response.results[i]!.token_rewards);
      assert.equal(r.flags.length, response.results[i]!.flags.length);
    });
  });
}

test('token rewards from a Float32Array view at an offset are encoded from the view only', () => {
  const backing = new Float32Array([9, 9, 1, 2, 3, 9]);
  const view = backing.subarray(2, 5);
  const response = { pack: 'p', results: [{ token_rewards: view, reward: 2, flags: [], verifier_disagreement: 0, has_verifier: false, verifier_factor: 1 }] };
  assert.deepEqual(score.responseDeserialize(encodeScoreResponse(response)).results[0]!.token_rewards, [1, 2, 3]);
});
