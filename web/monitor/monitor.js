// Canary monitor page: polls the sidecar's JSON API and draws one run. Plain browser JavaScript (no build
// step); Chart.js is the global `Chart` from monitor/assets/chart.umd.js. Everything a client sent (run ids,
// tokens, text, flag reasons) is inserted with textContent, never as HTML.
'use strict';

(function () {
  const POLL_MS = 3000;
  const Z95 = 1.96; // two-sided 95 % normal quantile, the z the server uses for its Wilson intervals

  const COLORS = {
    band: 'rgba(46, 90, 172, 0.18)',
    median: '#2e5aac',
    mean: '#e8590c',
    run: '#b42318',
    runBand: 'rgba(180, 35, 24, 0.16)',
    base: '#067647',
    baseBand: 'rgba(6, 118, 71, 0.14)',
  };
  // Runs overlaid on the comparison chart, in order (the run shown first, in the median's blue).
  const COMPARE_COLORS = ['#2e5aac', '#e8590c', '#067647', '#9e1f63', '#7a5af8', '#b54708', '#0e7090', '#667085'];
  // Point markers while a series is short enough for them to read as points (a one-call run is one point,
  // which a line alone cannot show); beyond that, the line.
  const MAX_MARKED_POINTS = 40;

  const params = new URLSearchParams(location.search);
  const state = {
    runId: params.get('run'),
    compare: new Set((params.get('compare') || '').split(',').filter(Boolean)),
    charts: null,
    compareChart: null,
    timer: null,
  };
  const $ = (id) => document.getElementById(id);

  // ---- numbers --------------------------------------------------------------------------------------

  /** Wilson score interval for k successes in n trials (95 %); [0, 1] when n is 0 (any rate), as the server. */
  function wilson(k, n) {
    if (n <= 0) return [0, 1];
    const p = k / n;
    const z2 = Z95 * Z95;
    const denom = 1 + z2 / n;
    const centre = (p + z2 / (2 * n)) / denom;
    const half = (Z95 * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / denom;
    return [Math.max(0, centre - half), Math.min(1, centre + half)];
  }

  /**
   * Cumulative flag rate after each Score call. The history may be capped to its newest points, so the
   * sequences and flags older than the first point (summary totals minus the history's sums) start the count:
   * the last point then always equals the summary's rate.
   */
  function cumulativeFlagSeries(history, summary) {
    let n = summary.sequences - history.reduce((s, p) => s + p.sequences, 0);
    let k = summary.flagged - history.reduce((s, p) => s + p.flagged, 0);
    n = Math.max(0, n);
    k = Math.max(0, k);
    return history.map((p) => {
      n += p.sequences;
      k += p.flagged;
      const [lo, hi] = wilson(k, n);
      return { t: p.t_ms, rate: n > 0 ? k / n : 0, lo, hi };
    });
  }

  const pct = (x) => `${(100 * x).toFixed(1)} %`;
  const interval = (ci) => `${(100 * ci[0]).toFixed(1)}–${(100 * ci[1]).toFixed(1)} %`;
  const num = (x) => (Number.isFinite(x) ? Number(x.toPrecision(4)).toString() : String(x));

  /**
   * The x of each history point: the trainer's step when every point carries one (ScoreRequest.step, which
   * the TRL shim's MechReward fills), else the Score call's number in the run (1, 2, ...). A trainer thinks in
   * steps; a client that sends none still gets an evenly spaced axis, not clock time.
   */
  function xOf(history) {
    const byStep = history.length > 0 && history.every((p) => Number.isFinite(p.step));
    return { byStep, xs: history.map((p, i) => (byStep ? p.step : i + 1)) };
  }

  /**
   * One point per trainer step. A step often takes several Score calls (gradient accumulation, one call per
   * process), which would otherwise stack at one x. Counts add up and the mean is exact (weighted by
   * sequences); a call's p10/p50/p90 cannot be merged exactly without its rewards, so the band is the calls'
   * lowest p10 to highest p90 and the median the sequence-weighted mean of their medians (the caption says so).
   * History without steps is returned as is: one point per call.
   */
  function perStep(history) {
    if (!xOf(history).byStep) return history;
    const steps = new Map();
    for (const p of history) {
      const s = steps.get(p.step);
      if (!s) {
        steps.set(p.step, { ...p });
        continue;
      }
      const n = s.sequences + p.sequences;
      const w = (a, b) => (n > 0 ? (a * s.sequences + b * p.sequences) / n : a);
      s.reward_mean = w(s.reward_mean, p.reward_mean);
      s.reward_p50 = w(s.reward_p50, p.reward_p50);
      s.reward_p10 = Math.min(s.reward_p10, p.reward_p10);
      s.reward_p90 = Math.max(s.reward_p90, p.reward_p90);
      s.sequences = n;
      s.flagged += p.flagged;
      s.t_ms = Math.max(s.t_ms, p.t_ms);
    }
    return [...steps.values()].sort((a, b) => a.step - b.step);
  }

  const xTitle = (byStep) => (byStep ? 'trainer step' : 'Score call (no step sent)');

  /**
   * Diverging colour for a token reward: white at 0, red for negative, green for positive, full colour at
   * the rollout's largest |reward| (so every rollout uses the whole scale).
   */
  function rewardColor(r, maxAbs) {
    const t = maxAbs > 0 ? Math.max(-1, Math.min(1, r / maxAbs)) : 0;
    const target = t < 0 ? [200, 30, 30] : [25, 135, 60];
    const a = Math.abs(t);
    const mix = (i) => Math.round(255 + (target[i] - 255) * a);
    return { css: `rgb(${mix(0)}, ${mix(1)}, ${mix(2)})`, strong: a > 0.6 };
  }

  // ---- API ------------------------------------------------------------------------------------------

  // A server started with --auth-token wants a bearer token on /v1 calls; the page takes it from the URL
  // fragment (/monitor#token=...), which browsers never send to the server or put in logs.
  const token = new URLSearchParams(location.hash.slice(1)).get('token');

  async function getJson(url) {
    const headers = { accept: 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    const res = await fetch(url, { headers, cache: 'no-store' });
    const body = await res.json().catch(() => null);
    if (!res.ok) {
      const err = new Error((body && body.error) || `HTTP ${res.status}`);
      err.status = res.status;
      err.code = body && body.code;
      throw err;
    }
    return body;
  }

  // ---- rendering ------------------------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function renderRunPicker(runs) {
    const select = $('run-select');
    const current = select.value;
    select.replaceChildren(
      ...runs.map((r) => {
        const option = el('option', '', `${r.run_id}  (${r.pack}, ${r.sequences} seq${r.alarm ? ', ALARM' : ''})`);
        option.value = r.run_id;
        return option;
      }),
    );
    select.value = state.runId || current;
  }

  // What a flag means and what to check, for the flags a newcomer meets first. The server's flag reasons say
  // what was measured; these say why it may fire without any reward hacking.
  const FLAG_NOTES = {
    off_distribution:
      "off_distribution: the SAE reconstructs these activations worse than 99 % of the pack's held-out answers. " +
      'The bundled pack was calibrated on greedy answers, so sampling at temperature 1.0 (TRL\'s default) raises it for ' +
      'many rollouts, as do another model, layer or dtype. Calibrate the bound on rollouts generated as you train ' +
      '(mechreward gate g1 --data) before reading it as a hack signal.',
    reward_outlier: "reward_outlier: the rollout's reward is far from the run's median (robust z-score); a few are expected, a surge is not.",
    text_repetition: 'text_repetition: a reasoning word repeated more than 15 times without the expected answer, the canary suite\'s hack rule.',
  };

  function renderVerifier(v) {
    $('verifier').hidden = !v;
    if (!v) return;
    $('verifier-mean').textContent = pct(v.mean_disagreement);
    $('verifier-tokens').textContent = `${pct(v.token_disagreement)} (${v.disagreeing_tokens} of ${v.tokens})`;
    $('verifier-downweighted').textContent = `${v.downweighted_sequences} of ${v.sequences}`;
  }

  function renderSummary(run) {
    $('run-id').textContent = run.run_id;
    $('pack').textContent = run.pack;
    $('sequences').textContent = String(run.sequences);
    $('flagged').textContent = String(run.flagged);
    $('flag-rate').textContent = `${pct(run.flag_rate)} (${interval(run.ci)})`;
    $('baseline').textContent = run.baseline ? `${pct(run.baseline.rate)} (${interval(run.baseline.ci)}), n = ${run.baseline.n}` : 'none calibrated';
    $('last-seen').textContent = new Date(run.last_seen_ms).toLocaleString();
    $('alarm').hidden = !run.alarm;
    $('healthy').hidden = run.alarm || !run.baseline;
    $('no-baseline').hidden = Boolean(run.baseline);
    const counts = Object.entries(run.flags_by_name || {}).sort((a, b) => b[1] - a[1]);
    $('flags-by-name').replaceChildren(...counts.map(([name, count]) => el('li', '', `${name}: ${count}`)));
    $('flag-notes').replaceChildren(...counts.filter(([name]) => FLAG_NOTES[name]).map(([name]) => el('li', '', FLAG_NOTES[name])));
    renderVerifier(run.verifier);
  }

  function baseOptions(yTitle, yTick) {
    return {
      animation: false, // the page redraws every few seconds; animating each poll only blurs the numbers
      responsive: true,
      maintainAspectRatio: false,
      parsing: false,
      normalized: true,
      interaction: { mode: 'index', intersect: false },
      plugins: {
        legend: { labels: { usePointStyle: true, boxWidth: 24, filter: (item) => !item.text.startsWith('_') } },
        tooltip: {
          filter: (item) => !item.dataset.label.startsWith('_'),
          callbacks: {
            // Each chart's own axis (the comparison may fall back to calls while the run's charts use steps).
            title: (items) => (items.length ? `${items[0].chart.options.scales.x.title.text === xTitle(true) ? 'step' : 'call'} ${items[0].raw.x} · ${new Date(items[0].raw.t).toLocaleTimeString()}` : ''),
          },
        },
      },
      scales: {
        // Whole numbers only: steps and calls are counts.
        x: { type: 'linear', title: { display: true, text: xTitle(false) }, ticks: { precision: 0 } },
        y: { title: { display: true, text: yTitle }, ticks: { callback: yTick } },
      },
    };
  }

  // Datasets whose label starts with '_' are band edges: drawn, filled, but kept out of legend and tooltip.
  // pointRadius is scriptable, so Chart.js resolves it for each point at every update. A plain value set on the
  // dataset after the first draw is not seen by update('none'), which keeps the first draw's shared options.
  const markPoints = (ctx) => (ctx.dataset.data.length <= MAX_MARKED_POINTS ? 3.5 : 0);

  function makeCharts() {
    const line = (label, color, extra) => ({ label, data: [], borderColor: color, backgroundColor: color, borderWidth: 2, pointRadius: markPoints, pointHoverRadius: 5, pointStyle: 'circle', tension: 0, ...extra });
    const edge = (label, fillColor, fill) => ({ label, data: [], borderColor: 'transparent', backgroundColor: fillColor, borderWidth: 0, pointRadius: 0, pointStyle: 'rect', fill });
    const reward = new Chart($('reward-chart'), {
      type: 'line',
      data: {
        datasets: [
          edge('_p10', COLORS.band, false),
          edge('p10–p90', COLORS.band, '-1'),
          line('median', COLORS.median),
          line('mean', COLORS.mean, { borderDash: [6, 4] }),
        ],
      },
      options: baseOptions('reward', (v) => num(v)),
    });
    const flags = new Chart($('flag-chart'), {
      type: 'line',
      data: {
        datasets: [
          edge('_base_lo', COLORS.baseBand, false),
          edge('baseline 95 % CI', COLORS.baseBand, '-1'),
          line('baseline rate', COLORS.base, { borderDash: [6, 4] }),
          edge('_run_lo', COLORS.runBand, false),
          edge('run 95 % CI', COLORS.runBand, '-1'),
          line('run flag rate', COLORS.run),
        ],
      },
      options: baseOptions('flag rate', (v) => `${Math.round(v * 1000) / 10} %`),
    });
    flags.options.scales.y.min = 0;
    return { reward, flags };
  }

  function renderCharts(run) {
    if (!state.charts) state.charts = makeCharts();
    const history = perStep(run.history || []);
    const { byStep, xs } = xOf(history);
    // `t` kept for the tooltip's clock time.
    const pt = (i, y) => ({ x: xs[i], y, t: history[i].t_ms });

    const [p10, p90, p50, mean] = state.charts.reward.data.datasets;
    p10.data = history.map((p, i) => pt(i, p.reward_p10));
    p90.data = history.map((p, i) => pt(i, p.reward_p90));
    p50.data = history.map((p, i) => pt(i, p.reward_p50));
    mean.data = history.map((p, i) => pt(i, p.reward_mean));

    const series = cumulativeFlagSeries(history, run);
    const [bLo, bHi, bRate, rLo, rHi, rRate] = state.charts.flags.data.datasets;
    const base = run.baseline;
    bLo.data = base ? series.map((s, i) => pt(i, base.ci[0])) : [];
    bHi.data = base ? series.map((s, i) => pt(i, base.ci[1])) : [];
    bRate.data = base ? series.map((s, i) => pt(i, base.rate)) : [];
    rLo.data = series.map((s, i) => pt(i, s.lo));
    rHi.data = series.map((s, i) => pt(i, s.hi));
    rRate.data = series.map((s, i) => pt(i, s.rate));
    for (const chart of [state.charts.reward, state.charts.flags]) {
      chart.options.scales.x.title.text = xTitle(byStep);
      chart.update('none');
    }
    document.body.dataset.xAxis = byStep ? 'step' : 'call';
  }

  // ---- comparing runs -------------------------------------------------------------------------------

  function renderComparePicker(runs) {
    const others = runs.filter((r) => r.run_id !== state.runId);
    $('compare').hidden = others.length === 0;
    $('compare-runs').replaceChildren(
      ...others.map((r) => {
        const label = el('label', 'compare-run');
        const box = el('input');
        box.type = 'checkbox';
        box.value = r.run_id;
        box.checked = state.compare.has(r.run_id);
        box.addEventListener('change', () => {
          if (box.checked) state.compare.add(r.run_id);
          else state.compare.delete(r.run_id);
          setUrlParam('compare', [...state.compare].join(','));
          void poll();
        });
        label.append(box, el('span', '', `${r.run_id} (${r.pack})`));
        return label;
      }),
    );
  }

  /** Mean reward per step (or call) of the shown run and every run ticked under "Compare runs". */
  async function renderCompare(run) {
    const wanted = [...state.compare].filter((id) => id !== run.run_id);
    $('compare-box').hidden = wanted.length === 0;
    if (wanted.length === 0) return;
    // A compared run that has gone (another sidecar, a new database) is skipped, not an error.
    const others = await Promise.all(wanted.map((id) => getJson(`v1/runs/${encodeURIComponent(id)}`).catch(() => null)));
    const runs = [run, ...others.filter(Boolean)];
    const histories = runs.map((r) => perStep(r.history || []));
    const axes = histories.map((h) => xOf(h));
    const byStep = axes.every((a) => a.byStep);
    if (!state.compareChart) {
      state.compareChart = new Chart($('compare-chart'), { type: 'line', data: { datasets: [] }, options: baseOptions('mean reward', (v) => num(v)) });
    }
    state.compareChart.data.datasets = runs.map((r, k) => {
      const color = COMPARE_COLORS[k % COMPARE_COLORS.length];
      // Mixed runs (some without steps) fall back to one point per call for all, so the axes agree.
      const history = byStep ? histories[k] : r.history || [];
      const xs = byStep ? axes[k].xs : history.map((_, i) => i + 1);
      return { label: r.run_id, data: history.map((p, i) => ({ x: xs[i], y: p.reward_mean, t: p.t_ms })), borderColor: color, backgroundColor: color, borderWidth: 2, pointRadius: markPoints, pointStyle: 'circle', tension: 0 };
    });
    state.compareChart.options.scales.x.title.text = xTitle(byStep);
    state.compareChart.update('none');
  }

  function renderTokens(rollout) {
    const rewards = rollout.token_rewards || [];
    const maxAbs = rewards.reduce((m, r) => Math.max(m, Math.abs(r)), 0);
    const box = el('div', 'tokens');
    box.setAttribute('aria-label', 'tokens coloured by reward');
    for (let i = 0; i < rollout.tokens.length; i += 1) {
      const r = i < rewards.length ? rewards[i] : 0;
      const color = rewardColor(r, maxAbs);
      const span = el('span', color.strong ? 'tok strong' : 'tok', rollout.tokens[i]);
      span.style.backgroundColor = color.css; // CSSOM, allowed by the page's style-src 'self'
      span.title = String(r);
      span.dataset.reward = String(r);
      box.append(span);
    }
    return box;
  }

  function renderRollout(rollout) {
    const item = el('li', 'rollout');
    const head = el('div', 'rollout-head');
    head.append(el('strong', '', `reward ${num(rollout.reward)}`), el('span', '', new Date(rollout.t_ms).toLocaleString()));
    const flags = el('ul', 'rollout-flags');
    for (const f of rollout.flags || []) {
      const li = el('li', 'flag');
      li.dataset.flag = f.name;
      li.append(el('span', 'flag-name', f.name), el('span', 'flag-reason', f.reason), el('span', 'flag-value', `value ${num(f.value)}`));
      flags.append(li);
    }
    item.append(head, flags);
    if (rollout.tokens && rollout.tokens.length > 0) item.append(renderTokens(rollout));
    else item.append(el('pre', 'rollout-text', rollout.text ? rollout.text : '(no text or tokens were sent with this rollout)'));
    return item;
  }

  function renderFlagged(run) {
    const list = run.recent_flagged || [];
    $('no-flagged').hidden = list.length > 0;
    $('flagged-list').replaceChildren(...list.map(renderRollout));
  }

  function showMessage(text) {
    $('message').textContent = text;
    $('message').hidden = false;
    $('content').hidden = true;
  }

  function setStatus(text, isError) {
    $('status').textContent = text;
    $('status').classList.toggle('error', Boolean(isError));
  }

  // ---- polling --------------------------------------------------------------------------------------

  /**
   * The run to open when the URL names none: the most recently active run that has had more than one Score
   * call (a training run, not a one-off test call), else the most recently active run.
   */
  function defaultRun(runs) {
    const training = runs.find((r) => r.last_seen_ms > r.first_seen_ms);
    return (training || runs[0]).run_id;
  }

  async function refresh() {
    const { runs } = await getJson('v1/runs');
    // Most recently active first.
    runs.sort((a, b) => b.last_seen_ms - a.last_seen_ms);
    if (!state.runId && runs.length) state.runId = defaultRun(runs);
    renderRunPicker(runs);
    renderComparePicker(runs);
    if (!state.runId) {
      showMessage('No runs yet. Score with a run_id (gRPC ScoreRequest.run_id or "run_id" in POST /v1/score; try `node examples/score_grpc.mjs`) and the run appears here.');
      document.body.dataset.state = 'empty';
      return;
    }
    const wanted = state.runId;
    let run;
    try {
      run = await getJson(`v1/runs/${encodeURIComponent(wanted)}`);
    } catch (err) {
      if (wanted !== state.runId) return; // the user picked another run meanwhile; its own poll draws it
      if (err.status === 404) {
        showMessage(`Run "${state.runId}" is unknown to this sidecar. Pick another run above.`);
        document.body.dataset.state = 'not-found';
        return;
      }
      throw err;
    }
    if (wanted !== state.runId) return;
    $('message').hidden = true;
    $('content').hidden = false; // before the charts: Chart.js measures its box, which must be laid out
    renderSummary(run);
    renderCharts(run);
    await renderCompare(run);
    if (wanted !== state.runId) return;
    renderFlagged(run);
    document.title = `${run.alarm ? 'ALARM · ' : ''}${run.run_id} · mechreward monitor`;
    document.body.dataset.run = run.run_id;
    document.body.dataset.state = 'ready';
  }

  async function poll() {
    clearTimeout(state.timer);
    try {
      await refresh();
      setStatus(`updated ${new Date().toLocaleTimeString()} · every ${POLL_MS / 1000} s`);
    } catch (err) {
      setStatus(`cannot reach the sidecar (${err.message}); retrying`, true);
    }
    // Cleared again here: a poll started by the run picker may have finished first, and only one timer may live.
    clearTimeout(state.timer);
    state.timer = setTimeout(poll, POLL_MS);
  }

  /** Keeps the view in the URL (a link to share); an empty value removes the parameter. */
  function setUrlParam(name, value) {
    const url = new URL(location.href);
    if (value) url.searchParams.set(name, value);
    else url.searchParams.delete(name);
    history.replaceState(null, '', url);
  }

  $('run-select').addEventListener('change', (event) => {
    state.runId = event.target.value;
    setUrlParam('run', state.runId);
    void poll();
  });

  void poll();
})();
