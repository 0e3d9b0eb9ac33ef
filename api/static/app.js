// EMS operator page. Plain JS, no dependencies. Every API call carries the token
// (sessionStorage "ems-token"); live values come from the WebSocket /api/v1/live, with a
// fallback to polling /api/v1/current-data and /api/v1/safety every second. The economics
// panels (plan, forecast, savings, rules, what drives the battery) refresh every 10 s and
// right after a change; they are hidden with a note when the site has no economics (404).
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
  const REFRESH_MS = 10000;
  const ISLAND_MS = 2000;
  const ISLAND_MEANING = {
    CONNECTED: 'on the grid',
    TRANSFERRING: 'grid lost: opening the breaker and forming the island',
    ISLANDED: 'the battery supplies the critical circuits',
    'BLACK START': 'energising the island from the battery',
    RESYNCHRONISING: 'the grid is back: matching voltage, frequency and phase',
    RECONNECTING: 'closing the breaker onto the grid',
    BLACKOUT: 'no grid and no island',
    'SAFE STOP': 'stopped safely: inverter off, waiting for an operator',
    STARTING: 'starting',
  };
  // Below this a power is shown as no flow (sensor noise around zero).
  const IDLE_W = 1;
  const COLOURS = {
    soc: '#16a34a', battery: '#ea580c', grid: '#2563eb', importPrice: '#dc2626',
    exportPrice: '#7c3aed', spot: '#6b7280', pv: '#ca8a04', load: '#374151', now: '#111827',
  };

  let token = sessionStorage.getItem(TOKEN_KEY) || '';
  let ws = null;
  let wsLive = false;
  let pollTimer = null;
  let reconnectTimer = null;
  let slowTimer = null;
  let islandTimer = null;
  let lastState = '';
  let canOperate = true;
  let econConfigured = null;
  let rules = [];
  // The rest of the stored set (country, time zone, location, extra holidays): sent back as is.
  let ruleSetRest = {};
  let decision = null;
  let editing = -1;
  let rulesDirty = false;

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

  function fmtMoney(v, currency) {
    if (typeof v !== 'number') return '–';
    // No "-0.00": a rounding of zero has no sign.
    const x = Math.abs(v) < 0.005 ? 0 : v;
    return x.toFixed(2) + ' ' + (currency || '');
  }

  function fmtTime(t) {
    return new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  function isNum(v) {
    return typeof v === 'number' && isFinite(v);
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

  function errorText(r) {
    return (r.data && r.data.error) || ('HTTP ' + r.status);
  }

  function showError(r) {
    message('Refused: ' + errorText(r), true);
  }

  // ---- Rendering: safety -----------------------------------------------------------------

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

  // "interlock #3" alone tells an operator nothing: add the rule's text the API sends.
  function explain(reasons, explanations) {
    return (reasons || []).map(function (r) {
      const text = explanations && explanations[r];
      return text ? r + ' (' + text + ')' : r;
    }).join(', ');
  }

  // What the reset needs: in STOPPED the E-stop latch itself (it is not a "fault", so the
  // fault list alone said "none" while the recovery box pointed at it), then any trip.
  function faultLines(s) {
    const faults = s.latchedFaults || [];
    const lines = [];
    if (s.state === 'STOPPED') {
      lines.push('Emergency stop latched: release the E-stop input, then Reset with a reason' +
        (faults.length ? ' (the faults below then need Acknowledge once they are gone)' : ''));
    }
    for (const f of faults) {
      lines.push(f + (s.state === 'ERROR' ? ' (Acknowledge once it is gone)' : ''));
    }
    return lines;
  }

  // Events carry the site's clock time as "[<RFC 3339>] text"; older gateways sent the
  // seconds since the loop started ("[12.3 s] text"), shown as such.
  function eventLine(e) {
    const m = /^\[(\d{4}-\d{2}-\d{2}T[^\]]+)\]\s*(.*)$/.exec(e);
    if (m) {
      const d = new Date(m[1]);
      if (!isNaN(d.getTime())) {
        const sameDay = d.toDateString() === new Date().toDateString();
        return (sameDay ? d.toLocaleTimeString() : d.toLocaleString()) + '  ' + m[2];
      }
    }
    const s = /^\[(\d+(?:\.\d+)?) s\]\s*(.*)$/.exec(e);
    if (s) return s[2] + ' (' + s[1] + ' s after the gateway started)';
    return e;
  }

  function renderSafety(s) {
    if (!s) return;
    renderState(s.state);
    setText('max-charge', fmtW(s.maxChargeW));
    setText('max-discharge', fmtW(s.maxDischargeW));
    setText('charge-limited-by', explain(s.chargeLimitedBy, s.limitExplanations));
    setText('discharge-limited-by', explain(s.dischargeLimitedBy, s.limitExplanations));
    renderList('faults', faultLines(s));
    renderList('events', (s.recentEvents || []).slice().reverse().map(eventLine));
    setText('site-mode', s.mode || '–');
    // Until every device has answered the loop does not control: say so plainly.
    const d = s.devices;
    const waiting = !!d && !d.ready;
    document.getElementById('devices-banner').hidden = !waiting;
    if (waiting) setText('devices-detail', d.detail || 'the control loop has not reported its devices yet');
  }

  // ---- Rendering: power flows ------------------------------------------------------------

  function arrow(id, text, active) {
    const el = $(id);
    el.textContent = text;
    el.classList.toggle('active', active);
  }

  function batteryWords(bat) {
    if (!isNum(bat)) return '';
    if (lastState && lastState !== 'RUNNING') {
      return Math.abs(bat) < IDLE_W ? 'stopped (' + lastState + ')' : (bat > 0 ? 'discharging' : 'charging') + ' (' + lastState + ')';
    }
    if (Math.abs(bat) < IDLE_W) return 'idle';
    return bat > 0 ? 'discharging' : 'charging';
  }

  function renderChannels(c) {
    if (!c) return;
    const soc = c[CH.soc];
    setText('soc', isNum(soc) ? soc.toFixed(1) : '–');
    const grid = c[CH.grid];
    setText('grid', fmtW(grid));
    const gridIdle = !isNum(grid) || Math.abs(grid) < IDLE_W;
    setText('grid-dir', !isNum(grid) ? '' : gridIdle ? 'no flow' : (grid > 0 ? 'import' : 'export'));
    arrow('grid-arrow', gridIdle ? '·' : (grid > 0 ? '→' : '←'), !gridIdle);
    const pv = c[CH.pv];
    setText('pv', fmtW(pv));
    const pvIdle = !isNum(pv) || pv < IDLE_W;
    setText('pv-dir', !isNum(pv) ? '' : pvIdle ? 'not producing' : 'producing');
    arrow('pv-arrow', pvIdle ? '·' : '↓', !pvIdle);
    const bat = c[CH.battery];
    setText('battery', fmtW(bat));
    setText('battery-dir', batteryWords(bat));
    const batIdle = !isNum(bat) || Math.abs(bat) < IDLE_W;
    arrow('battery-arrow', batIdle ? '·' : (bat > 0 ? '↑' : '↓'), !batIdle);
    const load = c[CH.load];
    setText('load', fmtW(load));
    const loadIdle = !isNum(load) || Math.abs(load) < IDLE_W;
    arrow('load-arrow', loadIdle ? '·' : '→', !loadIdle);
  }

  function renderUpdate(u) {
    // Safety first: the battery's words depend on the state.
    renderSafety(u.safety);
    renderChannels(u.channels);
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
    if (saf.ok && saf.data) {
      renderSafety(saf.data);
      setText('updated', saf.data.timestamp ? new Date(saf.data.timestamp).toLocaleTimeString() : 'waiting for the control loop');
    }
    if (cur.ok && cur.data) renderChannels(cur.data.channels);
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

  // ---- Role ------------------------------------------------------------------------------

  async function loadRole() {
    const r = await api('GET', '/api/v1/whoami');
    if (!r.ok || !r.data) {
      canOperate = true;
      setText('whoami', '');
      return;
    }
    const role = r.data.role;
    canOperate = role === 'operator' || role === 'admin';
    setText('whoami', r.data.name + ' (' + role + ')');
    for (const el of document.querySelectorAll('.operate')) {
      el.disabled = !canOperate;
      el.title = canOperate ? '' : 'your token (' + role + ') may not operate the site';
    }
    for (const el of document.querySelectorAll('.operate-only')) el.hidden = !canOperate;
    const note = $('role-note');
    note.hidden = canOperate;
    note.textContent = canOperate ? '' : 'Signed in as ' + r.data.name + ' (' + role + '): read only. ' +
      'The emergency stop, reset, start/stop and the rule editor need an operator or admin token.';
  }

  // ---- Control modes, schedules and the 6-hour chart --------------------------------------

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

  // A canvas drawn at its on-screen width (and the screen's pixel ratio): sharp, and as wide
  // as its panel. Returns the context with CSS-pixel coordinates.
  function surface(canvas) {
    if (!canvas.dataset.cssHeight) canvas.dataset.cssHeight = canvas.getAttribute('height') || '240';
    const cssH = Number(canvas.dataset.cssHeight);
    const cssW = Math.max(300, canvas.clientWidth || canvas.parentElement.clientWidth || 800);
    const ratio = window.devicePixelRatio || 1;
    canvas.style.height = cssH + 'px';
    canvas.width = Math.round(cssW * ratio);
    canvas.height = Math.round(cssH * ratio);
    const ctx = canvas.getContext('2d');
    if (!ctx) return null;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);
    ctx.font = '11px sans-serif';
    return { ctx: ctx, w: cssW, h: cssH };
  }

  // Time ticks for a span: whole hours (or 5 to 30 minutes for short spans), at most one
  // label per 70 px of width.
  function timeTicks(t0, t1, width) {
    const span = t1 - t0;
    const most = Math.max(2, Math.min(12, Math.floor(width / 70)));
    const steps = [5, 15, 30, 60, 120, 180, 360, 720].map(function (m) { return m * 60000; });
    let step = steps[steps.length - 1];
    for (const s of steps) {
      if (span / s <= most) { step = s; break; }
    }
    const out = [];
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) out.push(t);
    return out;
  }

  function drawTimeAxis(ctx, x, t0, t1, top, bottom) {
    ctx.strokeStyle = '#e5e7eb';
    ctx.fillStyle = '#4b5563';
    ctx.lineWidth = 1;
    for (const t of timeTicks(t0, t1, x(t1) - x(t0))) {
      ctx.beginPath();
      ctx.moveTo(x(t), top);
      ctx.lineTo(x(t), bottom);
      ctx.stroke();
      ctx.fillText(fmtTime(t), x(t) - 14, bottom + 13);
    }
  }

  // A polyline through [t, v] pairs; `dash` for planned values; every point gets a marker
  // when there are few, so that a new site's first samples are visible.
  function series(ctx, pts, x, y, colour, dash) {
    const good = pts.filter(function (p) { return isNum(p[1]); });
    if (!good.length) return;
    ctx.strokeStyle = colour;
    ctx.fillStyle = colour;
    ctx.lineWidth = 2;
    ctx.setLineDash(dash ? [6, 4] : []);
    ctx.beginPath();
    good.forEach(function (p, i) {
      if (i === 0) ctx.moveTo(x(p[0]), y(p[1])); else ctx.lineTo(x(p[0]), y(p[1]));
    });
    ctx.stroke();
    ctx.setLineDash([]);
    if (good.length < 30) {
      for (const p of good) {
        ctx.beginPath();
        ctx.arc(x(p[0]), y(p[1]), 3, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
    ctx.lineWidth = 1;
  }

  // Step line: value v over [start, end).
  function steps(ctx, slots, x, y, colour, dash) {
    const good = slots.filter(function (s) { return isNum(s[2]); });
    if (!good.length) return;
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2;
    ctx.setLineDash(dash ? [6, 4] : []);
    ctx.beginPath();
    let prevEnd = null;
    for (const s of good) {
      if (prevEnd === s[0]) ctx.lineTo(x(s[0]), y(s[2])); else ctx.moveTo(x(s[0]), y(s[2]));
      ctx.lineTo(x(s[1]), y(s[2]));
      prevEnd = s[1];
    }
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.lineWidth = 1;
  }

  function nowLine(ctx, x, t0, t1, top, bottom) {
    const now = Date.now();
    if (now < t0 || now > t1) return;
    ctx.strokeStyle = COLOURS.now;
    ctx.setLineDash([2, 3]);
    ctx.beginPath();
    ctx.moveTo(x(now), top);
    ctx.lineTo(x(now), bottom);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = COLOURS.now;
    ctx.fillText('now', x(now) + 3, top + 10);
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

  function drawChart(points, from, to) {
    const s = surface($('chart'));
    if (!s) return;
    const ctx = s.ctx;
    const soc = points.filter((p) => p.channel === CH.soc).map((p) => [new Date(p.at).getTime(), p.value]);
    const grid = points.filter((p) => p.channel === CH.grid).map((p) => [new Date(p.at).getTime(), p.value]);
    // A new site has minutes of history, not hours: zoom to what there is (at least 10 min).
    const first = Math.min.apply(null, soc.concat(grid).map((p) => p[0]).concat([to]));
    const t0 = Math.max(from, Math.min(first, to - 10 * 60000) - 60000);
    const t1 = to;
    setText('chart-info', points.length ? '' : '(no history yet)');
    const left = 44;
    const right = 60;
    const top = 10;
    const bottom = s.h - 22;
    const x = (t) => left + ((t - t0) / (t1 - t0)) * (s.w - left - right);
    drawTimeAxis(ctx, x, t0, t1, top, bottom);
    // SOC axis (left, 0..100 %): drawn even before the first sample.
    const ySoc = (v) => bottom - (v / 100) * (bottom - top);
    ctx.fillStyle = COLOURS.soc;
    for (const v of [0, 25, 50, 75, 100]) {
      ctx.fillText(v + ' %', 4, ySoc(v) + 4);
      ctx.strokeStyle = '#f3f4f6';
      ctx.beginPath();
      ctx.moveTo(left, ySoc(v));
      ctx.lineTo(s.w - right, ySoc(v));
      ctx.stroke();
    }
    // Grid power (right axis), symmetric around zero.
    const maxAbs = Math.max(100, ...grid.map((p) => Math.abs(p[1])));
    const mid = (top + bottom) / 2;
    const yGrid = (v) => mid - (v / maxAbs) * (mid - top);
    ctx.strokeStyle = '#9ca3af';
    ctx.beginPath();
    ctx.moveTo(left, mid);
    ctx.lineTo(s.w - right, mid);
    ctx.stroke();
    ctx.fillStyle = COLOURS.grid;
    ctx.fillText('+' + fmtW(maxAbs) + ' W', s.w - right + 4, top + 8);
    ctx.fillText('0 W', s.w - right + 4, mid + 4);
    ctx.fillText('−' + fmtW(maxAbs) + ' W', s.w - right + 4, bottom);
    series(ctx, grid, x, yGrid, COLOURS.grid, false);
    series(ctx, soc, x, ySoc, COLOURS.soc, false);
  }

  // ---- Economics -------------------------------------------------------------------------

  // Hide the economics panels with a note on a site without economics; true if configured.
  function economicsAvailable(r) {
    const missing = r.status === 404;
    if (econConfigured !== !missing) {
      econConfigured = !missing;
      $('econ-missing').hidden = !missing;
      $('econ-summary').hidden = missing;
      for (const el of document.querySelectorAll('.econ-panel')) el.hidden = missing;
      if (missing) $('econ-banner').hidden = true;
    }
    return !missing;
  }

  const BASIS = {
    spot: 'spot prices', last_good: 'last good spot prices', tariff: 'the configured tariff',
    self_consumption: 'none (self-consumption only)',
  };

  async function loadEconomics() {
    const r = await api('GET', '/api/v1/economics');
    if (!economicsAvailable(r) || !r.ok || !r.data) return;
    const e = r.data;
    setText('drives', e.drives || '–');
    setText('price-basis', (BASIS[e.price_basis] || e.price_basis) + ' (feed ' + e.price_status.replace('_', ' ') + ')');
    setText('active-rule', e.active_rule || 'none');
    setText('fallback', e.fallback || 'none');
    // A fallback (last good prices, the tariff's own prices instead of spot prices, no plan) is a
    // degraded mode the operator must see; a time-of-use tariff without a feed is not one.
    const degraded = !!e.fallback;
    const banner = $('econ-banner');
    banner.hidden = !degraded;
    banner.textContent = degraded
      ? 'Price fallback (feed ' + e.price_status.replace('_', ' ') + '): planning on ' + (BASIS[e.price_basis] || e.price_basis) +
        ' — ' + e.fallback
      : '';
  }

  // Grid services (issue #13): read-only; the panel stays hidden on a site without
  // [grid_services] (the endpoint answers 404).
  async function loadGridServices() {
    const r = await api('GET', '/api/v1/grid-services');
    const panel = $('grid-panel');
    if (!r.ok || !r.data) {
      panel.hidden = true;
      return;
    }
    panel.hidden = false;
    const g = r.data;
    const live = g.live;
    const f = live && live.frequency_hz != null ? live.frequency_hz.toFixed(3) + ' Hz' : 'no frequency';
    setText('grid-summary', g.parameter_set + ' — ' + f + (live ? ', Δ ' + Math.round(live.delta_w) + ' W, ' + live.state : '') +
      ', active: ' + (g.active.length ? g.active.join(', ') : 'none (no commitment in force)'));
    const mins = function (s) { return s == null ? '–' : Math.round(s / 60) + ' min'; };
    const body = $('grid-services');
    body.textContent = '';
    for (const s of (live ? live.services : [])) {
      const tr = document.createElement('tr');
      for (const text of [s.service, s.activation, Math.round(s.delta_w) + ' W',
        mins(s.endurance_up_s) + ' / ' + mins(s.endurance_down_s), s.nem + ' / ' + s.aem, s.ready ? 'yes' : 'no']) {
        const td = document.createElement('td');
        td.textContent = text;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    setText('grid-commitments', g.commitments.length
      ? 'Committed: ' + g.commitments.map(function (c) {
        return c.service + ' ' + Math.round(c.capacity_w) + ' W ' + fmtTime(c.from) + '–' + fmtTime(c.until);
      }).join('; ')
      : 'No commitments (PUT /api/v1/grid-services).');
  }

  // Island and backup (issue #13): hidden on a site without [island] (the endpoint answers 404).
  // While it is shown it refreshes every ISLAND_MS: a transfer takes seconds, not minutes.
  async function loadIsland() {
    const r = await api('GET', '/api/v1/island');
    const panel = $('island-panel');
    if (!r.ok || !r.data) {
      panel.hidden = true;
      if (islandTimer) clearInterval(islandTimer);
      islandTimer = null;
      return;
    }
    panel.hidden = false;
    if (!islandTimer) islandTimer = setInterval(loadIsland, ISLAND_MS);
    renderIsland(r.data);
  }

  function renderIsland(v) {
    const state = v.grid_state || 'STARTING';
    const badge = $('island-state');
    badge.textContent = state;
    badge.className = 'island-state island-' + state.replace(/ /g, '-');
    setText('island-summary', v.live ? ISLAND_MEANING[state] || '' : 'waiting for the control loop');
    const cmd = function (readBack, command) {
      return (readBack || 'unknown (no good read-back)') + ' — commanded ' + command;
    };
    setText('island-breaker', cmd(v.breaker, v.breaker_command));
    setText('island-inverter', cmd(v.inverter_mode, v.inverter_command));
    let bound;
    if (!v.setpoints_allowed) {
      bound = 'held at 0 W: ' + (v.setpoint_bound || 'not connected');
    } else if (isNum(v.power_limit_w)) {
      bound = 'at most ' + Math.round(v.power_limit_w) + ' W (reconnection ramp)';
    } else {
      bound = 'free (within the safety envelope)';
    }
    setText('island-bound', bound + '; the island may draw ' + Math.round(v.available_w) + ' W from the battery');
    const d = v.detection || {};
    const parts = [];
    if (d.trip) parts.push('tripped: ' + d.trip);
    else if (!d.measured) parts.push('no good voltage/frequency measurement');
    else parts.push('healthy for ' + Math.round(d.grid_healthy_for_s) + ' s');
    if (isNum(d.mean_voltage_v)) parts.push('10-min mean ' + d.mean_voltage_v.toFixed(1) + ' V');
    if (isNum(d.rocof_hz_per_s)) parts.push('RoCoF ' + d.rocof_hz_per_s.toFixed(2) + ' Hz/s');
    setText('island-detection', parts.join(', '));
    const c = v.close_conditions || {};
    setText('island-close', c.all ? 'every close condition holds'
      : 'breaker may not close: ' + (c.first_false || 'conditions not met'));
    const alert = $('island-alert');
    let warn = '';
    if (v.estop && state === 'CONNECTED') warn = 'An emergency stop is active: the battery is stopped, the breaker is not operated and the circuits stay on the grid.';
    else if (v.estop) warn = 'An emergency stop holds the island down: the breaker is never closed and the island stays de-energised.';
    else if (state === 'SAFE STOP') warn = 'SAFE STOP: ' + (v.stop_reason || 'no reason recorded') + '. Check the breaker and the inverter, then reset with a reason.';
    else if (state === 'BLACKOUT') warn = 'No supply: the grid is down and the island is not energised. A black start needs an operator.';
    alert.hidden = !warn;
    alert.textContent = warn;
    const body = $('island-loads');
    body.textContent = '';
    for (const l of v.loads || []) {
      const tr = document.createElement('tr');
      const on = l.on == null ? 'unknown' : (l.on ? 'on' : 'off');
      for (const text of [l.name, String(l.priority) + (l.priority === 0 ? ' (critical)' : ''),
        Math.round(l.nominal_w) + ' W', l.commanded ? 'on' : 'off', on]) {
        const td = document.createElement('td');
        td.textContent = text;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    // Events carry the loop's control time: shown as the site's clock time.
    const now = Date.now();
    const events = (v.recent_events || []).slice(-8).reverse().map(function (e) {
      const at = new Date(now - Math.max(0, v.at_s - e.at_s) * 1000);
      return at.toLocaleTimeString() + ' ' + e.text;
    });
    renderList('island-events', events);
    const blackStart = state === 'BLACKOUT' && !v.estop;
    const reset = state === 'SAFE STOP';
    $('island-black-start').disabled = !canOperate || !blackStart;
    $('island-reset').disabled = !canOperate || !reset;
    $('island-reason').disabled = !canOperate || !(blackStart || reset);
    setText('island-hint', blackStart ? 'Black start: energise the island from the battery, then the circuits one by one.'
      : reset ? 'Reset: back to BLACKOUT once the cause is cleared.'
        : 'Black start is possible in BLACKOUT, reset in SAFE STOP.');
  }

  async function islandAction(path, label) {
    const reason = $('island-reason').value.trim();
    if (!reason) {
      message('Enter the reason for the ' + label.toLowerCase() + ' first.', true);
      $('island-reason').focus();
      return;
    }
    const r = await api('POST', path, { reason: reason });
    if (r.ok) {
      message(label + ': accepted, grid state ' + r.data.grid_state, false);
      $('island-reason').value = '';
    } else {
      showError(r);
    }
    loadIsland();
  }

  async function loadPlan() {
    const r = await api('GET', '/api/v1/plan');
    if (!economicsAvailable(r) || !r.ok || !r.data) return;
    drawPlan(r.data);
  }

  function drawPlan(plan) {
    const s = surface($('plan-chart'));
    if (!s) return;
    const ctx = s.ctx;
    const slots = (plan.slots || []).map(function (sl) {
      return Object.assign({ t0: new Date(sl.start).getTime(), t1: new Date(sl.end).getTime() }, sl);
    });
    const made = plan.created_at ? 'made ' + fmtTime(plan.created_at) + (plan.reason ? ' (' + plan.reason.replace(/_/g, ' ') + ')' : '') : '';
    const expires = plan.expires_at ? ', valid until ' + new Date(plan.expires_at).toLocaleString() : '';
    setText('plan-info', slots.length
      ? slots.length + ' slots, plan ' + plan.status + (made ? ', ' + made : '') + expires + ', prices: ' + (BASIS[plan.price_basis] || plan.price_basis) +
        (plan.acted_on === false ? ' — not acted on: it does not beat self-consumption by the margin, the mode runs' : '')
      : 'no plan (' + plan.status + ')');
    const left = 56;
    const right = 56;
    const top = 10;
    const split = Math.round(s.h * 0.66);
    const bottom = s.h - 22;
    if (!slots.length) {
      ctx.fillStyle = '#6b7280';
      ctx.fillText('no plan yet', left, top + 20);
      return;
    }
    const t0 = slots[0].t0;
    const t1 = slots[slots.length - 1].t1;
    const x = (t) => left + ((t - t0) / (t1 - t0)) * (s.w - left - right);
    drawTimeAxis(ctx, x, t0, t1, top, bottom);
    // Upper band: battery and grid power (left axis, symmetric), SOC (right axis 0..100 %).
    let maxAbs = 100;
    for (const sl of slots) {
      for (const v of [sl.battery_w, sl.grid_w, sl.actual && sl.actual.battery_w, sl.actual && sl.actual.grid_w]) {
        if (isNum(v)) maxAbs = Math.max(maxAbs, Math.abs(v));
      }
    }
    const mid = (top + split - 8) / 2;
    const yW = (v) => mid - (v / maxAbs) * (mid - top);
    const ySoc = (v) => (split - 8) - (v / 100) * (split - 8 - top);
    ctx.strokeStyle = '#9ca3af';
    ctx.beginPath();
    ctx.moveTo(left, mid);
    ctx.lineTo(s.w - right, mid);
    ctx.stroke();
    ctx.fillStyle = '#374151';
    ctx.fillText('+' + (maxAbs / 1000).toFixed(1) + ' kW', 2, top + 8);
    ctx.fillText('0 kW', 2, mid + 4);
    ctx.fillText('−' + (maxAbs / 1000).toFixed(1) + ' kW', 2, split - 8);
    ctx.fillStyle = COLOURS.soc;
    for (const v of [0, 50, 100]) ctx.fillText(v + ' %', s.w - right + 6, ySoc(v) + 4);
    const planned = (k) => slots.map((sl) => [sl.t0, sl.t1, sl[k]]);
    const actual = (k) => slots.filter((sl) => sl.actual).map((sl) => [sl.t0, sl.t1, sl.actual[k]]);
    steps(ctx, planned('grid_w'), x, yW, COLOURS.grid, true);
    steps(ctx, actual('grid_w'), x, yW, COLOURS.grid, false);
    steps(ctx, planned('battery_w'), x, yW, COLOURS.battery, true);
    steps(ctx, actual('battery_w'), x, yW, COLOURS.battery, false);
    // SOC at each slot's end (the planned curve starts at the first slot's start).
    series(ctx, slots.map((sl) => [sl.t1, sl.soc_percent]), x, ySoc, COLOURS.soc, true);
    series(ctx, slots.filter((sl) => sl.actual).map((sl) => [sl.t1, sl.actual.soc_percent]), x, ySoc, COLOURS.soc, false);
    // Lower band: prices.
    const prices = [];
    for (const sl of slots) prices.push(sl.import_price, sl.export_price, sl.spot_price);
    const known = prices.filter(isNum);
    const pMin = Math.min(0, ...known);
    const pMax = Math.max(0.01, ...known);
    const yP = (v) => bottom - ((v - pMin) / (pMax - pMin)) * (bottom - split);
    ctx.strokeStyle = '#d1d5db';
    ctx.beginPath();
    ctx.moveTo(left, split - 2);
    ctx.lineTo(s.w - right, split - 2);
    ctx.stroke();
    ctx.fillStyle = '#374151';
    ctx.fillText(pMax.toFixed(2) + ' /kWh', 2, split + 10);
    ctx.fillText(pMin.toFixed(2), 2, bottom);
    steps(ctx, slots.map((sl) => [sl.t0, sl.t1, sl.import_price]), x, yP, COLOURS.importPrice, false);
    steps(ctx, slots.map((sl) => [sl.t0, sl.t1, sl.export_price]), x, yP, COLOURS.exportPrice, false);
    steps(ctx, slots.map((sl) => [sl.t0, sl.t1, sl.spot_price]), x, yP, COLOURS.spot, true);
    nowLine(ctx, x, t0, t1, top, bottom);
  }

  async function loadForecast() {
    const r = await api('GET', '/api/v1/forecast');
    if (!economicsAvailable(r) || !r.ok || !r.data) return;
    const f = r.data;
    const pct = (v) => (isNum(v) ? (v * 100).toFixed(1) + ' %' : '–');
    const e = f.errors || {};
    setText('forecast-nmae', 'Live nMAE over ' + (e.window_hours || 0) + ' h (' + (e.samples || 0) + ' slots): PV ' +
      pct(e.pv_nmae) + ', load ' + pct(e.load_nmae) + (isNum(f.pv_ratio) ? '; PV measured/forecast ' + f.pv_ratio.toFixed(2) : ''));
    const s = surface($('forecast-chart'));
    if (!s) return;
    const slots = (f.slots || []).map((sl) => Object.assign({ t0: new Date(sl.start).getTime(), t1: new Date(sl.end).getTime() }, sl));
    if (!slots.length) {
      s.ctx.fillStyle = '#6b7280';
      s.ctx.fillText('no forecast yet', 50, 30);
      return;
    }
    const left = 50;
    const right = 10;
    const top = 10;
    const bottom = s.h - 22;
    const t0 = slots[0].t0;
    const t1 = slots[slots.length - 1].t1;
    const x = (t) => left + ((t - t0) / (t1 - t0)) * (s.w - left - right);
    let max = 100;
    for (const sl of slots) {
      for (const v of [sl.pv_w, sl.load_w, sl.pv_actual_w, sl.load_actual_w]) if (isNum(v)) max = Math.max(max, v);
    }
    const y = (v) => bottom - (v / max) * (bottom - top);
    drawTimeAxis(s.ctx, x, t0, t1, top, bottom);
    s.ctx.fillStyle = '#374151';
    s.ctx.fillText((max / 1000).toFixed(1) + ' kW', 2, top + 8);
    s.ctx.fillText('0', 2, bottom);
    steps(s.ctx, slots.map((sl) => [sl.t0, sl.t1, sl.pv_w]), x, y, COLOURS.pv, true);
    steps(s.ctx, slots.map((sl) => [sl.t0, sl.t1, sl.pv_actual_w]), x, y, COLOURS.pv, false);
    steps(s.ctx, slots.map((sl) => [sl.t0, sl.t1, sl.load_w]), x, y, COLOURS.load, true);
    steps(s.ctx, slots.map((sl) => [sl.t0, sl.t1, sl.load_actual_w]), x, y, COLOURS.load, false);
    nowLine(s.ctx, x, t0, t1, top, bottom);
  }

  async function loadSavings() {
    const [day, month] = await Promise.all([api('GET', '/api/v1/savings?period=day'), api('GET', '/api/v1/savings?period=month')]);
    if (!economicsAvailable(day)) return;
    for (const [suffix, r] of [['day', day], ['month', month]]) {
      if (!r.ok || !r.data) continue;
      const v = r.data;
      setText('cost-ems-' + suffix, fmtMoney(v.ems.cost, v.currency));
      setText('cost-nobat-' + suffix, fmtMoney(v.no_battery.cost, v.currency));
      setText('cost-self-' + suffix, fmtMoney(v.self_consumption.cost, v.currency));
      setText('saving-nobat-' + suffix, fmtMoney(v.saving_vs_no_battery, v.currency));
      setText('saving-self-' + suffix, fmtMoney(v.saving_vs_self_consumption, v.currency));
    }
  }

  // ---- Rule editor -----------------------------------------------------------------------

  function whenText(w) {
    if (!w) return 'always';
    const parts = [];
    if (w.days && w.days.length) parts.push(w.days.join('/'));
    if (w.from || w.to) parts.push((w.from || '00:00') + '–' + (w.to || '24:00'));
    if (isNum(w.price_above)) parts.push('price > ' + w.price_above);
    if (isNum(w.price_below)) parts.push('price < ' + w.price_below);
    if (isNum(w.soc_above)) parts.push('SOC > ' + w.soc_above + ' %');
    if (isNum(w.soc_below)) parts.push('SOC < ' + w.soc_below + ' %');
    if (isNum(w.pv_surplus_above_w)) parts.push('PV surplus > ' + w.pv_surplus_above_w + ' W');
    if (isNum(w.grid_import_above_w)) parts.push('import > ' + w.grid_import_above_w + ' W');
    return parts.length ? parts.join(', ') : 'always';
  }

  function actionText(a) {
    if (!a) return '?';
    const p = a.maxChargePower !== undefined ? ' ' + a.maxChargePower + ' W'
      : a.maxDischargePower !== undefined ? ' ' + a.maxDischargePower + ' W'
        : a.power !== undefined ? ' ' + a.power + ' W'
          : a.soc !== undefined ? ' ' + a.soc + ' %' + (a.by ? ' by ' + a.by : '') : '';
    return a.mode + p;
  }

  function untilText(u) {
    if (!u) return '';
    if (u.time) return ' until ' + u.time;
    if (u.duration_minutes) return ' for ' + u.duration_minutes + ' min';
    if (u.sunset) return ' until sunset';
    if (isNum(u.soc)) return ' until SOC ' + u.soc + ' %';
    return '';
  }

  function renderRules() {
    const ul = $('rules-list');
    ul.replaceChildren();
    if (!rules.length) {
      const li = document.createElement('li');
      li.className = 'hint';
      li.textContent = 'no rules' + (canOperate ? ' (add one below)' : '');
      ul.appendChild(li);
    }
    const fired = (decision && decision.fired) || [];
    rules.forEach(function (rule, i) {
      const li = document.createElement('li');
      const text = document.createElement('span');
      text.textContent = rule.name + ' — ' + (rule.enabled === false ? 'disabled, ' : '') + 'priority ' +
        (rule.priority !== undefined ? rule.priority : 0) + ': ' + whenText(rule.when) + ' → ' + actionText(rule.action) + untilText(rule.until);
      li.appendChild(text);
      if (decision && decision.winner === rule.name) {
        const b = document.createElement('span');
        b.className = 'rule-fires';
        b.textContent = '  ◀ drives the battery now';
        li.appendChild(b);
      } else if (fired.indexOf(rule.name) >= 0) {
        const b = document.createElement('span');
        b.className = 'rule-fires';
        b.textContent = '  (matches now)';
        li.appendChild(b);
      }
      if (canOperate) {
        const edit = document.createElement('button');
        edit.type = 'button';
        edit.textContent = 'Edit';
        edit.addEventListener('click', function () { editRule(i); });
        const del = document.createElement('button');
        del.type = 'button';
        del.textContent = 'Delete';
        del.addEventListener('click', function () {
          rules.splice(i, 1);
          rulesDirty = true;
          if (editing === i) resetRuleForm();
          renderRules();
          setText('rules-status', 'Deleted locally: press Save rules to apply.');
        });
        li.appendChild(edit);
        li.appendChild(del);
      }
      ul.appendChild(li);
    });
  }

  async function loadRules() {
    const r = await api('GET', '/api/v1/rules');
    if (!economicsAvailable(r) || !r.ok || !r.data) return;
    decision = r.data.decision || null;
    // Unsaved edits are not overwritten by the refresh.
    if (!rulesDirty) {
      rules = r.data.rules || [];
      ruleSetRest = {};
      for (const k of Object.keys(r.data)) {
        if (k !== 'rules' && k !== 'decision') ruleSetRest[k] = r.data[k];
      }
    }
    renderRules();
  }

  function val(id) {
    return $(id).value.trim();
  }

  function numOrUndef(id) {
    const v = val(id);
    return v === '' ? undefined : Number(v);
  }

  function ruleFromForm() {
    const when = {};
    const days = val('rule-days').split(',').map((d) => d.trim()).filter((d) => d);
    if (days.length) when.days = days;
    if (val('rule-from')) when.from = val('rule-from');
    if (val('rule-to')) when.to = val('rule-to');
    const opt = [['price_above', 'rule-price-above'], ['price_below', 'rule-price-below'], ['soc_above', 'rule-soc-above'],
      ['soc_below', 'rule-soc-below'], ['pv_surplus_above_w', 'rule-pv-above'], ['grid_import_above_w', 'rule-import-above']];
    for (const [k, id] of opt) {
      const n = numOrUndef(id);
      if (n !== undefined) when[k] = n;
    }
    const mode = $('rule-mode').value;
    const action = { mode: mode };
    const value = numOrUndef('rule-value');
    const param = { LIMIT_CHARGE: 'maxChargePower', LIMIT_DISCHARGE: 'maxDischargePower', FORCE_CHARGE: 'power', SOC_RESERVE: 'soc', CHARGE_TO: 'soc' }[mode];
    // A missing value is sent as is: the server's error names the field.
    if (param && value !== undefined) action[param] = value;
    if (mode === 'CHARGE_TO' && val('rule-by')) action.by = val('rule-by');
    const rule = { name: val('rule-name'), priority: numOrUndef('rule-priority') || 0, enabled: $('rule-enabled').checked, when: when, action: action };
    const kind = $('rule-until').value;
    const uv = val('rule-until-value');
    if (kind === 'time') rule.until = { time: uv };
    else if (kind === 'duration_minutes') rule.until = { duration_minutes: Number(uv) };
    else if (kind === 'sunset') rule.until = { sunset: true };
    else if (kind === 'soc') rule.until = { soc: Number(uv) };
    return rule;
  }

  function setField(id, v) {
    $(id).value = v === undefined || v === null ? '' : String(v);
  }

  function editRule(i) {
    const r = rules[i];
    editing = i;
    const w = r.when || {};
    setField('rule-name', r.name);
    setField('rule-priority', r.priority);
    $('rule-enabled').checked = r.enabled !== false;
    setField('rule-days', (w.days || []).join(', '));
    setField('rule-from', w.from);
    setField('rule-to', w.to);
    setField('rule-price-above', w.price_above);
    setField('rule-price-below', w.price_below);
    setField('rule-soc-above', w.soc_above);
    setField('rule-soc-below', w.soc_below);
    setField('rule-pv-above', w.pv_surplus_above_w);
    setField('rule-import-above', w.grid_import_above_w);
    const a = r.action || {};
    $('rule-mode').value = a.mode || 'NO_DISCHARGE';
    setField('rule-value', a.maxChargePower !== undefined ? a.maxChargePower : a.maxDischargePower !== undefined ? a.maxDischargePower : a.power !== undefined ? a.power : a.soc);
    setField('rule-by', a.by);
    const u = r.until || {};
    const kind = u.time ? 'time' : u.duration_minutes ? 'duration_minutes' : u.sunset ? 'sunset' : isNum(u.soc) ? 'soc' : '';
    $('rule-until').value = kind;
    setField('rule-until-value', u.time || u.duration_minutes || (isNum(u.soc) ? u.soc : ''));
    $('rule-add').textContent = 'Update rule';
    $('rule-cancel').hidden = false;
    $('rule-name').focus();
  }

  function resetRuleForm() {
    editing = -1;
    $('rule-form').reset();
    $('rule-add').textContent = 'Add rule';
    $('rule-cancel').hidden = true;
  }

  function addRule(ev) {
    ev.preventDefault();
    const rule = ruleFromForm();
    if (!rule.name) {
      setText('rules-error', 'Give the rule a name.');
      return;
    }
    if (editing >= 0) rules[editing] = rule; else rules.push(rule);
    rulesDirty = true;
    resetRuleForm();
    setText('rules-error', '');
    renderRules();
    setText('rules-status', 'Changed locally: press Save rules to apply.');
  }

  async function saveRules() {
    const body = Object.assign({}, ruleSetRest, { rules: rules });
    const r = await api('PUT', '/api/v1/rules', body);
    if (!r.ok) {
      // The server names the field (rules[0].when.from) and the value.
      setText('rules-error', 'Not saved: ' + errorText(r));
      setText('rules-status', '');
      return;
    }
    rulesDirty = false;
    setText('rules-error', '');
    setText('rules-status', 'Saved at ' + new Date().toLocaleTimeString() + '.');
    await loadRules();
    await loadEconomics();
  }

  // ---- Refresh ---------------------------------------------------------------------------

  function refreshSlow() {
    loadGridServices();
    loadIsland();
    loadControlModes();
    loadSchedules();
    loadChart();
    loadEconomics().then(function () {
      if (econConfigured === false) return;
      loadPlan();
      loadForecast();
      loadSavings();
      loadRules();
    });
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
    await loadRole();
    connectLive();
    refreshSlow();
    slowTimer = setInterval(refreshSlow, REFRESH_MS);
  }

  function logout(why) {
    token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    stopPolling();
    if (slowTimer) clearInterval(slowTimer);
    slowTimer = null;
    if (islandTimer) clearInterval(islandTimer);
    islandTimer = null;
    if (ws) ws.close();
    ws = null;
    $('main').hidden = true;
    $('logout').hidden = true;
    $('login-panel').hidden = false;
    $('login-error').textContent = why || '';
    setText('whoami', '');
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
    $('island-black-start').addEventListener('click', function () { islandAction('/api/v1/island/black-start', 'Black start'); });
    $('island-reset').addEventListener('click', function () { islandAction('/api/v1/island/reset', 'Reset'); });
    $('start').addEventListener('click', function () {
      command('/api/v1/state', { request: 'start' }, 'Start');
    });
    $('stop').addEventListener('click', function () {
      command('/api/v1/state', { request: 'stop' }, 'Stop');
    });
    $('acknowledge').addEventListener('click', function () {
      command('/api/v1/state', { request: 'acknowledge' }, 'Acknowledge');
    });
    $('rule-form').addEventListener('submit', addRule);
    $('rule-cancel').addEventListener('click', resetRuleForm);
    $('rules-save').addEventListener('click', saveRules);
    // Charts follow the panel's width.
    window.addEventListener('resize', function () {
      if (token) refreshSlow();
    });
    document.addEventListener('keydown', function (ev) {
      if (ev.key === 'Escape') closeEstop();
    });
    if (token) login(token);
  });
})();
