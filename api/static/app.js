// EMS operator page. Plain JS, no dependencies. Every API call carries the token
// (sessionStorage "ems-token"); live values come from the WebSocket /api/v1/live, with a
// fallback to polling /api/v1/current-data and /api/v1/safety every second.
'use strict';

(function () {
  const TOKEN_KEY = 'ems-token';
  const CH = {
    soc: '_sum/EssSoc',
    grid: '_sum/GridActivePower',
    pv: '_sum/ProductionActivePower',
    battery: '_sum/EssActivePower',
    load: '_sum/ConsumptionActivePower',
  };
  const CHART_HOURS = 6;

  let token = sessionStorage.getItem(TOKEN_KEY) || '';
  let ws = null;
  let wsLive = false;
  let pollTimer = null;
  let reconnectTimer = null;
  let slowTimer = null;
  let lastState = '';

  const $ = (id) => document.getElementById(id);

  function setText(id, text) {
    const el = $(id);
    if (el) el.textContent = text;
  }

  function message(text, bad) {
    const el = $('message');
    el.textContent = text || '';
    el.classList.toggle('bad', !!bad);
  }

  function fmtW(v) {
    return typeof v === 'number' ? Math.round(v).toLocaleString('en-US') : '–';
  }

  // ---- API calls -------------------------------------------------------------------------

  async function api(method, path, body) {
    const opts = { method: method, headers: { Authorization: 'Bearer ' + token } };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    const resp = await fetch(path, opts);
    let data = null;
    try {
      data = await resp.json();
    } catch (e) {
      data = null;
    }
    if (resp.status === 401) {
      logout('The token was refused: ' + ((data && data.error) || 'unauthorized'));
    }
    return { ok: resp.ok, status: resp.status, data: data };
  }

  function showError(r) {
    const why = (r.data && r.data.error) || ('HTTP ' + r.status);
    message('Refused: ' + why, true);
  }

  // ---- Rendering -------------------------------------------------------------------------

  function renderState(state) {
    if (!state) return;
    lastState = state;
    const el = $('state');
    el.textContent = state;
    el.className = 'badge state-' + state;
    $('recovery').hidden = state !== 'STOPPED';
  }

  function renderList(id, items) {
    const ul = $(id);
    ul.textContent = '';
    const list = items && items.length ? items : ['none'];
    for (const it of list) {
      const li = document.createElement('li');
      li.textContent = it;
      ul.appendChild(li);
    }
  }

  function renderSafety(s) {
    if (!s) return;
    renderState(s.state);
    setText('max-charge', fmtW(s.maxChargeW));
    setText('max-discharge', fmtW(s.maxDischargeW));
    setText('charge-limited-by', (s.chargeLimitedBy || []).join(', '));
    setText('discharge-limited-by', (s.dischargeLimitedBy || []).join(', '));
    renderList('faults', s.latchedFaults);
    renderList('events', (s.recentEvents || []).slice().reverse());
    setText('site-mode', s.mode || '–');
    // Until every device has answered the loop does not control: say so plainly.
    const d = s.devices;
    const waiting = !!d && !d.ready;
    document.getElementById('devices-banner').hidden = !waiting;
    if (waiting) setText('devices-detail', d.detail || 'the control loop has not reported its devices yet');
  }

  function renderChannels(c) {
    if (!c) return;
    const soc = c[CH.soc];
    setText('soc', typeof soc === 'number' ? soc.toFixed(1) : '–');
    const grid = c[CH.grid];
    setText('grid', fmtW(grid));
    setText('grid-dir', typeof grid === 'number' ? (grid >= 0 ? 'import' : 'export') : '');
    setText('pv', fmtW(c[CH.pv]));
    const bat = c[CH.battery];
    setText('battery', fmtW(bat));
    setText('battery-dir', typeof bat === 'number' ? (bat >= 0 ? 'discharging' : 'charging') : '');
    setText('load', fmtW(c[CH.load]));
  }

  function renderUpdate(u) {
    renderChannels(u.channels);
    renderSafety(u.safety);
    setText('updated', u.at ? new Date(u.at).toLocaleTimeString() : 'waiting for the control loop');
  }

  // ---- Live values: WebSocket, fallback polling ------------------------------------------

  function setConn(text) {
    setText('conn', text);
  }

  function connectLive() {
    if (ws) return;
    const proto = location.protocol === 'https:' ? 'wss://' : 'ws://';
    let sock;
    try {
      sock = new WebSocket(proto + location.host + '/api/v1/live');
    } catch (e) {
      startPolling();
      return;
    }
    ws = sock;
    sock.onopen = function () {
      sock.send(JSON.stringify({ token: token, subscribe: ['*'] }));
    };
    sock.onmessage = function (ev) {
      let m;
      try {
        m = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      if (m.error) {
        message('Live: ' + m.error, true);
      } else if (m.authenticated) {
        wsLive = true;
        stopPolling();
        setConn('live');
      } else if (m.channels) {
        renderUpdate(m);
      }
    };
    sock.onclose = function () {
      ws = null;
      wsLive = false;
      if (!token) return;
      setConn('polling');
      startPolling();
      if (!reconnectTimer) {
        reconnectTimer = setTimeout(function () {
          reconnectTimer = null;
          if (token) connectLive();
        }, 10000);
      }
    };
  }

  async function pollOnce() {
    const [cur, saf] = await Promise.all([api('GET', '/api/v1/current-data'), api('GET', '/api/v1/safety')]);
    if (cur.ok && cur.data) renderChannels(cur.data.channels);
    if (saf.ok && saf.data) {
      renderSafety(saf.data);
      setText('updated', saf.data.timestamp ? new Date(saf.data.timestamp).toLocaleTimeString() : 'waiting for the control loop');
    }
  }

  function startPolling() {
    if (pollTimer || wsLive) return;
    pollOnce().catch(function () { setConn('no connection'); });
    pollTimer = setInterval(function () {
      pollOnce().catch(function () { setConn('no connection'); });
    }, 1000);
  }

  function stopPolling() {
    if (pollTimer) clearInterval(pollTimer);
    pollTimer = null;
  }

  // ---- Control modes and chart -----------------------------------------------------------

  async function loadControlModes() {
    const r = await api('GET', '/api/v1/control-modes');
    if (!r.ok || !r.data) return;
    const ess = r.data.activeControlModes && r.data.activeControlModes.ess;
    if (!ess) {
      setText('control-modes', 'none active (automatic operation)');
      return;
    }
    const parts = [ess.mode];
    for (const k of Object.keys(ess)) {
      if (k !== 'mode' && k !== 'expiresAt' && k !== 'expiry') parts.push(k + ' ' + ess[k]);
    }
    if (ess.expiresAt) parts.push('until ' + new Date(ess.expiresAt).toLocaleTimeString());
    setText('control-modes', parts.join(', '));
  }

  async function loadSchedules() {
    const r = await api('GET', '/api/v1/schedules');
    const list = document.getElementById('schedules');
    if (!list || !r.ok || !r.data) return;
    const items = (r.data.schedules || []).slice(-10);
    list.replaceChildren();
    if (items.length === 0) {
      const li = document.createElement('li');
      li.textContent = 'none';
      list.appendChild(li);
      return;
    }
    for (const sch of items) {
      const li = document.createElement('li');
      let t = new Date(sch.executionTime).toLocaleString() + ' ' + sch.operation + ' ' + sch.power +
        ' W (' + sch.provider + ')';
      if (sch.appliedW !== null && sch.appliedW !== undefined) {
        t += ' — applied ' + Math.round(sch.appliedW) + ' W';
        if (sch.limitedBy) t += ', limited by ' + sch.limitedBy;
      }
      li.textContent = t;
      list.appendChild(li);
    }
  }

  async function loadChart() {
    const to = new Date();
    const from = new Date(to.getTime() - CHART_HOURS * 3600 * 1000);
    const q = '?from=' + encodeURIComponent(from.toISOString()) +
      '&to=' + encodeURIComponent(to.toISOString()) +
      '&channels=' + encodeURIComponent(CH.soc + ',' + CH.grid) + '&resolution=60';
    const r = await api('GET', '/api/v1/history' + q);
    if (!r.ok || !r.data) {
      setText('chart-info', r.ok ? '' : 'history unavailable');
      return;
    }
    drawChart(r.data.points || [], from.getTime(), to.getTime());
  }

  function drawChart(points, t0, t1) {
    const canvas = $('chart');
    const ctx = canvas.getContext('2d');
    if (!ctx) return;
    const w = canvas.width;
    const h = canvas.height;
    const pad = 30;
    ctx.clearRect(0, 0, w, h);
    const soc = points.filter((p) => p.channel === CH.soc);
    const grid = points.filter((p) => p.channel === CH.grid);
    setText('chart-info', points.length ? '' : '(no history yet)');
    const x = (t) => pad + ((t - t0) / (t1 - t0)) * (w - 2 * pad);
    // Axes and hour lines.
    ctx.strokeStyle = '#e5e7eb';
    ctx.fillStyle = '#4b5563';
    ctx.font = '11px sans-serif';
    for (let i = 0; i <= CHART_HOURS; i++) {
      const t = t0 + i * 3600 * 1000;
      ctx.beginPath();
      ctx.moveTo(x(t), pad / 2);
      ctx.lineTo(x(t), h - pad);
      ctx.stroke();
      ctx.fillText(new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }), x(t) - 15, h - 10);
    }
    // SOC on 0..100 %.
    line(ctx, soc, x, (v) => h - pad - (v / 100) * (h - 1.5 * pad), '#16a34a');
    // Grid power, symmetric scale around zero.
    const maxAbs = Math.max(1, ...grid.map((p) => Math.abs(p.value)));
    const mid = (h - pad + pad / 2) / 2;
    ctx.strokeStyle = '#9ca3af';
    ctx.beginPath();
    ctx.moveTo(pad, mid);
    ctx.lineTo(w - pad, mid);
    ctx.stroke();
    line(ctx, grid, x, (v) => mid - (v / maxAbs) * (mid - pad / 2), '#2563eb');
    ctx.fillStyle = '#2563eb';
    ctx.fillText('±' + Math.round(maxAbs) + ' W', w - pad - 50, pad / 2 + 10);
  }

  function line(ctx, pts, x, y, colour) {
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2;
    ctx.beginPath();
    let first = true;
    for (const p of pts) {
      const px = x(new Date(p.at).getTime());
      const py = y(p.value);
      if (first) ctx.moveTo(px, py); else ctx.lineTo(px, py);
      first = false;
    }
    ctx.stroke();
    ctx.lineWidth = 1;
  }

  // ---- Commands --------------------------------------------------------------------------

  async function command(path, body, what) {
    const r = await api('POST', path, body);
    if (r.data && r.data.state) renderState(r.data.state);
    if (r.ok) message(what + ': state now ' + r.data.state, false);
    else showError(r);
    return r;
  }

  function openEstop() {
    $('estop-dialog').hidden = false;
    $('estop-confirm').focus();
  }

  function closeEstop() {
    $('estop-dialog').hidden = true;
  }

  async function confirmEstop() {
    closeEstop();
    await command('/api/v1/emergency-stop', {}, 'Emergency stop');
  }

  async function doReset() {
    const reason = $('reset-reason').value.trim();
    if (!reason) {
      message('Enter the reason for the reset first.', true);
      $('reset-reason').focus();
      return;
    }
    const r = await command('/api/v1/reset', { reason: reason }, 'Reset');
    if (r.ok) $('reset-reason').value = '';
  }

  // ---- Session ---------------------------------------------------------------------------

  async function login(t) {
    token = t;
    const r = await api('GET', '/api/v1/safety');
    if (!r.ok) {
      if (r.status !== 401) {
        token = '';
        $('login-error').textContent = 'Refused: ' + ((r.data && r.data.error) || ('HTTP ' + r.status));
      }
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, t);
    $('login-panel').hidden = true;
    $('main').hidden = false;
    $('logout').hidden = false;
    $('login-error').textContent = '';
    renderSafety(r.data);
    connectLive();
    loadControlModes();
    loadSchedules();
    loadChart();
    slowTimer = setInterval(function () {
      loadControlModes();
      loadSchedules();
      loadChart();
    }, 60000);
  }

  function logout(why) {
    token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    stopPolling();
    if (slowTimer) clearInterval(slowTimer);
    slowTimer = null;
    if (ws) ws.close();
    ws = null;
    $('main').hidden = true;
    $('logout').hidden = true;
    $('login-panel').hidden = false;
    $('login-error').textContent = why || '';
    setConn('not connected');
  }

  document.addEventListener('DOMContentLoaded', function () {
    $('login-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      login($('token').value.trim());
    });
    $('logout').addEventListener('click', function () { logout(''); });
    $('estop').addEventListener('click', openEstop);
    $('estop-cancel').addEventListener('click', closeEstop);
    $('estop-confirm').addEventListener('click', confirmEstop);
    $('reset').addEventListener('click', doReset);
    $('start').addEventListener('click', function () {
      command('/api/v1/state', { request: 'start' }, 'Start');
    });
    $('stop').addEventListener('click', function () {
      command('/api/v1/state', { request: 'stop' }, 'Stop');
    });
    $('acknowledge').addEventListener('click', function () {
      command('/api/v1/state', { request: 'acknowledge' }, 'Acknowledge');
    });
    document.addEventListener('keydown', function (ev) {
      if (ev.key === 'Escape') closeEstop();
    });
    if (token) login(token);
  });
})();
