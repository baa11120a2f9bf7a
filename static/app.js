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
    return {
      status: response.status,
      body: json,
      defense: response.headers.get('Flashguard-Defense'),
      replayed: response.headers.get('Idempotent-Replayed') === 'true',
      retryAfter: response.headers.get('Retry-After'),
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
      const badge = document.createElement('span');
      badge.className = 'defense';
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
    list.append(item);
  },

  // A submit button guarded by button_disable: one request at a time.
  guard(button, action) {
    button.addEventListener('click', async () => {
      const disable = fg.defenses.button_disable;
      if (disable) button.disabled = true;
      try { await action(); } finally { if (disable) button.disabled = false; }
    });
  },

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
      // popup_key: the key of this business action is made now, once.
      popup = { productId: Number(card.dataset.productId), key: fg.newKey(), answers: 0, opener: button };
      document.getElementById('buy-product').textContent = card.dataset.name + ' · ' + card.dataset.price;
      keyView.textContent = popup.key;
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
    const key = fg.defenses.popup_key ? popup.key : fg.newKey();
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
  // Closing (button, Escape) discards the key: reopening is a new business action.
  dialog.addEventListener('close', () => {
    if (popup && popup.opener) popup.opener.focus();
    popup = null;
    keyView.textContent = '';
  });

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
  tokenInput.value = sessionStorage.getItem('fgAdminToken') || '';
  const auth = () => ({ Authorization: 'Bearer ' + tokenInput.value });
  const boxes = document.querySelectorAll('[data-defense]');

  async function loadSwitches() {
    const answer = await fg.call('GET', '/api/admin/defenses', { headers: auth() });
    if (answer.status !== 200) {
      fg.banner(tokenInput.value ? 'The admin token was refused.' : 'Enter the admin token to switch defenses.');
      boxes.forEach((box) => { box.disabled = true; });
      return;
    }
    fg.banner('');
    boxes.forEach((box) => {
      box.checked = Boolean(answer.body[box.dataset.defense]);
      box.disabled = false;
    });
  }

  document.getElementById('admin-form').addEventListener('submit', (event) => {
    event.preventDefault();
    sessionStorage.setItem('fgAdminToken', tokenInput.value);
    loadSwitches();
  });
  boxes.forEach((box) => box.addEventListener('change', async () => {
    await fg.call('PUT', '/api/admin/defenses', { headers: auth(), body: { [box.dataset.defense]: box.checked } });
    loadSwitches();
  }));
  document.getElementById('audit-refresh').addEventListener('click', loadAudit);
  document.getElementById('reset-sale').addEventListener('click', async () => {
    const answer = await fg.call('POST', '/api/admin/reset', { headers: auth() });
    fg.banner(answer.status === 200 ? '' : 'Reset refused: ' + fg.describe(answer)[1]);
    loadAudit();
  });
  if (tokenInput.value) loadSwitches();
  loadAudit();
}

async function loadAudit() {
  const list = document.getElementById('audit');
  const answer = await fg.call('GET', '/api/audit');
  list.replaceChildren();
  if (answer.status !== 200 || !answer.body) return;
  for (const check of answer.body.checks) {
    const item = document.createElement('li');
    item.className = check.ok ? 'ok' : 'broken';
    item.textContent = (check.ok ? '✓ ' : '✗ ') + check.name + ': ' + check.detail;
    list.append(item);
  }
}

document.addEventListener('DOMContentLoaded', async () => {
  setUpLogin();
  await fg.loadDefenses();
  const page = document.body.dataset.page;
  if (page === 'sale') setUpSale();
  if (page === 'order') setUpOrder();
  if (page === 'lab') setUpLab();
  document.body.dataset.ready = 'true';
});
