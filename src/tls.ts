// TLS material for both transports, read once at start-up. Plaintext stays the default: the sidecar binds
// loopback unless told otherwise, where TLS buys nothing. With --tls-client-ca both transports require client
// certificates signed by that CA (mutual TLS).
import { readFileSync } from 'node:fs';

import * as grpc from '@grpc/grpc-js';

import type { ServeConfig } from './config.js';
import { MechRewardError } from './errors.js';

export interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly clientCa: Buffer | undefined;
}

function read(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new MechRewardError('MR_ERR_CONFIG_INVALID', `${what} ${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

export function loadTls(config: ServeConfig): TlsMaterial | undefined {
  if (!config.tlsCert) return undefined;
  return {
    cert: read(config.tlsCert, '--tls-cert'),
    key: read(config.tlsKey, '--tls-key'),
    clientCa: config.tlsClientCa ? read(config.tlsClientCa, '--tls-client-ca') : undefined,
  };
}

export function grpcCredentials(tls: TlsMaterial | undefined): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(tls.clientCa ?? null, [{ cert_chain: tls.cert, private_key: tls.key }], tls.clientCa !== undefined);
}

/** fastify's `https` options. */
export function httpsOptions(tls: TlsMaterial): { cert: Buffer; key: Buffer; ca?: Buffer; requestCert: boolean; rejectUnauthorized: boolean } {
  return tls.clientCa ? { cert: tls.cert, key: tls.key, ca: tls.clientCa, requestCert: true, rejectUnauthorized: true } : { cert: tls.cert, key: tls.key, requestCert: false, rejectUnauthorized: false };
}
