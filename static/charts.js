// flashguard charts: a run's series (docs/design.md §2.6) drawn with uPlot.
// Shared by the simulator page (/lab/simulator) and the load-test report
// (`loadtest --report run.html` inlines this file). A run is
// {label, ticks: [{t_ms, requests, answers, by_defense, orders, stock, stock_row,
// gate, latency_ms: {p50, p99}}]} with cumulative counts; charts draw their
// differences per 100 ms. No framework, no build step.
'use strict';

const fgCharts = (() => {
  const WORDS = {
    stock: ['库存（初始库存 − 已下单件数）', 'stock (initial − units ordered)'],
    stock_row: ['库存字段', 'stock column'],
    gate: ['Redis 库存预扣计数', 'stock gate counter'],
    stock_title: ['库存随时间变化：低于 0 就是超卖', 'Stock over time: below zero is oversold'],
    answers_title: ['每 100 毫秒的响应，按给出响应的防线分层叠加', 'Answers per 100 ms, stacked by the defense that gave them'],
    latency_title: ['延迟（毫秒，每 100 毫秒的 p50 / p99）', 'Latency (ms, p50 / p99 of each 100 ms)'],
    percentile_title: ['延迟分布（毫秒，HDR 百分位）', 'Latency distribution (ms, HDR percentiles)'],
    no_defense: ['没有防线介入', 'no defense'],
    total: ['总数', 'total'],
    seconds: ['秒', 's'],
    percentile: ['百分位', 'percentile'],
  };
  const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777',
    '#65a30d', '#9333ea', '#ea580c', '#0d9488', '#4b5563', '#b91c1c', '#1d4ed8'];

  const zh = () => (document.documentElement.lang || 'en').startsWith('zh');
  const word = (key) => WORDS[key][zh() ? 0 : 1];
  const seconds = (ticks) => ticks.map((tick) => tick.t_ms / 1000);
  // Per-tick differences of a cumulative count, per 100 ms: a tick that came
  // late (a slow probe) does not show as a spike.
  const deltas = (values, ticks) => values.map((value, i) => {
    const step = i ? ticks[i].t_ms - ticks[i - 1].t_ms : ticks[0].t_ms;
    const per100ms = step > 100 ? 100 / step : 1;
    return (value - (i ? values[i - 1] : 0)) * per100ms;
  });
  const named = (run, label) => (run.label ? run.label + ' · ' : '') + label;
  // The earlier runs are drawn dashed, the latest solid.
  const dash = (index, count) => (index < count - 1 ? [6, 4] : undefined);

  function width(element) {
    return Math.max(320, Math.floor(element.getBoundingClientRect().width || 720));
  }

  function options(element, title, series, extra) {
    return Object.assign({
      title,
      width: width(element),
      height: 240,
      series: [{ label: word('seconds') }].concat(series),
      scales: { x: { time: false } },
      axes: [{ label: word('seconds') }, { size: 64 }],
      legend: { live: true },
    }, extra || {});
  }

  // Several runs on one x axis: uPlot.join aligns their ticks (missing: null).
  function joined(runs, columnsOf) {
    const tables = runs.map((run) => [seconds(run.ticks)].concat(columnsOf(run)));
    if (tables.length === 1) return tables[0];
    return uPlot.join(tables);
  }

  function stockChart(element, runs) {
    const series = [];
    runs.forEach((run, i) => {
      const style = { dash: dash(i, runs.length), spanGaps: true };
      series.push(Object.assign({ label: named(run, word('stock')), stroke: '#dc2626', width: 2 }, style));
      series.push(Object.assign({ label: named(run, word('stock_row')), stroke: '#2563eb' }, style));
      series.push(Object.assign({ label: named(run, word('gate')), stroke: '#16a34a' }, style));
    });
    const data = joined(runs, (run) => [
      run.ticks.map((t) => t.stock),
      run.ticks.map((t) => t.stock_row),
      run.ticks.map((t) => t.gate),
    ]);
    return { opts: options(element, word('stock_title'), series), data };
  }

  // The defenses that answered in a run, in a stable order.
  function defensesOf(run) {
    const names = new Set();
    run.ticks.forEach((tick) => Object.keys(tick.by_defense || {}).forEach((name) => names.add(name)));
    return Array.from(names).sort();
  }

  // Cumulative sums of layers: layer k is drawn at the sum of layers 0..k.
  function stack(layers) {
    const stacked = [];
    layers.forEach((layer, k) => stacked.push(layer.map((value, i) => value + (k ? stacked[k - 1][i] : 0))));
    return stacked;
  }

  // The latest run stacked by defense (the bottom layer filled down to zero,
  // each other one down to the layer below it: uPlot's bands), the earlier
  // runs as a dashed total.
  function answersChart(element, runs) {
    const latest = runs[runs.length - 1];
    const earlier = runs.slice(0, -1);
    const defenses = defensesOf(latest);
    const layers = defenses.map((name) => deltas(latest.ticks.map((t) => (t.by_defense || {})[name] || 0), latest.ticks));
    const totals = deltas(latest.ticks.map((t) => t.requests), latest.ticks);
    const rest = totals.map((total, i) => total - layers.reduce((sum, layer) => sum + layer[i], 0));
    const stacked = stack([rest].concat(layers));
    const labels = [word('no_defense')].concat(defenses);
    const color = (k) => PALETTE[k % PALETTE.length];
    const series = labels.map((label, k) => ({
      label: named(latest, label),
      stroke: color(k),
      fill: k === 0 ? color(0) + '55' : undefined,
      paths: uPlot.paths.stepped({ align: 1 }),
    }));
    const bands = labels.slice(1).map((_, k) => ({ series: [k + 2, k + 1], fill: color(k + 1) + '55' }));
    earlier.forEach((run) => series.push({ label: named(run, word('total')), stroke: '#4b5563', dash: [6, 4], spanGaps: true }));
    const data = joined(runs, (run) => (run === latest ? stacked : [deltas(run.ticks.map((t) => t.requests), run.ticks)]));
    // uPlot.join keeps the runs' order: the earlier totals come first; the
    // series list them last.
    const ordered = earlier.length ? reorder(data, earlier.length, stacked.length) : data;
    return { opts: options(element, word('answers_title'), series, { bands }), data: ordered };
  }

  // [x, earlier totals…, latest layers…] → [x, latest layers…, earlier totals…]
  function reorder(data, earlierCount, layerCount) {
    const x = data[0];
    const earlier = data.slice(1, 1 + earlierCount);
    const layers = data.slice(1 + earlierCount, 1 + earlierCount + layerCount);
    return [x].concat(layers, earlier);
  }

  function latencyChart(element, runs) {
    const series = [];
    runs.forEach((run, i) => {
      series.push({ label: named(run, 'p50'), stroke: '#2563eb', dash: dash(i, runs.length), spanGaps: true });
      series.push({ label: named(run, 'p99'), stroke: '#d97706', dash: dash(i, runs.length), spanGaps: true });
    });
    const data = joined(runs, (run) => [
      run.ticks.map((t) => t.latency_ms.p50),
      run.ticks.map((t) => t.latency_ms.p99),
    ]);
    return { opts: options(element, word('latency_title'), series), data };
  }

  // Latency percentiles of whole runs (the report): x is the percentile's
  // place in the list, labelled with the percentile.
  function percentileChart(element, reports) {
    const points = reports[0].latency_percentiles || [];
    const x = points.map((_, i) => i);
    const series = reports.map((report, i) => ({
      label: report.label || 'ms', stroke: i ? '#dc2626' : '#2563eb', dash: dash(i, reports.length),
      points: { show: true },
    }));
    const data = [x].concat(reports.map((report) => (report.latency_percentiles || []).map((p) => p.ms)));
    const axes = [{
      label: word('percentile'),
      splits: () => x,
      values: (_, splits) => splits.map((i) => (points[i] ? points[i].percentile + '%' : '')),
    }, { size: 64 }];
    return new uPlot(options(element, word('percentile_title'), series, { axes }), data, element);
  }

  const LIVE = [['stock', stockChart], ['answers', answersChart], ['latency', latencyChart]];

  // What fixes a drawing's series: the runs, and the latest run's defenses.
  const shapeOf = (runs) => runs.map((run) => run.label).join('|') + '#' + defensesOf(runs[runs.length - 1]).join(',');

  function destroy(charts) {
    for (const [name] of LIVE) if (charts && charts[name]) charts[name].destroy();
  }

  // Draws every chart of `runs` into `container`. Given the charts it drew
  // last time, it only hands them the new data while the series stay the
  // same (a live run calls this on every tick), and otherwise destroys them
  // and draws anew. Returns the charts, for a page (or a test) to read.
  function draw(container, runs, previous) {
    const withTicks = runs.filter((run) => run.ticks && run.ticks.length);
    const shape = withTicks.length ? shapeOf(withTicks) : '';
    if (previous && previous.shape === shape && shape) {
      for (const [name, make] of LIVE) previous[name].setData(make(previous.boxes[name], withTicks).data);
      return previous;
    }
    destroy(previous);
    container.replaceChildren();
    const charts = { shape, boxes: {} };
    if (!withTicks.length) return charts;
    for (const [name, make] of LIVE) {
      const box = document.createElement('div');
      box.className = 'chart chart-' + name;
      container.append(box);
      const plan = make(box, withTicks);
      charts.boxes[name] = box;
      charts[name] = new uPlot(plan.opts, plan.data, box);
    }
    return charts;
  }

  return { draw, percentileChart, word };
})();
