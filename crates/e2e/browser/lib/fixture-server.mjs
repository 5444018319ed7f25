// A stand-in for the console's backend that serves the real page assets and answers the console's
// HTTP contract with fixed, hostile data (every text field a piece of HTML), so the page's
// rendering can be tested in a real browser without a run. The server records the requests it
// got and lets a test push stream messages.
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const HOSTILE = '<img src=x onerror=alert(1)>';
const ASSETS = new URL('../../../console/assets/', import.meta.url).pathname;
const CSP = "default-src 'self'; frame-src 'self'; img-src 'self' data:";
const TYPES = { html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' };

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const NOW = Date.UTC(2026, 0, 1, 12, 0, 0);
const nanos = (ms) => String(BigInt(NOW + ms) * 1000000n);

export function fixtures() {
  const event = {
    id: 'ev-1', seq: 1, at: new Date(NOW).toISOString(), pubsub: 'todo-pubsub', topic: 'task-created', publisher: 'task-api',
    task_id: 'task-1', trace_id: TRACE,
    cloudevent: { id: 'ev-1', type: 'task-created', source: 'task-api', data: { task: { title: HOSTILE } } },
    deliveries: [
      { subscriber: 'email-worker', instance: 1, route: '/events/task-created', attempt: 1, outcome: 'RETRY', status: 200, latency_ms: 3.2, error: HOSTILE, dead_lettered: false, at: new Date(NOW + 5).toISOString() },
      { subscriber: 'email-worker', instance: 1, route: '/events/task-created', attempt: 2, outcome: 'DROP', status: 200, latency_ms: 1.1, error: 'recipient rejected', dead_lettered: true, at: new Date(NOW + 40).toISOString() },
    ],
  };
  return {
    apps: [{
      app_id: 'email-worker', instance: 1, pid: 42, state: 'running', exit_status: null, health: 'healthy', app_port: 8081, http_port: 3501,
      subscriptions: [{ pubsub: 'todo-pubsub', topic: 'task-created', route: '/events/task-created', rules: [{ match: HOSTILE, path: '/x' }],
        dead_letter_topic: 'email-worker-dead-letters', consumer_group: 'email-worker', bulk: { enabled: true, max_messages_count: 100, max_await_duration_ms: 50 } }],
      components: [{ name: 'todo-pubsub', type: 'pubsub.in-memory' }],
      resiliency: [{ policy: 'smtp', target: 'email-worker', kind: 'circuitBreaker', breaker_state: 'open' }],
    }],
    events: [event],
    deadLetters: { dead_letters: [{ event_id: 'dl-1', cloud_event_id: 'dl-1', event_type: 'task-created', original_topic: 'task-created', task_id: 'task-1',
      dropped_by: [{ app_id: 'email-worker', dead_letter_topic: 'email-worker-dead-letters', received_at: new Date(NOW).toISOString() }],
      reason: HOSTILE, envelope: '{}', replays: [], status: 'pending' }], next_cursor: null },
    state: [{ store: 'todo-state', key: 'task-api||' + HOSTILE, etag: '3', ttl_seconds: 60, size: 31 }],
    stateValue: { store: 'todo-state', key: 'task-api||' + HOSTILE, etag: '3', ttl_seconds: 60, value_text: `{\n  "title": "${HOSTILE}"\n}` },
    emails: [{ id: 'mail-1', to: 'owner@example.com', from: 'Tasks <tasks@localhost>', subject: 'New task: ' + HOSTILE, date: 'Thu, 1 Jan 2026 12:00:00 +0000', size: 900 }],
    email: { id: 'mail-1', headers: [['Subject', 'New task: ' + HOSTILE]], text: 'Title: ' + HOSTILE,
      html: '<p id="in-frame">Hello <b>bold</b></p><script>parent.document.title = "escaped"; alert(2)</script>' },
    traces: [{ trace_id: TRACE, root_name: 'POST ' + HOSTILE, root_service: 'task-api', services: ['task-api', 'email-worker'], start_unix_nano: nanos(0), duration_ms: 40, span_count: 3 }],
    trace: { trace_id: TRACE, spans: [
      { span_id: 'a1', parent_span_id: null, service: 'task-api', name: 'POST /api/tasks', kind: 'SERVER', start_unix_nano: nanos(0), end_unix_nano: nanos(40), attributes: { 'http.route': HOSTILE }, status: 'OK', links: [] },
      { span_id: 'b2', parent_span_id: 'a1', service: 'task-api', name: 'publish task-created', kind: 'PRODUCER', start_unix_nano: nanos(10), end_unix_nano: nanos(20), attributes: {}, status: 'OK', links: [] },
      { span_id: 'c3', parent_span_id: 'b2', service: 'email-worker', name: HOSTILE, kind: 'CONSUMER', start_unix_nano: nanos(22), end_unix_nano: nanos(38), attributes: {}, status: 'ERROR', links: [] },
    ] },
    logs: [{ seq: 1, at: new Date(NOW).toISOString(), app: 'task-api', instance: 1, stream: 'stdout', level: 'INFO', message: HOSTILE, line: HOSTILE },
      { seq: 2, at: new Date(NOW + 1).toISOString(), app: 'email-worker', instance: 1, stream: 'stderr', level: 'WARN', message: 'smtp slow', line: 'smtp slow' }],
  };
}

/// Starts the server on a free loopback port. `token`, when given, is required on every call.
export async function startFixtureServer({ token } = {}) {
  const data = fixtures();
  const requests = [];
  const streams = new Set();
  const json = (res, status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    requests.push({ method: req.method, path: url.pathname, search: url.search, headers: req.headers });
    const p = url.pathname;
    if (p === '/' || p.startsWith('/assets/')) {
      const file = p === '/' ? 'index.html' : p.slice('/assets/'.length);
      if (!/^[a-z]+\.(html|js|css)$/.test(file)) { res.writeHead(404); res.end(); return; }
      res.writeHead(200, { 'content-type': TYPES[file.split('.')[1]], 'content-security-policy': CSP });
      res.end(readFileSync(join(ASSETS, file)));
      return;
    }
    if (token && req.headers.authorization !== `Bearer ${token}` && url.searchParams.get('token') !== token) {
      json(res, 401, { error: 'token required' });
      return;
    }
    if (p === '/api/stream') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write(': hello\n\n');
      streams.add(res);
      req.on('close', () => streams.delete(res));
      return;
    }
    if (p === '/api/apps') return json(res, 200, data.apps);
    if (p === '/api/events') return json(res, 200, data.events);
    if (p === '/api/dead-letters') return json(res, 200, data.deadLetters);
    const replay = p.match(/^\/api\/dead-letters\/([^/]+)\/replay$/);
    if (replay && req.method === 'POST') {
      if (req.headers['x-console-action'] !== 'replay') return json(res, 403, { error: 'X-Console-Action: replay required' });
      const letter = data.deadLetters.dead_letters.find((d) => d.event_id === decodeURIComponent(replay[1]));
      if (!letter) return json(res, 404, { title: 'no such dead letter' });
      letter.status = 'replayed';
      letter.replays.push({ replay_id: 'r-1', replayed_at: new Date().toISOString() });
      return json(res, 202, letter);
    }
    if (p === '/api/state') return json(res, 200, data.state);
    if (p.startsWith('/api/state/')) return json(res, 200, data.stateValue);
    if (p === '/api/emails') return json(res, 200, data.emails);
    if (p.startsWith('/api/emails/')) return json(res, 200, data.email);
    if (p === '/api/traces') return json(res, 200, data.traces);
    if (p === `/api/traces/${TRACE}`) return json(res, 200, data.trace);
    if (p.startsWith('/api/traces/')) return json(res, 404, { error: 'unknown trace' });
    if (p === '/api/logs') return json(res, 200, data.logs);
    res.writeHead(404);
    res.end();
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    trace: TRACE,
    requests,
    streamCount: () => streams.size,
    push(kind, body) {
      for (const s of streams) s.write(`event: ${kind}\ndata: ${JSON.stringify(body)}\n\n`);
    },
    async close() {
      for (const s of streams) s.end();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
