// Backstop dashboard: draws each .chart from its JSON endpoint with uPlot, and
// while the page is open refreshes the charts, the verdict tiles and the
// outbreak banner every data-refresh seconds. Loaded as a file (the CSP allows
// no inline script); reads only our own API; writes text, never markup.
(function () {
  'use strict';
  var COLORS = {
    clean: '#3c8d5a', infected: '#c62f2f', banned: '#d9822b', unscannable: '#7a4fb5',
    deliver: '#3c8d5a', reject: '#c62f2f', discard: '#8a6d3b', quarantine: '#d9822b', tempfail: '#7a4fb5'
  };
  var SPARE = ['#1f5fae', '#0f8b8d', '#a23b72', '#6b7a8f', '#b8860b', '#2e8b57'];
  var charts = document.querySelectorAll('.chart[data-src]');
  var stats = document.querySelector('.stats[data-src]');
  var banner = document.querySelector('.outbreak[data-src]');
  var section = document.querySelector('.charts[data-refresh]');
  var refreshSeconds = section ? Number(section.getAttribute('data-refresh')) : 0;

  function load(src) {
    return fetch(src, { credentials: 'same-origin', headers: { accept: 'application/json' } }).then(function (r) {
      if (!r.ok) throw new Error('HTTP ' + r.status);
      return r.json();
    });
  }

  function columnsOf(el, data) {
    var group = data[el.getAttribute('data-group')] || {};
    var names = Object.keys(group).sort();
    return { names: names, columns: [data.t].concat(names.map(function (n) { return group[n]; })) };
  }

  function draw(el, data) {
    var c = columnsOf(el, data);
    var key = c.names.join('\n');
    if (el._plot && el._key === key) {
      el._plot.setData(c.columns);
    } else {
      var spare = 0;
      var series = [{}].concat(c.names.map(function (name) {
        return { label: name, stroke: COLORS[name] || SPARE[spare++ % SPARE.length], width: 1.5, points: { show: false },
          value: function (u, v) { return v == null ? '-' : v.toFixed(v < 10 ? 2 : 0); } };
      }));
      var opts = {
        width: Math.max(300, el.clientWidth), height: 220,
        tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC'); },
        scales: { y: { range: function (u, min, max) { return [0, Math.max(1, max * 1.1)]; } } },
        axes: [{}, { label: 'msg/min', size: 50 }],
        series: series,
        legend: { live: true }
      };
      if (el._plot) el._plot.destroy();
      el.textContent = '';
      el._plot = new uPlot(opts, c.columns, el);
      el._key = key;
    }
    el.setAttribute('data-state', 'drawn');
    el.setAttribute('data-rounds', String(Number(el.getAttribute('data-rounds') || 0) + 1));
  }

  function fail(el, err) {
    if (el._plot) return; // keep the last good picture; the next round tries again
    el.textContent = 'The chart could not be loaded (' + err.message + '). Reload the page to try again.';
    el.classList.add('failed');
    el.setAttribute('data-state', 'failed');
  }

  function updateStats(data) {
    if (!stats || !data.totals) return;
    var all = 0;
    Object.keys(data.totals).forEach(function (v) {
      all += data.totals[v];
      var b = stats.querySelector('[data-verdict="' + v + '"] b');
      if (b) b.textContent = data.totals[v].toLocaleString('en');
    });
    var total = stats.querySelector('[data-verdict="all"] b');
    if (total) total.textContent = all.toLocaleString('en');
  }

  function updateBanner(data) {
    var names = banner.querySelector('.names');
    names.textContent = '';
    data.outbreaks.slice(0, 5).forEach(function (o, i) {
      if (i) names.appendChild(document.createTextNode(', '));
      var a = document.createElement('a');
      a.className = 'mono';
      a.href = '/trace?verdict=infected&from=' + encodeURIComponent(new Date(Date.now() - data.recentMinutes * 60000).toISOString());
      a.textContent = o.name.length > 60 ? o.name.slice(0, 59) + '…' : o.name;
      names.appendChild(a);
      names.appendChild(document.createTextNode(' ' + o.recent + ' in ' + data.recentMinutes + ' min (' +
        (o.ratio >= 100 ? '100+' : o.ratio.toFixed(0)) + '× its rate in the ' + data.baselineMinutes + ' min before)'));
    });
    banner.hidden = data.outbreaks.length === 0;
  }

  function round() {
    var bySrc = {};
    charts.forEach(function (el) {
      var src = el.getAttribute('data-src');
      bySrc[src] = bySrc[src] || load(src);
      bySrc[src].then(function (data) { draw(el, data); }).catch(function (err) { fail(el, err); });
    });
    if (stats) (bySrc[stats.getAttribute('data-src')] || load(stats.getAttribute('data-src'))).then(updateStats).catch(function () {});
    if (banner) load(banner.getAttribute('data-src')).then(updateBanner).catch(function () {});
  }

  charts.forEach(function (el) { el.textContent = 'Loading…'; });
  round();
  if (refreshSeconds > 0) setInterval(round, refreshSeconds * 1000);
  window.addEventListener('resize', function () {
    charts.forEach(function (el) { if (el._plot) el._plot.setSize({ width: Math.max(300, el.clientWidth), height: 220 }); });
  });
})();
