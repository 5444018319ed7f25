// The console's page: hash-routed views over the console's JSON API, kept live by one
// EventSource on /api/stream. Every value that comes from the API reaches the DOM through
// textContent, attributes set one by one, or an iframe's srcdoc under sandbox="": never through
// innerHTML, so a task titled `<img src=x onerror=alert(1)>` stays text.
'use strict';

// ---------------------------------------------------------------------------------------------
// Plumbing: the token, API calls, DOM building.

// A console bound off loopback requires a token; it comes on the page URL (`?token=`) and goes
// on every call, as a header where fetch allows one and as a query parameter for EventSource.
const TOKEN = new URLSearchParams(location.search).get('token');

function withToken(path) {
  if (!TOKEN) return path;
  return path + (path.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(TOKEN);
}

class ApiError extends Error {
  constructor(status, body) {
    super(`HTTP ${status}${body ? ': ' + body : ''}`);
    this.status = status;
    this.body = body;
  }
}

async function call(path, options = {}) {
  const headers = Object.assign({ Accept: 'application/json' }, options.headers || {});
  if (TOKEN) headers.Authorization = 'Bearer ' + TOKEN;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  const text = await response.text();
  if (!response.ok) throw new ApiError(response.status, text.slice(0, 500));
  return text ? JSON.parse(text) : null;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? '?' + s : '';
}

// h('tag.class', {attr: value, onclick: fn}, children...): strings become text nodes.
function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split('.');
  const el = document.createElement(tag || 'div');
  if (classes.length) el.className = classes.join(' ');
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className += (el.className ? ' ' : '') + v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k === 'value') el.value = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

// An instance's name: the runner's label (`task-api#2`) when it has one, else the app id.
function who(app, instance) {
  if (typeof instance === 'string' && instance && instance !== app) return instance;
  if (typeof instance === 'number' && instance > 1) return `${app}#${instance}`;
  return app;
}

function badge(text, kind) {
  return h('span.badge', { class: kind || String(text) }, text);
}

function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
}

function table(headers, rows) {
  return h('table', null,
    h('thead', null, h('tr', null, headers.map((t) => h('th', { class: /^(latency|size|spans|duration|attempt|status|pid|ttl)/i.test(t) ? 'num' : null }, t)))),
    h('tbody', null, rows));
}

function time(at) {
  if (!at) return '';
  const d = typeof at === 'number' ? new Date(at) : new Date(String(at));
  if (Number.isNaN(d.getTime())) return String(at);
  return d.toLocaleTimeString([], { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

function nanosToDate(n) {
  return new Date(Number(BigInt(n) / 1000000n));
}

function ms(v) {
  if (v === undefined || v === null) return '';
  return (v < 10 ? Number(v).toFixed(2) : Math.round(v)) + ' ms';
}

function bytes(n) {
  if (n === undefined || n === null) return '';
  return n < 1024 ? n + ' B' : (n / 1024).toFixed(1) + ' KiB';
}

function pretty(value) {
  try { return JSON.stringify(value, null, 2); } catch (e) { return String(value); }
}

function errorBox(err) {
  return h('div.error', null, 'Could not load: ' + (err && err.message ? err.message : String(err)));
}

// ---------------------------------------------------------------------------------------------
// The live stream: one EventSource for the page; views subscribe while they are shown.

const live = { listeners: { published: new Set(), delivery: new Set(), log: new Set() }, dropped: 0 };

function startStream() {
  const status = document.getElementById('stream-status');
  const source = new EventSource(withToken('/api/stream'));
  source.onopen = () => { status.dataset.state = 'live'; status.textContent = 'live'; };
  source.onerror = () => {
    status.dataset.state = source.readyState === EventSource.CLOSED ? 'down' : 'connecting';
    status.textContent = source.readyState === EventSource.CLOSED ? 'stream closed' : 'reconnecting';
  };
  for (const kind of Object.keys(live.listeners)) {
    source.addEventListener(kind, (e) => {
      let data;
      try { data = JSON.parse(e.data); } catch (err) { return; }
      for (const fn of live.listeners[kind]) fn(data);
    });
  }
  source.addEventListener('lagged', (e) => {
    let n = 0;
    try { n = Number(JSON.parse(e.data).dropped) || 0; } catch (err) { n = 0; }
    live.dropped += n;
    const el = document.getElementById('lagged');
    el.hidden = false;
    el.textContent = `viewer lagged: ${live.dropped} stream messages dropped (reload a view to catch up)`;
  });
}

function subscribe(kind, fn) {
  live.listeners[kind].add(fn);
  return () => live.listeners[kind].delete(fn);
}

// ---------------------------------------------------------------------------------------------
// Router: `#/view` or `#/traces/{id}`; each view returns a cleanup function.

const views = {};
let cleanup = null;

function route() {
  const hash = (location.hash || '#/events').split('?')[0];
  const parts = hash.replace(/^#\/?/, '').split('/');
  const name = views[parts[0]] ? parts[0] : 'events';
  // A malformed escape in a hand-typed hash must not leave the view blank: keep it as typed.
  const decode = (part) => { try { return decodeURIComponent(part); } catch { return part; } };
  const arg = parts.slice(1).map(decode).join('/');
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.view === name);
  if (cleanup) cleanup();
  cleanup = null;
  const root = document.getElementById('view');
  clear(root);
  root.dataset.view = name;
  document.title = `${name} · sidecar console`;
  cleanup = views[name](root, arg) || null;
}

// Refreshes `load` every `every` ms while the view is shown.
function poll(load, every) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    await load();
    if (!stopped) timer = setTimeout(tick, every);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

// ---------------------------------------------------------------------------------------------
// Apps

views.apps = (root) => {
  const body = h('div.app-grid');
  root.append(h('h2', null, 'Apps'), body);
  return poll(async () => {
    let apps;
    try { apps = await call('/api/apps'); } catch (err) { clear(body); body.append(errorBox(err)); return; }
    clear(body);
    if (!apps.length) body.append(h('div.empty', null, 'No apps in this run.'));
    for (const app of apps) body.append(appCard(app));
  }, 2000);
};

function appCard(app) {
  const name = who(app.app_id, app.instance);
  const subs = (app.subscriptions || []).map((s) => h('tr', null,
    h('td.mono', null, s.topic),
    h('td.mono', null, s.route || '', (s.rules || []).map((r) => h('div.dim', null, `${r.match} → ${r.path}`))),
    h('td.mono', null, s.dead_letter_topic || '—'),
    h('td.mono', null, s.consumer_group || '—'),
    h('td', null, s.bulk && s.bulk.enabled
      ? `bulk ≤${s.bulk.max_messages_count} / ${s.bulk.max_await_duration_ms} ms` : 'single'),
    h('td.dim', null, s.pubsub)));
  const policies = (app.resiliency || []).map((r) => h('tr', null,
    h('td.mono', null, r.policy), h('td.mono', null, r.target), h('td', null, r.kind),
    h('td', null, r.breaker_state ? badge(r.breaker_state) : h('span.dim', null, '—'))));
  return h('section.card', { dataset: { app: app.app_id } },
    h('div.head', null,
      h('span.topic', null, name), badge(app.state), badge(app.health),
      h('span.dim', null, `pid ${app.pid ?? '—'}`),
      h('span.dim', null, `app :${app.app_port ?? '—'}`),
      h('span.dim', null, `sidecar :${app.http_port ?? '—'}`),
      app.state === 'exited' ? h('span.dim', null, `exit ${app.exit_status ?? '?'}`) : null),
    h('div.body', null,
      h('h3', null, 'Subscriptions'),
      subs.length ? table(['topic', 'route / rules', 'dead letters', 'consumer group', 'delivery', 'pub/sub'], subs)
        : h('div.dim', null, 'none'),
      h('h3', null, 'Components'),
      (app.components || []).length
        ? h('div', null, app.components.map((c) => h('span', null, h('code', null, c.name), h('span.dim', null, ` ${c.type}   `))))
        : h('div.dim', null, 'none'),
      h('h3', null, 'Resiliency'),
      policies.length ? table(['policy', 'target', 'kind', 'breaker'], policies) : h('div.dim', null, 'no policies')));
}

// ---------------------------------------------------------------------------------------------
// Events, live

const EVENTS_SHOWN = 300;

views.events = (root) => {
  const params = new URLSearchParams((location.hash.split('?')[1]) || '');
  const filter = { topic: '', app: '', task_id: params.get('task_id') || '' };
  const inputs = {};
  const field = (key, label, placeholder) => {
    inputs[key] = h('input', { type: 'search', name: key, placeholder, value: filter[key] });
    return h('label', null, label, inputs[key]);
  };
  const count = h('span.count');
  const list = h('div', { id: 'events' });
  const form = h('form.toolbar', { onsubmit: (e) => { e.preventDefault(); apply(); } },
    field('topic', 'topic', 'task-created'), field('app', 'app', 'email-worker'),
    field('task_id', 'task id', 'uuid'), h('button', { type: 'submit' }, 'Filter'), count);
  root.append(h('h2', null, 'Events'), form, list);

  const cards = new Map();    // event id -> {event, card, rows}
  const early = new Map();    // deliveries that arrived before their event

  const matches = (ev) => (!filter.topic || ev.topic === filter.topic)
    && (!filter.task_id || ev.task_id === filter.task_id)
    && (!filter.app || ev.publisher === filter.app
      || (ev.deliveries || []).some((d) => d.subscriber === filter.app));

  const show = (ev, fresh) => {
    if (cards.has(ev.id)) return;
    const entry = eventCard(ev, fresh);
    cards.set(ev.id, entry);
    for (const d of early.get(ev.id) || []) addDelivery(entry, d);
    early.delete(ev.id);
    if (fresh) list.prepend(entry.card); else list.append(entry.card);
    while (list.childElementCount > EVENTS_SHOWN) {
      const last = list.lastElementChild;
      cards.delete(last.dataset.eventId);
      last.remove();
    }
    count.textContent = `${list.childElementCount} shown`;
  };

  async function apply() {
    for (const k of Object.keys(filter)) filter[k] = inputs[k].value.trim();
    cards.clear();
    clear(list);
    try {
      const events = await call('/api/events' + query(Object.assign({ limit: EVENTS_SHOWN }, filter)));
      for (const ev of events) show(ev, false);
      if (!events.length) count.textContent = 'no events yet: they appear here as they are published';
    } catch (err) { list.append(errorBox(err)); }
  }

  const offPublished = subscribe('published', (ev) => { if (matches(ev)) show(ev, true); });
  const offDelivery = subscribe('delivery', (d) => {
    const entry = cards.get(d.event_id);
    if (entry) addDelivery(entry, d);
    else if (early.size < 1000) early.set(d.event_id, (early.get(d.event_id) || []).concat([d]));
  });
  apply();
  return () => { offPublished(); offDelivery(); };
};

function eventCard(ev, fresh) {
  const rows = h('tbody');
  const summary = h('span.outcomes');
  const card = h('article.card.event', { class: fresh ? 'fresh' : null, dataset: { eventId: ev.id, topic: ev.topic } },
    h('div.head', null,
      h('span.dim.mono', null, time(ev.at)),
      h('span.topic', null, ev.topic),
      h('span.dim', null, 'from ', h('b', null, ev.publisher || '?')),
      ev.task_id ? h('span.dim', null, 'task ', h('a.mono', { href: '#/events?task_id=' + encodeURIComponent(ev.task_id) }, ev.task_id)) : null,
      ev.trace_id ? h('a.mono', { href: '#/traces/' + encodeURIComponent(ev.trace_id), class: 'trace-link' }, 'trace ' + ev.trace_id.slice(0, 8) + '…') : null,
      h('span.dim.mono', null, `#${ev.seq ?? ''} ${ev.pubsub || ''}`),
      summary),
    h('div.body', null,
      h('table.deliveries', null,
        h('thead', null, h('tr', null, ['subscriber', 'route', 'attempt', 'outcome', 'status', 'latency', 'error', 'at']
          .map((t) => h('th', { class: ['attempt', 'status', 'latency'].includes(t) ? 'num' : null }, t)))),
        rows),
      h('details', null, h('summary', null, 'CloudEvent'), h('pre.cloudevent', null, pretty(ev.cloudevent)))));
  const entry = { event: ev, card, rows, summary, deliveries: [] };
  for (const d of ev.deliveries || []) addDelivery(entry, d);
  if (!(ev.deliveries || []).length) rows.append(h('tr.waiting', null, h('td.dim', { colspan: 8 }, 'no delivery yet')));
  return entry;
}

function addDelivery(entry, d) {
  const waiting = entry.rows.querySelector('tr.waiting');
  if (waiting) waiting.remove();
  entry.deliveries.push(d);
  entry.rows.append(h('tr.delivery', { class: d.dead_lettered ? 'dead' : null, dataset: { subscriber: d.subscriber, outcome: d.outcome } },
    h('td', null, who(d.subscriber, d.instance)),
    h('td.mono.dim', null, d.route || ''),
    h('td.num', null, d.attempt > 1 ? `${d.attempt} (retry ${d.attempt - 1})` : String(d.attempt ?? 1)),
    h('td', null, badge(d.outcome), d.dead_lettered ? [' ', badge('dead-lettered', 'dead')] : null),
    h('td.num', null, d.status ?? ''),
    h('td.num', null, ms(d.latency_ms)),
    h('td.mono', null, d.error || ''),
    h('td.dim.mono', null, time(d.at))));
  // The summary line: each subscriber's latest outcome and how many attempts it took.
  const last = new Map();
  for (const x of entry.deliveries) last.set(x.subscriber, x);
  clear(entry.summary);
  for (const [sub, x] of last) {
    entry.summary.append(h('span.nowrap', null, ' ', sub, ' ', badge(x.outcome), x.attempt > 1 ? h('span.dim', null, ` ×${x.attempt}`) : null));
  }
}

// ---------------------------------------------------------------------------------------------
// Dead letters

views['dead-letters'] = (root) => {
  const body = h('div');
  // The last replay answer per event, kept across the list's refreshes.
  const results = new Map();
  const note = h('div.count');
  root.append(h('h2', null, 'Dead letters'), h('div.toolbar', null,
    h('button', { type: 'button', onclick: () => load() }, 'Refresh'), note), body);

  async function replay(letter, button, result) {
    button.disabled = true;
    result.textContent = 'replaying…';
    try {
      const headers = { 'X-Console-Action': 'replay', Accept: 'application/json' };
      if (TOKEN) headers.Authorization = 'Bearer ' + TOKEN;
      const response = await fetch(`/api/dead-letters/${encodeURIComponent(letter.event_id)}/replay`, { method: 'POST', headers });
      const text = await response.text();
      result.textContent = response.ok ? `replayed (HTTP ${response.status})` : `failed: HTTP ${response.status} ${text.slice(0, 200)}`;
      result.className = response.ok ? 'replay-result ok' : 'replay-result error';
      results.set(letter.event_id, { text: result.textContent, className: result.className });
      if (response.ok) setTimeout(load, 300);
    } catch (err) {
      result.textContent = 'failed: ' + err.message;
      result.className = 'replay-result error';
    } finally {
      button.disabled = false;
    }
  }

  async function load() {
    let page;
    try { page = await call('/api/dead-letters?limit=200'); } catch (err) { clear(body); body.append(errorBox(err)); return; }
    const letters = Array.isArray(page) ? page : (page && page.dead_letters) || [];
    note.textContent = `${letters.length} dead letters`;
    clear(body);
    if (!letters.length) { body.append(h('div.empty', null, 'No dead letters.')); return; }
    body.append(table(['event', 'topic', 'type', 'dropped by', 'reason', 'task', 'status', 'replays', ''],
      letters.map((l) => {
        const result = h('span.replay-result');
        const previous = results.get(l.event_id);
        if (previous) { result.textContent = previous.text; result.className = previous.className; }
        const button = h('button.replay', { type: 'button' }, 'Replay');
        button.addEventListener('click', () => replay(l, button, result));
        const replays = l.replays || [];
        return h('tr.dead-letter', { dataset: { eventId: l.event_id } },
          h('td.mono', null, l.event_id),
          h('td.mono', null, l.original_topic || ''),
          h('td.mono', null, l.event_type || ''),
          h('td', null, (l.dropped_by || []).map((d) => h('div', null, d.app_id, h('span.dim', null, ` ${time(d.received_at)}`)))),
          h('td.reason', null, l.reason || h('span.dim', null, 'no reason reported')),
          h('td.mono', null, l.task_id || ''),
          h('td', null, badge(l.status || 'pending')),
          h('td.num', null, String(replays.length), replays.length ? h('div.dim', null, time(replays[replays.length - 1].replayed_at)) : null),
          h('td.nowrap', null, button, ' ', result));
      })));
  }
  load();
  return null;
};

// ---------------------------------------------------------------------------------------------
// State

views.state = (root) => {
  const prefix = h('input', { type: 'search', name: 'prefix', placeholder: 'task-api||' });
  const list = h('div');
  const detail = h('div.panel', null, h('div.dim', null, 'Select a key.'));
  const count = h('span.count');
  root.append(h('h2', null, 'State'),
    h('form.toolbar', { onsubmit: (e) => { e.preventDefault(); load(); } },
      h('label', null, 'key prefix', prefix), h('button', { type: 'submit' }, 'List'), count),
    h('div.split', null, list, detail));

  async function open(item, row) {
    for (const r of list.querySelectorAll('tr.selected')) r.classList.remove('selected');
    row.classList.add('selected');
    clear(detail);
    try {
      const v = await call(`/api/state/${encodeURIComponent(item.store)}/${encodeURIComponent(item.key)}`);
      detail.append(h('dl.kv', null,
        h('dt', null, 'store'), h('dd', null, v.store),
        h('dt', null, 'key'), h('dd', null, v.key),
        h('dt', null, 'ETag'), h('dd', null, v.etag ?? '—'),
        h('dt', null, 'TTL'), h('dd', null, v.ttl_seconds == null ? 'none' : `${v.ttl_seconds} s`)),
      h('h3', null, 'Value'), h('pre.value', null, v.value_text ?? ''));
    } catch (err) { detail.append(errorBox(err)); }
  }

  async function load() {
    clear(list);
    let items;
    try { items = await call('/api/state' + query({ prefix: prefix.value.trim(), limit: 500 })); } catch (err) { list.append(errorBox(err)); return; }
    count.textContent = `${items.length} keys`;
    if (!items.length) { list.append(h('div.empty', null, 'No keys with this prefix.')); return; }
    list.append(table(['store', 'key', 'ETag', 'TTL', 'size'], items.map((item) => {
      const row = h('tr.clickable', null,
        h('td.dim', null, item.store), h('td.mono', null, item.key), h('td.mono', null, item.etag ?? ''),
        h('td.num', null, item.ttl_seconds == null ? '' : `${item.ttl_seconds} s`), h('td.num', null, bytes(item.size)));
      row.addEventListener('click', () => open(item, row));
      return row;
    })));
  }
  load();
  return null;
};

// ---------------------------------------------------------------------------------------------
// Emails

views.emails = (root) => {
  const list = h('div');
  const detail = h('div.panel', null, h('div.dim', null, 'Select an email.'));
  root.append(h('h2', null, 'Emails'), h('div.toolbar', null, h('button', { type: 'button', onclick: () => load() }, 'Refresh')),
    h('div.split', null, list, detail));

  async function open(item, row) {
    for (const r of list.querySelectorAll('tr.selected')) r.classList.remove('selected');
    row.classList.add('selected');
    clear(detail);
    try {
      const mail = await call(`/api/emails/${encodeURIComponent(item.id)}`);
      detail.append(table(['header', 'value'], (mail.headers || []).map(([k, v]) => h('tr', null, h('td.dim.nowrap', null, k), h('td.mono', null, v)))));
      if (mail.text != null) detail.append(h('h3', null, 'Text'), h('pre.mail-text', null, mail.text));
      if (mail.html != null) {
        // The HTML part is rendered only inside an iframe sandboxed with no permissions at all:
        // no scripts, no forms, a unique origin, so nothing in it can reach this page.
        const frame = h('iframe.html-mail', { sandbox: '', title: 'HTML part', referrerpolicy: 'no-referrer' });
        frame.srcdoc = mail.html;
        detail.append(h('h3', null, 'HTML'), frame);
      }
    } catch (err) { detail.append(errorBox(err)); }
  }

  async function load() {
    clear(list);
    let mails;
    try { mails = await call('/api/emails'); } catch (err) { list.append(errorBox(err)); return; }
    if (!mails.length) { list.append(h('div.empty', null, 'No emails written in this run.')); return; }
    list.append(table(['date', 'to', 'subject', 'size'], mails.map((m) => {
      const row = h('tr.clickable.email', { dataset: { id: m.id } },
        h('td.dim.nowrap', null, m.date || ''), h('td', null, m.to || ''), h('td.subject', null, m.subject || ''), h('td.num', null, bytes(m.size)));
      row.addEventListener('click', () => open(m, row));
      return row;
    })));
  }
  load();
  return null;
};

// ---------------------------------------------------------------------------------------------
// Traces: a list, and a waterfall per trace

views.traces = (root, traceId) => (traceId ? waterfall(root, traceId) : traceList(root));

function traceList(root) {
  const body = h('div');
  root.append(h('h2', null, 'Traces'), h('div.toolbar', null, h('button', { type: 'button', onclick: () => load() }, 'Refresh')), body);
  async function load() {
    let traces;
    try { traces = await call('/api/traces?limit=200'); } catch (err) { clear(body); body.append(errorBox(err)); return; }
    clear(body);
    if (!traces.length) { body.append(h('div.empty', null, 'No traces received yet.')); return; }
    body.append(table(['start', 'root', 'services', 'spans', 'duration', 'trace id'], traces.map((t) => {
      const row = h('tr.clickable.trace', { dataset: { traceId: t.trace_id } },
        h('td.dim.nowrap', null, time(nanosToDate(t.start_unix_nano))),
        h('td', null, h('span.dim', null, (t.root_service || '?') + ' '), t.root_name || '(root not received)'),
        h('td', null, (t.services || []).join(', ')),
        h('td.num', null, String(t.span_count)),
        h('td.num', null, ms(t.duration_ms)),
        h('td.mono.dim', null, t.trace_id));
      row.addEventListener('click', () => { location.hash = '#/traces/' + encodeURIComponent(t.trace_id); });
      return row;
    })));
  }
  load();
  return null;
}

// Orders spans depth first (children by start time) with their depth; spans whose parent was not
// received are shown as roots.
function spanTree(spans) {
  const ids = new Set(spans.map((s) => s.span_id));
  const children = new Map();
  const roots = [];
  for (const s of spans) {
    if (s.parent_span_id && ids.has(s.parent_span_id)) {
      if (!children.has(s.parent_span_id)) children.set(s.parent_span_id, []);
      children.get(s.parent_span_id).push(s);
    } else roots.push(s);
  }
  const byStart = (a, b) => (BigInt(a.start_unix_nano) < BigInt(b.start_unix_nano) ? -1 : 1);
  const out = [];
  const walk = (s, depth) => {
    out.push({ span: s, depth });
    for (const c of (children.get(s.span_id) || []).sort(byStart)) walk(c, depth + 1);
  };
  for (const r of roots.sort(byStart)) walk(r, 0);
  return out;
}

function waterfall(root, traceId) {
  const body = h('div');
  const detail = h('div.panel', null, h('div.dim', null, 'Select a span for its attributes.'));
  root.append(h('h2', null, h('a', { href: '#/traces' }, 'Traces'), ' / ', h('span.mono', null, traceId)), body, h('h3', null, 'Span'), detail);
  (async () => {
    let trace;
    try { trace = await call('/api/traces/' + encodeURIComponent(traceId)); } catch (err) {
      body.append(err.status === 404 ? h('div.empty', null, 'This trace has not been received (yet).') : errorBox(err));
      return;
    }
    const spans = trace.spans || [];
    if (!spans.length) { body.append(h('div.empty', null, 'No spans.')); return; }
    const start = spans.reduce((m, s) => (BigInt(s.start_unix_nano) < m ? BigInt(s.start_unix_nano) : m), BigInt(spans[0].start_unix_nano));
    const end = spans.reduce((m, s) => (BigInt(s.end_unix_nano) > m ? BigInt(s.end_unix_nano) : m), BigInt(spans[0].end_unix_nano));
    const total = Number(end - start) || 1;
    const totalMs = total / 1e6;
    body.append(h('div.wf-scale', null, h('span', null, '0'), h('span', null, ms(totalMs / 2)), h('span', null, ms(totalMs))));
    const rows = h('div.waterfall');
    for (const { span, depth } of spanTree(spans)) {
      const from = Number(BigInt(span.start_unix_nano) - start);
      const dur = Number(BigInt(span.end_unix_nano) - BigInt(span.start_unix_nano));
      const bar = h('div.wf-bar', { class: /error/i.test(String(span.status || '')) ? 'error' : null });
      // Positions are set through the CSSOM, which the page's CSP allows (style attributes it does not).
      bar.style.left = (100 * from / total) + '%';
      bar.style.width = (100 * dur / total) + '%';
      const label = h('div.wf-label', { title: `${span.service} ${span.name}` }, h('span.svc', null, span.service), span.name);
      label.style.paddingLeft = (depth * 14) + 'px';
      // The duration goes after the bar, before it when the bar ends near the right edge, or
      // inside it when the bar spans nearly the whole trace.
      const durLabel = h('span.wf-dur', null, ms(dur / 1e6));
      const startPct = 100 * from / total;
      const endPct = 100 * (from + dur) / total;
      if (endPct <= 85) durLabel.style.left = endPct + '%';
      else if (startPct >= 15) { durLabel.style.right = (100 - startPct) + '%'; durLabel.classList.add('before'); }
      else { durLabel.style.left = startPct + '%'; durLabel.classList.add('inside'); }
      const row = h('div.wf-row', { dataset: { spanId: span.span_id, depth: String(depth) } }, label, h('div.wf-track', null, bar, durLabel));
      row.addEventListener('click', () => {
        for (const r of rows.querySelectorAll('.selected')) r.classList.remove('selected');
        row.classList.add('selected');
        clear(detail);
        detail.append(h('dl.kv', null,
          [['service', span.service], ['name', span.name], ['kind', span.kind], ['status', span.status], ['span id', span.span_id],
            ['parent', span.parent_span_id || '—'], ['duration', ms(dur / 1e6)]].map(([k, v]) => [h('dt', null, k), h('dd', null, v ?? '')]),
          Object.entries(span.attributes || {}).map(([k, v]) => [h('dt', null, k), h('dd', null, typeof v === 'string' ? v : pretty(v))]),
          (span.links || []).length ? [h('dt', null, 'links'), h('dd', null, pretty(span.links))] : null));
      });
      rows.append(row);
    }
    body.append(rows);
  })();
  return null;
}

// ---------------------------------------------------------------------------------------------
// Logs, live

const LOG_LINES = 2000;

views.logs = (root) => {
  const app = h('input', { type: 'search', name: 'app', placeholder: 'all apps' });
  const level = h('select', { name: 'level' }, ['', 'ERROR', 'WARN', 'INFO', 'DEBUG', 'TRACE'].map((l) => h('option', { value: l }, l || 'any level')));
  const follow = h('input', { type: 'checkbox', checked: true });
  const box = h('div.logs');
  root.append(h('h2', null, 'Logs'),
    h('form.toolbar', { onsubmit: (e) => { e.preventDefault(); load(); } },
      h('label', null, 'app', app), h('label', null, 'level', level), h('button', { type: 'submit' }, 'Filter'),
      h('label', null, follow, 'follow')),
    box);
  level.addEventListener('change', () => load());
  let filter = { app: '', level: '' };
  const matches = (l) => (!filter.app || l.app === filter.app)
    && (!filter.level || String(l.level || '').toUpperCase() === filter.level);

  const line = (l) => {
    return h('div.log-line', { class: l.stream, dataset: { app: l.app } },
      h('span.dim', null, time(l.at)), h('span', null, who(l.app, l.instance)), h('span', { class: 'level-' + (l.level || '') }, l.level || ''),
      h('span.msg', null, l.message || l.line || ''));
  };
  const add = (l) => {
    box.append(line(l));
    while (box.childElementCount > LOG_LINES) box.firstElementChild.remove();
    if (follow.checked) box.scrollTop = box.scrollHeight;
  };

  async function load() {
    filter = { app: app.value.trim(), level: level.value };
    clear(box);
    let lines;
    try { lines = await call('/api/logs' + query(Object.assign({ limit: 500 }, filter))); } catch (err) { box.append(errorBox(err)); return; }
    // The API answers newest first where it keeps a ring; show them in time order.
    lines.sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0));
    for (const l of lines) add(l);
  }
  const off = subscribe('log', (l) => { if (matches(l)) add(l); });
  load();
  return off;
};

// ---------------------------------------------------------------------------------------------

window.addEventListener('hashchange', route);
startStream();
route();
