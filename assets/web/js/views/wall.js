// The proctor's wall: every live session they watch (up to 30) as a tile with
// status, score, presence and the latest alerts, all over one hub connection.
import { t, number } from '../i18n.js';
import { api } from '../api.js';
import { h, show } from '../dom.js';
import { Hub } from '../hub.js';

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
  wallHub = new Hub(frame => tiles.get(frame.session)?.update(frame));
  for (const s of live) wallHub.join(s.id);
  window.addEventListener('hashchange', () => wallHub?.close(), { once: true });
}

function tile(s) {
  const status = h('span', { class: `status ${s.status}` }, t(s.status));
  const score = h('span', { class: 'score' }, s.score == null ? '—' : number(s.score));
  const presence = h('span', { class: 'presence' }, '');
  const alert = h('p', { class: 'alert' }, '');
  const root = h('li', { class: `tile${s.review ? ' review' : ''}` },
    h('a', { href: `#/session/${encodeURIComponent(s.id)}` }, h('strong', {}, s.student), ' — ', s.subject || s.template_id),
    h('p', {}, status, ' ', t('Score'), ': ', score, ' ', presence),
    alert);
  return {
    root,
    update(frame) {
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
        presence.textContent = student ? t('student online') : t('student offline');
        presence.className = `presence ${student ? 'on' : 'off'}`;
      }
      if (frame.type === 'chat') alert.textContent = `${frame.author}: ${frame.text}`;
    },
  };
}
