// The client of the reader process (python -m mechreward_client.reader): texts in, residual activations out.
// The sidecar never tokenizes: the reader owns the tokenizer and the frozen model, and answers each text's
// activations at the requested layer with the index of its first response token. Every call has a deadline;
// any failure (refused, timed out, an error status, a malformed body) is MR_ERR_READER_FAILED.
import { MechRewardError } from '../errors.js';
import type { SequenceInput } from '../core/decode.js';

export interface ReaderSequences {
  readonly dModel: number;
  readonly sequences: SequenceInput[];
}

interface WireReaderSequence {
  activations?: unknown;
  dtype?: unknown;
  num_tokens?: unknown;
  score_from?: unknown;
  tokens?: unknown;
}

function failed(message: string, cause?: unknown): MechRewardError {
  return new MechRewardError('MR_ERR_READER_FAILED', `reader: ${message}`, cause);
}

export class ReaderClient {
  private readonly endpoint: string;

  constructor(baseUrl: string, private readonly timeoutMs: number) {
    this.endpoint = `${baseUrl.replace(/\/+$/, '')}/v1/residuals`;
  }

  /** Activations after decoder `layer` for each text; `prompts[i]` marks where text i's response starts. */
  async residuals(texts: readonly string[], prompts: readonly string[], layer: number, signal?: AbortSignal): Promise<ReaderSequences> {
    const deadline = AbortSignal.timeout(this.timeoutMs);
    let response: Response;
    let body: unknown;
    try {
      response = await fetch(this.endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ texts, prompts, layer }),
        signal: signal ? AbortSignal.any([signal, deadline]) : deadline,
      });
      body = await response.json();
    } catch (err) {
      if (deadline.aborted) throw failed(`no answer within ${this.timeoutMs} ms`, err);
      throw failed(`request to ${this.endpoint} failed: ${err instanceof Error ? err.message : String(err)}`, err);
    }
    if (!response.ok) {
      const detail = typeof body === 'object' && body !== null && typeof (body as { error?: unknown }).error === 'string' ? (body as { error: string }).error : '';
      throw failed(`answered HTTP ${response.status}${detail ? `: ${detail}` : ''}`);
    }
    return parseReaderBody(body, texts);
  }
}

/** Checks the reader's answer: one sequence per text, base64 f32 rows, score_from inside the sequence. */
export function parseReaderBody(body: unknown, texts: readonly string[]): ReaderSequences {
  if (typeof body !== 'object' || body === null) throw failed('answer is not an object');
  const b = body as { d_model?: unknown; sequences?: unknown };
  if (!Array.isArray(b.sequences) || b.sequences.length !== texts.length) throw failed(`answer has ${Array.isArray(b.sequences) ? b.sequences.length : 'no'} sequences for ${texts.length} texts`);
  const dModel = Number(b.d_model);
  if (!Number.isSafeInteger(dModel) || dModel < 1) throw failed(`answer has d_model ${String(b.d_model)}`);
  const sequences = (b.sequences as WireReaderSequence[]).map((s, i): SequenceInput => {
    const numTokens = Number(s?.num_tokens);
    const scoreFrom = Number(s?.score_from);
    if (typeof s?.activations !== 'string' || s.dtype !== 'f32') throw failed(`sequences[${i}]: expected base64 f32 activations`);
    if (!Number.isSafeInteger(numTokens) || !Number.isSafeInteger(scoreFrom)) throw failed(`sequences[${i}]: num_tokens and score_from must be integers`);
    const tokens = Array.isArray(s.tokens) && s.tokens.every((t) => typeof t === 'string') ? (s.tokens as string[]) : [];
    return {
      activations: Buffer.from(s.activations, 'base64'),
      dtype: 'DTYPE_F32',
      num_tokens: numTokens,
      score_from: scoreFrom,
      text: texts[i]!,
      expected_answer: '',
      tokens,
    };
  });
  return { dModel, sequences };
}
