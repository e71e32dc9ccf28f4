// gRPC client: scores real residual activations (the bundled pack's held-out answers) under a run_id, prints
// each reward beside whether the answer was right, then shows what random activations get instead.
//   node examples/score_grpc.mjs [target=127.0.0.1:50051] [pack=smollm2-arith] [count=8]
// Then open http://127.0.0.1:8080/monitor?run=example-grpc. A trainer sends the residuals of its own rollouts,
// captured at the pack's layer (python-shims/mechreward_client/capture.py does it for TRL, verl, OpenRLHF).
import { readFileSync } from 'node:fs';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const [target = '127.0.0.1:50051', pack = 'smollm2-arith', countArg = '8'] = process.argv.slice(2);
const RUN_ID = 'example-grpc';
const root = new URL('..', import.meta.url);
const definition = protoLoader.loadSync('mechreward/v1/reward.proto', {
  keepCase: true, longs: String, enums: String, defaults: true, includeDirs: [new URL('proto', root).pathname],
});
const { mechreward } = grpc.loadPackageDefinition(definition);
const client = new mechreward.v1.RewardService(target, grpc.credentials.createInsecure());
const call = (method, request) =>
  new Promise((resolve, reject) => client[method](request, { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res))));

const { packs } = await call('ListPacks', {});
const info = packs.find((p) => p.name === pack);
if (!info) throw new Error(`pack ${pack} not served; have ${packs.map((p) => p.name).join(', ')}`);

/**
 * The held-out answers the pack was validated on (packs/<pack>/pack.json validation.data): one safetensors
 * file of float16 rows [rows, d_model] ("activations") and, in its metadata, each response's rows, first
 * response row (score_from) and whether its answer was right. Read by hand: an 8-byte header length, a JSON
 * header, then the raw little-endian tensor, which goes on the wire as it is (DTYPE_F16).
 */
function heldOut(packName) {
  const packDir = new URL(`packs/${packName}/`, root);
  const spec = JSON.parse(readFileSync(new URL('pack.json', packDir), 'utf8'));
  const file = readFileSync(new URL(spec.validation.data, packDir));
  const headerLength = Number(file.readBigUInt64LE(0));
  const header = JSON.parse(file.subarray(8, 8 + headerLength).toString('utf8'));
  const tensor = header.activations;
  if (tensor.dtype !== 'F16' || tensor.shape[1] !== info.d_model) throw new Error(`unexpected held-out tensor ${tensor.dtype} ${tensor.shape}`);
  const rowBytes = 2 * tensor.shape[1];
  const data = file.subarray(8 + headerLength + tensor.data_offsets[0], 8 + headerLength + tensor.data_offsets[1]);
  return JSON.parse(header.__metadata__.responses).map((r) => ({
    ...r,
    sequence: { activations: data.subarray(r.offset * rowBytes, (r.offset + r.num_tokens) * rowBytes), dtype: 'DTYPE_F16', num_tokens: r.num_tokens, score_from: r.score_from, expected_answer: String(r.expected) },
  }));
}

const responses = heldOut(pack).slice(0, Number(countArg));
const scored = await call('Score', { pack, run_id: RUN_ID, sequences: responses.map((r) => r.sequence) });
console.log(`${responses.length} held-out answers, scored with ${pack} (run_id ${RUN_ID}):`);
for (const [i, r] of scored.results.entries()) {
  const nonZero = r.token_rewards.filter((v) => v !== 0).length;
  const flags = r.flags.map((f) => f.name).join(', ') || 'none';
  console.log(`  ${responses[i].correct ? 'right' : 'wrong'}  reward ${r.reward.toFixed(4).padStart(8)}  ${nonZero} of ${r.token_rewards.length - responses[i].score_from} response tokens rewarded  flags: ${flags}`);
}
const mean = (rows) => rows.reduce((s, r) => s + r.reward, 0) / Math.max(1, rows.length);
const right = scored.results.filter((_, i) => responses[i].correct);
const wrong = scored.results.filter((_, i) => !responses[i].correct);
console.log(`mean reward: right answers ${mean(right).toFixed(4)}, wrong answers ${mean(wrong).toFixed(4)}`);

// For contrast, random activations (no run_id, so the example run stays clean): the SAE's TopK picks a random
// handful of its 4608 features for each row, almost never the 20 the pack weighs, so every token reward is 0;
// and the SAE cannot reconstruct noise, so the reconstruction error far exceeds the pack's calibrated bound:
// off_distribution. Zeros from the examples mean "not a residual of this model at this layer".
const noise = new Float32Array(16 * info.d_model).map(() => (Math.random() - 0.5) * 4);
const [random] = (await call('Score', { pack, sequences: [{ activations: Buffer.from(noise.buffer), dtype: 'DTYPE_F32', num_tokens: 16, score_from: 4 }] })).results;
console.log(`random activations instead: reward ${random.reward}, flags: ${random.flags.map((f) => `${f.name} (${f.reason})`).join('; ') || 'none'}`);
console.log(`the run on the monitor page: http://127.0.0.1:8080/monitor?run=${RUN_ID} (8080: the default --http-port)`);
client.close();
