// The administrator's settings of their own host: its title, the webhook
// that receives session results (address, signing secret, the outbox), and
// what the manager decides (term, volume, retention) for reference.
import { t } from '../i18n.js';
import { api, post } from '../api.js';
import { h, show, field, table, when, notice, values } from '../dom.js';

export async function page(app) {
  const [host, outbox] = await Promise.all([api('GET', '/api/v1/settings'), api('GET', '/api/v1/webhooks')]);
  const general = h('form', { class: 'card', onsubmit: event => save(event, general, v => ({ title: v.title })) },
    h('h2', {}, t('Host')),
    field(t('Title'), h('input', { name: 'title', required: true, value: host.title })),
    h('button', { type: 'submit' }, t('Save')));
  const webhook = h('form', { class: 'card', onsubmit: event => save(event, webhook, v => ({ webhook_url: v.webhook_url || null })) },
    h('h2', {}, t('Webhook')),
    h('p', {}, t('When a session stops or is concluded, invigil POSTs its result to this address, signed with the secret below (Standard Webhooks), and retries until the address answers.')),
    field(t('Address'), h('input', { name: 'webhook_url', type: 'url', value: host.webhook_url ?? '', placeholder: 'https://lms.school.example/invigil' }), t('Empty: no webhook.')),
    h('div', { class: 'row' },
      h('button', { type: 'submit' }, t('Save')),
      h('button', { type: 'button', onclick: rotate }, t('New signing secret'))));
  show(
    h('h1', {}, t('Settings')),
    general,
    webhook,
    table(t('Webhook messages waiting or given up'), [
      [t('Event'), m => m.event],
      [t('Session'), m => h('a', { href: `#/session/${encodeURIComponent(m.session)}` }, m.session)],
      [t('Attempts'), m => String(m.attempts)],
      [t('Next attempt'), m => m.given_up ? t('given up') : when(Math.floor(m.next_at_ms / 1000))],
      [t('Last error'), m => m.last_error ?? '—'],
    ], outbox.messages, t('Every message has been delivered.')),
    h('section', { class: 'card' },
      h('h2', {}, t('Set by the manager')),
      h('dl', {},
        h('dt', {}, t('Domains')), h('dd', {}, host.domains.join(', ')),
        h('dt', {}, t('Valid until')), h('dd', {}, when(host.valid_until)),
        h('dt', {}, t('Sessions used')), h('dd', {}, host.volume == null ? String(host.sessions_used) : `${host.sessions_used} / ${host.volume}`),
        h('dt', {}, t('Retention')), h('dd', {}, host.retention_days ? t('{n} days', { n: host.retention_days }) : '—'))));

  async function save(event, form, body) {
    event.preventDefault();
    try {
      await api('PATCH', '/api/v1/settings', body(values(form)));
      await page(app);
      notice(t('Settings saved.'));
    } catch (e) {
      notice(e.message, 'error');
    }
  }

  async function rotate() {
    try {
      const fresh = await post('/api/v1/webhooks/secret');
      await page(app);
      document.getElementById('view').append(h('p', { class: 'card secret' }, t('New signing secret (give it to the receiving system; shown only now):'), ' ', h('code', { id: 'webhook-secret' }, fresh.secret)));
    } catch (e) {
      notice(e.message, 'error');
    }
  }
}
