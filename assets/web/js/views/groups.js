// Groups: the labels administrators put on users (a class, a room of
// proctors). A session's proctor group lets every proctor in it watch; this
// page shows who is in which group and adds or removes people.
import { t } from '../i18n.js';
import { api } from '../api.js';
import { h, show, field, table, notice, values } from '../dom.js';

/** Every user of the host, a page of 200 at a time. */
async function allUsers() {
  const users = [];
  for (let page = 1; ; page++) {
    const p = await api('GET', `/api/v1/users?per_page=200&page=${page}`);
    users.push(...p.items);
    if (users.length >= p.total || !p.items.length) return users;
  }
}

export async function page(app) {
  const users = await allUsers();
  const groups = new Map();
  for (const u of users) {
    for (const g of u.groups) {
      if (!groups.has(g)) groups.set(g, []);
      groups.get(g).push(u);
    }
  }
  const names = [...groups.keys()].sort();
  const form = h('form', { class: 'card', onsubmit: add },
    h('h2', {}, t('Add to a group')),
    field(t('Group'), h('input', { name: 'group', required: true, list: 'group-names' })),
    h('datalist', { id: 'group-names' }, names.map(n => h('option', { value: n }))),
    field(t('Usernames'), h('input', { name: 'usernames', required: true }), t('Comma-separated.')),
    h('button', { type: 'submit' }, t('Add')));
  show(
    h('h1', {}, t('Groups')),
    table(t('Groups and their members'), [
      [t('Group'), n => n],
      [t('Members'), n => h('ul', { class: 'members' }, groups.get(n).map(u => h('li', {},
        `${u.username} (${t(u.role)}) `,
        h('button', { type: 'button', class: 'link', onclick: () => change(u, u.groups.filter(g => g !== n)) }, t('Remove from {group}', { group: n })))))],
    ], names, t('No groups yet: add people to one below.')),
    form);

  async function change(user, groupsOfUser) {
    try {
      await api('PATCH', `/api/v1/users/${encodeURIComponent(user.username)}`, { groups: groupsOfUser });
      await page(app);
      notice(t('Groups of {name} saved.', { name: user.username }));
    } catch (e) {
      notice(e.message, 'error');
    }
  }

  async function add(event) {
    event.preventDefault();
    const v = values(form);
    const wanted = (v.usernames ?? '').split(',').map(s => s.trim()).filter(Boolean);
    const byName = new Map(users.map(u => [u.username, u]));
    const unknown = wanted.filter(n => !byName.has(n));
    if (unknown.length) return notice(t('No such user: {names}', { names: unknown.join(', ') }), 'error');
    try {
      for (const name of wanted) {
        const u = byName.get(name);
        if (!u.groups.includes(v.group)) {
          await api('PATCH', `/api/v1/users/${encodeURIComponent(name)}`, { groups: [...u.groups, v.group] });
        }
      }
      await page(app);
      notice(t('Added to {group}.', { group: v.group }));
    } catch (e) {
      notice(e.message, 'error');
    }
  }
}
