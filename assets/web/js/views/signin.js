// Signing in, and the password change a new account must make first.
import { t } from '../i18n.js';
import { post } from '../api.js';
import { h, show, field, notice, values } from '../dom.js';

export function login(app) {
  const form = h('form', { class: 'card narrow', onsubmit: submit },
    h('h1', {}, t('Sign in')),
    field(t('Username'), h('input', { name: 'username', autocomplete: 'username', required: true, autofocus: true })),
    field(t('Password'), h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true })),
    h('button', { type: 'submit' }, t('Sign in')));
  show(form);

  async function submit(event) {
    event.preventDefault();
    const button = form.querySelector('button');
    button.disabled = true;
    try {
      const body = values(form);
      await post('/api/v1/auth/login', { username: body.username ?? '', password: form.password.value });
      await app.refresh();
    } catch (e) {
      notice(e.status === 423 ? `${e.message}` : e.message, 'error');
      form.password.value = '';
      form.password.focus();
    } finally {
      button.disabled = false;
    }
  }
}

export function password(app, required) {
  const form = h('form', { class: 'card narrow', onsubmit: submit },
    h('h1', {}, t(required ? 'Choose a new password' : 'Change password')),
    required ? h('p', {}, t('This account must change its password before it can be used.')) : null,
    field(t('Current password'), h('input', { name: 'old', type: 'password', autocomplete: 'current-password', required: true })),
    field(t('New password'), h('input', { name: 'new', type: 'password', autocomplete: 'new-password', required: true })),
    field(t('New password again'), h('input', { name: 'again', type: 'password', autocomplete: 'new-password', required: true })),
    h('button', { type: 'submit' }, t('Change password')));
  show(form);

  async function submit(event) {
    event.preventDefault();
    if (form.new.value !== form.again.value) {
      notice(t('The two new passwords differ.'), 'error');
      return;
    }
    try {
      await post('/api/v1/auth/password', { old: form.old.value, new: form.new.value });
      notice(t('Password changed.'));
      location.hash = '#/';
      await app.refresh();
    } catch (e) {
      notice(e.message, 'error');
    }
  }
}
