// flashguard pages: plain JavaScript, no framework, no build step.
// The two browser defenses live here: button_disable (the submit button is
// disabled from click until the answer) and popup_key (the idempotency key is
// made when a popup opens and reused by every submit inside it).
'use strict';

// Every word the pages' script shows, in the page's language (<html lang>).
const WORDS = {
  network_error: ['网络错误：请求可能到了，也可能没到。用同一个幂等键重试是安全的。', 'Network error: the request may or may not have arrived. Retrying with the same key is safe.'],
  replayed: ['重复请求：原样返回了第一次的响应（Idempotent-Replayed），没有第二笔订单。', 'Same response replayed (Idempotent-Replayed): no second order.'],
  caught_by_index: ['唯一索引拦下了重复：这就是你已有的那笔订单。', 'Duplicate caught by the unique index: this is the order you already have.'],
  created: ['下单成功', 'Order created'],
  pay_replayed: ['重复请求：原样返回了第一次的响应，支付已经发起过了。', 'Same response replayed: the payment already started.'],
  pay_running: ['这笔订单已有一笔支付在处理中，不会再扣一次款。', 'A payment for this order is already processing: no second charge.'],
  pay_started: ['支付已发起，等待支付平台回调', 'Payment started: waiting for the provider'],
  already_paid: ['已支付', 'Already paid'],
  request_in_progress: ['第一次点击还在处理，这一次被挡下了。', 'Your first click is still being processed; this one was held back.'],
  sold_out: ['已售罄', 'Sold out'],
  sale_not_started: ['秒杀还没开始', 'The sale has not started yet'],
  busy_retry: ['系统繁忙，请稍后用同一个幂等键重试', 'Busy, please retry with the same key'],
  idempotency_key_reused: ['这个幂等键已经用于另一个请求', 'This key was already used for a different request'],
  payment_token_invalid: ['支付令牌已用过或已过期：关掉支付弹窗再打开。', 'This payment token was already used or has expired: close and reopen the payment popup.'],
  payment_token_missing: ['缺少支付令牌：重新打开支付弹窗。', 'No payment token: reopen the payment popup.'],
  order_locked: ['这笔订单的另一个支付请求正在进行。', 'Another payment for this order is in progress.'],
  order_closed: ['订单已关闭。', 'This order is closed.'],
  unauthorized: ['请先登录（右上角）。', 'Please sign in first (top right).'],
  invalid_quantity: ['数量必须是 1 到 10。', 'Quantity must be 1 to 10.'],
  no_answer: ['无响应', 'no answer'],
  stopped_by: ['拦截防线：', 'stopped by '],
  key: [' 幂等键 ', ' key '],
  need_token: ['需要管理员令牌：打开启动横幅里的实验室链接（它带着令牌），或者在实验室页面输入令牌。', 'Open the lab link from the start-up banner (it carries the admin token), or enter the token on the lab page.'],
  running: ['运行中……', 'running…'],
  requests: [' 个请求', ' requests'],
  audit_ok: ['✓ 审计全部通过', '✓ audit ok'],
  starts_in: ['距开始 ', 'Starts in '],
  key_hint_on: ['弹窗打开时生成；在这个弹窗里每次提交都复用它。', 'Created when this popup opened; every submit here reuses it.'],
  key_hint_off: ['popup_key 已关闭：每次点击都生成新的幂等键，服务端每次都当成一次新的购买。', 'popup_key is OFF: every click makes a new key, so the server sees a new purchase each time.'],
  paid: ['已支付 ✓', 'Paid ✓'],
  closed: ['已关闭', 'Closed'],
  token_refused: ['管理员令牌不对。', 'The admin token was refused.'],
  token_needed: ['输入管理员令牌后，才能切换防线、运行实验。', 'Enter the admin token to switch defenses and run experiments.'],
  saved: ['已保存 ✓', 'Saved ✓'],
  bus_state: ['消息队列：{bus}。待处理 {pending} 条，死信 {dead} 条。', 'Messages: {bus}. Not yet handled: {pending}; dead letters: {dead}.'],
  reset_confirm: ['确定重置秒杀？所有订单、支付和积分都会被删除。', 'Reset the sale? Every order, payment and reward is deleted.'],
  reset_done: ['已重置 ✓', 'The sale was reset ✓'],
  reset_refused: ['重置被拒绝：', 'Reset refused: '],
  buy_now: ['立即抢购', 'Buy now'],
  sold_out_button: ['已售罄', 'Sold out'],
  guide_button_disable: ['引导：先在实验室关掉 button_disable，再快速连点“提交订单”。会发出两个请求；它们带的是同一个幂等键，服务端根据幂等键处理第二个请求。再把它打开：只发一个请求。', 'Guide: switch button_disable off in the lab, then double-click "Place order" fast. Two requests leave; the server answers the second from the idempotency key (same key). Switch it on: one request.'],
  guide_popup_key: ['引导：在实验室把 button_disable 和 popup_key 都关掉，再连点“提交订单”：每次点击带一个新的幂等键，会出现两笔订单，审计给出 suspected_double_submit 警告。', 'Guide: switch button_disable and popup_key off in the lab, then double-click "Place order": each click carries a new key, so two orders appear and the audit warns suspected_double_submit.'],
};

const fg = {
  defenses: { button_disable: true, popup_key: true },
  zh: document.documentElement.lang === 'zh',

  // The words for `id` in the page's language.
  t(id) {
    const both = WORDS[id];
    return both ? both[fg.zh ? 0 : 1] : id;
  },

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
    if (answer.status === 0) return ['error', fg.t('network_error')];
    if (answer.status === 201 && answer.replayed) return ['replayed', fg.t('replayed')];
    if (answer.status === 201 && answer.defense === 'unique_index') return ['replayed', fg.t('caught_by_index')];
    if (answer.status === 201) return ['created', fg.t('created')];
    if (answer.status === 202 && answer.replayed) return ['replayed', fg.t('pay_replayed')];
    if (answer.status === 202 && answer.defense) return ['replayed', fg.t('pay_running')];
    if (answer.status === 202) return ['created', fg.t('pay_started')];
    if (answer.status === 200 && answer.body && answer.body.status === 'PAID') return ['created', fg.t('already_paid')];
    const text = (code && WORDS[code] && fg.t(code))
      || (answer.body && answer.body.title && (answer.body.title + ': ' + answer.body.detail))
      || ('HTTP ' + answer.status);
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
    head.textContent = '#' + number + ' · ' + (answer.status || fg.t('no_answer')) + ' · ';
    const text = document.createElement('span');
    text.className = 'words';
    text.textContent = words;
    item.append(head, text);
    if (answer.defense) {
      const badge = document.createElement('a');
      badge.className = 'defense';
      badge.href = '/learn/defenses/' + answer.defense + '?lang=' + (fg.zh ? 'zh' : 'en');
      badge.textContent = fg.t('stopped_by') + answer.defense;
      item.append(' ', badge);
    }
    if (answer.body && answer.body.order_no && answer.status === 201) {
      const link = document.createElement('a');
      link.href = '/orders/' + answer.body.order_no;
      link.textContent = answer.body.order_no;
      item.append(' ', link);
    }
    const keyNote = document.createElement('small');
    keyNote.textContent = fg.t('key') + key.slice(0, 8) + '…';
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
  // `run` is {defense: 'off'|'on'}, or {variant: id} for a comparison.
  async runExperiment(box, run) {
    const result = box.querySelector('.run-result');
    const token = fg.adminToken();
    if (!token) {
      result.textContent = fg.t('need_token');
      return;
    }
    box.querySelectorAll('button').forEach((button) => { button.disabled = true; });
    result.textContent = fg.t('running');
    const answer = await fg.call('POST', '/api/lab/experiments/' + box.dataset.experiment + '/run', {
      headers: { Authorization: 'Bearer ' + token }, body: run,
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
    const summary = document.createElement('p');
    // A comparison of correct variants counts a cost, not damage.
    summary.className = run.variant ? 'cost' : (run.anomalies > 0 ? 'anomaly' : 'clean');
    summary.dataset.anomalies = String(run.anomalies);
    const replies = Object.entries(run.replies).map(([status, n]) => status + '×' + n).join(', ');
    const label = run.variant || (run.defense + ' ' + run.state.toUpperCase());
    summary.textContent = label + ': ' + run.requests + fg.t('requests') + ' (' + replies + ') → '
      + run.anomalies + ' ' + (fg.zh ? run.anomaly.zh : run.anomaly.en);
    if (run.counts) {
      const counts = document.createElement('small');
      counts.className = 'counts';
      counts.textContent = ' · ' + Object.entries(run.counts).map(([name, n]) => name + ' ' + n).join(' · ');
      summary.append(counts);
    }
    // Only what the run broke; the full audit is below on the lab page.
    const audit = document.createElement('ul');
    audit.className = 'audit';
    audit.dataset.ok = String(run.audit.ok);
    const broken = run.audit.checks.filter((check) => !check.ok);
    fg.fillAudit(audit, { checks: broken });
    if (!broken.length) {
      const ok = document.createElement('li');
      ok.className = 'ok';
      ok.textContent = fg.t('audit_ok');
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
  const signOut = document.getElementById('logout-form');
  if (signOut) {
    // Signing out revokes the token on every instance and forgets the cookie.
    signOut.addEventListener('submit', async (event) => {
      event.preventDefault();
      await fg.call('POST', '/api/logout');
      window.location.reload();
    });
    return;
  }
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
      document.getElementById('buy-key-hint').textContent = fg.t(fg.defenses.popup_key ? 'key_hint_on' : 'key_hint_off');
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
    showBuyButton(card);
  }
}

function tickCountdowns() {
  document.querySelectorAll('.card').forEach((card) => {
    const startsAt = Number(card.dataset.startsAt);
    const label = card.querySelector('[data-countdown]');
    const left = startsAt - Date.now();
    if (startsAt > 0 && left > 0) {
      const seconds = Math.ceil(left / 1000);
      label.textContent = fg.t('starts_in') + Math.floor(seconds / 60) + ':' + String(seconds % 60).padStart(2, '0');
      label.hidden = false;
      showBuyButton(card);
    } else if (!label.hidden) {
      label.hidden = true;
      showBuyButton(card);
    }
  });
}

// A product's button: "Sold out" and disabled while no unit is left (it comes
// back when units return: a closed unpaid order, a reset), disabled before
// the sale starts, else "Buy now".
function showBuyButton(card) {
  const button = card.querySelector('[data-buy]');
  const soldOut = card.classList.contains('sold-out');
  const waiting = !card.querySelector('[data-countdown]').hidden;
  button.disabled = soldOut || waiting;
  button.textContent = fg.t(soldOut ? 'sold_out_button' : 'buy_now');
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
    // The channel is part of the request: changing it inside one popup is
    // another request under the same key (422 idempotency_key_reused).
    const channel = document.querySelector('input[name="channel"]:checked');
    const answer = await fg.call('POST', '/api/orders/' + orderNo + '/pay', {
      headers: { 'Idempotency-Key': key, 'Payment-Token': popup.token || '' },
      body: { channel: channel ? channel.value : 'card' },
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
        note.textContent = fg.t(answer.body.status === 'PAID' ? 'paid' : 'closed');
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
      fg.banner(fg.t(tokenInput.value ? 'token_refused' : 'token_needed'));
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
      document.getElementById('stock-write').value = lab.body.stock_write;
      document.getElementById('group-commit').checked = lab.body.group_commit;
    }
    if (psp.status === 200) {
      document.getElementById('psp-callbacks').value = psp.body.callbacks;
      document.getElementById('psp-late-failed').checked = psp.body.failed_after_success;
    }
    if (faults.status === 200) {
      document.getElementById('crashes').value = faults.body.rewards_crash_after_effect;
      document.getElementById('fail-effects').value = faults.body.rewards_fail_effect;
    }
    loadBusState();
  }

  // The "order paid" messages on the bus: pending and dead letters.
  async function loadBusState() {
    const answer = await fg.call('GET', '/api/admin/messages', { headers: auth() });
    const line = document.getElementById('bus-state');
    if (!line) return;
    line.textContent = answer.status === 200
      ? fg.t('bus_state').replace('{bus}', answer.body.bus)
        .replace('{pending}', answer.body.pending).replace('{dead}', answer.body.dead_letters)
      : fg.describe(answer)[1];
  }

  document.getElementById('lab-settings').addEventListener('submit', async (event) => {
    event.preventDefault();
    const value = (id) => Number(document.getElementById(id).value);
    const answers = await Promise.all([
      fg.call('PUT', '/api/admin/lab', { headers: auth(), body: {
        race_window_ms: value('race-window'), trace: document.getElementById('trace').checked,
        redeliver_after_ms: value('redeliver-after'),
        stock_write: document.getElementById('stock-write').value,
        group_commit: document.getElementById('group-commit').checked } }),
      fg.call('PUT', '/api/admin/psp', { headers: auth(), body: {
        callbacks: value('psp-callbacks'), failed_after_success: document.getElementById('psp-late-failed').checked } }),
      fg.call('PUT', '/api/admin/faults', { headers: auth(), body: {
        rewards_crash_after_effect: value('crashes'), rewards_fail_effect: value('fail-effects') } }),
    ]);
    const refused = answers.find((answer) => answer.status !== 200);
    document.getElementById('settings-note').textContent = refused ? fg.describe(refused)[1] : fg.t('saved');
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
  document.getElementById('audit-refresh').addEventListener('click', () => {
    loadAudit();
    loadBusState();
  });
  document.getElementById('reset-sale').addEventListener('click', async () => {
    const note = document.getElementById('reset-note');
    if (!window.confirm(fg.t('reset_confirm'))) return;
    const answer = await fg.call('POST', '/api/admin/reset', { headers: auth() });
    note.textContent = answer.status === 200 ? fg.t('reset_done') : fg.t('reset_refused') + fg.describe(answer)[1];
    loadAudit();
  });
  setUpExperiments(loadAudit);
  if (tokenInput.value) loadSwitches();
  loadAudit();
}

function setUpExperiments(after) {
  document.querySelectorAll('[data-experiment]').forEach((box) => {
    box.querySelectorAll('[data-run], [data-variant]').forEach((button) => button.addEventListener('click', async () => {
      const run = button.dataset.variant ? { variant: button.dataset.variant } : { defense: button.dataset.run };
      const channel = box.querySelector('[data-channel]');
      if (channel) run.channel = channel.value;
      await fg.runExperiment(box, run);
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

const guides = ['button_disable', 'popup_key'];

function setUpGuide() {
  const guide = new URLSearchParams(window.location.search).get('guide');
  if (!guides.includes(guide)) return;
  const note = document.createElement('p');
  note.className = 'guide-note';
  note.id = 'guide';
  note.textContent = fg.t('guide_' + guide);
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
  if (page === 'simulator') setUpSimulator();
  if (page === 'lesson') setUpExperiments(null);
  setUpGuide();
  setUpLanguageToggle();
  document.body.dataset.ready = 'true';
});
