// The proctor's wall: every live session they watch (up to 30) as a tile with
// the student's live camera (WebRTC through the TURN relay, like the session
// view), status, score, presence and the latest alerts, all over one hub
// connection.
import { t, number } from '../i18n.js';
import { api } from '../api.js';
import { h, show } from '../dom.js';
import { Hub } from '../hub.js';
import { Viewer } from '../live.js';

const MAX = 30;
let wallHub = null;

export async function page(app) {
  wallHub?.close();
  const live = (await api('GET', '/api/v1/sessions?status=started'))
    .concat(await api('GET', '/api/v1/sessions?status=paused'))
    .slice(0, MAX);
  const tiles = new Map();
  for (const s of live) tiles.set(s.id, tile(s));
  show(
    h('h1', {}, t('Live wall')),
    h('p', {}, t('{n} live sessions', { n: live.length })),
    live.length
      ? h('ul', { class: 'wall' }, [...tiles.values()].map(x => x.root))
      : h('p', { class: 'empty' }, t('No session is running now.')));
  if (!live.length) return;
  const hub = new Hub(frame => tiles.get(frame.session)?.update(frame));
  wallHub = hub;
  for (const x of tiles.values()) x.connect(hub);
  // Exposed for the browser tests, which check that the video is relayed.
  window.invigilWall = tiles;
  for (const s of live) hub.join(s.id);
  window.addEventListener('hashchange', () => {
    for (const x of tiles.values()) x.viewer?.close();
    hub.close();
  }, { once: true });
}

function tile(s) {
  const status = h('span', { class: `status ${s.status}` }, t(s.status));
  const score = h('span', { class: 'score' }, s.score == null ? '—' : number(s.score));
  const presence = h('span', { class: 'presence' }, '');
  const alert = h('p', { class: 'alert' }, '');
  const video = h('video', { class: 'remote', autoplay: true, muted: true, playsinline: true, 'aria-label': t('Camera of {name}', { name: s.student }) });
  let studentHere = false;
  const root = h('li', { class: `tile${s.review ? ' review' : ''}` },
    video,
    h('a', { href: `#/session/${encodeURIComponent(s.id)}` }, h('strong', {}, s.student), ' — ', s.subject || s.template_id),
    h('p', {}, status, ' ', t('Score'), ': ', score, ' ', presence),
    alert);
  return {
    root,
    viewer: null,
    connect(hub) {
      this.viewer = new Viewer(hub, s.id, s.student, video);
    },
    update(frame) {
      if (frame.type === 'joined') this.viewer?.watch();
      if (frame.type === 'signal') this.viewer?.onSignal(frame).catch(() => {});
      if (frame.type === 'joined' || frame.type === 'status') {
        status.textContent = t(frame.status);
        status.className = `status ${frame.status}`;
      }
      if (frame.type === 'metrics') {
        if (frame.score != null) score.textContent = number(frame.score);
        root.classList.toggle('review', !!frame.review);
        const worst = Object.entries(frame.period ?? {}).filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1])[0];
        alert.textContent = worst ? t('Last period: {code} {value}%', { code: worst[0], value: worst[1] }) : '';
      }
      if (frame.type === 'presence') {
        const student = frame.members.some(m => m.role === 'student');
        // Ask for video again whenever the student (re)appears.
        if (student && !studentHere) this.viewer?.watch();
        studentHere = student;
        presence.textContent = student ? t('student online') : t('student offline');
        presence.className = `presence ${student ? 'on' : 'off'}`;
      }
      if (frame.type === 'chat') alert.textContent = `${frame.author}: ${frame.text}`;
    },
  };
}
