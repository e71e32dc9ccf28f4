// ScoreResponse written straight to protobuf bytes, once: token_rewards go out as one packed-float block copied
// from the scorer's Float32Array, with no per-element JavaScript (proto-loader's serializer would first copy
// every reward into a plain array, convert each again in fromObject, then write them one by one). The bytes
// are the proto3 encoding of mechreward.v1.ScoreResponse (proto/mechreward/v1/reward.proto); the score-reply
// test decodes them with the contract's own deserializer and compares with proto-loader's encoding.
import type { WireResult } from '../../service.js';

/** One sequence's result with its per-token rewards still in the scorer's Float32Array. */
export interface PackedResult extends Omit<WireResult, 'token_rewards'> {
  readonly token_rewards: Float32Array;
}

export interface PackedScoreResponse {
  readonly pack: string;
  readonly results: readonly PackedResult[];
}

// Field keys: (field number << 3) | wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32).
const RESPONSE_RESULTS = 0x0a;
const RESPONSE_PACK = 0x12;
const RESULT_TOKEN_REWARDS = 0x0a;
const RESULT_REWARD = 0x15;
const RESULT_FLAGS = 0x1a;
const RESULT_VERIFIER_DISAGREEMENT = 0x21;
const RESULT_HAS_VERIFIER = 0x28;
const RESULT_VERIFIER_FACTOR = 0x35;
const FLAG_NAME = 0x0a;
const FLAG_REASON = 0x12;
const FLAG_VALUE = 0x19;

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) (n = Math.floor(n / 128)), size++;
  return size;
}

/** Length-delimited field: key, length, body. */
const fieldSize = (body: number) => 1 + varintSize(body) + body;

class Out {
  pos = 0;
  constructor(readonly buf: Buffer) {}
  varint(n: number): void {
    while (n >= 0x80) {
      this.buf[this.pos++] = (n & 0x7f) | 0x80;
      n = Math.floor(n / 128);
    }
    this.buf[this.pos++] = n;
  }
  key(k: number): void {
    this.buf[this.pos++] = k;
  }
  string(k: number, s: string, bytes: number): void {
    this.key(k);
    this.varint(bytes);
    this.pos += this.buf.write(s, this.pos, 'utf8');
  }
  float(k: number, v: number): void {
    this.key(k);
    this.pos = this.buf.writeFloatLE(v, this.pos);
  }
  double(k: number, v: number): void {
    this.key(k);
    this.pos = this.buf.writeDoubleLE(v, this.pos);
  }
}

interface Sized {
  readonly result: PackedResult;
  readonly flags: { name: number; reason: number; body: number }[];
  readonly body: number;
}

function sizeResult(result: PackedResult): Sized {
  const flags = result.flags.map((f) => {
    const name = Buffer.byteLength(f.name);
    const reason = Buffer.byteLength(f.reason);
    return { name, reason, body: fieldSize(name) + fieldSize(reason) + 9 };
  });
  let body = fieldSize(result.token_rewards.byteLength) + 5 + 9 + 2 + 5;
  for (const f of flags) body += fieldSize(f.body);
  return { result, flags, body };
}

export function encodeScoreResponse(response: PackedScoreResponse): Buffer {
  const sized = response.results.map(sizeResult);
  const packBytes = Buffer.byteLength(response.pack);
  const total = sized.reduce((n, s) => n + fieldSize(s.body), 0) + fieldSize(packBytes);
  const out = new Out(Buffer.allocUnsafe(total));
  for (const { result, flags, body } of sized) {
    out.key(RESPONSE_RESULTS);
    out.varint(body);
    const rewards = result.token_rewards;
    out.key(RESULT_TOKEN_REWARDS);
    out.varint(rewards.byteLength);
    out.buf.set(new Uint8Array(rewards.buffer, rewards.byteOffset, rewards.byteLength), out.pos); // little-endian host (checked at start-up)
    out.pos += rewards.byteLength;
    out.float(RESULT_REWARD, result.reward);
    result.flags.forEach((f, i) => {
      out.key(RESULT_FLAGS);
      out.varint(flags[i]!.body);
      out.string(FLAG_NAME, f.name, flags[i]!.name);
      out.string(FLAG_REASON, f.reason, flags[i]!.reason);
      out.double(FLAG_VALUE, f.value);
    });
    out.double(RESULT_VERIFIER_DISAGREEMENT, result.verifier_disagreement);
    out.key(RESULT_HAS_VERIFIER);
    out.varint(result.has_verifier ? 1 : 0);
    out.float(RESULT_VERIFIER_FACTOR, result.verifier_factor);
  }
  out.string(RESPONSE_PACK, response.pack, packBytes);
  if (out.pos !== total) throw new Error(`ScoreResponse encoder wrote ${out.pos} of ${total} bytes`);
  return out.buf;
}
