// The console of a real run (`sidecar run -f dapr.yaml` with the four services), in headless
// Chromium. Started by the Rust test `console::the_console_shows_a_task_moving_through_the_run`
// (crates/e2e/tests/it/console.rs), which starts the run and passes where everything listens:
//   CONSOLE_URL    the console's base URL
//   TASK_API_URL   task-api's own URL, with TASK_API_TOKEN a bearer token for it
//   PUBLISH_URL    task-api's sidecar publish endpoint for task-created
//                  (http://127.0.0.1:PORT/v1.0/publish/todo-pubsub/task-created)
//   SCREENSHOTS    the folder the screenshots of every view go to (docs/console to refresh them)
// Exits 0 when every check passed; otherwise prints the failure and exits 1.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import assert from 'node:assert/strict';
import { openBrowser, watch, until } from './lib/browser.mjs';

const HOSTILE = '<img src=x onerror=alert(1)>';
const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run this through the e2e test (cargo test -p e2e console)`);
  return v;
};
const CONSOLE = env('CONSOLE_URL').replace(/\/$/, '');
const TASK_API = env('TASK_API_URL').replace(/\/$/, '');
const TASK_API_TOKEN = env('TASK_API_TOKEN');
const PUBLISH = env('PUBLISH_URL');
const SHOTS = env('SCREENSHOTS');
const SUBSCRIBERS = ['email-worker', 'reminder-scheduler', 'audit-logger'];
const LONG = 60_000;

const steps = [];
const step = async (name, fn) => {
  const t0 = Date.now();
  await fn();
  steps.push(`${name} (${Date.now() - t0} ms)`);
  console.log(`ok - ${name} (${Date.now() - t0} ms)`);
};

async function shoot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: false });
}

async function view(page, hash, ready) {
  await page.goto(`${CONSOLE}/${hash}`);
  await page.locator(ready).first().waitFor({ state: 'attached', timeout: LONG });
}

async function main() {
  const browser = await openBrowser();
  try {
    const page = await browser.context.newPage();
    const problems = watch(page);
    let task;
    let deadId;

    await step('the Apps view lists the four services, running', async () => {
      await view(page, '#/apps', '.card[data-app]');
      await until('four running apps', LONG, async () => {
        const cards = await page.locator('.card[data-app]').evaluateAll((cs) => cs.map((c) => c.dataset.app));
        return SUBSCRIBERS.concat('task-api').every((a) => cards.includes(a));
      });
      assert.match(await page.locator('.card[data-app="email-worker"]').textContent(), /task-created/);
      await shoot(page, 'apps');
    });

    await step('a task created through the API appears live with its deliveries', async () => {
      await view(page, '#/events', '#events');
      await until('the live stream', LONG, async () => (await page.locator('#stream-status').getAttribute('data-state')) === 'live');
      const response = await fetch(`${TASK_API}/api/tasks`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${TASK_API_TOKEN}` },
        body: JSON.stringify({ title: HOSTILE, priority: 'high' }),
      });
      const body = await response.text();
      assert.equal(response.status, 201, `creating the task: ${body}`);
      task = JSON.parse(body);
      // No reload: the event arrives through the page's stream.
      const card = page.locator(`article.event[data-topic="task-created"]`).filter({ hasText: task.id });
      await card.first().waitFor({ timeout: LONG });
      await until('a SUCCESS delivery to each subscriber', LONG, async () => {
        const rows = await card.first().locator('tr.delivery').evaluateAll((rs) => rs.map((r) => [r.dataset.subscriber, r.dataset.outcome]));
        return SUBSCRIBERS.every((s) => rows.some(([sub, outcome]) => sub === s && outcome === 'SUCCESS'));
      });
      const summary = await card.first().locator('.outcomes').textContent();
      for (const s of SUBSCRIBERS) assert.match(summary, new RegExp(`${s} SUCCESS`));
      // The CloudEvent shows the hostile title as text.
      await card.first().locator('details summary').click();
      assert.match(await card.first().locator('pre.cloudevent').textContent(), /<img src=x onerror=alert\(1\)>/);
      await shoot(page, 'events');
    });

    await step('the email for the task is in the Emails view, its title as text', async () => {
      await view(page, '#/emails', '#view table, #view .empty');
      const row = page.locator('tr.email').filter({ hasText: `New task: ${HOSTILE}` });
      await until('the New task email', LONG, async () => {
        if (await row.count()) return true;
        await page.locator('#view .toolbar button').click();
        await page.waitForLoadState();
        return false;
      });
      await row.first().click();
      const text = await page.locator('pre.mail-text').textContent({ timeout: LONG });
      assert.ok(text.includes(task.id), `the email's text names the task: ${text}`);
      assert.ok(text.includes(HOSTILE), 'the title is in the text part, as text');
      await shoot(page, 'emails');
    });

    await step('a dropped event is dead-lettered and replayed from the page', async () => {
      // An envelope without task or user: email-worker cannot decode it and answers DROP, so its
      // sidecar publishes it to email-worker-dead-letters, where audit-logger stores it.
      deadId = randomUUID();
      const published = await fetch(PUBLISH, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ event_id: deadId, event_type: 'task-created', note: 'no task in this envelope' }),
      });
      assert.ok(published.status === 204 || published.status === 200, `publishing: ${published.status}`);
      await view(page, '#/dead-letters', '#view table, #view .empty');
      const row = page.locator(`tr.dead-letter[data-event-id="${deadId}"]`);
      await until('the dead letter dropped by email-worker', LONG, async () => {
        if ((await row.count()) && /email-worker/.test(await row.textContent())) return true;
        await page.locator('#view .toolbar button').click();
        return false;
      });
      const [answer] = await Promise.all([
        page.waitForResponse((r) => r.url().endsWith(`/api/dead-letters/${deadId}/replay`), { timeout: LONG }),
        row.locator('button.replay').click(),
      ]);
      assert.equal(answer.status(), 202, `the replay's answer: ${await answer.text()}`);
      assert.equal(answer.request().headers()['x-console-action'], 'replay');
      await until('the row to show the replay', LONG, async () => {
        const r = page.locator(`tr.dead-letter[data-event-id="${deadId}"]`);
        return (await r.count()) && /replayed/.test(await r.locator('.badge').last().textContent());
      });
      await shoot(page, 'dead-letters');
      // The event itself, in the Events view, carries email-worker's dead-lettered DROP.
      await page.goto(`${CONSOLE}/#/events`);
      const card = page.locator('article.event').filter({ hasText: deadId });
      await until('the dead-lettered delivery', LONG, async () => (await card.locator('tr.delivery.dead[data-subscriber="email-worker"]').count()) > 0);
    });

    await step('State lists the task under task-api', async () => {
      await view(page, '#/state', '#view table, #view .empty');
      await page.locator('input[name="prefix"]').fill('task-api');
      await page.locator('#view form button').click();
      const key = page.locator('#view table tr.clickable').filter({ hasText: task.id });
      await key.first().waitFor({ timeout: LONG });
      await key.first().click();
      const value = await page.locator('pre.value').textContent({ timeout: LONG });
      assert.ok(value.includes(HOSTILE), `the stored task holds the title as text: ${value.slice(0, 300)}`);
      await shoot(page, 'state');
    });

    await step('Traces list the run and the task\'s trace opens as a waterfall', async () => {
      await view(page, '#/traces', '#view table, #view .empty');
      await until('a trace', LONG, async () => {
        if (await page.locator('tr.trace').count()) return true;
        await page.locator('#view .toolbar button').click();
        return false;
      });
      await shoot(page, 'traces');
      await page.goto(`${CONSOLE}/#/events`);
      const link = page.locator('article.event[data-topic="task-created"]').filter({ hasText: task.id }).locator('a.trace-link');
      await link.first().waitFor({ timeout: LONG });
      await link.first().click();
      await until('spans of several services', LONG, async () => {
        const services = await page.locator('.wf-row .svc').allTextContents();
        if (new Set(services).size >= 2) return true;
        await page.reload();
        return false;
      });
      assert.ok(await page.locator('.wf-row[data-depth="1"]').count(), 'a child span is indented under its parent');
      await page.locator('.wf-row').first().click();
      await shoot(page, 'trace');
    });

    await step('Logs show the apps\' output, filtered by app', async () => {
      await view(page, '#/logs', '.log-line');
      await page.locator('input[name="app"]').fill('task-api');
      await page.locator('#view form button[type="submit"]').click();
      await until('only task-api lines', LONG, async () => {
        const apps = await page.locator('.log-line').evaluateAll((ls) => ls.map((l) => l.dataset.app));
        return apps.length > 0 && apps.every((a) => a === 'task-api');
      });
      await shoot(page, 'logs');
    });

    assert.equal(await page.locator('img').count(), 0, 'an <img> element exists: data was parsed as HTML');
    // A trace opened before all its spans arrived is a 404 the page explains; nothing else may fail.
    const unexpected = problems.filter((p) => !/^HTTP 404 for .*\/api\/traces\/[0-9a-f]+$/.test(p));
    assert.deepEqual(unexpected, [], 'no dialog, no page error, no failed request');
    console.log(`console e2e: ${steps.length} passed, 0 failed`);
  } finally {
    await browser.close();
  }
}

main().then(() => process.exit(0), (err) => {
  console.error(`console e2e failed: ${err.stack || err}`);
  process.exit(1);
});
