// What every browser script shares: Debian's Chromium with a fake camera and
// microphone, one context per person with console errors and CSP violations
// collected, axe-core checks with a screenshot of each checked page, and
// polling of async conditions.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const require = createRequire(path.join(process.env.INVIGIL_UI_MODULES, 'package.json'));
const { chromium } = require('playwright-core');
const axeSource = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const shots = process.env.SCREENSHOTS;
if (shots) fs.mkdirSync(shots, { recursive: true });

export const BASE = process.env.BASE;
export const MANAGER_PASSWORD = process.env.MANAGER_PASSWORD;
export const problems = [];
const pages = [];

/** Starts the browser; the run fails with exit code 3 after `ms`. */
export async function launch(name, ms) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
      ...(process.env.FAKE_CAMERA ? [`--use-file-for-fake-video-capture=${process.env.FAKE_CAMERA}`] : [])],
  });
  const timer = setTimeout(() => { console.error(`${name}: timed out`); process.exit(3); }, ms);
  // On a failure, what each person saw helps more than a stack trace.
  process.on('uncaughtException', async e => {
    console.error(e.message);
    for (const [who, page] of pages) {
      const text = await page.evaluate(() => `${location.hash}\n${document.getElementById('notice').innerText}\n${document.getElementById('view').innerText}`).catch(() => '?');
      console.error(`--- ${who} saw:\n${text.slice(0, 2000)}`);
    }
    console.error(problems.join('\n'));
    process.exit(1);
  });
  return {
    browser,
    /** Closes the browser and exits: 0, or 1 on problems (2 when one is a CSP violation). */
    async finish(result) {
      clearTimeout(timer);
      await browser.close();
      if (problems.length) {
        console.error(problems.join('\n'));
        process.exit(problems.some(p => /Content Security Policy/i.test(p)) ? 2 : 1);
      }
      console.log(JSON.stringify({ ok: true, ...result }));
    },
  };
}

export async function person(browser, name) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, permissions: ['camera', 'microphone'] });
  const page = await context.newPage();
  page.on('console', m => {
    // The API's expected refusals (401 before sign-in, a wrong password) and
    // an offline period show as failed loads; the page turns them into
    // messages for the user.
    if (m.type() === 'error' && !/Failed to load resource: (the server responded with a status of 4\d\d|net::ERR_INTERNET_DISCONNECTED)/.test(m.text())) {
      problems.push(`${name} console: ${m.text()}`);
    }
  });
  page.on('pageerror', e => problems.push(`${name} page error: ${e.message}`));
  page.setDefaultTimeout(10_000);
  pages.push([name, page]);
  if (process.env.UI_DEBUG) page.on('console', m => console.error(name, 'console', m.type(), m.text()));
  if (process.env.UI_DEBUG) page.on('requestfailed', r => console.error(name, 'FAILED', r.method(), r.url(), r.failure()?.errorText));
  if (process.env.UI_DEBUG) page.on('response', r => console.error(name, r.request().method(), r.status(), r.url()));
  return page;
}

export async function accessible(page, where) {
  if (shots) await page.screenshot({ path: path.join(shots, `${where.replace(/[^a-z0-9]+/gi, '-')}.png`), fullPage: true });
  // Evaluated through the DevTools protocol: our CSP rightly refuses an injected <script>.
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  for (const v of result.violations) {
    if (v.impact === 'serious' || v.impact === 'critical') {
      problems.push(`${where}: axe ${v.impact} ${v.id}: ${v.nodes.map(n => n.target.join(' ')).join(', ')}`);
    }
  }
}

// Polls an async condition in the page (waitForFunction would take the
// promise itself as a truthy answer).
export async function until(page, condition, ms) {
  const end = Date.now() + ms;
  while (!(await page.evaluate(condition))) {
    if (Date.now() > end) throw new Error(`not true within ${ms} ms: ${condition}`);
    await new Promise(resolve => setTimeout(resolve, 500));
  }
}

export async function signIn(page, username, password) {
  await page.goto(`${BASE}/`);
  await page.getByLabel('Username', { exact: true }).fill(username);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}
