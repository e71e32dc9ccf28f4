// Minimal gRPC client: scores two random sequences with a pack and prints the rewards.
//   node examples/score_grpc.mjs [target=127.0.0.1:50051] [pack=smollm2-arith]
// Real trainers send residual activations captured at the pack's layer (see docs/packs.md).
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const [target = '127.0.0.1:50051', pack = 'smollm2-arith'] = process.argv.slice(2);
const definition = protoLoader.loadSync('mechreward/v1/reward.proto', {
  keepCase: true, longs: String, enums: String, defaults: true, includeDirs: [new URL('../proto', import.meta.url).pathname],
});
const { mechreward } = grpc.loadPackageDefinition(definition);
const client = new mechreward.v1.RewardService(target, grpc.credentials.createInsecure());
const call = (method, request) =>
  new Promise((resolve, reject) => client[method](request, { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res))));

const { packs } = await call('ListPacks', {});
const info = packs.find((p) => p.name === pack);
if (!info) throw new Error(`pack ${pack} not served; have ${packs.map((p) => p.name).join(', ')}`);

function randomSequence(numTokens, scoreFrom) {
  const rows = new Float32Array(numTokens * info.d_model).map(() => (Math.random() - 0.5) * 4);
  // Little-endian, row-major [num_tokens, d_model] float32.
  return { activations: Buffer.from(rows.buffer), dtype: 'DTYPE_F32', num_tokens: numTokens, score_from: scoreFrom };
}

const response = await call('Score', { pack, run_id: 'example', sequences: [randomSequence(12, 4), randomSequence(20, 8)] });
for (const [i, r] of response.results.entries()) {
  console.log(JSON.stringify({ sequence: i, reward: r.reward, token_rewards: r.token_rewards.map((v) => +v.toFixed(4)), flags: r.flags }));
}
client.close();
