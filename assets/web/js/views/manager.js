// The manager's page: the institutions (hosts) this instance serves.
import { t, number } from '../i18n.js';
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
      [t('Retention'), x => x.retention_days ? t('{n} days', { n: x.retention_days }) : '—'],
      [t('State'), x => t(x.disabled ? 'suspended' : 'active')],
      ['', x => h('button', { type: 'button', class: 'link', onclick: () => edit(x) }, t('Edit'))],
    ], list),
    form);

  // Term, volume, retention and suspension of one host, in the same form.
  function edit(host) {
    const day = host.valid_until ? new Date(host.valid_until * 1000).toISOString().slice(0, 10) : '';
    const editor = h('form', { class: 'card', onsubmit: save },
      h('h2', {}, t('Edit {name}', { name: host.title })),
      field(t('Title'), h('input', { name: 'title', required: true, value: host.title })),
      field(t('Sessions allowed'), h('input', { name: 'volume', type: 'number', min: 0, value: host.volume ?? '' }), t('Empty: unlimited.')),
      field(t('Valid until'), h('input', { name: 'valid_until', type: 'date', value: day })),
      field(t('Retention (days)'), h('input', { name: 'retention_days', type: 'number', min: 1, value: host.retention_days ?? '' }), t('Empty: kept until deleted.')),
      h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'disabled', checked: host.disabled }), t('Suspended (no sign-in, no new sessions)')),
      h('button', { type: 'submit' }, t('Save')));
    form.replaceWith(editor);
    editor.querySelector('input').focus();

    async function save(event) {
      event.preventDefault();
      const v = values(editor);
      const body = {
        title: v.title,
        volume: v.volume ? Number(v.volume) : null,
        valid_until: v.valid_until ? Math.floor(new Date(`${v.valid_until}T23:59:59`).getTime() / 1000) : null,
        retention_days: v.retention_days ? Number(v.retention_days) : null,
        disabled: editor.disabled.checked,
      };
      try {
        await api('PATCH', `/api/v1/hosts/${encodeURIComponent(host.id)}`, body);
        notice(t('Host {name} saved.', { name: body.title }));
        await hosts(app);
      } catch (e) {
        notice(e.message, 'error');
      }
    }
  }

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

/** A size in GiB, or MiB below one GiB, in the interface's language. */
function gib(bytes) {
  return bytes < 2 ** 30 ? t('{n} MiB', { n: number(bytes / 2 ** 20) }) : t('{n} GiB', { n: number(bytes / 2 ** 30) });
}

// The instance at a glance: version, TLS, storage, TURN, recognition, the
// live hub and the last backup, from GET /api/v1/instance/status.
export async function instance(app) {
  const s = await api('GET', '/api/v1/instance/status');
  const disk = s.storage.disk;
  const rec = s.recognition;
  const backup = s.last_backup;
  const facts = (title, rows) => h('section', { class: 'card' },
    h('h2', {}, title),
    h('dl', { class: 'facts' }, ...rows.flatMap(([term, value]) => [h('dt', {}, term), h('dd', {}, value)])));
  show(
    h('h1', {}, t('Instance')),
    h('div', { class: 'columns' },
      facts(t('Server'), [
        [t('Version'), s.version],
        [t('Running since'), when(s.started_unix)],
        [t('Schema version'), String(s.schema_version)],
        [t('Certificate'), s.tls.cert_expires_unix ? t('{mode}, valid until {date}', { mode: s.tls.mode, date: when(s.tls.cert_expires_unix) }) : s.tls.mode],
      ]),
      facts(t('Storage'), [
        [t('Data directory'), s.storage.data_dir],
        [t('Free space'), disk ? t('{free} free of {total}', { free: gib(disk.free_bytes), total: gib(disk.total_bytes) }) : '—'],
        [t('Database'), s.storage.database_bytes == null ? '—' : gib(s.storage.database_bytes)],
        [t('Objects'), s.storage.objects],
        [t('Last backup'), backup ? t('{date} to {target}', { date: when(backup.created_unix), target: backup.target }) : t('none yet')],
      ]),
      facts(t('TURN relay'), [
        [t('Relay'), s.turn.relay === 'embedded' ? t('embedded, port {port}', { port: s.turn.port }) : t('external: {urls}', { urls: s.turn.urls.join(', ') })],
        [t('Open allocations'), s.turn.allocations == null ? '—' : number(s.turn.allocations)],
      ]),
      facts(t('Recognition'), [
        [t('Engine'), rec.engine],
        ...rec.hosts.map(x => [t('Recognizer {host}', { host: x.host }),
          x.healthy ? t('up, {n} jobs running', { n: x.in_flight }) + (x.busy ? ` · ${t('resting after 429')}` : '') : t('down: {error}', { error: x.last_error ?? '' })]),
        [t('Workers and queue'), t('{threads} workers, {queue} jobs at most', { threads: rec.threads, queue: rec.queue })],
        [t('Snapshots'), t('{analyzed} analysed, {skipped} skipped, {failed} failed', { analyzed: number(rec.snapshots_analyzed), skipped: number(rec.snapshots_skipped), failed: number(rec.snapshots_failed) })],
      ]),
      facts(t('Live hub'), [
        [t('Connections'), number(s.hub.connections)],
        [t('Messages waiting'), number(s.hub.queued)],
      ])),
    h('button', { type: 'button', onclick: () => instance(app) }, t('Refresh')));
}
