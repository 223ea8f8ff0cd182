// Staff pages: the session list (with the review flag and filters) and one
// session's view: details, score terms, timeline, live chat and actions.
import { api, post } from '../api.js';
import { h, show, field, table, when, notice, values } from '../dom.js';
import { Hub } from '../hub.js';

const STATUSES = ['created', 'started', 'paused', 'stopped', 'concluded'];

export async function list(app, filter = {}) {
  const params = new URLSearchParams(Object.entries(filter).filter(([, v]) => v));
  const found = await api('GET', `/api/v1/sessions?${params}`);
  const filters = h('form', { role: 'search', class: 'inline', onsubmit: e => { e.preventDefault(); list(app, values(filters)); } },
    field('Search', h('input', { name: 'q', type: 'search', value: filter.q ?? '' })),
    field('Status', h('select', { name: 'status' }, h('option', { value: '' }, 'any'),
      STATUSES.map(s => h('option', { value: s, selected: filter.status === s }, s)))),
    field('Review', h('select', { name: 'review' }, h('option', { value: '' }, 'any'),
      h('option', { value: 'true', selected: filter.review === 'true' }, 'flagged for review'))),
    h('button', { type: 'submit' }, 'Filter'));
  const sorted = [...found].sort((a, b) => (a.score ?? 101) - (b.score ?? 101));
  show(
    h('h1', {}, app.me.role === 'proctor' ? 'My sessions' : 'Sessions'),
    filters,
    table('Sessions, lowest score first', [
      ['Student', s => h('a', { href: `#/session/${encodeURIComponent(s.id)}` }, s.student)],
      ['Subject', s => s.subject || '—'],
      ['Status', s => h('span', { class: `status ${s.status}` }, s.status)],
      ['Score', s => s.score == null ? '—' : h('span', { class: s.review ? 'flag' : '' }, `${s.score}${s.review ? ' ⚑ review' : ''}`)],
      ['Started', s => when(s.started_at)],
      ['Tags', s => s.tags.join(', ')],
    ], sorted, 'No sessions match.'),
    app.me.role === 'administrator' || app.me.role === 'manager' ? await createForm(app) : null);
}

async function createForm(app) {
  const templates = await api('GET', '/api/v1/templates');
  const form = h('form', { class: 'card', onsubmit: create },
    h('h2', {}, 'New session'),
    field('Student (username)', h('input', { name: 'student', required: true })),
    field('Template', h('select', { name: 'template', required: true },
      templates.map(t => h('option', { value: t.id }, `${t.name} (${t.id})`)))),
    field('Subject', h('input', { name: 'subject' })),
    field('Proctors', h('input', { name: 'proctors' }), 'Usernames, comma-separated.'),
    field('Proctor group', h('input', { name: 'proctor_group' })),
    field('Duration limit (minutes)', h('input', { name: 'duration_limit', type: 'number', min: 1 })),
    field('Deadline', h('input', { name: 'deadline', type: 'datetime-local' })),
    field('Tags', h('input', { name: 'tags' }), 'Comma-separated.'),
    h('button', { type: 'submit', disabled: !templates.length }, 'Create session'),
    templates.length ? null : h('p', { class: 'hint' }, 'Create a template first.'));
  return form;

  async function create(event) {
    event.preventDefault();
    const v = values(form);
    const split = s => (s ?? '').split(',').map(x => x.trim()).filter(Boolean);
    const body = { student: v.student, template: v.template, proctors: split(v.proctors), tags: split(v.tags) };
    if (v.subject) body.subject = v.subject;
    if (v.proctor_group) body.proctor_group = v.proctor_group;
    if (v.duration_limit) body.duration_limit = Number(v.duration_limit);
    if (v.deadline) body.deadline = Math.floor(new Date(v.deadline).getTime() / 1000);
    try {
      const s = await post('/api/v1/sessions', body);
      notice(`Session for ${s.student} created.`);
      app.go(`#/session/${encodeURIComponent(s.id)}`);
    } catch (e) {
      notice(e.message, 'error');
    }
  }
}

let liveHub = null;

export async function detail(app, id) {
  liveHub?.close();
  const base = `/api/v1/sessions/${encodeURIComponent(id)}`;
  const [s, score, entries] = await Promise.all([api('GET', base), api('GET', `${base}/score`), api('GET', `${base}/protocol?limit=200`)]);
  const chat = h('ol', { class: 'chat', 'aria-label': 'Chat' });
  const timeline = h('ol', { class: 'timeline', 'aria-label': 'Timeline' }, entries.map(entryItem));
  const live = h('p', { class: 'live' }, 'Connecting…');
  const scoreBox = h('div', {}, scoreView(score));
  const statusBox = h('span', { class: `status ${s.status}` }, s.status);
  for (const e of [...entries].reverse()) if (e.kind === 'chat') chat.append(chatItem(e.author, e.data.text, e.time));

  const say = h('form', { class: 'inline', onsubmit: send },
    field('Message to the student', h('input', { name: 'text', required: true, maxlength: 2000 })),
    h('button', { type: 'submit' }, 'Send'));
  const act = (action, label) => h('button', { type: 'button', onclick: () => perform(action) }, label);
  const conclude = h('form', { class: 'card', onsubmit: concludeSession },
    h('h2', {}, 'Conclusion'),
    h('fieldset', {}, h('legend', {}, 'Result'),
      h('label', { class: 'check' }, h('input', { type: 'radio', name: 'positive', value: 'true', required: true }), 'Positive (no violation)'),
      h('label', { class: 'check' }, h('input', { type: 'radio', name: 'positive', value: 'false' }), 'Negative (violation)')),
    field('Comment', h('textarea', { name: 'comment', rows: 3 })),
    h('button', { type: 'submit' }, 'Conclude'));

  show(
    h('h1', {}, `${s.subject || 'Session'} — ${s.student}`),
    h('p', {}, 'Status: ', statusBox, ` · created ${when(s.created_at)} · started ${when(s.started_at)} · stopped ${when(s.stopped_at)}`),
    s.conclusion ? h('p', { class: 'conclusion' }, `Concluded ${s.conclusion.positive ? 'positive' : 'negative'} by ${s.conclusion.by}${s.conclusion.automatic ? ' (automatic)' : ''}: ${s.conclusion.comment ?? ''}`) : null,
    h('div', { class: 'row' }, act('warn', 'Warn'), act('pause', 'Pause'), act('resume', 'Resume'), act('stop', 'Stop')),
    live,
    h('div', { class: 'columns' },
      h('section', { class: 'card' }, h('h2', {}, 'Score'), scoreBox),
      h('section', { class: 'card' }, h('h2', {}, 'Chat'), chat, say)),
    s.status === 'stopped' ? conclude : null,
    h('section', {}, h('h2', {}, 'Timeline'), timeline));

  liveHub = new Hub(frame => {
    if (frame.session !== id) return;
    if (frame.type === 'joined') live.textContent = `Live: ${frame.status}`;
    if (frame.type === 'presence') live.textContent = `In the room: ${frame.members.map(m => m.user ?? m).join(', ')}`;
    if (frame.type === 'chat') chat.append(chatItem(frame.author, frame.text, frame.time));
    if (frame.type === 'status') { statusBox.textContent = frame.status; statusBox.className = `status ${frame.status}`; }
    if (frame.type === 'metrics') api('GET', `${base}/score`).then(sc => scoreBox.replaceChildren(scoreView(sc))).catch(() => {});
  }, state => { if (state === 'offline') live.textContent = 'Reconnecting…'; });
  liveHub.join(id);
  window.addEventListener('hashchange', () => liveHub?.close(), { once: true });

  async function send(event) {
    event.preventDefault();
    try {
      await liveHub.request({ type: 'chat', session: id, text: say.text.value });
      chat.append(chatItem(app.me.username, say.text.value, Date.now() / 1000));
      say.reset();
    } catch (e) {
      notice(e.message, 'error');
    }
  }

  async function perform(action) {
    try {
      if (action === 'warn') {
        await liveHub.request({ type: 'action', session: id, action: 'warn', comment: 'Please keep to the exam rules.' });
        notice('Warning sent.');
      } else {
        await post(`${base}/${action}`);
        await detail(app, id);
      }
    } catch (e) {
      notice(e.message, 'error');
    }
  }

  async function concludeSession(event) {
    event.preventDefault();
    try {
      await post(`${base}/conclude`, { positive: conclude.positive.value === 'true', comment: conclude.comment.value });
      await detail(app, id);
    } catch (e) {
      notice(e.message, 'error');
    }
  }
}

function scoreView(score) {
  return h('div', {},
    h('p', { class: 'score' }, `Credibility ${score.score} (review below ${score.threshold})${score.review ? ' ⚑ flagged for review' : ''}`),
    table('Score terms w·x', [
      ['Metric', t => `${t.metric} — ${t.meaning}`], ['Weight', t => t.weight], ['Average', t => t.average], ['Penalty', t => t.penalty],
    ], score.terms.filter(t => t.penalty > 0), 'No penalties.'));
}

function chatItem(author, text, time) {
  return h('li', {}, h('strong', {}, author), ' ', h('time', {}, when(Math.floor(time))), h('p', {}, text));
}

function entryItem(e) {
  const detail = e.kind === 'chat' ? e.data.text : JSON.stringify(e.data);
  return h('li', { class: `entry ${e.kind}` }, h('time', {}, when(e.time)), ` ${e.kind} · ${e.author}: `, detail);
}
