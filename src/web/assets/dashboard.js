// Backstop dashboard: draws each .chart from its JSON endpoint with uPlot.
// Loaded as a file (the CSP allows no inline script); reads only our own API.
(function () {
  'use strict';
  var COLORS = {
    clean: '#3c8d5a', infected: '#c62f2f', banned: '#d9822b', unscannable: '#7a4fb5',
    deliver: '#3c8d5a', reject: '#c62f2f', discard: '#8a6d3b', quarantine: '#d9822b', tempfail: '#7a4fb5'
  };
  var SPARE = ['#1f5fae', '#0f8b8d', '#a23b72', '#6b7a8f', '#b8860b', '#2e8b57'];
  var cache = {};

  function load(src) {
    if (!cache[src]) {
      cache[src] = fetch(src, { credentials: 'same-origin', headers: { accept: 'application/json' } }).then(function (r) {
        if (!r.ok) throw new Error('HTTP ' + r.status);
        return r.json();
      });
    }
    return cache[src];
  }

  function draw(el, data) {
    var group = data[el.getAttribute('data-group')] || {};
    var names = Object.keys(group).sort();
    var spare = 0;
    var series = [{}];
    var columns = [data.t];
    names.forEach(function (name) {
      series.push({ label: name, stroke: COLORS[name] || SPARE[spare++ % SPARE.length], width: 1.5, points: { show: false },
        value: function (u, v) { return v == null ? '-' : v.toFixed(v < 10 ? 2 : 0); } });
      columns.push(group[name]);
    });
    var width = Math.max(300, el.clientWidth);
    var opts = {
      width: width, height: 220,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC'); },
      scales: { y: { range: function (u, min, max) { return [0, Math.max(1, max * 1.1)]; } } },
      axes: [{}, { label: 'msg/min', size: 50 }],
      series: series,
      legend: { live: true }
    };
    el.textContent = '';
    var plot = new uPlot(opts, columns, el);
    window.addEventListener('resize', function () { plot.setSize({ width: Math.max(300, el.clientWidth), height: 220 }); });
    el.setAttribute('data-state', 'drawn');
  }

  document.querySelectorAll('.chart[data-src]').forEach(function (el) {
    el.textContent = 'Loading…';
    load(el.getAttribute('data-src')).then(function (data) { draw(el, data); }).catch(function (err) {
      el.textContent = 'The chart could not be loaded (' + err.message + '). Reload the page to try again.';
      el.classList.add('failed');
      el.setAttribute('data-state', 'failed');
    });
  });
})();
