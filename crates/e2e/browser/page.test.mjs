// The console page in headless Chromium against a stand-in backend with hostile data
// (lib/fixture-server.mjs): every view renders, data stays text, live updates land, replay sends
// its guard header, the waterfall nests spans, a token travels on every call.
//   node --test page.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { openBrowser, watch, until } from './lib/browser.mjs';
import { startFixtureServer, HOSTILE } from './lib/fixture-server.mjs';

let browser;
let server;

before(async () => {
  browser = await openBrowser();
  server = await startFixtureServer();
});
after(async () => {
  await browser?.close();
  await server?.close();
});

async function open(hash, base = server.url) {
  const page = await browser.context.newPage();
  const problems = watch(page);
  await page.goto(`${base}/${hash}`);
  return { page, problems };
}

// No element parsed from data: the only <img> a hostile string could create is absent.
async function assertNoInjectedMarkup(page, problems) {
  assert.equal(await page.locator('img').count(), 0, 'an <img> element exists: data was parsed as HTML');
  assert.deepEqual([...problems], []);
}

const VIEWS = [
  ['#/apps', '.card[data-app="email-worker"]'],
  ['#/events', 'article.event'],
  ['#/dead-letters', 'tr.dead-letter'],
  ['#/state', 'table tr.clickable'],
  ['#/emails', 'tr.email'],
  ['#/traces', 'tr.trace'],
  ['#/logs', '.log-line'],
];

for (const [hash, selector] of VIEWS) {
  test(`${hash} renders hostile data as text`, async () => {
    const { page, problems } = await open(hash);
    await page.locator(selector).first().waitFor({ timeout: 10_000 });
    await page.getByText(HOSTILE, { exact: false }).first().waitFor({ timeout: 10_000 });
    assert.equal(await page.locator('#nav a.active').getAttribute('data-view'), hash.slice(2));
    await assertNoInjectedMarkup(page, problems);
    await page.close();
  });
}

test('state and email details open from their lists, the HTML part only in a sandboxed iframe', async () => {
  const { page, problems } = await open('#/state');
  await page.locator('table tr.clickable').first().click();
  const value = await page.locator('pre.value').textContent({ timeout: 10_000 });
  assert.match(value, /"title": "<img src=x onerror=alert\(1\)>"/);
  await page.goto(`${server.url}/#/emails`);
  await page.locator('tr.email').first().click();
  assert.equal(await page.locator('pre.mail-text').textContent({ timeout: 10_000 }), `Title: ${HOSTILE}`);
  const frame = page.locator('iframe.html-mail');
  assert.equal(await frame.getAttribute('sandbox'), '');
  assert.match(await frame.evaluate((f) => f.srcdoc), /<script>/);
  // The frame's script cannot run: no dialog, and the page's title is its own.
  await until('the frame to load', 10_000, () => problems.blockedInFrame.length > 0);
  assert.notEqual(await page.title(), 'escaped');
  // The HTML is rendered as HTML there, its script refused.
  assert.equal(await frame.contentFrame().locator('#in-frame b').textContent(), 'bold');
  await assertNoInjectedMarkup(page, problems);
  await page.close();
});

test('a published event appears live, its deliveries attach under it, a lag shows its count', async () => {
  const { page, problems } = await open('#/events');
  await page.locator('article.event').first().waitFor();
  await until('the page to open its stream', 10_000, () => server.streamCount() > 0);
  await until('the stream to be live', 10_000, async () => (await page.locator('#stream-status').getAttribute('data-state')) === 'live');
  server.push('published', { id: 'ev-live', seq: 2, at: new Date().toISOString(), pubsub: 'todo-pubsub', topic: 'task-completed',
    publisher: 'task-api', task_id: 'task-2', trace_id: null, cloudevent: { id: 'ev-live', data: { title: HOSTILE } }, deliveries: [] });
  const card = page.locator('article.event[data-event-id="ev-live"]');
  await card.waitFor({ timeout: 10_000 });
  assert.equal(await page.locator('article.event').first().getAttribute('data-event-id'), 'ev-live', 'newest first');
  for (const [subscriber, outcome] of [['audit-logger', 'SUCCESS'], ['reminder-scheduler', 'ERROR']]) {
    server.push('delivery', { event_id: 'ev-live', subscriber, instance: 1, route: '/events', attempt: 1, outcome, status: 200, latency_ms: 2.5, error: null, dead_lettered: false, at: new Date().toISOString() });
  }
  await until('two delivery rows', 10_000, async () => (await card.locator('tr.delivery').count()) === 2);
  assert.equal(await card.locator('tr.delivery[data-subscriber="reminder-scheduler"]').getAttribute('data-outcome'), 'ERROR');
  assert.match(await card.locator('.outcomes').textContent(), /audit-logger SUCCESS.*reminder-scheduler ERROR/);
  // The fixture's event: a retry and a dead-lettered drop, marked as such.
  const fixture = page.locator('article.event[data-event-id="ev-1"]');
  assert.match(await fixture.locator('tr.delivery.dead').textContent(), /DROP.*dead-lettered/);
  assert.match(await fixture.locator('tr.delivery').first().textContent(), /RETRY/);
  assert.equal(await fixture.locator('a.trace-link').getAttribute('href'), `#/traces/${server.trace}`);
  // A filter on another topic hides what does not match, live ones too.
  await page.locator('input[name="topic"]').fill('task-created');
  await page.locator('form.toolbar button[type="submit"]').click();
  await until('the filtered list', 10_000, async () => (await page.locator('article.event').count()) === 1);
  server.push('published', { id: 'ev-other', seq: 3, at: new Date().toISOString(), pubsub: 'todo-pubsub', topic: 'task-completed', publisher: 'task-api', deliveries: [] });
  server.push('lagged', { dropped: 7 });
  await until('the lag banner', 10_000, async () => /7 stream messages dropped/.test(await page.locator('#lagged').textContent()));
  assert.equal(await page.locator('article.event[data-event-id="ev-other"]').count(), 0);
  await assertNoInjectedMarkup(page, problems);
  await page.close();
});

test('replay posts with the guard header and shows the new status', async () => {
  const { page, problems } = await open('#/dead-letters');
  const row = page.locator('tr.dead-letter[data-event-id="dl-1"]');
  await row.waitFor();
  await row.locator('button.replay').click();
  await until('the replayed status', 10_000, async () => /replayed/.test(await page.locator('tr.dead-letter[data-event-id="dl-1"]').textContent()));
  const post = server.requests.find((r) => r.method === 'POST');
  assert.equal(post.path, '/api/dead-letters/dl-1/replay');
  assert.equal(post.headers['x-console-action'], 'replay');
  await assertNoInjectedMarkup(page, problems);
  await page.close();
});

test('the waterfall indents children under parents and places bars by time', async () => {
  const { page, problems } = await open(`#/traces/${server.trace}`);
  const rows = page.locator('.wf-row');
  await until('three spans', 10_000, async () => (await rows.count()) === 3);
  assert.deepEqual(await rows.evaluateAll((rs) => rs.map((r) => [r.dataset.spanId, r.dataset.depth])), [['a1', '0'], ['b2', '1'], ['c3', '2']]);
  const bars = await page.locator('.wf-bar').evaluateAll((bs) => bs.map((b) => [parseFloat(b.style.left), parseFloat(b.style.width)]));
  assert.deepEqual(bars.map(([l, w]) => [Math.round(l), Math.round(w)]), [[0, 100], [25, 25], [55, 40]]);
  assert.equal(await page.locator('.wf-bar.error').count(), 1);
  await rows.nth(0).click();
  assert.match(await page.locator('dl.kv').textContent(), /http\.route<img src=x onerror=alert\(1\)>/);
  await assertNoInjectedMarkup(page, problems);
  await page.close();
});

test('a token on the page URL goes on every API call and on the stream', async () => {
  const guarded = await startFixtureServer({ token: 's3cret' });
  try {
    const { page, problems } = await open('?token=s3cret#/events', guarded.url);
    await page.locator('article.event').first().waitFor({ timeout: 10_000 });
    await until('the stream', 10_000, () => guarded.streamCount() > 0);
    const api = guarded.requests.filter((r) => r.path.startsWith('/api/'));
    assert.ok(api.length >= 2);
    for (const r of api) {
      assert.ok(r.headers.authorization === 'Bearer s3cret' || new URLSearchParams(r.search).get('token') === 's3cret', `${r.path} without the token`);
    }
    assert.deepEqual([...problems], []);
    await page.close();
  } finally {
    await guarded.close();
  }
});
