// The administrator's pages: users (search, create, CSV import) and templates.
import { t } from '../i18n.js';
import { api, post, ApiError } from '../api.js';
import { h, show, field, table, when, notice, values } from '../dom.js';
import { METRICS } from '../metrics.js';

const ROLES = ['student', 'proctor', 'administrator'];

export async function users(app, query = '') {
  const page = await api('GET', `/api/v1/users?per_page=200${query ? `&q=${encodeURIComponent(query)}` : ''}`);
  const search = h('form', { role: 'search', class: 'inline', onsubmit: e => { e.preventDefault(); users(app, search.q.value.trim()); } },
    field(t('Search users'), h('input', { name: 'q', type: 'search', value: query })),
    h('button', { type: 'submit' }, t('Search')));
  const form = h('form', { class: 'card', onsubmit: create },
    h('h2', {}, t('New user')),
    field(t('Username'), h('input', { name: 'username', required: true, autocomplete: 'off' })),
    field(t('Name'), h('input', { name: 'nickname' })),
    field(t('Email'), h('input', { name: 'email', type: 'email' })),
    field(t('Role'), h('select', { name: 'role' }, ROLES.map(r => h('option', { value: r }, r)))),
    field(t('Groups'), h('input', { name: 'groups' }), 'Comma-separated, e.g. proctor groups.'),
    field(t('First password'), h('input', { name: 'password', type: 'password', autocomplete: 'new-password' }), 'The user must change it at first sign-in.'),
    h('button', { type: 'submit' }, t('Create user')));
  const csv = h('textarea', { name: 'csv', rows: 6, placeholder: 'username,nickname,email,role,groups,password' });
  const report = h('div', { 'aria-live': 'polite' });
  const importer = h('form', { class: 'card', onsubmit: e => e.preventDefault() },
    h('h2', {}, t('Import from CSV')),
    field(t('CSV rows (with a header line)'), csv),
    h('div', { class: 'row' },
      h('button', { type: 'button', onclick: () => load(true) }, t('Check (dry run)')),
      h('button', { type: 'button', onclick: () => load(false) }, t('Import'))),
    report);
  show(
    h('h1', {}, t('Users')), search,
    table(t('{n} users', { n: page.total }), [
      [t('Username'), u => u.username],
      [t('Name'), u => u.nickname],
      [t('Role'), u => u.role],
      [t('Groups'), u => u.groups.join(', ')],
      [t('State'), u => t(u.disabled ? 'disabled' : u.locked ? 'locked' : 'active')],
      [t('Created'), u => when(u.created_at)],
    ], page.items),
    h('div', { class: 'columns' }, form, importer));

  async function create(event) {
    event.preventDefault();
    const v = values(form);
    const body = { username: v.username, role: v.role };
    if (v.nickname) body.nickname = v.nickname;
    if (v.email) body.email = v.email;
    if (v.groups) body.groups = v.groups.split(',').map(s => s.trim()).filter(Boolean);
    if (form.password.value) body.password = form.password.value;
    try {
      await post('/api/v1/users', body);
      notice(t('User {name} created.', { name: body.username }));
      await users(app, query);
    } catch (e) {
      notice(e.message, 'error');
    }
  }

  async function load(dryRun) {
    try {
      const response = await fetch(`/api/v1/users/import?dry_run=${dryRun}`, {
        method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'text/csv' }, body: csv.value,
      });
      const r = await response.json();
      if (!response.ok) throw new ApiError(response.status, r.error, r.message);
      report.replaceChildren(
        h('p', {}, t(r.dry_run ? '{rows} rows, would create {created}, {errors} errors.' : '{rows} rows, created {created}, {errors} errors.', { rows: r.rows, created: r.created, errors: r.errors.length })),
        r.errors.length ? table(t('Rows with errors'), [
          [t('Line'), x => x.line], ['Column', x => x.column], ['Problem', x => x.message]], r.errors) : null);
      if (!dryRun && !r.errors.length) await users(app, query);
    } catch (e) {
      notice(e.message, 'error');
    }
  }
}

const ADDONS = [
  ['webcam', 'Webcam'], ['microphone', 'Microphone'], ['screen', 'Screen sharing'],
  ['face_check', 'Face check'], ['id_document', 'ID document'], ['liveness', 'Liveness (head turns)'], ['chat', 'Chat'],
  ['recording', 'Recording'], ['lock_on_violation', 'Lock on violation'], ['second_camera', 'Second camera'],
];

export async function templates(app) {
  const list = await api('GET', '/api/v1/templates');
  const form = h('form', { class: 'card', onsubmit: create },
    h('h2', {}, t('New template')),
    field(t('Identifier'), h('input', { name: 'id', required: true, pattern: '[a-z0-9][a-z0-9_\\-]*', placeholder: 'final-exam' })),
    field(t('Name'), h('input', { name: 'name', required: true })),
    h('fieldset', {}, h('legend', {}, t('Addons')),
      ADDONS.map(([key, label]) => h('label', { class: 'check' }, h('input', { type: 'checkbox', name: `addon-${key}` }), t(label)))),
    h('fieldset', { class: 'weights' }, h('legend', {}, t('Metric weights (penalty per percent of violating time)')),
      METRICS.map(([code, meaning]) => field(`${code} — ${t(meaning)}`, h('input', { name: `w-${code}`, type: 'number', min: 0, max: 10, step: 0.05, value: 0.1 })))),
    field(t('Exam page shown beside the panel'), h('input', { name: 'exam_url', type: 'url', placeholder: 'https://lms.example/quiz/1' })),
    field(t('Review threshold (score below it is flagged)'), h('input', { name: 'threshold', type: 'number', min: 0, max: 100, value: 70 })),
    field(t('Sampling period (seconds)'), h('input', { name: 'period_secs', type: 'number', min: 1, value: 10 })),
    h('button', { type: 'submit' }, t('Create template')));
  show(
    h('h1', {}, t('Templates')),
    table(t('Templates of this host'), [
      [t('Identifier'), x => x.id], [t('Name'), x => x.name], [t('Version'), x => x.version],
      [t('Addons'), x => ADDONS.filter(([k]) => x.addons[k]).map(([, l]) => t(l)).join(', ') || '—'],
      [t('Threshold'), x => x.threshold], [t('Period'), x => `${x.period_secs} s`],
    ], list),
    form);

  async function create(event) {
    event.preventDefault();
    const v = values(form);
    const addons = Object.fromEntries(ADDONS.map(([k]) => [k, form[`addon-${k}`].checked]));
    if (v.exam_url) addons.exam_url = v.exam_url;
    const weights = Object.fromEntries(METRICS.map(([code]) => [code, Number(form[`w-${code}`].value || 0)]).filter(([, w]) => w > 0));
    const body = { id: v.id, name: v.name, addons, weights, threshold: Number(v.threshold ?? 70), period_secs: Number(v.period_secs ?? 10) };
    try {
      await post('/api/v1/templates', body);
      notice(t('Template {name} created.', { name: body.name }));
      await templates(app);
    } catch (e) {
      notice(e.message, 'error');
    }
  }
}
