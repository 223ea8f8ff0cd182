// The manager's page: the institutions (hosts) this instance serves.
import { t } from '../i18n.js';
import { api, post } from '../api.js';
import { h, show, field, table, when, notice, values } from '../dom.js';

export async function hosts(app) {
  const list = await api('GET', '/api/v1/hosts');
  const form = h('form', { class: 'card', onsubmit: create },
    h('h2', {}, t('New host')),
    field(t('Domain names'), h('input', { name: 'domains', required: true, placeholder: 'exams.school.example' }), t('Comma-separated names this host answers on.')),
    field(t('Title'), h('input', { name: 'title', required: true })),
    field(t('Sessions allowed'), h('input', { name: 'volume', type: 'number', min: 0 }), t('Empty: unlimited.')),
    field(t('Valid until'), h('input', { name: 'valid_until', type: 'date' })),
    h('button', { type: 'submit' }, t('Create host')));
  show(
    h('h1', {}, t('Hosts')),
    table(t('Hosts of this instance'), [
      [t('Title'), x => x.title],
      [t('Domains'), x => x.domains.join(', ')],
      [t('Sessions used'), x => x.volume == null ? `${x.sessions_used}` : `${x.sessions_used} / ${x.volume}`],
      [t('Valid until'), x => when(x.valid_until)],
      [t('State'), x => x.disabled ? 'disabled' : 'active'],
    ], list),
    form);

  async function create(event) {
    event.preventDefault();
    const v = values(form);
    const body = { domains: (v.domains ?? '').split(',').map(s => s.trim()).filter(Boolean), title: v.title };
    if (v.volume) body.volume = Number(v.volume);
    if (v.valid_until) body.valid_until = Math.floor(new Date(`${v.valid_until}T23:59:59`).getTime() / 1000);
    try {
      await post('/api/v1/hosts', body);
      notice(t('Host {name} created.', { name: body.title }));
      await hosts(app);
    } catch (e) {
      notice(e.message, 'error');
    }
  }
}
