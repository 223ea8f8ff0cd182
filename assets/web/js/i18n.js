// Translations: English is the source language; other languages are JSON
// catalogs under /i18n/ mapping each English text to its translation, with
// {name} placeholders. Dates and numbers go through Intl in the chosen locale.

const AVAILABLE = { en: 'English', ru: 'Русский' };
const RTL = new Set(['ar', 'fa', 'he', 'ur']);
let catalog = {};
let lang = 'en';

export function languages() {
  return AVAILABLE;
}

export function current() {
  return lang;
}

/** Picks the language (saved choice, else the browser's) and loads its catalog. */
export async function init() {
  const saved = localStorage.getItem('invigil.lang');
  const wanted = saved || navigator.languages?.map(l => l.slice(0, 2)).find(l => l in AVAILABLE) || 'en';
  await use(wanted in AVAILABLE ? wanted : 'en');
}

export async function use(code) {
  lang = code;
  catalog = {};
  if (code !== 'en') {
    try {
      const response = await fetch(`/i18n/${code}.json`);
      if (response.ok) catalog = await response.json();
    } catch { /* stays English */ }
  }
  document.documentElement.lang = code;
  document.documentElement.dir = RTL.has(code) ? 'rtl' : 'ltr';
}

export function choose(code) {
  localStorage.setItem('invigil.lang', code);
  return use(code);
}

/** The text in the current language, with {name} placeholders filled. */
export function t(text, vars = {}) {
  const template = catalog[text] ?? text;
  return template.replace(/\{(\w+)\}/g, (all, name) => (name in vars ? String(vars[name]) : all));
}

export function dateTime(secs) {
  return new Intl.DateTimeFormat(lang, { dateStyle: 'medium', timeStyle: 'short' }).format(new Date(secs * 1000));
}

export function number(n) {
  return new Intl.NumberFormat(lang, { maximumFractionDigits: 2 }).format(n);
}
