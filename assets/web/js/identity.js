// The student's identity check before the exam, in the steps the template
// requires: a photo of the face (the server answers at once whether it is
// usable and whether it matches the profile photo), a photo of the ID
// document, and the head-turn liveness challenge. Every answer is shown in
// words with a button to try again.
import { t } from './i18n.js';
import { api, ApiError } from './api.js';
import { h } from './dom.js';

const PROBLEMS = {
  no_face: 'No face was found. Look straight at the camera in good light.',
  several_faces: 'Several faces were found. Only you may be in front of the camera.',
  face_too_small: 'Your face is too small in the picture. Come closer to the camera.',
};

// Liveness frames: a small JPEG every FRAME_MS while each step runs.
const FRAME_MS = 350;
const FACING_MS = 1200;
const TURN_MS = 2100;
const BACK_MS = 1400;

export class IdentityCheck {
  constructor(base, video, onChange) {
    this.base = `${base}/identity`;
    this.video = video;
    this.onChange = onChange;
    this.state = null;
    this.box = h('section', { class: 'card identity', 'aria-label': t('Identity check'), hidden: true });
  }

  /** Whether the template asks for any identity check. */
  get needed() {
    const r = this.state?.required ?? {};
    return !!(r.face || r.document || r.liveness);
  }

  get complete() {
    return !this.needed || !!this.state?.complete;
  }

  async load() {
    this.state = await api('GET', this.base);
    this.render();
    return this;
  }

  render() {
    const r = this.state.required;
    const s = this.state;
    const faceDone = !!s.face;
    this.box.hidden = !this.needed;
    this.box.replaceChildren(...[
      h('h2', {}, t('Identity check')),
      r.face ? this.step('face', t('A photo of your face'),
        t('Look straight at the camera, alone, in good light.'),
        t(faceDone ? 'Take the photo again' : 'Take the photo of your face'), out => this.face(out), faceDone ? this.faceResult() : null) : null,
      r.document ? this.step('document', t('Your ID document'),
        t('Hold the page of your ID document with your photo up to the camera, flat and close.'),
        t(s.document ? 'Take the photo again' : 'Take the photo of the document'), out => this.document(out), s.document ? this.documentResult() : null, !faceDone) : null,
      r.liveness ? this.step('liveness', t('Head-turn check'),
        t('You will be asked to turn your head to the left or right, then back to the camera.'),
        t(s.liveness ? 'Try the head-turn check again' : 'Start the head-turn check'), out => this.liveness(out), s.liveness ? this.livenessResult() : null, !faceDone) : null,
      h('p', { class: s.complete ? 'ok' : 'hint' }, t(s.complete ? 'Identity check complete.' : 'Complete each step to continue.')),
    ].filter(Boolean));
    this.onChange?.();
  }

  step(name, title, hint, label, action, result, disabled = false) {
    const out = h('p', { class: `result ${name}`, role: 'status' }, result ?? '');
    const button = h('button', { type: 'button', disabled, onclick: () => this.run(button, out, action) }, label);
    return h('div', { class: `step ${name}` }, h('h3', {}, title), h('p', {}, hint), button, out);
  }

  async run(button, out, action) {
    button.disabled = true;
    try {
      await action(out);
    } catch (e) {
      out.className = 'result fail';
      out.textContent = e instanceof ApiError && e.status === 429
        ? t('Recognition is busy. Try again in a moment.')
        : e.message;
      button.disabled = false;
    }
  }

  faceResult() {
    const f = this.state.face;
    if (f.profile && !f.profile.verified) {
      return h('span', { class: 'fail' }, `✗ ${t('The face does not match your profile photo. Take the photo again facing the camera in good light, or tell the proctor.')}`);
    }
    return h('span', { class: 'ok' }, `✓ ${t(f.profile ? 'Face photo accepted; it matches your profile photo.' : 'Face photo accepted.')}`);
  }

  documentResult() {
    return this.state.document.comparison.verified
      ? h('span', { class: 'ok' }, `✓ ${t('The photo on the document matches your face.')}`)
      : h('span', { class: 'fail' }, `✗ ${t('The photo on the document does not match your face. Take it again, sharp and without glare, or tell the proctor.')}`);
  }

  livenessResult() {
    return this.state.liveness.live
      ? h('span', { class: 'ok' }, `✓ ${t('Head-turn check passed.')}`)
      : h('span', { class: 'fail' }, `✗ ${t('The head turns were not recognised. Try again, turning your head clearly as shown.')}`);
  }

  // One frame of the camera as a JPEG blob.
  frame(width) {
    const v = this.video;
    if (!v.videoWidth) throw new Error(t('The camera shows no picture yet. Allow camera access and wait a moment.'));
    const scale = width ? Math.min(1, width / v.videoWidth) : 1;
    const canvas = document.createElement('canvas');
    canvas.width = Math.round(v.videoWidth * scale);
    canvas.height = Math.round(v.videoHeight * scale);
    canvas.getContext('2d').drawImage(v, 0, 0, canvas.width, canvas.height);
    return canvas;
  }

  async sendPhoto(path) {
    const blob = await new Promise(resolve => this.frame().toBlob(resolve, 'image/jpeg', 0.9));
    let response;
    try {
      response = await fetch(`${this.base}/${path}`, {
        method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'image/jpeg', Accept: 'application/json' }, body: blob,
      });
    } catch {
      throw new ApiError(0, 'offline', t('The server cannot be reached. Check the network connection and try again.'));
    }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new ApiError(response.status, data.error, data.message ?? response.statusText);
    return data;
  }

  async face(out) {
    out.textContent = t('Checking the photo…');
    const answer = await this.sendPhoto('face');
    if (!answer.accepted) {
      this.refused(out, t(PROBLEMS[answer.problem] ?? 'The photo cannot be used. Take it again.'));
      return;
    }
    await this.load();
  }

  async document(out) {
    out.textContent = t('Checking the document…');
    const answer = await this.sendPhoto('document');
    if (!answer.accepted) {
      this.refused(out, t('No face was found on the document. Hold the page with the photo flat and close to the camera.'));
      return;
    }
    await this.load();
  }

  refused(out, text) {
    out.className = 'result fail';
    out.textContent = `✗ ${text}`;
    // The step's button is the one before the result.
    out.previousElementSibling.disabled = false;
  }

  async liveness(out) {
    const challenge = await api('POST', `${this.base}/liveness/challenge`);
    const frames = [];
    const capture = ms => new Promise(resolve => {
      const timer = setInterval(() => frames.push(this.frame(320).toDataURL('image/jpeg', 0.7)), FRAME_MS);
      setTimeout(() => { clearInterval(timer); resolve(); }, ms);
    });
    out.className = 'result prompt';
    out.textContent = t('Look at the camera.');
    await capture(FACING_MS);
    for (const turn of challenge.turns) {
      out.textContent = t(turn === 'left' ? 'Turn your head to the left.' : 'Turn your head to the right.');
      await capture(TURN_MS);
      out.textContent = t('Look at the camera again.');
      await capture(BACK_MS);
    }
    out.textContent = t('Checking…');
    await api('POST', `${this.base}/liveness`, { challenge: challenge.id, frames: frames.slice(0, 40) });
    await this.load();
  }
}

// The proctor's view of a session's identity check, with the photos.
/** What was read from the document's machine-readable zone, in words. */
function documentText(fields) {
  const mrz = fields?.mrz;
  if (mrz) {
    return t('{surname}, {given} · document {number} ({code}, {state}) · born {birth} · valid until {expiry} · check digits verified', {
      surname: mrz.surname, given: mrz.given_names, number: mrz.document_number, code: mrz.document_code,
      state: mrz.issuing_state, birth: mrz.birth_date, expiry: mrz.expiry_date,
    });
  }
  const problem = fields?.problems?.[0];
  return problem ? t('Machine-readable zone: {problem}', { problem: problem.message ?? problem.code }) : '';
}

export async function identityView(base) {
  const box = h('div', { class: 'identity-view' });
  try {
    const s = await api('GET', `${base}/identity`);
    const r = s.required;
    const items = [];
    if (s.face) {
      const f = s.face;
      items.push(h('figure', {},
        h('img', { src: `${base}/identity/face?v=${f.at}`, alt: t('Face photo') }),
        h('figcaption', {}, t('Face photo'), ' · ',
          f.profile ? t(f.profile.verified ? 'matches the profile photo (distance {d})' : 'does NOT match the profile photo (distance {d})', { d: f.profile.distance })
            : f.profile_problem ?? t('no profile photo to compare'),
          f.elsewhere.length ? h('span', { class: 'flag' }, ' ⚑ ', t('The same face checked in to: {list}', { list: f.elsewhere.map(m => `${m.student} (${m.session})`).join(', ') })) : null)));
    } else if (r.face) {
      items.push(h('p', { class: 'empty' }, t('No face photo yet.')));
    }
    if (s.document) {
      const d = s.document;
      items.push(h('figure', {},
        h('img', { src: `${base}/identity/document?v=${d.at}`, alt: t('ID document') }),
        h('figcaption', {}, t('ID document'), ' · ',
          t(d.comparison.verified ? 'its photo matches the face (distance {d})' : 'its photo does NOT match the face (distance {d})', { d: d.comparison.distance }),
          h('br'), documentText(d.fields))));
    } else if (r.document) {
      items.push(h('p', { class: 'empty' }, t('No ID document yet.')));
    }
    if (s.liveness) {
      const l = s.liveness;
      items.push(h('p', { class: l.live ? 'ok' : 'flag' },
        t(l.live ? 'Head-turn check passed ({turns}).' : 'Head-turn check failed ({turns}): {reason}', { turns: l.turns.join(', '), reason: l.reason ?? '' })));
    } else if (r.liveness) {
      items.push(h('p', { class: 'empty' }, t('No head-turn check yet.')));
    }
    if (!items.length) items.push(h('p', { class: 'empty' }, t('This exam has no identity check.')));
    box.replaceChildren(...items);
  } catch (e) {
    box.replaceChildren(h('p', { class: 'error' }, e.message));
  }
  return box;
}
