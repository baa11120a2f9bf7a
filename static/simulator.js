// The flash-sale simulator page (/lab/simulator, docs/design.md §2.6): starts
// a run (POST /api/lab/simulations), reads its Server-Sent Events with fetch
// (which, unlike EventSource, can send the admin bearer), and redraws the
// charts (static/charts.js) as ticks arrive. What the page holds is in
// window.fgSimulator: {runs: [{label, request, ticks, done}], charts}.
'use strict';

const SIMULATOR_WORDS = {
  need_token: ['先输入管理员令牌（启动横幅里的实验室链接自带令牌）。', 'Enter the admin token first (the lab link in the start-up banner carries it).'],
  starting: ['正在准备：创建商品、设置开关、买家登录……', 'Preparing: the product, the switches, the buyers logging in…'],
  running: ['进行中，第 {t} 秒：', 'running, {t} s: '],
  requests: [' 个请求，', ' requests, '],
  attached: ['已接上正在运行的那一次模拟。', 'Following the simulation in progress.'],
  orders: [' 件已下单，库存 ', ' units ordered, stock '],
  done_ok: ['审计通过：所有不变量都成立。', 'Audit OK: every invariant holds.'],
  done_broken: ['审计失败：', 'Audit failed: '],
  failed: ['模拟失败：', 'The simulation failed: '],
  lost: ['事件流中断，改为读取完整记录。', 'The event stream broke; reading the whole record instead.'],
  summary: ['请求 {requests} 个 · 已下单 {orders} 件 · 最后一单在第 {sold_out} 秒 · 吞吐 {rate}/秒 · p99 {p99} 毫秒', '{requests} requests · {orders} units ordered · last order at {sold_out} s · {rate}/s · p99 {p99} ms'],
  all_on: ['防线全开', 'all on'],
  off: ['关闭 ', ' off'],
};

function simWord(key) {
  return SIMULATOR_WORDS[key][fg.zh ? 0 : 1];
}

const fgSimulator = { runs: [], charts: {} };
window.fgSimulator = fgSimulator;

function simAuth() {
  return { Authorization: 'Bearer ' + fg.adminToken() };
}

// What the form asks for; `extraOff` adds one more defense off.
function simRequest(extraOff) {
  const value = (id) => Number(document.getElementById(id).value);
  const defenses = {};
  document.querySelectorAll('[data-sim-defense]').forEach((box) => {
    if (!box.checked) defenses[box.dataset.simDefense] = false;
  });
  if (extraOff) defenses[extraOff] = false;
  return {
    users: value('sim-users'),
    stock: value('sim-stock'),
    concurrency: value('sim-concurrency'),
    scenario: document.getElementById('sim-scenario').value,
    race_window_ms: value('sim-race-window'),
    defenses,
  };
}

function simLabel(request) {
  const off = Object.keys(request.defenses).filter((id) => request.defenses[id] === false);
  if (!off.length) return simWord('all_on');
  return fg.zh ? simWord('off') + off.join('、') : off.join(', ') + simWord('off');
}

let simRedrawQueued = false;
function simRedraw() {
  if (simRedrawQueued) return;
  simRedrawQueued = true;
  requestAnimationFrame(() => {
    simRedrawQueued = false;
    fgSimulator.charts = fgCharts.draw(document.getElementById('sim-charts'), fgSimulator.runs, fgSimulator.charts);
  });
}

function simStatus(text) {
  document.getElementById('sim-status').textContent = text;
}

function simShowTick(tick) {
  const stock = tick.stock === null || tick.stock === undefined ? '–' : tick.stock;
  simStatus(simWord('running').replace('{t}', (tick.t_ms / 1000).toFixed(1)) + tick.requests
    + simWord('requests') + tick.orders + simWord('orders') + stock);
}

function simShowDone(run) {
  const done = run.done || {};
  const audit = document.getElementById('sim-audit');
  const summary = document.getElementById('sim-summary');
  summary.replaceChildren();
  if (done.state !== 'done') {
    simStatus(simWord('failed') + (done.error || ''));
  }
  if (done.summary) {
    const s = done.summary;
    const line = document.createElement('p');
    line.textContent = simWord('summary')
      .replace('{requests}', s.requests)
      .replace('{orders}', s.orders)
      .replace('{sold_out}', typeof s.sold_out_after_secs === 'number' ? s.sold_out_after_secs.toFixed(2) : '–')
      .replace('{rate}', Math.round(s.throughput_per_sec))
      .replace('{p99}', Number(s.latency_ms.p99).toFixed(1));
    summary.append(line);
  }
  if (done.audit) {
    audit.dataset.ok = String(done.audit.ok);
    const broken = done.audit.checks.filter((check) => !check.ok && check.level !== 'warning');
    fg.fillAudit(audit, done.audit);
    if (done.state === 'done') {
      simStatus(done.audit.ok ? simWord('done_ok') : simWord('done_broken') + broken.map((c) => c.name).join(', '));
    }
  }
  document.getElementById('sim-again-box').hidden = false;
  simRedraw();
}

// One block of the event stream: "event: …", "id: …", "data: …" lines.
function simEvent(block, run) {
  let kind = 'message';
  let data = '';
  for (const line of block.split('\n')) {
    if (line.startsWith('event:')) kind = line.slice(6).trim();
    else if (line.startsWith('data:')) data += line.slice(5).trim();
  }
  if (!data) return;
  const payload = JSON.parse(data);
  if (kind === 'tick') {
    run.ticks.push(payload);
    simShowTick(payload);
    simRedraw();
  } else if (kind === 'done') {
    run.done = payload;
  }
}

async function simFollow(id, run) {
  try {
    const response = await fetch('/api/lab/simulations/' + id + '/events', { headers: simAuth() });
    if (!response.ok || !response.body) throw new Error('HTTP ' + response.status);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        simEvent(buffer.slice(0, cut), run);
        buffer = buffer.slice(cut + 2);
      }
    }
  } catch (error) {
    simStatus(simWord('lost'));
  }
  if (!run.done) await simReadWhole(id, run);
}

// The record as GET /api/lab/simulations/{id} has it, until the run is over.
async function simReadWhole(id, run) {
  for (let attempt = 0; attempt < 240 && !run.done; attempt++) {
    const answer = await fg.call('GET', '/api/lab/simulations/' + id, { headers: simAuth() });
    if (answer.status === 200 && answer.body) {
      run.ticks = answer.body.ticks;
      run.done = answer.body.done;
      simRedraw();
    }
    if (!run.done) await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

// Starts a run; `keep` overlays it on the latest one instead of starting afresh.
async function simStart(request, keep) {
  if (!fg.adminToken()) {
    simStatus(simWord('need_token'));
    return;
  }
  const buttons = document.querySelectorAll('#sim-start, #sim-again');
  buttons.forEach((button) => { button.disabled = true; });
  try {
    const answer = await fg.call('POST', '/api/lab/simulations', { headers: simAuth(), body: request });
    if (answer.status !== 202 || !answer.body) {
      simStatus(fg.describe(answer)[1]);
      return;
    }
    const run = { id: answer.body.id, label: simLabel(request), request, ticks: [], done: null };
    const earlier = keep ? fgSimulator.runs.slice(-1) : [];
    fgSimulator.runs = earlier.concat([run]);
    document.getElementById('sim-audit').replaceChildren();
    delete document.getElementById('sim-audit').dataset.ok;
    simStatus(simWord('starting'));
    await simFollow(answer.body.id, run);
    simShowDone(run);
  } finally {
    buttons.forEach((button) => { button.disabled = false; });
  }
}

// A preset sets the switches (its defense and the layers that hide it off)
// and the scenario that shows its anomaly.
function simApplyPreset(option) {
  const off = (option.dataset.off || '').split(',').filter(Boolean);
  document.querySelectorAll('[data-sim-defense]').forEach((box) => {
    box.checked = !off.includes(box.dataset.simDefense);
  });
  if (option.dataset.scenario) document.getElementById('sim-scenario').value = option.dataset.scenario;
}

// A run already in progress (started elsewhere, or before a reload) is followed.
async function simAttach() {
  if (!fg.adminToken()) return;
  const answer = await fg.call('GET', '/api/lab/simulations', { headers: simAuth() });
  const runs = (answer.status === 200 && answer.body) ? answer.body.simulations : [];
  const current = runs.filter((run) => run.state === 'running').pop();
  if (!current) return;
  const run = { id: current.id, label: simLabel(current.request), request: current.request, ticks: [], done: null };
  fgSimulator.runs = [run];
  simStatus(simWord('attached'));
  await simFollow(current.id, run);
  simShowDone(run);
}

function setUpSimulator() {
  const token = document.getElementById('sim-token');
  token.value = fg.adminToken();
  document.getElementById('sim-token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    localStorage.setItem('fgAdminToken', token.value);
  });
  const preset = document.getElementById('sim-preset');
  preset.addEventListener('change', () => simApplyPreset(preset.selectedOptions[0]));
  // A lesson links here with ?preset=<experiment id>.
  const asked = new URLSearchParams(window.location.search).get('preset');
  const option = Array.from(preset.options).find((o) => asked && o.value === asked);
  if (option) {
    preset.value = asked;
    simApplyPreset(option);
  }
  document.getElementById('sim-form').addEventListener('submit', (event) => {
    event.preventDefault();
    simStart(simRequest(null), false);
  });
  document.getElementById('sim-again').addEventListener('click', () => {
    const latest = fgSimulator.runs[fgSimulator.runs.length - 1];
    if (!latest) return;
    const again = JSON.parse(JSON.stringify(latest.request));
    again.defenses[document.getElementById('sim-again-defense').value] = false;
    simStart(again, true);
  });
  simAttach();
}
