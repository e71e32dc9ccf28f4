// Fuzz cases (fast-check arbitraries) and the rules that say which outcome is allowed for each, shared by
// test/integration/fuzz.test.ts (a few thousand cases) and bench/fuzz.ts (~100k cases, counts per class).
// Every case goes to the real server over real gRPC / HTTP, or through the real pack loader. A case that
// crashes, hangs (hits its deadline) or gets a status outside its documented class is a violation.
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { pack as msgpackEncode } from 'msgpackr';

import type { RewardServiceClient } from '../../src/generated/mechreward/v1/RewardService.js';
import type { ScoreRequest } from '../../src/generated/mechreward/v1/ScoreRequest.js';
import { loadPackDirectory } from '../../src/packs/registry.js';
import { loadContract } from '../../src/transports/grpc/contract.js';

export interface FuzzPack {
  readonly name: string;
  readonly dModel: number;
}

/** Outcome counts per class ("grpc-score OK", "http POST /v1/score 400", …) and violations with their case. */
export class FuzzTally {
  readonly counts = new Map<string, number>();
  readonly violations: string[] = [];

  add(cls: string, allowed: boolean, describe: () => string): void {
    this.counts.set(cls, (this.counts.get(cls) ?? 0) + 1);
    if (!allowed && this.violations.length < 50) this.violations.push(`${cls}: ${describe()}`);
  }

  get total(): number {
    return [...this.counts.values()].reduce((a, b) => a + b, 0);
  }

  table(): string {
    return [...this.counts.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([c, n]) => `${String(n).padStart(8)}  ${c}`).join('\n');
  }
}

/** Runs `fn` over `cases` with at most `concurrency` in flight. */
export async function runAll<T>(cases: readonly T[], concurrency: number, fn: (c: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < cases.length) await fn(cases[next++]!);
    }),
  );
}

export const HOSTILE_NAMES = ['../x', '..', '%2e%2e', '/etc/passwd', 'a\0b', 'a/b', '.hidden', 'x'.repeat(200), ''];

/** Activations of the right length for (numTokens, dModel, dtype), sometimes with one NaN or Inf. */
function activations(numTokens: number, dModel: number, width: number, seed: number, poison: number): Buffer {
  const n = Math.max(0, numTokens) * dModel;
  const out = Buffer.alloc(n * width);
  for (let i = 0; i < n; i++) {
    const v = Math.sin(seed + i * 0.618) * 2;
    if (width === 4) out.writeFloatLE(v, 4 * i);
    else out.writeUInt16LE(width === 2 ? 0x3c00 ^ (i & 0x3ff) : 0x3f80 ^ (i & 0x7f), 2 * i); // finite halves / bf16s
  }
  if (poison > 0 && n > 0) {
    const at = poison % n;
    if (width === 4) out.writeFloatLE(poison % 2 ? Number.NaN : Number.POSITIVE_INFINITY, 4 * at);
    else out.writeUInt16LE(width === 2 ? 0x7c00 : 0x7f80, 2 * at); // +Inf in f16 / bf16
  }
  return out;
}

const DTYPES = [
  ['DTYPE_F32', 4],
  ['DTYPE_F16', 2],
  ['DTYPE_BF16', 2],
] as const;

/** Score messages, from valid to nonsense: every field over its edge cases and beyond. */
export function scoreRequests(packs: readonly FuzzPack[]): fc.Arbitrary<ScoreRequest> {
  const packArb = fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...packs) }, { weight: 1, arbitrary: fc.record({ name: fc.oneof(fc.constantFrom(...HOSTILE_NAMES, 'no-such-pack'), fc.string({ maxLength: 30 })), dModel: fc.constantFrom(...packs.map((p) => p.dModel)) }) });
  const sequence = (dModel: number) =>
    fc
      .record({
        dtype: fc.nat({ max: 2 }),
        badDtype: fc.oneof({ weight: 8, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom<string | number>('DTYPE_UNSPECIFIED', 0, 4, 7, 99, -1) }),
        numTokens: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 1, max: 24 }) }, { weight: 1, arbitrary: fc.constantFrom(0, 4096, 2 ** 32 - 1) }),
        scoreFrom: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max: 8 }) }, { weight: 1, arbitrary: fc.constantFrom(24, 2 ** 31, 2 ** 32 - 1) }),
        lengthDelta: fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -9, max: 9 }) }),
        seed: fc.integer(),
        poison: fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat() }),
        text: fc.oneof(fc.constant(undefined), fc.string({ maxLength: 40 })),
        tokens: fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.array(fc.string({ maxLength: 4 }), { maxLength: 30 }) }),
      })
      .map((s) => {
        const [name, width] = DTYPES[s.dtype]!;
        let bytes = activations(Math.min(s.numTokens, 64), dModel, width, s.seed, s.poison);
        if (s.lengthDelta > 0) bytes = Buffer.concat([bytes, Buffer.alloc(s.lengthDelta, 7)]);
        else if (s.lengthDelta < 0) bytes = bytes.subarray(0, Math.max(0, bytes.length + s.lengthDelta));
        return { activations: bytes, dtype: (s.badDtype ?? name) as 'DTYPE_F32', num_tokens: s.numTokens, score_from: s.scoreFrom, text: s.text, tokens: s.tokens };
      });
  return packArb.chain((p) =>
    fc.record({
      pack: fc.constant(p.name),
      sequences: fc.oneof({ weight: 8, arbitrary: fc.array(sequence(p.dModel), { minLength: 1, maxLength: 4 }) }, { weight: 1, arbitrary: fc.constant([]) }),
      run_id: fc.oneof({ weight: 6, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.string({ maxLength: 20 }) }),
    }).map((r) => r as ScoreRequest),
  );
}

/** Byte-level mutations of a serialized valid request: flips, overwrites, inserts, deletions, truncation. */
export function mutatedBytes(base: Buffer): fc.Arbitrary<Buffer> {
  const op = fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat({ max: 7 }) }),
    fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.nat({ max: 255 }) }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 12 }) }),
    fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 16 }) }),
    fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  );
  return fc.array(op, { minLength: 1, maxLength: 6 }).map((ops) => {
    let b = Buffer.from(base);
    for (const o of ops) {
      const at = b.length === 0 ? 0 : o.at % b.length;
      if (o.kind === 'flip' && b.length > 0) b[at] = b[at]! ^ (1 << o.bit);
      else if (o.kind === 'set' && b.length > 0) b[at] = o.value;
      else if (o.kind === 'insert') b = Buffer.concat([b.subarray(0, at), Buffer.from(o.bytes), b.subarray(at)]);
      else if (o.kind === 'delete') b = Buffer.concat([b.subarray(0, at), b.subarray(at + o.count)]);
      else if (o.kind === 'truncate') b = b.subarray(0, at);
    }
    return b;
  });
}

export function serializeScoreRequest(request: ScoreRequest): Buffer {
  const contract = loadContract();
  return contract.mechreward.v1.RewardService.service.Score.requestSerialize(request);
}

const ALLOWED_SCORE = new Set([grpc.status.OK, grpc.status.INVALID_ARGUMENT, grpc.status.NOT_FOUND, grpc.status.RESOURCE_EXHAUSTED]);

/** Activations near float32's limit can overflow the reward: INTERNAL MR_ERR_NONFINITE_OUTPUT, documented. */
function nonfiniteOutput(err: grpc.ServiceError | null): boolean {
  return err?.code === grpc.status.INTERNAL && err.details.startsWith('MR_ERR_NONFINITE_OUTPUT: ');
}

/** Sends a structured Score request; allowed: OK or a catalogued INVALID_ARGUMENT / NOT_FOUND / RESOURCE_EXHAUSTED. */
export function fuzzScore(client: RewardServiceClient, request: ScoreRequest, tally: FuzzTally, deadlineMs = 30_000): Promise<void> {
  return new Promise((resolve) => {
    client.Score(request, { deadline: Date.now() + deadlineMs }, (err) => {
      const code = err ? err.code : grpc.status.OK;
      const catalogued = !err || /^MR_ERR_[A-Z_]+: /.test(err.details) || /larger than max/.test(err.details);
      tally.add(`grpc Score ${grpc.status[code]}${nonfiniteOutput(err) ? ' (nonfinite output)' : ''}`, (ALLOWED_SCORE.has(code) || nonfiniteOutput(err)) && catalogued, () => `${err?.details} for ${describeRequest(request)}`);
      resolve();
    });
  });
}

/** Sends raw bytes as a Score message through a generic client; corrupt protobuf may also get grpc-js's INTERNAL. */
export function fuzzRawScore(client: grpc.Client, bytes: Buffer, tally: FuzzTally, deadlineMs = 30_000): Promise<void> {
  return new Promise((resolve) => {
    const identity = (b: Buffer) => b;
    client.makeUnaryRequest('/mechreward.v1.RewardService/Score', identity, identity, bytes, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err) => {
      const code = err ? err.code : grpc.status.OK;
      const library = err?.code === grpc.status.INTERNAL && err.details.startsWith('Error deserializing request');
      const catalogued = !err || library || /^MR_ERR_[A-Z_]+: /.test(err.details);
      tally.add(`grpc raw Score ${grpc.status[code]}${library ? ' (deserializing)' : nonfiniteOutput(err) ? ' (nonfinite output)' : ''}`, (ALLOWED_SCORE.has(code) || library || nonfiniteOutput(err)) && catalogued, () => `${err?.details} for bytes ${bytes.toString('hex').slice(0, 120)}`);
      resolve();
    });
  });
}

function describeRequest(r: ScoreRequest): string {
  return JSON.stringify({ ...r, sequences: r.sequences?.map((s) => ({ ...s, activations: `<${(s.activations as Buffer).length} bytes>` })) }).slice(0, 400);
}

export interface HttpCase {
  readonly method: string;
  readonly path: string;
  readonly contentType: string | undefined;
  readonly body: Buffer | undefined;
  /** The route family, for counting: "/v1/score", "/v1/packs/{pack}", "unknown", … */
  readonly route: string;
}

const SIMPLE_GETS = ['/healthz', '/readyz', '/metrics', '/info', '/v1/packs', '/v1/runs', '/monitor'];

/** HTTP requests on every route: random methods, paths, content types, JSON / msgpack / raw bodies. */
export function httpCases(packs: readonly FuzzPack[]): fc.Arbitrary<HttpCase> {
  const contentType = fc.constantFrom('application/json', 'application/msgpack', 'application/json; charset=utf-8', 'text/plain', 'application/octet-stream', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', undefined, 'application/msgpack; x=1', '*/*');
  const scoreShaped = fc.record({
    pack: fc.oneof(fc.constantFrom(...packs.map((p) => p.name), ...HOSTILE_NAMES), fc.jsonValue()),
    sequences: fc.oneof(
      fc.array(
        fc.record({
          activations: fc.oneof(fc.base64String({ maxLength: 400 }), fc.jsonValue(), fc.uint8Array({ maxLength: 300 })),
          dtype: fc.oneof(fc.constantFrom('f32', 'f16', 'bf16', 'DTYPE_F32', 'F32', 'int8'), fc.jsonValue()),
          num_tokens: fc.oneof(fc.integer({ min: -2, max: 8 }), fc.jsonValue()),
          score_from: fc.oneof(fc.integer({ min: -2, max: 8 }), fc.jsonValue()),
          text: fc.oneof(fc.string({ maxLength: 10 }), fc.jsonValue()),
          tokens: fc.oneof(fc.array(fc.string({ maxLength: 3 }), { maxLength: 5 }), fc.jsonValue()),
        }, { requiredKeys: [] }),
        { maxLength: 3 },
      ),
      fc.jsonValue(),
    ),
    run_id: fc.oneof(fc.string({ maxLength: 10 }), fc.jsonValue()),
  }, { requiredKeys: [] });
  // The gRPC generator's requests in HTTP's wire shapes: JSON with base64 activations, msgpack with binary.
  const wireShaped = scoreRequests(packs).map((r) => ({ ...r, sequences: r.sequences?.map((q) => ({ ...q, activations: Buffer.from(q.activations as Uint8Array) })) }));
  const asJson = wireShaped.map((r) => Buffer.from(JSON.stringify({ ...r, sequences: r.sequences?.map((q) => ({ ...q, activations: q.activations.toString('base64') })) })));
  const asMsgpack = wireShaped.map((r) => Buffer.from(msgpackEncode(r)));
  const body = fc.oneof(
    asJson,
    asMsgpack,
    fc.jsonValue().map((v) => Buffer.from(JSON.stringify(v) ?? 'null')),
    scoreShaped.map((v) => Buffer.from(JSON.stringify(v))),
    scoreShaped.map((v) => Buffer.from(msgpackEncode(v))),
    fc.jsonValue().map((v) => Buffer.from(msgpackEncode(v))),
    fc.uint8Array({ maxLength: 256 }).map((b) => Buffer.from(b)),
    fc.string({ maxLength: 64 }).map((s) => Buffer.from(s)),
    fc.constant(undefined),
  );
  const segment = fc.oneof(fc.constantFrom(...packs.map((p) => p.name), '%2e%2e', '..', '%00', 'a%2Fb', '%ZZ', ''), fc.string({ maxLength: 12 }).map(encodeURIComponent));
  const route = fc.oneof(
    { weight: 6, arbitrary: fc.constant({ path: '/v1/score', route: '/v1/score' }) },
    { weight: 2, arbitrary: fc.constantFrom(...SIMPLE_GETS).map((p) => ({ path: p, route: p })) },
    { weight: 2, arbitrary: segment.map((s) => ({ path: `/v1/packs/${s}`, route: '/v1/packs/{pack}' })) },
    { weight: 1, arbitrary: segment.map((s) => ({ path: `/v1/runs/${s}`, route: '/v1/runs/{run_id}' })) },
    { weight: 1, arbitrary: fc.constant({ path: '/admin/reload', route: '/admin/reload' }) },
    { weight: 1, arbitrary: segment.map((s) => ({ path: `/v1/openrlhf/${s}`, route: '/v1/openrlhf/{pack}' })) },
    { weight: 1, arbitrary: fc.webPath().map((p) => ({ path: p.startsWith('/') ? p : `/${p}`, route: p === '' || p === '/' ? '/' : 'other' })) },
  );
  return fc
    .record({
      r: route,
      method: fc.oneof({ weight: 6, arbitrary: fc.constant('POST') }, { weight: 3, arbitrary: fc.constant('GET') }, { weight: 1, arbitrary: fc.constantFrom('PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD') }),
      // Bodies with their matching content type (so some reach the scorer) or with any type at all.
      typed: fc.oneof(asJson.map((b) => ({ b, ct: 'application/json' as string | undefined })), asMsgpack.map((b) => ({ b, ct: 'application/msgpack' as string | undefined })), fc.record({ b: body, ct: contentType })),
      query: fc.oneof({ weight: 5, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.webQueryParameters().map((q) => `?${q}`) }),
    })
    .map(({ r, method, typed, query }) => ({ method, path: `${r.path}${query}`, route: r.route, contentType: typed.ct, body: method === 'GET' || method === 'HEAD' ? undefined : typed.b }));
}

const OWN_METHODS: Record<string, string[]> = { '/v1/score': ['POST'], '/admin/reload': ['POST'], '/v1/openrlhf/{pack}': ['POST'] };

/**
 * Documented statuses per route family (docs/errors.md): a route's own method gets its documented codes;
 * another method or an unknown path gets fastify's 404, or 400 when the body or URL could not be parsed first.
 * `GET /` (the route index, or a redirect for browsers) is a GET route like the others.
 * Nothing is ever 5xx.
 */
function allowedHttp(c: HttpCase, status: number): boolean {
  if (status >= 500) return false;
  const own = OWN_METHODS[c.route] ?? (c.route === 'other' ? [] : ['GET', 'HEAD']);
  if (!own.includes(c.method)) return status === 400 || status === 404;
  if (c.route === '/v1/score') return [200, 400, 404, 413].includes(status);
  if (c.route === '/admin/reload') return status === 200 || status === 400;
  // Without --reader-url the OpenRLHF route answers 501 MR_ERR_READER_NOT_CONFIGURED once the body is valid.
  if (c.route === '/v1/openrlhf/{pack}') return [200, 400, 404, 413, 501].includes(status);
  if (c.route === '/v1/packs/{pack}') return [200, 400, 404].includes(status);
  if (c.route === '/v1/runs/{run_id}') return [200, 400, 404].includes(status);
  return status === 200;
}

export function fuzzHttp(port: number, c: HttpCase, tally: FuzzTally, timeoutMs = 30_000): Promise<void> {
  return new Promise((resolve) => {
    const headers: Record<string, string> = {};
    if (c.contentType) headers['content-type'] = c.contentType;
    if (c.body) headers['content-length'] = String(c.body.length);
    const req = http.request({ host: '127.0.0.1', port, method: c.method, path: c.path, headers, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => {
        const status = res.statusCode!;
        let ok = allowedHttp(c, status);
        const body = Buffer.concat(chunks).toString();
        // Our routes answer errors in the catalogue's shape.
        if (ok && c.method !== 'HEAD' && (status === 400 || status === 413 || status === 501)) ok = /"code":"MR_ERR_[A-Z_]+"/.test(body);
        tally.add(`http ${c.method} ${c.route} ${status}`, ok, () => `${c.method} ${c.path} [${c.contentType}] ${c.body?.toString('hex').slice(0, 80)} -> ${body.slice(0, 160)}`);
        resolve();
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => {
      // A request line Node's own client refuses to send (invalid characters) never reached the server.
      const clientSide = (err as NodeJS.ErrnoException).code === 'ERR_INVALID_CHAR' || (err as NodeJS.ErrnoException).code === 'ERR_UNESCAPED_CHARACTERS';
      tally.add(clientSide ? 'http not sent (client refused the path)' : `http ${c.method} ${c.route} transport error`, clientSide, () => `${c.method} ${c.path}: ${err.message}`);
      resolve();
    });
    if (c.body) req.write(c.body);
    req.end();
  });
}

export interface PackMutation {
  readonly target: 'pack.json' | 'cfg.json' | 'safetensors';
  readonly edits: readonly { readonly kind: string; readonly a: number; readonly b: number; readonly value: unknown }[];
}

/** Mutations of a pack folder: JSON field edits and text damage in pack.json / cfg.json, byte damage in the weights. */
export function packMutations(): fc.Arbitrary<PackMutation> {
  const edit = fc.record({ kind: fc.constantFrom('set', 'delete', 'flip', 'truncate', 'insert', 'header-length'), a: fc.nat(), b: fc.nat(), value: fc.jsonValue({ maxDepth: 2 }) });
  return fc.record({ target: fc.constantFrom('pack.json', 'cfg.json', 'safetensors'), edits: fc.array(edit, { minLength: 1, maxLength: 4 }) });
}

function editJson(value: unknown, e: PackMutation['edits'][number]): unknown {
  if (typeof value !== 'object' || value === null) return e.value;
  const keys = Object.keys(value);
  if (keys.length === 0) return e.value;
  const key = keys[e.a % keys.length]!;
  const obj = value as Record<string, unknown>;
  if (e.kind === 'delete') delete obj[key];
  else if (typeof obj[key] === 'object' && obj[key] !== null && e.b % 3 !== 0) obj[key] = editJson(obj[key], { ...e, a: e.b, b: Math.floor(e.b / 3) });
  else obj[key] = e.value;
  return obj;
}

function editBytes(bytes: Buffer, e: PackMutation['edits'][number]): Buffer {
  if (bytes.length === 0) return bytes;
  const at = e.a % bytes.length;
  if (e.kind === 'truncate') return bytes.subarray(0, at);
  if (e.kind === 'insert') return Buffer.concat([bytes.subarray(0, at), Buffer.from(JSON.stringify(e.value) ?? ''), bytes.subarray(at)]);
  if (e.kind === 'header-length' && bytes.length >= 8) {
    const out = Buffer.from(bytes);
    out.writeBigUInt64LE(BigInt(e.b) * BigInt(1 + (e.a % 100_000)), 0);
    return out;
  }
  const out = Buffer.from(bytes);
  out[at] = out[at]! ^ (1 << (e.b % 8));
  return out;
}

/** Writes a mutated copy of the pack at `template` to `dir`. */
export function writeMutatedPack(template: string, dir: string, m: PackMutation): void {
  mkdirSync(path.dirname(dir), { recursive: true });
  cpSync(template, dir, { recursive: true });
  const file = m.target === 'pack.json' ? path.join(dir, 'pack.json') : m.target === 'cfg.json' ? path.join(dir, 'sae', 'cfg.json') : path.join(dir, 'sae', 'sae_weights.safetensors');
  let bytes: Buffer = readFileSync(file);
  for (const e of m.edits) {
    if (m.target !== 'safetensors' && (e.kind === 'set' || e.kind === 'delete')) {
      try {
        bytes = Buffer.from(JSON.stringify(editJson(JSON.parse(bytes.toString('utf8')), e)) ?? '');
        continue;
      } catch {
        /* already not JSON: damage the bytes instead */
      }
    }
    // Header edits hit the safetensors header region more often than the tensor data.
    const local = m.target === 'safetensors' && e.kind === 'flip' ? { ...e, a: e.a % Math.min(bytes.length, 400) } : e;
    bytes = Buffer.from(editBytes(bytes, local));
  }
  writeFileSync(file, bytes);
}

/** Loads a packs directory with the real registry; allowed: each pack loaded or reported with its path. */
export function fuzzPackLoad(root: string, tally: FuzzTally, describe: () => string): string[] {
  try {
    const catalogue = loadPackDirectory(root);
    for (const p of catalogue.problems) tally.add('pack load: rejected', p.message.includes(root), () => `${p.pack}: ${p.message} (${describe()})`);
    for (const _ of catalogue.packs.values()) tally.add('pack load: loaded', true, describe);
    return [...catalogue.packs.keys()];
  } catch (err) {
    tally.add('pack load: threw', false, () => `${err instanceof Error ? err.stack : String(err)} (${describe()})`);
    return [];
  }
}
