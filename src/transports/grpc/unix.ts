// The optional Unix domain socket gRPC also listens on (--grpc-socket), for trainers on the same host. Before
// binding, a leftover socket file is dealt with: one a live server still answers on is refused (two servers
// must not steal each other's clients); one nobody answers on (its server was killed) is removed. Anything
// that is not a socket is never touched. On shutdown the file is removed if it is still ours.
import { lstatSync, unlinkSync, type Stats } from 'node:fs';
import { connect } from 'node:net';

import { MechRewardError } from '../../errors.js';

/** sockaddr_un.sun_path is 108 bytes on Linux (104 on macOS), including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 103;

function refuse(path: string, why: string): MechRewardError {
  return new MechRewardError('MR_ERR_CONFIG_INVALID', `--grpc-socket ${path}: ${why}`);
}

function statOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Whether something accepts connections on the socket at `path` (within `timeoutMs`). */
function answers(path: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ path });
    const done = (live: boolean): void => {
      socket.destroy();
      resolve(live);
    };
    socket.setTimeout(timeoutMs, () => done(true)); // a server too busy to accept is still alive
    socket.once('connect', () => done(true));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code !== 'ECONNREFUSED' && err.code !== 'ENOENT'));
  });
}

/** Makes `path` free for bind(): refuses a live or non-socket file, removes a stale socket. */
export async function claimSocketPath(path: string): Promise<void> {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) throw refuse(path, `the path is ${Buffer.byteLength(path)} bytes; Unix socket paths may have at most ${MAX_SOCKET_PATH_BYTES}`);
  const stats = statOrUndefined(path);
  if (!stats) return;
  if (!stats.isSocket()) throw refuse(path, 'exists and is not a socket; refusing to replace it');
  if (await answers(path, 1000)) throw refuse(path, 'another server is listening on this socket; stop it or choose another path');
  unlinkSync(path); // stale: its server died without removing it
}

/** The bound socket's identity, so shutdown removes this server's socket and never a successor's. */
export function socketIdentity(path: string): string | undefined {
  const s = statOrUndefined(path);
  return s ? `${s.dev}:${s.ino}` : undefined;
}

export function releaseSocketPath(path: string, identity: string | undefined): void {
  if (identity && socketIdentity(path) === identity) unlinkSync(path);
}
