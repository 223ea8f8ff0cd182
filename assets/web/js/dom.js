// Building the page from data without ever parsing data as HTML: every text
// goes in through textContent, so a name like "<img onerror=…>" stays text.
import { dateTime } from './i18n.js';

/** Creates an element: attributes (on* are listeners), then children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'class') {
      el.className = value;
    } else if (value === true) {
      el.setAttribute(name, '');
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the main view's content and moves focus there for screen readers. */
export function show(...children) {
  const view = document.getElementById('view');
  view.replaceChildren();
  append(view, children);
  view.focus({ preventScroll: true });
}

/** A short message in the live region (errors in red). */
export function notice(text, kind = 'info') {
  const box = document.getElementById('notice');
  box.replaceChildren(h('p', { class: kind }, text));
  if (kind !== 'error') setTimeout(() => box.replaceChildren(), 6000);
}

/** A labelled form control. */
export function field(label, control, hint) {
  const id = control.id || `f-${label.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
  control.id = id;
  return h('div', { class: 'field' },
    h('label', { for: id }, label), control, hint ? h('small', {}, hint) : null);
}

/** A table with a header row; `columns` are [title, row => cell]. */
export function table(caption, columns, rows, empty = 'Nothing here yet.') {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  return h('table', {},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, columns.map(([title]) => h('th', { scope: 'col' }, title)))),
    h('tbody', {}, rows.map(row => h('tr', {}, columns.map(([, cell]) => h('td', {}, cell(row)))))));
}

/** Unix seconds as local date and time. */
export function when(secs) {
  return secs ? dateTime(secs) : '—';
}

/** Reads a form's named controls into an object (empty strings left out). */
export function values(form) {
  const out = {};
  for (const [k, v] of new FormData(form).entries()) {
    if (typeof v === 'string' && v.trim() !== '') out[k] = v.trim();
  }
  return out;
}
