// flashguard pages: plain JavaScript, no framework, no build step.
// The two browser defenses live here: button_disable (the submit button is
// disabled from click until the answer) and popup_key (the idempotency key is
// made when a popup opens and reused by every submit inside it).
'use strict';

const fg = {
  defenses: { button_disable: true, popup_key: true },

  newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  },

  async loadDefenses() {
    try {
      const response = await fetch('/api/defenses');
      if (response.ok) fg.defenses = await response.json();
    } catch (_) { /* keep the defaults: all on */ }
  },

  banner(text) {
    const banner = document.getElementById('banner');
    banner.textContent = text;
    banner.hidden = !text;
  },

  // Calls the API and reads the answer once: status, JSON body, and the headers
  // that tell which defense answered.
  async call(method, url, { headers = {}, body } = {}) {
    const init = { method, headers: { ...headers }, credentials: 'same-origin' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (error) {
      return { status: 0, body: null, defense: null, replayed: false, networkError: String(error) };
    }
    let json = null;
    try { json = await response.json(); } catch (_) { /* not JSON */ }
    const trace = response.headers.get('Flashguard-Trace');
    return {
      status: response.status,
      body: json,
      defense: response.headers.get('Flashguard-Defense'),
      replayed: response.headers.get('Idempotent-Replayed') === 'true',
      retryAfter: response.headers.get('Retry-After'),
      trace: trace ? trace.split(' > ') : [],
    };
  },

  // Words for an answer: never raw JSON.
  describe(answer) {
    const code = answer.body && answer.body.code;
    if (answer.status === 0) return ['error', 'Network error: the request may or may not have arrived. Retrying with the same key is safe. 网络错误'];
    if (answer.status === 201 && answer.replayed) return ['replayed', 'Same answer replayed (Idempotent-Replayed): no second order. 重复请求，返回原结果'];
    if (answer.status === 201 && answer.defense === 'unique_index') return ['replayed', 'Duplicate caught by the unique index: this is the order you already have. 唯一索引拦截'];
    if (answer.status === 201) return ['created', 'Order created 下单成功'];
    if (answer.status === 202 && answer.replayed) return ['replayed', 'Same answer replayed: the payment already started. 重复请求'];
    if (answer.status === 202 && answer.defense) return ['replayed', 'A payment for this order is already processing: no second charge. 支付处理中'];
    if (answer.status === 202) return ['created', 'Payment started: waiting for the provider 支付处理中'];
    if (answer.status === 200 && answer.body && answer.body.status === 'PAID') return ['created', 'Already paid 已支付'];
    const words = {
      request_in_progress: 'Your first click is still being processed; this one was held back. 处理中',
      sold_out: 'Sold out 已售罄',
      sale_not_started: 'The sale has not started yet 未开始',
      busy_retry: 'Busy, please retry 系统繁忙，请重试',
      idempotency_key_reused: 'This key was already used for a different request 幂等号已用于其他请求',
      payment_token_invalid: 'This payment token was already used or has expired: close and reopen the payment popup. 令牌已失效',
      payment_token_missing: 'No payment token: reopen the payment popup. 缺少令牌',
      order_locked: 'Another payment for this order is in progress. 订单已锁定',
      order_closed: 'This order is closed. 订单已关闭',
      unauthorized: 'Please sign in first (top right). 请先登录',
      invalid_quantity: 'Quantity must be 1 to 10. 数量无效',
    };
    const text = words[code] || (answer.body && (answer.body.title + ': ' + answer.body.detail)) || ('HTTP ' + answer.status);
    return [answer.status >= 500 ? 'error' : 'refused', text];
  },

  // Appends one answer to a popup's result list.
  showAnswer(list, number, answer, key) {
    const [kind, words] = fg.describe(answer);
    const item = document.createElement('li');
    item.className = 'result result-' + kind;
    item.dataset.status = String(answer.status);
    item.dataset.defense = answer.defense || '';
    const head = document.createElement('span');
    head.textContent = '#' + number + ' · ' + (answer.status || 'no answer') + ' · ';
    const text = document.createElement('span');
    text.className = 'words';
    text.textContent = words;
    item.append(head, text);
    if (answer.defense) {
      const badge = document.createElement('a');
      badge.className = 'defense';
      badge.href = '/learn/defenses/' + answer.defense;
      badge.textContent = 'stopped by ' + answer.defense;
      item.append(' ', badge);
    }
    if (answer.body && answer.body.order_no && answer.status === 201) {
      const link = document.createElement('a');
      link.href = '/orders/' + answer.body.order_no;
      link.textContent = answer.body.order_no;
      item.append(' ', link);
    }
    const keyNote = document.createElement('small');
    keyNote.textContent = ' key ' + key.slice(0, 8) + '…';
    item.append(keyNote);
    if (answer.trace && answer.trace.length) {
      // The path this request took through the layers (the lab's tracing).
      const timeline = document.createElement('ol');
      timeline.className = 'trace';
      for (const step of answer.trace) {
        const entry = document.createElement('li');
        entry.textContent = step;
        timeline.append(entry);
      }
      item.append(timeline);
    }
    list.append(item);
  },

  // The admin token: from the lab link's fragment (#token=…), kept in this browser.
  adminToken() {
    const match = window.location.hash.match(/token=([^&]+)/);
    if (match) {
      localStorage.setItem('fgAdminToken', decodeURIComponent(match[1]));
      history.replaceState(null, '', window.location.pathname + window.location.search);
    }
    return localStorage.getItem('fgAdminToken') || '';
  },

  // Runs a lab experiment from a card or a lesson, and shows what it did.
  async runExperiment(box, state) {
    const result = box.querySelector('.run-result');
    const token = fg.adminToken();
    if (!token) {
      result.textContent = 'Open the lab link from the start-up banner (it carries the admin token), or enter the token on the lab page. 需要管理员令牌';
      return;
    }
    box.querySelectorAll('button').forEach((button) => { button.disabled = true; });
    result.textContent = 'running… 运行中';
    const answer = await fg.call('POST', '/api/lab/experiments/' + box.dataset.experiment + '/run', {
      headers: { Authorization: 'Bearer ' + token }, body: { defense: state },
    });
    box.querySelectorAll('button').forEach((button) => { button.disabled = false; });
    fg.showRun(result, answer);
  },

  showRun(result, answer) {
    result.replaceChildren();
    if (answer.status !== 200 || !answer.body) {
      result.textContent = fg.describe(answer)[1];
      return;
    }
    const run = answer.body;
    const zh = document.documentElement.lang === 'zh';
    const summary = document.createElement('p');
    summary.className = run.anomalies > 0 ? 'anomaly' : 'clean';
    summary.dataset.anomalies = String(run.anomalies);
    const replies = Object.entries(run.replies).map(([status, n]) => status + '×' + n).join(', ');
    summary.textContent = run.defense + ' ' + run.state.toUpperCase() + ': ' + run.requests + ' requests (' + replies + ') → '
      + run.anomalies + ' ' + (zh ? run.anomaly.zh : run.anomaly.en);
    // Only what the run broke; the full audit is below on the lab page.
    const audit = document.createElement('ul');
    audit.className = 'audit';
    audit.dataset.ok = String(run.audit.ok);
    const broken = run.audit.checks.filter((check) => !check.ok);
    fg.fillAudit(audit, { checks: broken });
    if (!broken.length) {
      const ok = document.createElement('li');
      ok.className = 'ok';
      ok.textContent = zh ? '✓ 审计全部通过' : '✓ audit ok';
      audit.append(ok);
    }
    result.append(summary, audit);
  },

  fillAudit(list, report) {
    list.replaceChildren();
    for (const check of report.checks) {
      const item = document.createElement('li');
      const warning = check.level === 'warning';
      item.className = check.ok ? 'ok' : (warning ? 'warning' : 'broken');
      item.textContent = (check.ok ? '✓ ' : (warning ? '! ' : '✗ ')) + check.name + ': ' + check.detail;
      list.append(item);
    }
  },

  // [lesson button_disable]
  // A submit button guarded by button_disable: one request at a time.
  guard(button, action) {
    button.addEventListener('click', async () => {
      const disable = fg.defenses.button_disable;
      if (disable) button.disabled = true;
      try { await action(); } finally { if (disable) button.disabled = false; }
    });
  },
  // [/lesson]

  async login(username) {
    const answer = await fg.call('POST', '/api/login', { body: { username } });
    if (answer.status !== 200) {
      fg.banner(fg.describe(answer)[1]);
      return;
    }
    window.location.reload();
  },
};

function setUpLogin() {
  const form = document.getElementById('login-form');
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    fg.login(document.getElementById('login-name').value);
  });
  form.querySelectorAll('[data-login]').forEach((chip) => {
    chip.addEventListener('click', () => fg.login(chip.dataset.login));
  });
}

// ---- sale page --------------------------------------------------------------

function setUpSale() {
  const dialog = document.getElementById('buy-dialog');
  const keyView = document.getElementById('buy-key');
  const results = document.getElementById('buy-results');
  const submit = document.getElementById('buy-submit');
  let popup = null; // { productId, key, answers }

  document.querySelectorAll('[data-buy]').forEach((button) => {
    button.addEventListener('click', () => {
      const card = button.closest('.card');
      // [lesson popup_key]
      // popup_key: the key of this business action is made now, once.
      popup = { productId: Number(card.dataset.productId), key: fg.newKey(), answers: 0, opener: button };
      document.getElementById('buy-product').textContent = card.dataset.name + ' · ' + card.dataset.price;
      keyView.textContent = popup.key;
      // [/lesson]
      document.getElementById('buy-key-hint').textContent = fg.defenses.popup_key
        ? 'Created when this popup opened; every submit here reuses it.'
        : 'popup_key is OFF: every click makes a new key, so the server sees a new intent each time.';
      results.replaceChildren();
      document.getElementById('buy-quantity').value = '1';
      dialog.showModal();
      submit.focus();
    });
  });

  fg.guard(submit, async () => {
    if (!document.body.dataset.user) {
      fg.showAnswer(results, ++popup.answers, { status: 401, body: { code: 'unauthorized' } }, popup.key);
      return;
    }
    // [lesson popup_key_submit]
    // Every submit of this popup reuses its key; with popup_key off, a new one each time.
    const key = fg.defenses.popup_key ? popup.key : fg.newKey();
    // [/lesson]
    keyView.textContent = key;
    const number = ++popup.answers;
    const quantity = Number(document.getElementById('buy-quantity').value);
    const answer = await fg.call('POST', '/api/orders', {
      headers: { 'Idempotency-Key': key },
      body: { product_id: popup.productId, quantity },
    });
    fg.showAnswer(results, number, answer, key);
    refreshStock();
  });

  const close = () => dialog.close();
  document.getElementById('buy-close').addEventListener('click', close);
  // [lesson popup_key_close]
  // Closing (button, Escape) discards the key: reopening is a new business action.
  dialog.addEventListener('close', () => {
    if (popup && popup.opener) popup.opener.focus();
    popup = null;
    keyView.textContent = '';
  });
  // [/lesson]

  refreshStock();
  setInterval(refreshStock, 2000);
  tickCountdowns();
  setInterval(tickCountdowns, 1000);
}

async function refreshStock() {
  const answer = await fg.call('GET', '/api/products');
  if (answer.status !== 200 || !answer.body) return;
  for (const product of answer.body.products) {
    const card = document.querySelector('.card[data-product-id="' + product.id + '"]');
    if (!card) continue;
    card.querySelector('[data-stock]').textContent = product.stock;
    const share = product.initial_stock > 0 ? (100 * product.stock) / product.initial_stock : 0;
    card.querySelector('.bar span').style.width = share + '%';
    card.classList.toggle('sold-out', product.stock === 0);
  }
}

function tickCountdowns() {
  document.querySelectorAll('.card').forEach((card) => {
    const startsAt = Number(card.dataset.startsAt);
    const label = card.querySelector('[data-countdown]');
    const button = card.querySelector('[data-buy]');
    const left = startsAt - Date.now();
    if (startsAt > 0 && left > 0) {
      const seconds = Math.ceil(left / 1000);
      label.textContent = 'Starts in 距开始 ' + Math.floor(seconds / 60) + ':' + String(seconds % 60).padStart(2, '0');
      label.hidden = false;
      button.disabled = true;
    } else if (!label.hidden) {
      label.hidden = true;
      button.disabled = false;
    }
  });
}

// ---- order page -------------------------------------------------------------

function setUpOrder() {
  const area = document.getElementById('order');
  const orderNo = area.dataset.orderNo;
  if (area.dataset.processing === 'true') pollUntilPaid(orderNo);
  const open = document.getElementById('pay-open');
  if (!open) return;
  const dialog = document.getElementById('pay-dialog');
  const results = document.getElementById('pay-results');
  const submit = document.getElementById('pay-submit');
  let popup = null; // { token, key, answers }

  open.addEventListener('click', async () => {
    popup = { token: null, key: fg.newKey(), answers: 0 };
    document.getElementById('pay-key').textContent = popup.key;
    document.getElementById('pay-token').textContent = '…';
    results.replaceChildren();
    submit.disabled = true;
    dialog.showModal();
    // The server hands out the one-time token when the popup opens.
    const answer = await fg.call('POST', '/api/orders/' + orderNo + '/payment-token');
    if (!popup) return;
    if (answer.status !== 200) {
      fg.showAnswer(results, ++popup.answers, answer, popup.key);
      return;
    }
    popup.token = answer.body.token;
    document.getElementById('pay-token').textContent = popup.token;
    submit.disabled = false;
    submit.focus();
  });

  fg.guard(submit, async () => {
    const key = fg.defenses.popup_key ? popup.key : fg.newKey();
    const number = ++popup.answers;
    const answer = await fg.call('POST', '/api/orders/' + orderNo + '/pay', {
      headers: { 'Idempotency-Key': key, 'Payment-Token': popup.token || '' },
    });
    fg.showAnswer(results, number, answer, key);
    if (answer.status === 202 || answer.status === 200) {
      document.getElementById('pay-open').hidden = true;
      pollUntilPaid(orderNo);
    }
  });

  document.getElementById('pay-close').addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => { popup = null; open.focus(); });
}

// After paying, the page polls the order until the provider's callback arrives.
async function pollUntilPaid(orderNo) {
  const status = document.getElementById('order-status');
  for (let attempt = 0; attempt < 240; attempt++) {
    const answer = await fg.call('GET', '/api/orders/' + orderNo);
    if (answer.status === 200 && answer.body) {
      status.textContent = answer.body.status;
      status.className = 'status status-' + answer.body.status;
      if (answer.body.status !== 'PENDING_PAYMENT') {
        const area = document.getElementById('pay-area');
        area.replaceChildren();
        const note = document.createElement('p');
        note.className = answer.body.status === 'PAID' ? 'paid' : 'closed';
        note.textContent = answer.body.status === 'PAID' ? 'Paid 已支付 ✓' : 'Closed 已关闭';
        area.append(note);
        return;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

// ---- lab page ---------------------------------------------------------------

function setUpLab() {
  const tokenInput = document.getElementById('admin-token');
  tokenInput.value = fg.adminToken();
  const auth = () => ({ Authorization: 'Bearer ' + tokenInput.value });
  const boxes = document.querySelectorAll('[data-defense]');

  async function loadSwitches() {
    const answer = await fg.call('GET', '/api/admin/defenses', { headers: auth() });
    if (answer.status !== 200) {
      fg.banner(tokenInput.value ? 'The admin token was refused. 管理员令牌不对' : 'Enter the admin token to switch defenses and run experiments. 请输入管理员令牌');
      boxes.forEach((box) => { box.disabled = true; });
      return;
    }
    fg.banner('');
    boxes.forEach((box) => {
      box.checked = Boolean(answer.body[box.dataset.defense]);
      box.disabled = false;
    });
    loadSettings();
  }

  async function loadSettings() {
    const [lab, psp, faults] = await Promise.all([
      fg.call('GET', '/api/admin/lab', { headers: auth() }),
      fg.call('GET', '/api/admin/psp', { headers: auth() }),
      fg.call('GET', '/api/admin/faults', { headers: auth() }),
    ]);
    if (lab.status === 200) {
      document.getElementById('race-window').value = lab.body.race_window_ms;
      document.getElementById('trace').checked = lab.body.trace;
      document.getElementById('redeliver-after').value = lab.body.redeliver_after_ms;
    }
    if (psp.status === 200) {
      document.getElementById('psp-callbacks').value = psp.body.callbacks;
      document.getElementById('psp-late-failed').checked = psp.body.failed_after_success;
    }
    if (faults.status === 200) document.getElementById('crashes').value = faults.body.rewards_crash_after_effect;
  }

  document.getElementById('lab-settings').addEventListener('submit', async (event) => {
    event.preventDefault();
    const value = (id) => Number(document.getElementById(id).value);
    const answers = await Promise.all([
      fg.call('PUT', '/api/admin/lab', { headers: auth(), body: {
        race_window_ms: value('race-window'), trace: document.getElementById('trace').checked,
        redeliver_after_ms: value('redeliver-after') } }),
      fg.call('PUT', '/api/admin/psp', { headers: auth(), body: {
        callbacks: value('psp-callbacks'), failed_after_success: document.getElementById('psp-late-failed').checked } }),
      fg.call('PUT', '/api/admin/faults', { headers: auth(), body: { rewards_crash_after_effect: value('crashes') } }),
    ]);
    const refused = answers.find((answer) => answer.status !== 200);
    document.getElementById('settings-note').textContent = refused ? fg.describe(refused)[1] : 'Saved 已保存 ✓';
    loadSettings();
  });

  document.getElementById('admin-form').addEventListener('submit', (event) => {
    event.preventDefault();
    localStorage.setItem('fgAdminToken', tokenInput.value);
    loadSwitches();
  });
  boxes.forEach((box) => box.addEventListener('change', async () => {
    await fg.call('PUT', '/api/admin/defenses', { headers: auth(), body: { [box.dataset.defense]: box.checked } });
    loadSwitches();
  }));
  document.getElementById('audit-refresh').addEventListener('click', loadAudit);
  document.getElementById('reset-sale').addEventListener('click', async () => {
    const note = document.getElementById('reset-note');
    if (!window.confirm('Reset the sale? Every order, payment and reward is deleted. 确定重置？所有订单、支付和积分都会被删除。')) return;
    const answer = await fg.call('POST', '/api/admin/reset', { headers: auth() });
    note.textContent = answer.status === 200 ? 'The sale was reset 已重置 ✓' : 'Reset refused: ' + fg.describe(answer)[1];
    loadAudit();
  });
  setUpExperiments(loadAudit);
  if (tokenInput.value) loadSwitches();
  loadAudit();
}

function setUpExperiments(after) {
  document.querySelectorAll('[data-experiment]').forEach((box) => {
    box.querySelectorAll('[data-run]').forEach((button) => button.addEventListener('click', async () => {
      await fg.runExperiment(box, button.dataset.run);
      if (after) after();
    }));
  });
}

async function loadAudit() {
  const list = document.getElementById('audit');
  // With the admin token the audit is fresh; without, it may be a second old.
  const token = fg.adminToken();
  const answer = await fg.call('GET', '/api/audit', { headers: token ? { Authorization: 'Bearer ' + token } : {} });
  if (answer.status !== 200 || !answer.body) return;
  list.dataset.ok = String(answer.body.ok);
  fg.fillAudit(list, answer.body);
}

// ---- guided experiments for the browser defenses ----------------------------

const guides = {
  button_disable: 'Guide: switch button_disable off in the lab, then double-click "Place order" fast. Two requests leave; the server answers the second from the idempotency key (same key). Switch it on: one request. 引导：在实验室关掉 button_disable，再快速双击“提交订单”。',
  popup_key: 'Guide: switch button_disable and popup_key off in the lab, then double-click "Place order": each click carries a new key, so two orders appear and the audit warns suspected_double_submit. 引导：关掉两道浏览器防线后双击，会出现两笔订单。',
};

function setUpGuide() {
  const guide = new URLSearchParams(window.location.search).get('guide');
  if (!guides[guide]) return;
  const note = document.createElement('p');
  note.className = 'guide-note';
  note.id = 'guide';
  note.textContent = guides[guide];
  document.getElementById('main').prepend(note);
  document.body.dataset.guide = guide;
}

function setUpLanguageToggle() {
  document.querySelectorAll('[data-lang]').forEach((link) => link.addEventListener('click', () => {
    document.cookie = 'flashguard_lang=' + link.dataset.lang + '; path=/; max-age=31536000; SameSite=Lax';
  }));
}

document.addEventListener('DOMContentLoaded', async () => {
  setUpLogin();
  await fg.loadDefenses();
  const page = document.body.dataset.page;
  if (page === 'sale') setUpSale();
  if (page === 'order') setUpOrder();
  if (page === 'lab') setUpLab();
  if (page === 'lesson') setUpExperiments(null);
  setUpGuide();
  setUpLanguageToggle();
  document.body.dataset.ready = 'true';
});
