// The canary monitor page: GET /monitor plus its static assets (web/monitor/ and Chart.js's browser build),
// and GET /, which sends a browser to the page and tells anything else what the server answers where.
// The page is plain browser JavaScript that reads the JSON API (/v1/runs, /v1/runs/:id), so this module only
// serves files; it imports no service state.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import type { FastifyInstance } from 'fastify';

/** web/monitor/, from dist/src/transports/http/page.js (compiled) up to the repository root. */
const WEB_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../web/monitor');

/**
 * Chart.js's UMD build. Its package "exports" hide dist/chart.umd.js, so resolve the main entry (dist/chart.cjs)
 * and take its sibling: the file served is the one the lockfile pinned, never a CDN copy.
 */
function chartJsPath(): string {
  return path.join(path.dirname(createRequire(import.meta.url).resolve('chart.js')), 'chart.umd.js');
}

// Everything the page loads comes from this server; the browser refuses anything else (no CDN, no inline
// script). Chart.js styles its canvas through the CSSOM, which style-src does not govern.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

interface Asset {
  body: Buffer;
  type: string;
}

function load(file: string, type: string): Asset {
  try {
    return { body: readFileSync(file), type };
  } catch (err) {
    throw new Error(`monitor page: cannot read ${file} (${(err as Error).message})`, { cause: err });
  }
}

/** GET / for a client that is not a browser: the routes, in plain text. */
const INDEX_TEXT = `mechreward: SAE feature rewards for RL, over gRPC (mechreward.v1.RewardService) and HTTP.

  GET  /monitor             canary monitor page (per-run rewards and flags; open it in a browser)
  POST /v1/score            score activations: JSON (base64) or msgpack, {pack, sequences, run_id, step}
  GET  /v1/packs            packs served, with shapes and validation
  GET  /v1/runs[/:run_id]   per-run canary monitor data
  GET  /info                version and limits
  GET  /healthz, /readyz    liveness, readiness
  GET  /metrics             Prometheus metrics
`;

export function registerMonitorPage(app: FastifyInstance): void {
  // Read once at start-up: a missing file fails the server loudly instead of serving a broken page later.
  const page = load(path.join(WEB_DIR, 'index.html'), 'text/html; charset=utf-8');
  const assets = new Map<string, Asset>([
    ['monitor.js', load(path.join(WEB_DIR, 'monitor.js'), 'text/javascript; charset=utf-8')],
    ['monitor.css', load(path.join(WEB_DIR, 'monitor.css'), 'text/css; charset=utf-8')],
    ['chart.umd.js', load(chartJsPath(), 'text/javascript; charset=utf-8')],
  ]);

  app.get('/', async (req, reply) => {
    // Relative redirect: keeps working behind a reverse proxy that mounts the sidecar under a prefix.
    if (req.headers.accept?.includes('text/html')) return reply.redirect('monitor', 302);
    return reply.type('text/plain; charset=utf-8').send(INDEX_TEXT);
  });

  app.get('/monitor', async (_req, reply) => {
    // no-cache: the page is tiny and must match the server's assets after an upgrade.
    return reply.type(page.type).header('cache-control', 'no-cache').header('content-security-policy', CSP).header('x-content-type-options', 'nosniff').send(page.body);
  });

  app.get<{ Params: { name: string } }>('/monitor/assets/:name', async (req, reply) => {
    const asset = assets.get(req.params.name);
    // An unknown asset is an unknown route: the same 404 as any other path.
    if (asset === undefined) return reply.callNotFound();
    return reply.type(asset.type).header('cache-control', 'no-cache').header('x-content-type-options', 'nosniff').send(asset.body);
  });
}
