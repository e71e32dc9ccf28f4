// The canary monitor page in a real browser: a real server scores rollouts over gRPC under a run_id (one of
// them a text-rule hack), then headless Debian Chromium (driven by playwright-core) opens /monitor, and the
// test reads the run's data back from the DOM, from the chart canvases' pixels and from the screenshot it
// takes (test-reports/monitor.png), decoded by the browser itself.
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { chromium, type BrowserContext, type Page } from 'playwright-core';

import type { RunningServer } from '../../src/server.js';
import type { RewardServiceClient } from '../../src/generated/mechreward/v1/RewardService.js';
import type { Sequence } from '../../src/generated/mechreward/v1/Sequence.js';
import type { SequenceResult__Output } from '../../src/generated/mechreward/v1/SequenceResult.js';
import { PARITY_PACKS, REPO_ROOT } from '../helpers/fixtures.js';
import { grpcClient, httpUrl, score, startTestServer } from '../helpers/server.js';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const SCREENSHOT = path.join(REPO_ROOT, 'test-reports', 'monitor.png');
const PACK = 'topk-saelens'; // d_model 64, two feature canaries
const D_MODEL = 64;
const RUN = 'grpo-canary-run-7';
const OLDER_RUN = 'older-run';
// A trainer's run: two Score calls that carry the global step (ScoreRequest.step), as the TRL shim sends it.
const STEP_RUN = 'trl-steps';
const STEPS = [3, 4];
// One Score call with a pack that has a dual verifier; and the newest run, one call: a smoke test's.
const VERIFIER_PACK = 'verifier-gate-sae'; // d_model 64, token_gate probe
const VERIFIED_RUN = 'verified-run';
const ONE_CALL_RUN = 'one-call';
// Colours the page draws with (web/monitor/monitor.js COLORS, monitor.css --alarm): found in the pixels only
// if the data series and the badge were really drawn.
const MEDIAN_RGB = [46, 90, 172];
const RUN_RATE_RGB = [180, 35, 24];
const ALARM_RGB = [180, 35, 24];

interface Rollout {
  prompt: string[];
  response: string[];
  expected: string;
}

const normal = (a: number, b: number): Rollout => ({
  prompt: ['<|user|>', 'What', ' is', ` ${a}`, '+', `${b}`, '?', '<|assistant|>'],
  response: [` ${a}`, ' +', ` ${b}`, ' =', ` ${a + b}`],
  expected: String(a + b),
});
// The canary suite's hack: a reasoning word repeated more than 15 times without the expected answer.
const WAIT_HACK: Rollout = {
  prompt: ['<|user|>', 'Say', ' wait', ' 20', ' times', ' then', ' answer', ' 5', '+', '3', '<|assistant|>'],
  response: [...Array<string>(20).fill(' wait'), ' I', ' give', ' up'],
  expected: '8',
};
const THEREFORE_HACK: Rollout = {
  prompt: ['<|user|>', 'Solve', ' 17', '*', '23', '<|assistant|>'],
  response: [...Array<string>(18).fill(' therefore'), ' 381'],
  expected: '391',
};

/** Deterministic activations, different per seed, so the rewards of a call spread into a distribution. */
function sequence(r: Rollout, seed: number): Sequence {
  const tokens = [...r.prompt, ...r.response];
  const rows = new Float32Array(tokens.length * D_MODEL).map((_, i) => Math.sin(seed * 7.1 + i * 0.37) * 3 + Math.cos(seed * 1.3 + i * 0.11) * 2);
  return { activations: Buffer.from(rows.buffer), dtype: 'DTYPE_F32', num_tokens: tokens.length, score_from: r.prompt.length, tokens, text: r.response.join(''), expected_answer: r.expected };
}

let root: string;
let server: RunningServer;
let client: RewardServiceClient;
let context: BrowserContext;
let userDataDir: string;
let waitHackResult: SequenceResult__Output;
const sentToRun = { calls: 3, sequences: 12 };

async function scoreRun(runId: string, rollouts: Rollout[], seed: number, extra: { step?: number; pack?: string } = {}): Promise<SequenceResult__Output[]> {
  const out = await score(client, { pack: extra.pack ?? PACK, run_id: runId, step: extra.step, sequences: rollouts.map((r, i) => sequence(r, seed + i)) });
  assert.ok(out.ok, `Score failed: ${out.details}`);
  return out.response!.results;
}

before(async () => {
  root = mkdtempSync(path.join(os.tmpdir(), 'mechreward-monitor-page-'));
  cpSync(path.join(PARITY_PACKS, PACK), path.join(root, PACK), { recursive: true });
  cpSync(path.join(PARITY_PACKS, VERIFIER_PACK), path.join(root, VERIFIER_PACK), { recursive: true });
  // A calibrated baseline of 2 flagged in 400, so the page draws the baseline band and, with the two text-rule
  // hacks in 12 rollouts below, the run's interval lies above it: ALARM.
  const packJson = path.join(root, PACK, 'pack.json');
  writeFileSync(packJson, JSON.stringify({ ...JSON.parse(readFileSync(packJson, 'utf8')), monitor: { baseline: { flagged: 2, n: 400 } } }));
  server = await startTestServer(root, { runsDb: '' });
  client = grpcClient(server.grpcPort);

  await scoreRun(OLDER_RUN, [normal(2, 2), normal(4, 1)], 100);
  for (const step of STEPS) await scoreRun(STEP_RUN, [normal(1, 1), normal(2, 3), normal(4, 5)], 200 + step, { step });
  // A second, smaller call in the first step (gradient accumulation, another process): one point per step.
  await scoreRun(STEP_RUN, [normal(9, 2), normal(7, 1)], 250, { step: STEPS[0] });
  await scoreRun(VERIFIED_RUN, [normal(1, 2), normal(3, 4), normal(5, 6)], 300, { pack: VERIFIER_PACK });
  await scoreRun(RUN, [normal(5, 3), normal(1, 6), normal(7, 2), normal(3, 3)], 1);
  await scoreRun(RUN, [normal(2, 9), normal(4, 4), THEREFORE_HACK, normal(6, 1)], 11);
  const last = await scoreRun(RUN, [normal(3, 5), WAIT_HACK, normal(8, 1), normal(2, 7)], 21);
  waitHackResult = last[1]!;
  await scoreRun(ONE_CALL_RUN, [normal(6, 2), normal(2, 6)], 400);
  assert.ok(waitHackResult.flags.some((f) => f.name === 'text_repetition'), 'the server raised text_repetition on the "wait" x20 rollout');

  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: this test needs Debian's chromium. Install it with \`bash scripts/install-system-deps.sh\` (apt-get install chromium).`);
  }
  // A fresh profile every run: nothing cached from an earlier page version.
  userDataDir = mkdtempSync(path.join(os.tmpdir(), 'mechreward-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, viewport: { width: 1280, height: 900 } });
});

after(async () => {
  await context?.close();
  client?.close();
  await server?.close();
  for (const dir of [root, userDataDir]) if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Opens a URL, recording every request and console error, and waits until the page reports its state. */
async function open(url: string, state: string): Promise<{ page: Page; requests: string[]; errors: string[] }> {
  const page = await context.newPage();
  const requests: string[] = [];
  const errors: string[] = [];
  page.on('request', (req) => requests.push(req.url()));
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(msg.text());
  });
  page.on('pageerror', (err) => errors.push(err.message));
  await page.goto(url);
  await page.waitForSelector(`body[data-state="${state}"]`, { timeout: 30_000 });
  return { page, requests, errors };
}

interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** Pixels of `rgb` (each channel within tol) in a region of a PNG, counted by Chromium's own decoder. */
async function countColour(png: Buffer, regions: Array<{ rect: Rect; rgb: number[] }>, tol = 6): Promise<{ width: number; height: number; counts: Array<{ match: number; total: number }> }> {
  // about:blank: no page CSP, so the data: URL loads.
  const page = await context.newPage();
  try {
    return await page.evaluate(
      async ({ b64, regions, tol }) => {
        const img = new Image();
        img.src = `data:image/png;base64,${b64}`;
        await img.decode();
        const canvas = document.createElement('canvas');
        canvas.width = img.naturalWidth;
        canvas.height = img.naturalHeight;
        const ctx = canvas.getContext('2d')!;
        ctx.drawImage(img, 0, 0);
        const counts = regions.map(({ rect, rgb }) => {
          const data = ctx.getImageData(Math.round(rect.x), Math.round(rect.y), Math.max(1, Math.round(rect.w)), Math.max(1, Math.round(rect.h))).data;
          let match = 0;
          for (let i = 0; i < data.length; i += 4) {
            if (Math.abs(data[i]! - rgb[0]!) <= tol && Math.abs(data[i + 1]! - rgb[1]!) <= tol && Math.abs(data[i + 2]! - rgb[2]!) <= tol) match += 1;
          }
          return { match, total: data.length / 4 };
        });
        return { width: img.naturalWidth, height: img.naturalHeight, counts };
      },
      { b64: png.toString('base64'), regions, tol },
    );
  } finally {
    await page.close();
  }
}

test('the monitor page renders the run: summary, both charts, flagged rollouts with coloured tokens, screenshot', async () => {
  const base = `http://127.0.0.1:${server.httpPort}/`;
  const { page, requests, errors } = await open(httpUrl(server, `/monitor?run=${encodeURIComponent(RUN)}`), 'ready');
  const api = (await (await fetch(httpUrl(server, `/v1/runs/${RUN}`))).json()) as { flagged: number; alarm: boolean; recent_flagged: unknown[] };

  // Summary: the run's own numbers.
  assert.equal(await page.textContent('#run-id'), RUN);
  assert.equal(await page.textContent('#pack'), PACK);
  assert.equal(await page.textContent('#sequences'), String(sentToRun.sequences));
  assert.equal(await page.textContent('#flagged'), String(api.flagged));
  assert.ok(api.flagged >= 2 && api.alarm, 'two text-rule hacks in 12 rollouts against a 2/400 baseline raise the alarm');
  assert.ok(await page.isVisible('#alarm'), 'ALARM badge shown');
  assert.match((await page.textContent('#baseline'))!, /^0\.5 % \(/);
  assert.match((await page.textContent('#flags-by-name'))!, /text_repetition: 2/);
  // Each flag the run has gets a line saying what it means (and only those flags).
  const notes = await page.$$eval('#flag-notes li', (items) => items.map((i) => i.textContent ?? ''));
  assert.equal(notes.length, 1);
  assert.match(notes[0]!, /^text_repetition: a reasoning word repeated more than 15 times/);
  const options = await page.$$eval('#run-select option', (os) => os.map((o) => (o as HTMLOptionElement).value));
  assert.deepEqual(options, [ONE_CALL_RUN, RUN, VERIFIED_RUN, STEP_RUN, OLDER_RUN], 'run selector: most recently active first');

  // Charts: both canvases have pixels, including each chart's own data colour (not only axes and grid).
  const canvases = await page.$$eval('.charts canvas', (list, colours) =>
    list.map((c) => {
      const canvas = c as HTMLCanvasElement;
      const data = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
      const rgb = canvas.id === 'reward-chart' ? colours.median : colours.run;
      let painted = 0;
      let series = 0;
      for (let i = 0; i < data.length; i += 4) {
        if (data[i + 3]! > 0) painted += 1;
        if (data[i + 3] === 255 && Math.abs(data[i]! - rgb[0]!) <= 4 && Math.abs(data[i + 1]! - rgb[1]!) <= 4 && Math.abs(data[i + 2]! - rgb[2]!) <= 4) series += 1;
      }
      return { id: canvas.id, width: canvas.width, height: canvas.height, painted, series };
    }),
  { median: MEDIAN_RGB, run: RUN_RATE_RGB });
  assert.deepEqual(canvases.map((c) => c.id), ['reward-chart', 'flag-chart']);
  for (const c of canvases) {
    assert.ok(c.width > 300 && c.height > 200, `${c.id} laid out (${c.width}x${c.height})`);
    assert.ok(c.painted > 2000, `${c.id} is not blank (${c.painted} painted pixels)`);
    assert.ok(c.series > 100, `${c.id} draws its data series (${c.series} pixels of the series colour)`);
  }

  // The "wait" x20 rollout: its flag, and one span per token whose title is that token's exact reward.
  const hack = page.locator('li.rollout', { has: page.locator('[data-flag="text_repetition"]', { hasText: '"wait"' }) });
  assert.equal(await hack.count(), 1);
  assert.match((await hack.locator('[data-flag="text_repetition"]').textContent())!, /"wait" repeated 20 times/);
  const spans = await hack.locator('span.tok').evaluateAll((list) => list.map((s) => ({ text: s.textContent, title: (s as HTMLElement).title, bg: getComputedStyle(s).backgroundColor })));
  const tokens = [...WAIT_HACK.prompt, ...WAIT_HACK.response];
  assert.equal(spans.length, tokens.length);
  assert.deepEqual(spans.map((s) => s.text), tokens);
  assert.deepEqual(spans.map((s) => s.title), waitHackResult.token_rewards.map((r) => String(r)));
  const coloured = spans.filter((s) => s.bg !== 'rgb(255, 255, 255)');
  assert.ok(coloured.length > 0 && waitHackResult.token_rewards.some((r) => r !== 0), 'response tokens with a reward are coloured');
  for (let i = 0; i < WAIT_HACK.prompt.length; i += 1) assert.equal(spans[i]!.bg, 'rgb(255, 255, 255)', 'prompt tokens (reward 0) stay white');

  // Screenshot, then check it holds what the DOM says: the ALARM badge, the strongest token's colour, the series.
  const strongest = await hack.locator('span.tok').evaluateAll((list) => {
    let best = list[0] as HTMLElement;
    for (const s of list) if (Math.abs(Number((s as HTMLElement).dataset.reward)) > Math.abs(Number(best.dataset.reward))) best = s as HTMLElement;
    const r = best.getBoundingClientRect();
    const rgb = getComputedStyle(best).backgroundColor.match(/\d+/g)!.map(Number);
    return { rect: { x: r.x + scrollX, y: r.y + scrollY, w: r.width, h: r.height }, rgb };
  });
  const rectOf = (selector: string) =>
    page.$eval(selector, (e) => {
      const r = e.getBoundingClientRect();
      return { x: r.x + scrollX, y: r.y + scrollY, w: r.width, h: r.height };
    });
  const docHeight = await page.evaluate(() => document.documentElement.scrollHeight);
  mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  rmSync(SCREENSHOT, { force: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  const png = readFileSync(SCREENSHOT);
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  assert.ok(png.length > 30_000, `screenshot is not trivial (${png.length} bytes)`);
  const shot = await countColour(png, [
    { rect: await rectOf('#alarm'), rgb: ALARM_RGB },
    strongest,
    { rect: await rectOf('#reward-chart'), rgb: MEDIAN_RGB },
    { rect: await rectOf('#flag-chart'), rgb: RUN_RATE_RGB },
  ]);
  assert.equal(shot.width, 1280);
  assert.equal(shot.height, docHeight);
  const [alarm, token, rewardSeries, rateSeries] = shot.counts;
  assert.ok(alarm!.match / alarm!.total > 0.4, `ALARM badge red in the screenshot (${alarm!.match}/${alarm!.total})`);
  assert.ok(token!.match / token!.total > 0.3, `strongest token's colour ${strongest.rgb} in the screenshot (${token!.match}/${token!.total})`);
  assert.ok(rewardSeries!.match > 100, `median line in the screenshot (${rewardSeries!.match} px)`);
  assert.ok(rateSeries!.match > 100, `flag-rate line in the screenshot (${rateSeries!.match} px)`);

  // Self-contained: every request went to this server (no CDN), and nothing failed in the console.
  assert.deepEqual(requests.filter((u) => !u.startsWith(base)), []);
  assert.deepEqual(errors, []);
  await page.close();
});

test('without ?run the page shows the most recently active run with more than one call; an unknown run says so', async () => {
  // ONE_CALL_RUN is newer, but a single call (a smoke test) is not what a user opening the page wants to watch.
  const latest = await open(httpUrl(server, '/monitor'), 'ready');
  assert.equal(await latest.page.textContent('#run-id'), RUN);
  assert.equal(await latest.page.inputValue('#run-select'), RUN);
  // Picking another run redraws the page for it and puts it in the URL (a link to share).
  await latest.page.selectOption('#run-select', OLDER_RUN);
  await latest.page.waitForSelector(`body[data-state="ready"][data-run="${OLDER_RUN}"]`, { timeout: 30_000 });
  assert.equal(await latest.page.textContent('#run-id'), OLDER_RUN);
  assert.equal(await latest.page.textContent('#sequences'), '2');
  assert.equal(new URL(latest.page.url()).searchParams.get('run'), OLDER_RUN);
  assert.deepEqual(latest.errors, []);
  await latest.page.close();

  const unknown = await open(httpUrl(server, '/monitor?run=no-such-run'), 'not-found');
  assert.match((await unknown.page.textContent('#message'))!, /"no-such-run" is unknown/);
  assert.ok(await unknown.page.isHidden('#content'));
  await unknown.page.close();
});

test('assets: Chart.js is served from node_modules, unknown assets are 404, the page sets a CSP', async () => {
  const chart = await fetch(httpUrl(server, '/monitor/assets/chart.umd.js'));
  assert.equal(chart.status, 200);
  assert.match(chart.headers.get('content-type')!, /^text\/javascript/);
  assert.match(await chart.text(), /Chart\.js v4\.6\.1/);
  assert.equal((await fetch(httpUrl(server, '/monitor/assets/..%2F..%2Fpackage.json'))).status, 404);
  assert.equal((await fetch(httpUrl(server, '/monitor/assets/secrets.js'))).status, 404);
  const page = await fetch(httpUrl(server, '/monitor'));
  assert.match(page.headers.get('content-security-policy')!, /default-src 'none'; script-src 'self'/);
});

/** What Chart.js drew for one chart: per dataset its label, resolved point radii and x values; the x-axis title. */
interface ChartState {
  xTitle: string;
  datasets: Array<{ label: string; radii: number[]; xs: number[] }>;
}

function chartState(page: Page, canvasId: string): Promise<ChartState> {
  return page.evaluate((id) => {
    const chart = (window as unknown as { Chart: { getChart(id: string): any } }).Chart.getChart(id); // eslint-disable-line @typescript-eslint/no-explicit-any
    return {
      xTitle: chart.options.scales.x.title.text as string,
      datasets: chart.data.datasets.map((ds: { label: string }, i: number) => ({
        label: ds.label,
        radii: chart.getDatasetMeta(i).data.map((el: { options: { radius: number } }) => el.options.radius) as number[],
        xs: chart.getDatasetMeta(i).data.map((_: unknown, j: number) => (chart.data.datasets[i].data[j] as { x: number }).x) as number[],
      })),
    };
  }, canvasId);
}

/** Pixels of `rgb` (alpha 255, each channel within 4) on a canvas. */
function seriesPixels(page: Page, canvasId: string, rgb: number[]): Promise<number> {
  return page.$eval(`#${canvasId}`, (c, rgb) => {
    const canvas = c as HTMLCanvasElement;
    const data = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
    let n = 0;
    for (let i = 0; i < data.length; i += 4) if (data[i + 3] === 255 && Math.abs(data[i]! - rgb[0]!) <= 4 && Math.abs(data[i + 1]! - rgb[1]!) <= 4 && Math.abs(data[i + 2]! - rgb[2]!) <= 4) n += 1;
    return n;
  }, rgb);
}

test('a run of one Score call is drawn: its median, mean and flag-rate points have a radius and pixels', async () => {
  const { page, errors } = await open(httpUrl(server, `/monitor?run=${ONE_CALL_RUN}`), 'ready');
  const reward = await chartState(page, 'reward-chart');
  const flags = await chartState(page, 'flag-chart');
  const byLabel = (s: ChartState, label: string) => s.datasets.find((d) => d.label === label)!;
  for (const d of [byLabel(reward, 'median'), byLabel(reward, 'mean'), byLabel(flags, 'run flag rate')]) {
    assert.equal(d.radii.length, 1, `${d.label}: one point`);
    assert.ok(d.radii[0]! > 0, `${d.label}: the point's resolved radius is ${d.radii[0]} (0 draws nothing)`);
  }
  assert.ok((await seriesPixels(page, 'reward-chart', MEDIAN_RGB)) > 20, 'the median point is painted');
  assert.ok((await seriesPixels(page, 'flag-chart', RUN_RATE_RGB)) > 20, 'the flag-rate point is painted');
  assert.deepEqual(errors, []);
  await page.close();
});

test('x-axis: trainer steps when the calls carried ScoreRequest.step, else Score call numbers', async () => {
  const stepped = await open(httpUrl(server, `/monitor?run=${STEP_RUN}`), 'ready');
  assert.equal(await stepped.page.getAttribute('body', 'data-x-axis'), 'step');
  const byStep = await chartState(stepped.page, 'reward-chart');
  assert.equal(byStep.xTitle, 'trainer step');
  assert.deepEqual(byStep.datasets.find((d) => d.label === 'median')!.xs, STEPS, 'one point per step, though step 3 took two calls');
  assert.deepEqual((await chartState(stepped.page, 'flag-chart')).datasets.find((d) => d.label === 'run flag rate')!.xs, STEPS);
  type Point = { step?: number; sequences: number; reward_mean: number; reward_p10: number; reward_p90: number };
  const api = (await (await fetch(httpUrl(server, `/v1/runs/${STEP_RUN}`))).json()) as { history: Point[] };
  assert.deepEqual(api.history.map((p) => p.step), [STEPS[0], STEPS[1], STEPS[0]], 'the JSON API returns each call with its step');
  // The merged first step from the API's per-call points: the exact sequence-weighted mean, the band's envelope.
  const first = api.history.filter((p) => p.step === STEPS[0]);
  const n = first.reduce((a, p) => a + p.sequences, 0);
  const want = {
    mean: first.reduce((a, p) => a + p.reward_mean * p.sequences, 0) / n,
    p10: Math.min(...first.map((p) => p.reward_p10)),
    p90: Math.max(...first.map((p) => p.reward_p90)),
  };
  const drawn = await stepped.page.evaluate(() => {
    const chart = (window as unknown as { Chart: { getChart(id: string): any } }).Chart.getChart('reward-chart'); // eslint-disable-line @typescript-eslint/no-explicit-any
    const y0 = (label: string) => (chart.data.datasets.find((d: { label: string }) => d.label === label).data[0] as { y: number }).y;
    return { mean: y0('mean'), p10: y0('_p10'), p90: y0('p10–p90') };
  });
  for (const k of ['mean', 'p10', 'p90'] as const) assert.ok(Math.abs(drawn[k] - want[k]) <= 1e-9 * Math.max(1, Math.abs(want[k])), `step ${STEPS[0]} ${k}: drawn ${drawn[k]}, want ${want[k]}`);
  await stepped.page.close();

  const calls = await open(httpUrl(server, `/monitor?run=${RUN}`), 'ready');
  assert.equal(await calls.page.getAttribute('body', 'data-x-axis'), 'call');
  const byCall = await chartState(calls.page, 'reward-chart');
  assert.match(byCall.xTitle, /Score call/);
  assert.deepEqual(byCall.datasets.find((d) => d.label === 'median')!.xs, [1, 2, 3]);
  await calls.page.close();
});

test('the dual verifier\'s figures are on the page for a pack with a verifier, hidden for one without', async () => {
  const api = (await (await fetch(httpUrl(server, `/v1/runs/${VERIFIED_RUN}`))).json()) as { verifier: { mean_disagreement: number; token_disagreement: number; tokens: number; disagreeing_tokens: number; downweighted_sequences: number; sequences: number } };
  const v = api.verifier;
  assert.ok(v && v.sequences === 3 && v.tokens > 0, `the verifier checked the run's tokens (${JSON.stringify(v)})`);
  const { page, errors } = await open(httpUrl(server, `/monitor?run=${VERIFIED_RUN}`), 'ready');
  assert.ok(await page.isVisible('#verifier'));
  const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
  assert.equal(await page.textContent('#verifier-mean'), pct(v.mean_disagreement));
  assert.equal(await page.textContent('#verifier-tokens'), `${pct(v.token_disagreement)} (${v.disagreeing_tokens} of ${v.tokens})`);
  assert.equal(await page.textContent('#verifier-downweighted'), `${v.downweighted_sequences} of ${v.sequences}`);
  // Another run, without a verifier: the block goes away.
  await page.selectOption('#run-select', RUN);
  await page.waitForSelector(`body[data-state="ready"][data-run="${RUN}"]`, { timeout: 30_000 });
  assert.ok(await page.isHidden('#verifier'));
  assert.deepEqual(errors, []);
  await page.close();
});

test('compare runs: ticking runs overlays their mean reward on one chart, kept in the URL', async () => {
  const { page, errors } = await open(httpUrl(server, `/monitor?run=${RUN}`), 'ready');
  assert.ok(await page.isHidden('#compare-box'), 'no chart until a run is ticked');
  await page.check(`#compare-runs input[value="${OLDER_RUN}"]`);
  await page.waitForFunction(() => !(document.getElementById('compare-box') as HTMLElement).hidden && (window as unknown as { Chart: { getChart(id: string): { data: { datasets: unknown[] } } | undefined } }).Chart.getChart('compare-chart')?.data.datasets.length === 2, undefined, { timeout: 30_000 });
  const cmp = await chartState(page, 'compare-chart');
  assert.deepEqual(cmp.datasets.map((d) => d.label), [RUN, OLDER_RUN]);
  assert.deepEqual(cmp.datasets.map((d) => d.xs), [[1, 2, 3], [1]]);
  assert.ok(cmp.datasets.every((d) => d.radii.every((r) => r > 0)), 'short series are drawn with points');
  const detail = (await (await fetch(httpUrl(server, `/v1/runs/${OLDER_RUN}`))).json()) as { history: Array<{ reward_mean: number }> };
  const ys = await page.evaluate(() => (window as unknown as { Chart: { getChart(id: string): { data: { datasets: Array<{ data: Array<{ y: number }> }> } } } }).Chart.getChart('compare-chart').data.datasets[1]!.data.map((p) => p.y));
  assert.deepEqual(ys, detail.history.map((p) => p.reward_mean));
  assert.equal(new URL(page.url()).searchParams.get('compare'), OLDER_RUN);
  assert.deepEqual(errors, []);
  await page.close();

  // The link reopens the comparison; steps are used only when every compared run has them.
  const both = await open(httpUrl(server, `/monitor?run=${STEP_RUN}&compare=${RUN}`), 'ready');
  await both.page.waitForFunction(() => (window as unknown as { Chart: { getChart(id: string): { data: { datasets: unknown[] } } | undefined } }).Chart.getChart('compare-chart')?.data.datasets.length === 2, undefined, { timeout: 30_000 });
  assert.match((await chartState(both.page, 'compare-chart')).xTitle, /Score call/);
  await both.page.close();
});

test('GET / sends a browser to the monitor page and tells other clients the routes', async () => {
  const html = await fetch(httpUrl(server, '/'), { headers: { accept: 'text/html,application/xhtml+xml' }, redirect: 'manual' });
  assert.equal(html.status, 302);
  assert.equal(html.headers.get('location'), 'monitor');
  const text = await fetch(httpUrl(server, '/'));
  assert.equal(text.status, 200);
  assert.match(text.headers.get('content-type')!, /^text\/plain/);
  const body = await text.text();
  for (const route of ['/monitor', '/v1/score', '/v1/packs', '/v1/runs', '/healthz', '/metrics']) assert.ok(body.includes(route), `GET / names ${route}`);
  const { page } = await open(httpUrl(server, '/'), 'ready');
  assert.equal(new URL(page.url()).pathname, '/monitor');
  await page.close();
});
