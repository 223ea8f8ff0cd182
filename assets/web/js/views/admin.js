// The administrator's pages: users (search, create, CSV import) and templates.
import { api, post, ApiError } from '../api.js';
import { h, show, field, table, when, notice, values } from '../dom.js';

const ROLES = ['student', 'proctor', 'administrator'];

export async function users(app, query = '') {
  const page = await api('GET', `/api/v1/users?per_page=200${query ? `&q=${encodeURIComponent(query)}` : ''}`);
  const search = h('form', { role: 'search', class: 'inline', onsubmit: e => { e.preventDefault(); users(app, search.q.value.trim()); } },
    field('Search users', h('input', { name: 'q', type: 'search', value: query })),
    h('button', { type: 'submit' }, 'Search'));
  const form = h('form', { class: 'card', onsubmit: create },
    h('h2', {}, 'New user'),
    field('Username', h('input', { name: 'username', required: true, autocomplete: 'off' })),
    field('Name', h('input', { name: 'nickname' })),
    field('Email', h('input', { name: 'email', type: 'email' })),
    field('Role', h('select', { name: 'role' }, ROLES.map(r => h('option', { value: r }, r)))),
    field('Groups', h('input', { name: 'groups' }), 'Comma-separated, e.g. proctor groups.'),
    field('First password', h('input', { name: 'password', type: 'password', autocomplete: 'new-password' }), 'The user must change it at first sign-in.'),
    h('button', { type: 'submit' }, 'Create user'));
  const csv = h('textarea', { name: 'csv', rows: 6, placeholder: 'username,nickname,email,role,groups,password' });
  const report = h('div', { 'aria-live': 'polite' });
  const importer = h('form', { class: 'card', onsubmit: e => e.preventDefault() },
    h('h2', {}, 'Import from CSV'),
    field('CSV rows (with a header line)', csv),
    h('div', { class: 'row' },
      h('button', { type: 'button', onclick: () => load(true) }, 'Check (dry run)'),
      h('button', { type: 'button', onclick: () => load(false) }, 'Import')),
    report);
  show(
    h('h1', {}, 'Users'), search,
    table(`${page.total} users`, [
      ['Username', u => u.username],
      ['Name', u => u.nickname],
      ['Role', u => u.role],
      ['Groups', u => u.groups.join(', ')],
      ['State', u => u.disabled ? 'disabled' : u.locked ? 'locked' : 'active'],
      ['Created', u => when(u.created_at)],
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
      notice(`User ${body.username} created.`);
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
        h('p', {}, `${r.rows} rows, ${r.dry_run ? 'would create' : 'created'} ${r.created}, ${r.errors.length} errors.`),
        r.errors.length ? table('Rows with errors', [
          ['Line', x => x.line], ['Column', x => x.column], ['Problem', x => x.message]], r.errors) : null);
      if (!dryRun && !r.errors.length) await users(app, query);
    } catch (e) {
      notice(e.message, 'error');
    }
  }
}

const ADDONS = [
  ['webcam', 'Webcam'], ['microphone', 'Microphone'], ['screen', 'Screen sharing'],
  ['face_check', 'Face check'], ['id_document', 'ID document'], ['chat', 'Chat'],
  ['recording', 'Recording'], ['lock_on_violation', 'Lock on violation'], ['second_camera', 'Second camera'],
];

export async function templates(app) {
  const list = await api('GET', '/api/v1/templates');
  const form = h('form', { class: 'card', onsubmit: create },
    h('h2', {}, 'New template'),
    field('Identifier', h('input', { name: 'id', required: true, pattern: '[a-z0-9][a-z0-9_\\-]*', placeholder: 'final-exam' })),
    field('Name', h('input', { name: 'name', required: true })),
    h('fieldset', {}, h('legend', {}, 'Addons'),
      ADDONS.map(([key, label]) => h('label', { class: 'check' }, h('input', { type: 'checkbox', name: `addon-${key}` }), label))),
    field('Exam page shown beside the panel', h('input', { name: 'exam_url', type: 'url', placeholder: 'https://lms.example/quiz/1' })),
    field('Review threshold (score below it is flagged)', h('input', { name: 'threshold', type: 'number', min: 0, max: 100, value: 70 })),
    field('Sampling period (seconds)', h('input', { name: 'period_secs', type: 'number', min: 1, value: 10 })),
    h('button', { type: 'submit' }, 'Create template'));
  show(
    h('h1', {}, 'Templates'),
    table('Templates of this host', [
      ['Identifier', t => t.id], ['Name', t => t.name], ['Version', t => t.version],
      ['Addons', t => ADDONS.filter(([k]) => t.addons[k]).map(([, l]) => l).join(', ') || '—'],
      ['Threshold', t => t.threshold], ['Period', t => `${t.period_secs} s`],
    ], list),
    form);

  async function create(event) {
    event.preventDefault();
    const v = values(form);
    const addons = Object.fromEntries(ADDONS.map(([k]) => [k, form[`addon-${k}`].checked]));
    if (v.exam_url) addons.exam_url = v.exam_url;
    const body = { id: v.id, name: v.name, addons, threshold: Number(v.threshold ?? 70), period_secs: Number(v.period_secs ?? 10) };
    try {
      await post('/api/v1/templates', body);
      notice(`Template ${body.name} created.`);
      await templates(app);
    } catch (e) {
      notice(e.message, 'error');
    }
  }
}
