// The administrator's integration page: API keys for an LMS or scripts, and
// the secrets that sign JWT links (two stay valid while an LMS switches).
import { t } from '../i18n.js';
import { api, post } from '../api.js';
import { h, show, field, table, when, notice, values } from '../dom.js';

export async function page(app) {
  const [keys, secrets] = await Promise.all([api('GET', '/api/v1/keys'), api('GET', '/api/v1/jwt-secrets')]);
  const shown = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'card', onsubmit: create },
    h('h2', {}, t('New API key')),
    field(t('Name'), h('input', { name: 'name', required: true, placeholder: 'moodle' })),
    field(t('Access'), h('select', { name: 'scope' },
      h('option', { value: 'read' }, t('read only')), h('option', { value: 'write' }, t('read and write')))),
    h('button', { type: 'submit' }, t('Create key')),
    shown);
  show(
    h('h1', {}, t('Integration')),
    table(t('API keys'), [
      [t('Name'), k => k.name],
      [t('Access'), k => t(k.write ? 'read and write' : 'read only')],
      [t('Created'), k => when(k.created_at)],
      [t('Last used'), k => when(k.last_used)],
      [t('State'), k => k.revoked ? t('revoked') : h('button', { type: 'button', class: 'link', onclick: () => revoke(k) }, t('Revoke'))],
    ], keys, t('No API keys yet.')),
    form,
    h('section', { class: 'card' },
      h('h2', {}, t('JWT link secrets')),
      h('p', {}, t('Links from a learning platform are signed with the newest secret; the previous one stays valid until the next rotation, so the platform can switch without downtime.')),
      table(t('Valid secrets'), [[t('Identifier'), s => s.id], [t('Created'), s => when(s.created_at)]], secrets),
      h('button', { type: 'button', onclick: rotate }, t('Rotate secret'))));

  async function create(event) {
    event.preventDefault();
    try {
      const created = await post('/api/v1/keys', values(form));
      await page(app);
      notice(t('Key {name} created. Copy the token now: it is not shown again.', { name: created.name }));
      document.getElementById('view').append(h('p', { class: 'card secret' }, t('Token:'), ' ', h('code', { id: 'new-token' }, created.token)));
    } catch (e) {
      notice(e.message, 'error');
    }
  }

  async function revoke(key) {
    try {
      await api('DELETE', `/api/v1/keys/${encodeURIComponent(key.id)}`);
      await page(app);
    } catch (e) {
      notice(e.message, 'error');
    }
  }

  async function rotate() {
    try {
      const fresh = await post('/api/v1/jwt-secrets');
      await page(app);
      document.getElementById('view').append(h('p', { class: 'card secret' }, t('New secret (give it to the learning platform; shown only now):'), ' ', h('code', {}, fresh.secret)));
    } catch (e) {
      notice(e.message, 'error');
    }
  }
}
