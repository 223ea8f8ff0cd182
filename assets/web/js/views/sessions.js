// Staff pages: the session list (with the review flag and filters) and one
// session's view: details, score terms, timeline, live chat and actions.
import { t, number } from '../i18n.js';
import { api, post } from '../api.js';
import { h, show, field, table, when, notice, values } from '../dom.js';
import { Hub } from '../hub.js';
import { METRICS } from '../metrics.js';
import { Viewer } from '../live.js';
import { identityView } from '../identity.js';

const STATUSES = ['created', 'started', 'paused', 'stopped', 'concluded'];

export async function list(app, filter = {}) {
  const params = new URLSearchParams(Object.entries(filter).filter(([, v]) => v));
  const found = await api('GET', `/api/v1/sessions?${params}`);
  const filters = h('form', { role: 'search', class: 'inline', onsubmit: e => { e.preventDefault(); list(app, values(filters)); } },
    field(t('Search'), h('input', { name: 'q', type: 'search', value: filter.q ?? '' })),
    field(t('Status'), h('select', { name: 'status' }, h('option', { value: '' }, t('any')),
      STATUSES.map(s => h('option', { value: s, selected: filter.status === s }, t(s))))),
    field(t('Review'), h('select', { name: 'review' }, h('option', { value: '' }, t('any')),
      h('option', { value: 'true', selected: filter.review === 'true' }, t('flagged for review')))),
    h('button', { type: 'submit' }, t('Filter')));
  const sorted = [...found].sort((a, b) => (a.score ?? 101) - (b.score ?? 101));
  // The CSV export takes the status filter; a proctor's export has their own sessions only.
  const csv = new URLSearchParams(filter.status ? { status: filter.status } : {});
  show(
    h('h1', {}, t(app.me.role === 'proctor' ? 'My sessions' : 'Sessions')),
    filters,
    h('p', {}, h('a', { href: `/api/v1/reports/sessions.csv?${csv}`, download: 'sessions.csv', id: 'sessions-csv' }, t('Export as CSV (spreadsheet)'))),
    table(t('Sessions, lowest score first'), [
      [t('Student'), s => h('a', { href: `#/session/${encodeURIComponent(s.id)}` }, s.student)],
      [t('Subject'), s => s.subject || '—'],
      [t('Status'), s => h('span', { class: `status ${s.status}` }, t(s.status))],
      [t('Score'), s => s.score == null ? '—' : h('span', { class: s.review ? 'flag' : '' }, `${s.score}${s.review ? ' ⚑ review' : ''}`)],
      [t('Started'), s => when(s.started_at)],
      [t('Tags'), s => s.tags.join(', ')],
    ], sorted, t('No sessions match.')),
    app.me.role === 'administrator' || app.me.role === 'manager' ? await createForm(app) : null);
}

async function createForm(app) {
  const templates = await api('GET', '/api/v1/templates');
  const form = h('form', { class: 'card', onsubmit: create },
    h('h2', {}, t('New session')),
    field(t('Student (username)'), h('input', { name: 'student', required: true })),
    field(t('Template'), h('select', { name: 'template', required: true },
      templates.map(x => h('option', { value: x.id }, `${x.name} (${x.id})`)))),
    field(t('Subject'), h('input', { name: 'subject' })),
    field(t('Proctors'), h('input', { name: 'proctors' }), t('Usernames, comma-separated.')),
    field(t('Proctor group'), h('input', { name: 'proctor_group' })),
    field(t('Duration limit (minutes)'), h('input', { name: 'duration_limit', type: 'number', min: 1 })),
    field(t('Deadline'), h('input', { name: 'deadline', type: 'datetime-local' })),
    field(t('Tags'), h('input', { name: 'tags' }), t('Comma-separated.')),
    h('button', { type: 'submit', disabled: !templates.length }, t('Create session')),
    templates.length ? null : h('p', { class: 'hint' }, t('Create a template first.')));
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
      notice(t('Session for {name} created.', { name: s.student }));
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
  const chat = h('ol', { class: 'chat', tabindex: 0, 'aria-label': t('Chat') });
  const evidence = h('div', { class: 'evidence-list' });
  const player = { recordings: [] };
  loadEvidence(base, evidence, player);
  const timeline = h('ol', { class: 'timeline', tabindex: 0, 'aria-label': t('Timeline') }, entries.map(e => entryItem(e, player)));
  const identity = h('div', {});
  identityView(base).then(view => identity.replaceChildren(view));
  const live = h('p', { class: 'live' }, t('Connecting…'));
  const video = h('video', { class: 'remote', autoplay: true, muted: true, playsinline: true, 'aria-label': t('The student’s camera') });
  const scoreBox = h('div', {}, scoreView(score));
  const statusBox = h('span', { class: `status ${s.status}` }, t(s.status));
  for (const e of [...entries].reverse()) if (e.kind === 'chat') chat.append(chatItem(e.author, e.data.text, e.time));

  const say = h('form', { class: 'inline', onsubmit: send },
    field(t('Message to the student'), h('input', { name: 'text', required: true, maxlength: 2000 })),
    h('button', { type: 'submit' }, t('Send')));
  const act = (action, label) => h('button', { type: 'button', onclick: () => perform(action) }, t(label));
  const conclude = h('form', { class: 'card', onsubmit: concludeSession },
    h('h2', {}, t('Conclusion')),
    h('fieldset', {}, h('legend', {}, t('Result')),
      h('label', { class: 'check' }, h('input', { type: 'radio', name: 'positive', value: 'true', required: true }), t('Positive (no violation)')),
      h('label', { class: 'check' }, h('input', { type: 'radio', name: 'positive', value: 'false' }), t('Negative (violation)'))),
    field(t('Comment'), h('textarea', { name: 'comment', rows: 3 })),
    h('button', { type: 'submit' }, t('Conclude')));

  show(
    h('h1', {}, `${s.subject || t('Session')} — ${s.student}`),
    h('p', {}, t('Status:'), ' ', statusBox, ` · ${t('created')} ${when(s.created_at)} · ${t('started')} ${when(s.started_at)} · ${t('stopped')} ${when(s.stopped_at)}`),
    s.conclusion ? h('p', { class: 'conclusion' }, `${t(s.conclusion.positive ? 'Concluded positive by {by}' : 'Concluded negative by {by}', { by: s.conclusion.by })}${s.conclusion.automatic ? ` (${t('automatic')})` : ''}: ${s.conclusion.comment ?? ''}`) : null,
    h('div', { class: 'row' }, act('warn', 'Warn'), act('lock', 'Lock screen'), act('unlock', 'Unlock screen'),
      act('pause', 'Pause'), act('resume', 'Resume'), act('stop', 'Stop'),
      h('a', { href: `${base}/report`, target: '_blank', rel: 'noopener' }, t('Report')),
      h('a', { href: `${base}/export` }, t('Evidence bundle'))),
    live,
    h('div', { class: 'columns' },
      h('section', { class: 'card' }, h('h2', {}, t('Live video')), video),
      h('section', { class: 'card' }, h('h2', {}, t('Score')), scoreBox),
      h('section', { class: 'card' }, h('h2', {}, t('Chat')), chat, say)),
    s.status === 'stopped' ? conclude : null,
    app.me.role === 'administrator' || app.me.role === 'manager' ? accommodations(s, base, () => detail(app, id)) : null,
    h('section', {}, h('h2', {}, t('Identity check')), identity),
    h('section', {}, h('h2', {}, t('Recordings and snapshots')), evidence),
    h('section', {}, h('h2', {}, t('Timeline')), timeline));

  let viewer = null;
  let studentHere = false;
  liveHub = new Hub(frame => {
    if (frame.session !== id) return;
    if (frame.type === 'joined') {
      live.textContent = t('Live: {status}', { status: t(frame.status) });
      viewer.watch();
    }
    if (frame.type === 'signal') viewer.onSignal(frame).catch(e => notice(e.message, 'error'));
    if (frame.type === 'presence') {
      // Ask for video again whenever the student (re)appears.
      const here = frame.members.some(m => m.role === 'student');
      if (here && !studentHere) viewer.watch();
      studentHere = here;
    }
    if (frame.type === 'presence') live.textContent = t('In the room: {names}', { names: frame.members.map(m => m.user ?? m).join(', ') });
    if (frame.type === 'chat') chat.append(chatItem(frame.author, frame.text, frame.time));
    if (frame.type === 'status') { statusBox.textContent = t(frame.status); statusBox.className = `status ${frame.status}`; }
    if (frame.type === 'metrics') api('GET', `${base}/score`).then(sc => scoreBox.replaceChildren(scoreView(sc))).catch(() => {});
  }, state => { if (state === 'offline') live.textContent = t('Reconnecting…'); });
  viewer = new Viewer(liveHub, id, s.student, video);
  // Exposed for the browser tests, which check that the video is relayed.
  window.invigilViewer = viewer;
  liveHub.join(id);
  window.addEventListener('hashchange', () => { viewer.close(); liveHub?.close(); }, { once: true });

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
      if (action === 'warn' || action === 'lock' || action === 'unlock') {
        const comment = action === 'warn' ? t('Please keep to the exam rules.') : undefined;
        await liveHub.request({ type: 'action', session: id, action, comment });
        notice(t(action === 'warn' ? 'Warning sent.' : action === 'lock' ? 'Screen locked.' : 'Screen unlocked.'));
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

// Recordings play with seeking (the server answers byte ranges); snapshots
// show as thumbnails that open full size.
async function loadEvidence(base, box, player) {
  try {
    const uploads = await api('GET', `${base}/uploads`);
    const recordings = uploads.filter(u => u.kind !== 'snapshot');
    const snapshots = uploads.filter(u => u.kind === 'snapshot' && u.complete);
    box.replaceChildren(...[
      recordings.length ? h('div', { class: 'recordings' }, recordings.map(u => {
        const video = h('video', { src: u.href, controls: true, preload: 'metadata' });
        player.recordings.push({ kind: u.kind, start: u.created_at, video });
        return h('figure', {}, video,
          h('figcaption', {}, `${t(u.kind)} · ${when(u.created_at)} · ${number(u.offset / 1048576)} MiB${u.complete ? '' : ` (${t('still recording')})`}`));
      }))
        : h('p', { class: 'empty' }, t('No recordings yet.')),
      snapshots.length ? h('div', { class: 'snapshots' }, snapshots.map(u =>
        h('a', { href: u.href, target: '_blank', rel: 'noopener' }, h('img', { src: u.href, alt: `${t('Snapshot')} ${when(u.created_at)}`, loading: 'lazy' })))) : null,
    ].filter(Boolean));
  } catch (e) {
    box.replaceChildren(h('p', { class: 'error' }, e.message));
  }
}

// Per-student exemptions, each recorded with who granted it and why.
function accommodations(s, base, reload) {
  const kind = h('select', { name: 'kind' },
    h('option', { value: 'extra_time' }, t('Extra time')),
    h('option', { value: 'metric_off' }, t('A metric off')),
    h('option', { value: 'weight' }, t('A weight changed')));
  const form = h('form', { class: 'card', onsubmit: grant },
    h('h2', {}, t('Accommodations')),
    s.accommodations.length
      ? h('ul', {}, s.accommodations.map(a => h('li', {}, `${describe(a.grant)} — ${a.reason || '—'} (${a.granted_by}, ${when(a.at)})`)))
      : h('p', { class: 'empty' }, t('None granted.')),
    field(t('Kind'), kind),
    field(t('Minutes'), h('input', { name: 'minutes', type: 'number', min: 1, value: 15 })),
    field(t('Metric'), h('select', { name: 'metric' }, METRICS.map(([code, meaning]) => h('option', { value: code }, `${code} — ${t(meaning)}`)))),
    field(t('Weight'), h('input', { name: 'weight', type: 'number', min: 0, max: 10, step: 0.05, value: 0 })),
    field(t('Reason'), h('input', { name: 'reason', required: true })),
    h('button', { type: 'submit' }, t('Grant')));
  return form;

  function describe(g) {
    if (g.kind === 'extra_time') return t('{n} minutes extra time', { n: g.minutes });
    if (g.kind === 'metric_off') return t('{code} off', { code: g.metric });
    return t('{code} weight {weight}', { code: g.metric, weight: g.weight });
  }

  async function grant(event) {
    event.preventDefault();
    const k = kind.value;
    const g = k === 'extra_time' ? { kind: k, minutes: Number(form.minutes.value) }
      : k === 'metric_off' ? { kind: k, metric: form.metric.value }
        : { kind: k, metric: form.metric.value, weight: Number(form.weight.value) };
    try {
      await post(`${base}/accommodations`, { grant: g, reason: form.reason.value });
      notice(t('Accommodation granted.'));
      await reload();
    } catch (e) {
      notice(e.message, 'error');
    }
  }
}

function scoreView(score) {
  return h('div', {},
    h('p', { class: 'score' }, `${t('Credibility {score} (review below {threshold})', { score: number(score.score), threshold: score.threshold })}${score.review ? ` ⚑ ${t('flagged for review')}` : ''}`),
    table(t('Score terms w·x'), [
      [t('Metric'), x => `${x.metric} — ${x.meaning}`], [t('Weight'), x => x.weight], [t('Average'), x => number(x.average)], [t('Penalty'), x => number(x.penalty)],
    ], score.terms.filter(x => x.penalty > 0), t('No penalties.')));
}

function chatItem(author, text, time) {
  return h('li', {}, h('strong', {}, author), ' ', h('time', {}, when(Math.floor(time))), h('p', {}, text));
}

function entryItem(e, player) {
  const detail = e.kind === 'chat' ? e.data.text : JSON.stringify(e.data);
  const play = h('button', { type: 'button', class: 'link', onclick: () => playAt(player, e.time) }, t('play'));
  return h('li', { class: `entry ${e.kind}`, 'data-time': e.time }, h('time', {}, when(e.time)), ' ', play, ` ${e.kind} · ${e.author}: `, detail);
}

/** Plays the webcam recording (else the screen's) from the moment `time`. */
async function playAt(player, time) {
  const covering = player.recordings.filter(r => r.start <= time).sort((a, b) => b.start - a.start);
  const rec = covering.find(r => r.kind === 'webcam') ?? covering[0];
  if (!rec) return notice(t('No recording covers this moment.'), 'error');
  const video = rec.video;
  video.scrollIntoView({ block: 'center' });
  // A browser's recording carries no index: its length is known only once
  // the whole file has been read, which seeking past the end makes happen.
  if (!Number.isFinite(video.duration)) {
    video.preload = 'auto';
    if (video.readyState < 1) await new Promise(resolve => video.addEventListener('loadedmetadata', resolve, { once: true }));
    if (!Number.isFinite(video.duration)) {
      const known = new Promise(resolve => video.addEventListener('durationchange', resolve, { once: true }));
      video.currentTime = 1e9;
      await known;
    }
  }
  video.currentTime = Math.max(0, time - rec.start);
  video.play().catch(() => {});
}
