// "Try it": one click prepares a demo exam, then the evaluator takes it in a
// private window and proctors it here.
import { t } from '../i18n.js';
import { post } from '../api.js';
import { h, show, notice } from '../dom.js';

export function page(app) {
  const result = h('div', { 'aria-live': 'polite' });
  show(
    h('h1', {}, t('Try it')),
    h('p', {}, t('Prepare a demo exam to see invigil from both sides: a template with webcam, microphone and chat, a proctor account, and a 30-minute session for a demo student who signs in with a link — the way students arrive from a learning platform.')),
    h('button', { type: 'button', onclick: prepare }, t('Prepare a demo exam')),
    result);

  async function prepare() {
    try {
      const demo = await post('/api/v1/demo');
      const link = `${location.origin}${demo.student_link}`;
      result.replaceChildren(
        h('ol', { class: 'steps' },
          h('li', {}, t('Open the student’s link in a private window or another browser (it signs in as the demo student and opens the exam):'), ' ',
            h('a', { href: link, target: '_blank', rel: 'noopener', id: 'student-link' }, t('student’s sign-in link')),
            h('button', { type: 'button', class: 'link', onclick: () => navigator.clipboard?.writeText(link).then(() => notice(t('Link copied.'))) }, t('copy'))),
          h('li', {}, t('Allow the camera and microphone there, and start the exam.')),
          h('li', {}, t('Watch it here:'), ' ', h('a', { href: `#/session/${encodeURIComponent(demo.session)}` }, t('the demo session')),
            ' — ', t('chat, warn, stop and conclude it.')),
          h('li', {}, demo.proctor_password
            ? [t('Or sign in as the proctor in a third window:'), ' ', h('code', {}, demo.proctor), ' / ', h('code', { id: 'proctor-password' }, demo.proctor_password), ' ', t('(first password, shown only now; it must be changed at first sign-in).')]
            : [t('The proctor account exists already; set a new password for it under Users if needed:'), ' ', h('code', {}, demo.proctor)])));
    } catch (e) {
      notice(e.message, 'error');
    }
  }
}
