// Start-up check of the two listening ports, so a port already taken is reported once, naming the flag that
// changes it, instead of as grpc-js's own log line plus its "No address added" error.
import net from 'node:net';

import { MechRewardError } from './errors.js';

export interface PortToBind {
  readonly port: number;
  /** The serve flag and environment variable that set this port, for the message. */
  readonly flag: string;
  readonly env: string;
}

/** Resolves when `host:port` can be bound now (port 0 always can); else rejects with MR_ERR_CONFIG_INVALID. */
async function checkFree(host: string, { port, flag, env }: PortToBind): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') {
        reject(new MechRewardError('MR_ERR_CONFIG_INVALID', `${flag} (${env}): ${host}:${port} is already in use, by another program or another mechreward serve. Stop it, or pick another port with ${flag} <n> (0 lets the system pick a free one).`, err));
      } else if (err.code === 'EACCES') {
        reject(new MechRewardError('MR_ERR_CONFIG_INVALID', `${flag} (${env}): not allowed to listen on ${host}:${port} (ports below 1024 need privileges); pick another with ${flag} <n>.`, err));
      } else {
        resolve(); // anything else (an address not on this machine...) is reported by the real bind, with its own words
      }
    });
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve()));
  });
}

export async function checkPortsFree(host: string, ports: readonly PortToBind[]): Promise<void> {
  for (const p of ports) await checkFree(host, p);
}
