// An exam day in a real Chromium with a fake camera and microphone: the
// manager prepares users, a template and a session through the interface; the
// student signs in, changes the first password, passes the system check and
// starts; the proctor watches, chats and warns. Every page is checked with
// axe-core, and any console error or CSP violation fails the run.
//
// Usage: node exam-day.mjs   (BASE, MANAGER_PASSWORD, INVIGIL_UI_MODULES in the environment)
import assert from 'node:assert/strict';
import { launch, person as open, accessible, until, signIn, BASE, MANAGER_PASSWORD } from './lib.mjs';

const run = await launch('exam-day', 240_000);
const person = name => open(run.browser, name);

async function firstSignIn(page, username, first, chosen) {
  await signIn(page, username, first);
  await page.getByRole('heading', { name: 'Choose a new password' }).waitFor();
  await accessible(page, 'password change');
  await page.getByLabel('Current password', { exact: true }).fill(first);
  await page.getByLabel('New password', { exact: true }).fill(chosen);
  await page.getByLabel('New password again', { exact: true }).fill(chosen);
  await page.getByRole('button', { name: 'Change password' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
}

// The manager prepares the exam.
const admin = await person('manager');
// The interface speaks Russian when asked, and keeps the choice.
await admin.goto(`${BASE}/`);
await admin.getByLabel('Language').selectOption('ru');
await admin.getByRole('button', { name: 'Войти' }).waitFor();
assert.equal(await admin.evaluate(() => document.documentElement.lang), 'ru');
await admin.getByLabel('Язык').selectOption('en');
await admin.getByRole('button', { name: 'Sign in' }).waitFor();
await signIn(admin, 'manager', 'wrong password');
await admin.locator('#notice .error').waitFor();
await accessible(admin, 'sign-in');
await signIn(admin, 'manager', MANAGER_PASSWORD);
await admin.getByRole('link', { name: 'Users' }).click();
await admin.getByRole('heading', { name: 'Users' }).waitFor();
for (const [username, role] of [['ann', 'student'], ['pat', 'proctor']]) {
  await admin.getByLabel('Username', { exact: true }).fill(username);
  await admin.getByLabel('Name', { exact: true }).fill(`${username} <b>not bold</b>`);
  await admin.getByLabel('Role', { exact: true }).selectOption(role);
  await admin.getByLabel('First password', { exact: true }).fill('Temporary pass 1');
  await admin.getByRole('button', { name: 'Create user' }).click();
  await admin.getByRole('cell', { name: username, exact: true }).waitFor();
}
// Names are shown as text, never as markup.
assert.equal(await admin.locator('main b').count(), 0, 'a user name was rendered as HTML');
await admin.getByLabel('CSV rows (with a header line)', { exact: true }).fill('username,role\nbob,student\n,student\n');
await admin.getByRole('button', { name: 'Check (dry run)' }).click();
await admin.getByText('2 rows, would create 0, 1 errors.').waitFor();
await accessible(admin, 'users');

await admin.getByRole('link', { name: 'Templates' }).click();
await admin.getByLabel('Identifier', { exact: true }).fill('final');
await admin.getByLabel('Name', { exact: true }).fill('Final exam');
await admin.getByLabel('Webcam', { exact: true }).check();
await admin.getByLabel('Face check', { exact: true }).check();
await admin.getByLabel('Chat', { exact: true }).check();
await admin.getByLabel('Recording', { exact: true }).check();
await admin.getByLabel('b2 — focus moved to another window').fill('0.5');
await admin.getByRole('button', { name: 'Create template' }).click();
await admin.getByRole('cell', { name: 'Final exam' }).waitFor();
await accessible(admin, 'templates');

await admin.getByRole('link', { name: 'Sessions' }).click();
await admin.getByLabel('Student (username)', { exact: true }).fill('ann');
await admin.getByLabel('Subject', { exact: true }).fill('Physics');
await admin.getByLabel('Proctors', { exact: true }).fill('pat');
await admin.getByLabel('Duration limit (minutes)', { exact: true }).fill('60');
await admin.getByRole('button', { name: 'Create session' }).click();
await admin.waitForURL(/#\/session\//);
const sessionId = decodeURIComponent(admin.url().split('#/session/')[1]);
await admin.getByRole('heading', { name: 'Physics — ann' }).waitFor();
await admin.getByLabel('Kind', { exact: true }).selectOption('extra_time');
await admin.getByLabel('Minutes', { exact: true }).fill('20');
await admin.getByLabel('Reason', { exact: true }).fill('dyslexia');
await admin.getByRole('button', { name: 'Grant' }).click();
await admin.getByText('20 minutes extra time — dyslexia').waitFor();
await accessible(admin, 'session view');

// The student: first sign-in, system check with the fake camera, start.
const ann = await person('student');
await firstSignIn(ann, 'ann', 'Temporary pass 1', 'Ann chosen pass 1');
await ann.getByRole('heading', { name: 'My exams' }).waitFor();
await ann.getByRole('link', { name: 'Physics' }).click();
await ann.getByText('Camera and microphone work.').waitFor();
await ann.getByText('The proctor can receive your video (relay reachable).').waitFor({ timeout: 15_000 });
await ann.waitForFunction(() => document.querySelector('video')?.videoWidth > 0);
// The identity check: the fake camera shows a real face, so the photo is
// accepted; the rules come next, then the start.
assert.ok(await ann.getByRole('button', { name: 'Start the exam' }).isDisabled(), 'start before the identity check');
await ann.getByRole('button', { name: 'Take the photo of your face' }).click();
await ann.getByText('Face photo accepted.').waitFor({ timeout: 20_000 });
await ann.getByText('Identity check complete.').waitFor();
await accessible(ann, 'exam');
await ann.getByLabel('I accept these rules.', { exact: true }).check();
await ann.getByRole('button', { name: 'Start the exam' }).click({ timeout: 30_000 });
await ann.locator('.status.started').waitFor();
await ann.getByText('Connected to the proctor.').waitFor();

// The proctor: sees the session in their list, chats and warns.
const pat = await person('proctor');
await firstSignIn(pat, 'pat', 'Temporary pass 1', 'Pat chosen pass 1');
await pat.getByRole('link', { name: 'Live wall' }).click();
await pat.locator('.tile', { hasText: 'ann' }).getByText('student online').waitFor();
// The wall's tile shows the camera too, relayed like the session view's.
await pat.waitForFunction(() => document.querySelector('.tile video.remote')?.videoWidth > 0, null, { timeout: 30_000 });
const wallRoute = await pat.evaluate(() => [...window.invigilWall.values()][0].viewer.route());
assert.deepEqual(wallRoute, ['relay', 'relay'], `wall tile's candidate pair ${wallRoute}`);
await accessible(pat, 'live wall');
await pat.getByRole('link', { name: 'My sessions' }).click();
await pat.getByRole('link', { name: 'ann' }).click();
await pat.getByText(/^Live: started|^In the room/).waitFor();
// The identity check's result, with the stored photo.
await pat.waitForFunction(() => document.querySelector('.identity-view img')?.naturalWidth > 0);
await pat.getByText('no profile photo to compare').waitFor();
// The student's camera arrives over relay-only ICE through invigil's TURN.
await pat.waitForFunction(() => document.querySelector('video.remote')?.videoWidth > 0, null, { timeout: 30_000 });
const route = await pat.evaluate(() => window.invigilViewer.route());
assert.deepEqual(route, ['relay', 'relay'], `selected candidate pair ${route}`);
await ann.getByLabel('Message', { exact: true }).fill('My calculator is allowed?');
await ann.getByRole('button', { name: 'Send' }).click();
await pat.getByText('My calculator is allowed?').waitFor();
await pat.getByLabel('Message to the student', { exact: true }).fill('Yes, a simple one.');
await pat.getByRole('button', { name: 'Send' }).click();
await ann.getByText('Yes, a simple one.').waitFor();
await pat.getByRole('button', { name: 'Warn' }).click();
await ann.locator('.warnings li').waitFor();
await pat.getByRole('button', { name: 'Lock screen', exact: true }).click();
await ann.getByRole('alertdialog', { name: 'Exam locked' }).waitFor();
await pat.getByRole('button', { name: 'Unlock screen', exact: true }).click();
await ann.getByRole('alertdialog', { name: 'Exam locked' }).waitFor({ state: 'hidden' });
await accessible(pat, 'proctor session view');

// The student's network drops for 30 s mid-exam: recording goes on into
// IndexedDB and everything is sent after the reconnect.
await ann.context().setOffline(true);
await new Promise(resolve => setTimeout(resolve, 30_000));
const waiting = await ann.evaluate(() => window.invigilRecorder.queued());
assert.ok(waiting > 0, 'nothing was buffered while offline');
await ann.context().setOffline(false);
await ann.getByText('Connected to the proctor.').waitFor({ timeout: 20_000 });
// Sent once the browser notices it is back online (the uploader retries with
// a growing pause of up to 15 s).
await until(ann, async () => (await window.invigilRecorder.queued()) === 0 && window.invigilRecorder.stats.sent > 0, 90_000);
// Every acknowledged byte is stored, in chunks the server has in order.
const sent = await ann.evaluate(() => window.invigilRecorder.stats.sent);
const stored = await pat.evaluate(async () => {
  const id = location.hash.split('/')[2];
  const uploads = await (await fetch(`/api/v1/sessions/${id}/uploads`)).json();
  return { bytes: uploads.reduce((n, u) => n + u.offset, 0), kinds: uploads.map(u => u.kind) };
});
assert.ok(stored.bytes >= sent && sent > 0, `stored ${JSON.stringify(stored)}, acknowledged ${sent}`);
assert.ok(stored.kinds.includes('webcam') && stored.kinds.includes('snapshot'), JSON.stringify(stored.kinds));
// The proctor plays the recording back and sees the snapshots.
await pat.reload();
await pat.waitForFunction(() => document.querySelector('.recordings video')?.videoWidth > 0, null, { timeout: 20_000 });
await pat.waitForFunction(() => document.querySelector('.snapshots img')?.naturalWidth > 0, null, { timeout: 20_000 });
// A timeline entry plays the recording from its moment: an entry a few
// seconds into the first webcam recording, before any later one began (the
// page is loaded again until the exam has gone on long enough to have one).
const findEntry = () => pat.evaluate(async () => {
  const id = location.hash.split('/')[2];
  const uploads = await (await fetch(`/api/v1/sessions/${id}/uploads`)).json();
  const starts = uploads.filter(u => u.kind === 'webcam').map(u => u.created_at).sort((a, b) => a - b);
  const [start, next = Infinity] = starts;
  const items = [...document.querySelectorAll('.timeline li')];
  const index = items.findIndex(li => Number(li.dataset.time) >= start + 2 && Number(li.dataset.time) < next - 1);
  return { index, offset: index < 0 ? null : Number(items[index].dataset.time) - start };
});
let entry = await findEntry();
for (let tries = 0; entry.index < 0 && tries < 10; tries++) {
  await new Promise(resolve => setTimeout(resolve, 3000));
  await pat.reload();
  await pat.waitForFunction(() => document.querySelector('.recordings video')?.videoWidth > 0, null, { timeout: 20_000 });
  entry = await findEntry();
}
assert.ok(entry.index >= 0, 'no timeline entry a few seconds into the first recording');
await pat.locator('.timeline li').nth(entry.index).getByRole('button', { name: 'play' }).click();
await until(pat, () => {
  const v = [...document.querySelectorAll('.recordings video')].find(x => !x.paused);
  return v && !v.seeking && v.currentTime > 0;
}, 20_000);
const position = await pat.evaluate(() => [...document.querySelectorAll('.recordings video')].find(x => !x.paused).currentTime);
assert.ok(Math.abs(position - entry.offset) < 3, `playing at ${position} s, the entry is at ${entry.offset} s`);

// The proctor stops the exam; the student's page follows; conclusion.
await pat.getByRole('button', { name: 'Stop' }).click();
await ann.locator('.status.stopped').waitFor();
await pat.getByLabel('Negative (violation)', { exact: true }).check();
await pat.getByLabel('Comment', { exact: true }).fill('Looked at a phone twice.');
await pat.getByRole('button', { name: 'Conclude' }).click();
await pat.getByText('Concluded negative by pat').waitFor();

// Integration: an API key whose token is shown once.
await admin.getByRole('link', { name: 'Integration' }).click();
await admin.getByLabel('Name', { exact: true }).fill('lms');
await admin.getByLabel('Access', { exact: true }).selectOption('write');
await admin.getByRole('button', { name: 'Create key' }).click();
assert.match(await admin.locator('#new-token').innerText(), /^ivk_/);
await accessible(admin, 'integration');

// "Try it": the demo's student link lands in the demo exam in a fresh window.
await admin.getByRole('link', { name: 'Try it' }).click();
await admin.getByRole('button', { name: 'Prepare a demo exam' }).click();
const studentLink = await admin.locator('#student-link').getAttribute('href');
assert.match(await admin.locator('#proctor-password').innerText(), /^Demo-/);
await accessible(admin, 'try it');
const visitor = await person('demo student');
await visitor.goto(studentLink);
await visitor.getByRole('heading', { name: 'Demo exam' }).waitFor();
await visitor.getByLabel('I accept these rules.', { exact: true }).check();
await visitor.getByRole('button', { name: 'Start the exam' }).click({ timeout: 30_000 });
await visitor.locator('.status.started').waitFor();

await run.finish({ session: sessionId });
