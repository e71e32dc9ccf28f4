// POST /v1/openrlhf/{pack}: OpenRLHF's remote reward protocol, exactly as its agent executor speaks it.
//   request  {"query": [str], "prompts": [str], "labels": [str]}   (query = prompt + response, special tokens kept)
//   response {"rewards": [number], "scores": [number], "extra_logs": {name: [number]}}, one entry per query
// Empty lists get empty lists. OpenRLHF treats a missing reward as fatal and retries any non-2xx answer five
// times, so: a request it could never fix (bad body, unknown pack, no reader configured) gets the catalogue's
// 4xx/5xx and fails loudly; overload and not-ready get 429/503, which its retries can ride out; a reader that
// fails or times out gets 200 with the fallback reward and extra_logs.mechreward_unscored = 1 for every
// sample, so training goes on and the gap shows in OpenRLHF's logs (docs/integrations.md).
// OpenRLHF sends only that body, to a URL fixed for the whole run, so a run for the monitor page is named in the
// URL: `/v1/openrlhf/{pack}?run_id=NAME` (checked first, by the one run_id rule). OpenRLHF passes nothing that
// could serve as a training step, so these runs carry none and the page plots them by call.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import { describePack } from '../../core/describe.js';
import { checkRunId } from '../../core/run-id.js';
import { MechRewardError } from '../../errors.js';
import type { Service } from '../../service.js';
import { callerGoneSignal } from './abort.js';

/** The reward OpenRLHF gets for a sample the sidecar could not score; always with mechreward_unscored = 1. */
export const OPENRLHF_FALLBACK_REWARD = 0;

interface OpenRlhfRequest {
  query: string[];
  prompts: string[];
  labels: string[];
}

interface OpenRlhfRoute {
  Params: { pack: string };
  Querystring: { run_id?: unknown };
}

interface OpenRlhfResponse {
  rewards: number[];
  scores: number[];
  extra_logs: Record<string, number[]>;
}

function parseRequest(body: unknown): OpenRlhfRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new MechRewardError('MR_ERR_MALFORMED_BODY', 'body: expected an object {query, prompts, labels}');
  const b = body as Record<string, unknown>;
  const strings = (field: string, required: boolean): string[] => {
    const v = b[field];
    if (v === undefined && !required) return [];
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', `${field}: must be a list of strings`);
    return v as string[];
  };
  const query = strings('query', true);
  const prompts = strings('prompts', true);
  const labels = strings('labels', false);
  if (prompts.length !== query.length) throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', `prompts: ${prompts.length} entries for ${query.length} queries`);
  if (labels.length !== 0 && labels.length !== query.length) throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', `labels: ${labels.length} entries for ${query.length} queries`);
  return { query, prompts, labels };
}

function unscored(n: number): OpenRlhfResponse {
  const rewards = new Array<number>(n).fill(OPENRLHF_FALLBACK_REWARD);
  return { rewards, scores: [...rewards], extra_logs: { mechreward_unscored: new Array<number>(n).fill(1), mechreward_flagged: new Array<number>(n).fill(0) } };
}

/** The run named in the URL (`?run_id=`), '' for none; a bad one is refused before any work, naming run_id. */
function runIdFromQuery(value: unknown): string {
  const id = value === undefined ? '' : value;
  checkRunId(id);
  return String(id);
}

export function registerOpenRlhfRoute(app: FastifyInstance, service: Service): void {
  const reader = service.reader;
  app.post<OpenRlhfRoute>('/v1/openrlhf/:pack', async (req: FastifyRequest<OpenRlhfRoute>, reply: FastifyReply) => {
    const runId = runIdFromQuery(req.query.run_id);
    const input = parseRequest(req.body);
    const n = input.query.length;
    if (n === 0) return { rewards: [], scores: [], extra_logs: {} } satisfies OpenRlhfResponse;
    if (!service.isReady()) throw new MechRewardError('MR_ERR_NOT_READY', `server is not ready: ${service.notReadyReason()}`);
    const pack = service.scorer.getPack(req.params.pack);
    if (!reader) throw new MechRewardError('MR_ERR_READER_NOT_CONFIGURED', 'this sidecar has no reader: start it with --reader-url (python -m mechreward_client.reader)');
    const { layer } = describePack(pack);
    if (layer < 0) throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', `pack: ${pack.name} declares no layer, so the reader cannot know where to read`);

    const signal = callerGoneSignal(reply);
    let read;
    try {
      read = await reader.residuals(input.query, input.prompts, layer, signal);
    } catch (err) {
      service.log.warn({ err, pack: pack.name, queries: n }, 'reader failed: answering the fallback reward with mechreward_unscored = 1');
      service.metrics.failures.inc({ reason: 'reader' });
      return unscored(n);
    }
    // The canary text rule reads the response text: the query after its prompt.
    const sequences = read.sequences.map((s, i) => {
      const q = input.query[i]!;
      const p = input.prompts[i]!;
      return { ...s, text: q.startsWith(p) ? q.slice(p.length) : q, expected_answer: input.labels[i] ?? '' };
    });
    const out = await service.scorer.score({ pack: pack.name, runId, sequences }, signal);
    service.recordScore(out);
    const rewards = out.results.map((r) => r.reward);
    return {
      rewards,
      scores: [...rewards],
      extra_logs: { mechreward_unscored: new Array<number>(n).fill(0), mechreward_flagged: out.results.map((r) => (r.flags.length > 0 ? 1 : 0)) },
    } satisfies OpenRlhfResponse;
  });
}
