// A worker thread that moves the runs file's WAL into the database file. A checkpoint fsyncs the database
// file, which on a busy disk takes up to seconds; SQLite's automatic checkpoint would do that inside a commit
// on the event loop (health checks stalled for 2 s in bench:store). Here it runs on this thread's own
// connection (WAL allows several), PASSIVE so it never waits for or blocks the writer, and the main
// connection's commits only append to the WAL.
import { parentPort, workerData } from 'node:worker_threads';

import Database from 'better-sqlite3';

const { file, everyMs } = workerData as { file: string; everyMs: number };
const db = new Database(file, { fileMustExist: true });
db.pragma('busy_timeout = 1000');

function checkpoint(mode: 'PASSIVE' | 'TRUNCATE'): void {
  try {
    db.pragma(`wal_checkpoint(${mode})`);
  } catch {
    // Busy or racing the writer: the next round tries again; the WAL stays valid meanwhile.
  }
}

const timer = setInterval(() => checkpoint('PASSIVE'), everyMs);
parentPort!.on('message', (msg: string) => {
  if (msg !== 'stop') return;
  clearInterval(timer);
  db.close();
  parentPort!.postMessage('stopped');
});
