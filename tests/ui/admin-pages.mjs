// The manager's and administrators' own pages in a real Chromium: the
// instance status, a host's settings (title, webhook address, a new signing
// secret shown once), the session list's CSV export and groups, each
// checked with axe-core.
//
// Usage: node admin-pages.mjs   (BASE, MANAGER_PASSWORD, INVIGIL_UI_MODULES in the environment)
import assert from 'node:assert/strict';
import { launch, person, accessible, signIn, BASE, MANAGER_PASSWORD } from './lib.mjs';

const run = await launch('admin-pages', 90_000);
const manager = await person(run.browser, 'manager');
await signIn(manager, 'manager', MANAGER_PASSWORD);

// Instance status: the figures the server reports, in words.
await manager.getByRole('link', { name: 'Instance' }).click();
await manager.getByRole('heading', { name: 'Instance' }).waitFor();
const status = await manager.locator('main').innerText();
for (const expected of ['self-signed, valid until', 'embedded, port', 'GiB free of', 'workers,']) {
  assert.ok(status.includes(expected), `the instance page lacks "${expected}":\n${status}`);
}
assert.match(status, /Engine\s+(tract|onnxruntime)/);
await accessible(manager, 'instance');

// Settings: the title and the webhook are saved and shown again after a
// reload (each save re-renders the page, so each step starts from a fresh load).
async function settingsPage() {
  await manager.goto(`${BASE}/#/settings`);
  await manager.getByRole('heading', { name: 'Settings', exact: true }).waitFor();
  // The page renders again once the signed-in user is known; wait for that.
  await manager.waitForLoadState('networkidle');
}
await manager.getByRole('link', { name: 'Settings' }).click();
await manager.getByRole('heading', { name: 'Settings', exact: true }).waitFor();
await manager.getByLabel('Title', { exact: true }).fill('North School');
await manager.getByRole('button', { name: 'Save' }).first().click();
await manager.getByText('Settings saved.').waitFor();
await settingsPage();
await manager.getByLabel('Address', { exact: true }).fill('https://lms.school.example/invigil');
await manager.getByRole('button', { name: 'Save' }).nth(1).click();
await manager.getByText('Settings saved.').waitFor();
await settingsPage();
assert.equal(await manager.getByLabel('Title', { exact: true }).inputValue(), 'North School');
assert.equal(await manager.getByLabel('Address', { exact: true }).inputValue(), 'https://lms.school.example/invigil');
// A refused address is explained, and the saved one stays.
await manager.getByLabel('Address', { exact: true }).fill('ftp://lms.school.example/hook');
await manager.getByRole('button', { name: 'Save' }).nth(1).click();
await manager.locator('#notice .error').waitFor();
assert.match(await manager.locator('#notice').innerText(), /webhook_url/);
await manager.getByRole('button', { name: 'New signing secret' }).click();
assert.match(await manager.locator('#webhook-secret').innerText(), /^whsec_/);
await accessible(manager, 'settings');

// The session list offers its CSV export.
await manager.getByRole('link', { name: 'Sessions' }).click();
await manager.getByRole('heading', { name: 'Sessions' }).waitFor();
const csv = await manager.evaluate(async () => {
  const r = await fetch(document.getElementById('sessions-csv').href);
  return { status: r.status, type: r.headers.get('content-type'), head: (await r.text()).split('\n')[0] };
});
assert.equal(csv.status, 200, JSON.stringify(csv));
assert.match(csv.type, /^text\/csv/);
assert.match(csv.head, /^id,identifier,student,/);
await accessible(manager, 'sessions');

// Groups: people added to a group and removed again.
await manager.evaluate(async () => {
  for (const [username, role] of [['ann', 'student'], ['pat', 'proctor']]) {
    const r = await fetch('/api/v1/users', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, role, password: 'Temporary pass 1' }) });
    if (r.status !== 201) throw new Error(`creating ${username}: ${r.status}`);
  }
});
await manager.getByRole('link', { name: 'Groups' }).click();
await manager.getByRole('heading', { name: 'Groups', exact: true }).waitFor();
await manager.getByText('No groups yet').waitFor();
await manager.getByLabel('Group', { exact: true }).fill('room-7');
await manager.getByLabel('Usernames', { exact: true }).fill('ann, pat');
await manager.getByRole('button', { name: 'Add', exact: true }).click();
await manager.getByText('Added to room-7.').waitFor();
await manager.getByRole('cell', { name: 'room-7', exact: true }).waitFor();
await accessible(manager, 'groups');
await manager.getByRole('button', { name: 'Remove from room-7' }).first().click();
await manager.getByText('Groups of ann saved.').waitFor();
assert.equal(await manager.getByRole('button', { name: 'Remove from room-7' }).count(), 1);
await manager.getByLabel('Usernames', { exact: true }).fill('nobody');
await manager.getByLabel('Group', { exact: true }).fill('room-7');
await manager.getByRole('button', { name: 'Add', exact: true }).click();
assert.match(await manager.locator('#notice .error').innerText(), /No such user: nobody/);

await run.finish({});
