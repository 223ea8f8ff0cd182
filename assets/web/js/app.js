// The interface: who is signed in decides the menu; the part of the address
// after '#' decides the page. Pages are modules under views/.
import { api, post, ApiError } from './api.js';
import { h, show, notice } from './dom.js';
import { t, init, languages, current, choose } from './i18n.js';
import * as signin from './views/signin.js';
import * as manager from './views/manager.js';
import * as settings from './views/settings.js';
import * as groups from './views/groups.js';
import * as admin from './views/admin.js';
import * as sessions from './views/sessions.js';
import * as exam from './views/exam.js';
import * as demo from './views/demo.js';
import * as integration from './views/integration.js';
import * as wall from './views/wall.js';

const MENUS = {
  manager: [['#/try', 'Try it'], ['#/hosts', 'Hosts'], ['#/instance', 'Instance'], ['#/wall', 'Live wall'], ['#/sessions', 'Sessions'], ['#/templates', 'Templates'], ['#/users', 'Users'], ['#/groups', 'Groups'], ['#/integration', 'Integration'], ['#/settings', 'Settings']],
  administrator: [['#/wall', 'Live wall'], ['#/sessions', 'Sessions'], ['#/templates', 'Templates'], ['#/users', 'Users'], ['#/groups', 'Groups'], ['#/integration', 'Integration'], ['#/settings', 'Settings']],
  proctor: [['#/wall', 'Live wall'], ['#/sessions', 'My sessions']],
  student: [['#/', 'My exams']],
};

const HOME = { manager: '#/try', administrator: '#/sessions', proctor: '#/sessions', student: '#/' };

export const app = {
  me: null,
  /** Re-reads who is signed in and shows the page the address names. */
  async refresh() {
    try {
      this.me = await api('GET', '/api/v1/me');
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401) notice(e.message, 'error');
      this.me = null;
    }
    frame();
    await route();
  },
  go(hash) {
    if (location.hash === hash) route(); else location.hash = hash;
  },
};

function frame() {
  const me = app.me;
  const nav = document.getElementById('nav');
  const account = document.getElementById('account');
  nav.replaceChildren();
  account.replaceChildren();
  const picker = h('select', { 'aria-label': t('Language'), onchange: async () => { await choose(picker.value); await app.refresh(); } },
    Object.entries(languages()).map(([code, name]) => h('option', { value: code, selected: code === current() }, name)));
  account.append(picker);
  if (!me || me.must_change_password) return;
  nav.append(...(MENUS[me.role] ?? []).map(([href, label]) => h('a', { href }, t(label))));
  account.append(
    h('span', {}, `${me.nickname || me.username} · ${me.role} · ${me.host.title}`),
    h('button', { type: 'button', class: 'link', onclick: signOut }, t('Sign out')));
}

async function signOut() {
  try { await post('/api/v1/auth/logout'); } catch { /* signed out anyway */ }
  app.me = null;
  location.hash = '#/';
  await app.refresh();
}

async function route() {
  // An error belongs to the page it happened on; confirmations fade by themselves.
  document.querySelector('#notice .error')?.remove();
  const me = app.me;
  const [, page = '', arg] = location.hash.split('/');
  if (!me) return signin.login(app);
  if (me.must_change_password) return signin.password(app, true);
  try {
    switch (page) {
      case 'password': return signin.password(app, false);
      case 'try': return demo.page(app);
      case 'hosts': return manager.hosts(app);
      case 'instance': return manager.instance(app);
      case 'users': return admin.users(app);
      case 'groups': return groups.page(app);
      case 'templates': return admin.templates(app);
      case 'sessions': return sessions.list(app);
      case 'wall': return wall.page(app);
      case 'integration': return integration.page(app);
      case 'settings': return settings.page(app);
      case 'session':
        return me.role === 'student' ? exam.page(app, decodeURIComponent(arg ?? '')) : sessions.detail(app, decodeURIComponent(arg ?? ''));
      default:
        if (me.role === 'student') return exam.home(app);
        return app.go(HOME[me.role] ?? '#/');
    }
  } catch (e) {
    show(h('h1', {}, t('Something went wrong')), h('p', { class: 'error' }, e.message));
  }
}

window.addEventListener('hashchange', () => route());
await init();
await app.refresh();
