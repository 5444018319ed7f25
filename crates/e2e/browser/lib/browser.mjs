// Headless Chromium from Debian's `chromium` package, driven by playwright-core (which downloads
// no browser of its own). The flags keep Chromium from reaching out to Google's services: on a
// machine without a network those connections are refused and slow every start.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/// A browser context on a fresh profile; `close()` ends the browser and removes the profile.
export async function openBrowser() {
  const profile = mkdtempSync(join(tmpdir(), 'console-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1360, height: 860 },
    timeout: 60_000,
  });
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/// Records what must never happen on the console's pages: a JavaScript dialog (the hostile title
/// `<img src=x onerror=alert(1)>` would open one if it were parsed as HTML), an uncaught error,
/// a request for `x` (the hostile image's source).
export function watch(page) {
  const problems = [];
  page.on('dialog', async (d) => {
    problems.push(`dialog opened: ${d.type()} ${JSON.stringify(d.message())}`);
    await d.dismiss().catch(() => {});
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('request', (r) => {
    if (/\/x$/.test(new URL(r.url()).pathname)) problems.push(`hostile image requested: ${r.url()}`);
  });
  page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`); });
  // The sandboxed email frame refusing its script is the sandbox at work, recorded apart.
  problems.blockedInFrame = [];
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    // The frame inherits the page's CSP, so an email's inline styles are refused there too.
    const inFrame = /^Blocked script execution in 'about:srcdoc'/.test(m.text())
      || (/^Applying inline style violates/.test(m.text()) && m.location().url === 'about:srcdoc');
    if (inFrame) problems.blockedInFrame.push(m.text());
    else if (!/^Failed to load resource/.test(m.text())) problems.push(`console error: ${m.text()}`);
  });
  return problems;
}

/// Polls `probe` until it returns a truthy value or `ms` pass.
export async function until(what, ms, probe) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (e) { last = e; }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
