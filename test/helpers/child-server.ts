// `mechreward serve` as a child process (the real command), for tests and the benchmark: spawn it and wait
// for one of its JSON log lines on stderr, by default "mechreward ready", which carries the bound ports.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bin/mechreward.js');

export interface ChildServer {
  child: ChildProcess;
  grpcPort: number;
  httpPort: number;
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>;
  /** SIGTERM (or `signal`) and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Every stderr line so far (JSON log lines). */
  readonly logs: string[];
}

export interface SpawnOptions {
  /** Flags of the node process itself (V8 options), before the script. */
  readonly nodeFlags?: readonly string[];
  /** Another build's bin/mechreward.js (benchmarks comparing two builds side by side). */
  readonly bin?: string;
}

export function spawnServe(args: string[], env: Record<string, string> = {}, waitFor = 'mechreward ready', options: SpawnOptions = {}): Promise<ChildServer> {
  // Monitor state stays in memory unless a test asks for a file.
  const child = spawn(process.execPath, [...(options.nodeFlags ?? []), options.bin ?? BIN, 'serve', ...args], { env: { ...process.env, MECHREWARD_RUNS_DB: '', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const lines: string[] = [];
    createInterface({ input: child.stderr! }).on('line', (line) => {
      lines.push(line);
      try {
        const entry = JSON.parse(line) as { msg?: string; grpcPort?: number; httpPort?: number };
        if (entry.msg === waitFor) {
          resolve({
            child,
            grpcPort: entry.grpcPort!,
            httpPort: entry.httpPort!,
            exited,
            logs: lines,
            stop: (signal = 'SIGTERM') => {
              child.kill(signal);
              return exited;
            },
          });
        }
      } catch {
        /* not a log line */
      }
    });
    void exited.then((code) => reject(new Error(`serve exited with ${code} before "${waitFor}":\n${lines.join('\n')}`)));
  });
}
