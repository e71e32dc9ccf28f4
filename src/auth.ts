// Optional shared-secret authentication for both transports: `Authorization: Bearer <token>` in HTTP headers
// or gRPC metadata. Compared in constant time (SHA-256 digests of equal length through timingSafeEqual), so
// the comparison leaks neither the token nor its length. The token is never logged.
import { createHash, timingSafeEqual } from 'node:crypto';

import { MechRewardError } from './errors.js';

export class TokenCheck {
  private readonly digest: Buffer | undefined;

  /** An empty token disables the check. */
  constructor(token: string) {
    this.digest = token ? createHash('sha256').update(token).digest() : undefined;
  }

  get enabled(): boolean {
    return this.digest !== undefined;
  }

  /** Throws MR_ERR_UNAUTHENTICATED unless `authorization` is `Bearer <the token>`. */
  check(authorization: string | undefined): void {
    if (!this.digest) return;
    // The scheme is case-insensitive (RFC 7235 §2.1); the token is not.
    const match = /^bearer +(\S.*)$/i.exec(authorization ?? '');
    if (!match) throw new MechRewardError('MR_ERR_UNAUTHENTICATED', 'authorization: this server needs "Authorization: Bearer <token>" (gRPC metadata or HTTP header)');
    const given = createHash('sha256').update(match[1]!).digest();
    if (!timingSafeEqual(given, this.digest)) throw new MechRewardError('MR_ERR_UNAUTHENTICATED', 'authorization: the bearer token is not valid');
  }
}
