// The load-test report page (`loadtest --report run.html`): reads the runs
// embedded in the page and draws them with fgCharts (static/charts.js).
'use strict';

(() => {
  const runs = JSON.parse(document.getElementById('runs').textContent);
  const zh = document.documentElement.lang === 'zh';
  const say = (zhText, enText) => (zh ? zhText : enText);

  function table(title, rows) {
    const box = document.createElement('div');
    const heading = document.createElement('h2');
    heading.textContent = title;
    const list = document.createElement('table');
    for (const [label, value, className] of rows) {
      const row = list.insertRow();
      row.insertCell().textContent = label;
      const cell = row.insertCell();
      cell.textContent = String(value);
      cell.className = className || 'n';
    }
    box.append(heading, list);
    return box;
  }

  function summary(run) {
    const latency = run.latency_ms || {};
    const fixed = (value, digits) => (typeof value === 'number' ? value.toFixed(digits) : '–');
    return table((run.label ? run.label + ' · ' : '') + run.scenario, [
      [say('请求', 'requests'), run.requests],
      [say('耗时（秒）', 'duration (s)'), fixed(run.duration_secs, 2)],
      [say('吞吐（每秒）', 'throughput (/s)'), fixed(run.throughput_per_sec, 0)],
      [say('新订单', 'orders created'), (run.outcome || {}).orders_created],
      ['p50 / p99 / max (ms)', fixed(latency.p50, 2) + ' / ' + fixed(latency.p99, 2) + ' / ' + fixed(latency.max, 2)],
      [say('审计', 'audit'), run.audit_ok ? say('通过', 'OK') : say('失败', 'FAILED'), run.audit_ok ? 'ok' : 'broken'],
    ]);
  }

  function counts(title, map) {
    return table(title, Object.entries(map || {}).map(([label, value]) => [label, value]));
  }

  function audit(run) {
    const checks = ((run.audit || {}).checks || []).map((check) => {
      const warning = check.level === 'warning';
      const mark = check.ok ? '✓' : (warning ? '!' : '✗');
      return [mark + ' ' + check.name, check.detail, check.ok ? 'ok' : (warning ? 'warning' : 'broken')];
    });
    return table(say('审计', 'Audit') + (run.label ? ' · ' + run.label : ''), checks);
  }

  const summaries = document.getElementById('summary');
  runs.forEach((run) => summaries.append(summary(run)));
  fgCharts.draw(document.getElementById('charts'), runs.map((run) => ({ label: run.label, ticks: run.series || [] })));
  if (runs.some((run) => (run.latency_percentiles || []).length)) {
    fgCharts.percentileChart(document.getElementById('percentiles'), runs);
  }
  const tables = document.getElementById('tables');
  runs.forEach((run) => {
    const suffix = run.label ? ' · ' + run.label : '';
    tables.append(counts(say('按状态和问题码的响应', 'Answers by status and problem code') + suffix, run.replies));
    tables.append(counts(say('按防线的响应', 'Answers by defense') + suffix, run.defenses));
    tables.append(audit(run));
  });
})();
