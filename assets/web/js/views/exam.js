// The student's pages: the exams they have, and the exam itself — a system
// check, the identity check the template asks for, the rules to accept, then
// the exam beside a small proctoring panel (camera preview, chat, timer,
// warnings). The browser samples its metrics and sends each period's
// share of violating time to the hub.
import { t } from '../i18n.js';
import { api, post } from '../api.js';
import { h, show, table, when, notice } from '../dom.js';
import { Hub } from '../hub.js';
import { Recorder } from '../recorder.js';
import { Sender, relayReachable } from '../live.js';
import { IdentityCheck } from '../identity.js';

export async function home(app) {
  const mine = await api('GET', '/api/v1/me/sessions');
  show(
    h('h1', {}, t('My exams')),
    table(t('Your exam sessions'), [
      [t('Exam'), s => h('a', { href: `#/session/${encodeURIComponent(s.id)}` }, s.subject || s.template_id)],
      [t('Status'), s => h('span', { class: `status ${s.status}` }, t(s.status))],
      [t('Opens'), s => when(s.open_from)],
      [t('Closes'), s => when(s.open_until ?? s.deadline)],
    ], mine, t('You have no exam sessions. Your school’s learning platform gives you a link to each exam.')));
}

let current = null;

export async function page(app, id) {
  current?.stop();
  const base = `/api/v1/sessions/${encodeURIComponent(id)}`;
  const s = await api('GET', base);
  current = new Exam(app, s, base);
  await current.render();
  window.addEventListener('hashchange', () => current?.stop(), { once: true });
}

class Exam {
  constructor(app, session, base) {
    this.app = app;
    this.s = session;
    this.base = base;
    this.stream = null;
    this.samples = new Map();
    this.ticks = 0;
  }

  async render() {
    const s = this.s;
    this.statusBox = h('span', { class: `status ${s.status}` }, t(s.status));
    this.timer = h('span', { class: 'timer', role: 'timer' }, '');
    this.video = h('video', { autoplay: true, muted: true, playsinline: true, 'aria-label': t('Your camera') });
    this.chat = h('ol', { class: 'chat', tabindex: 0, 'aria-label': t('Chat with the proctor') });
    this.warnings = h('ul', { class: 'warnings', tabindex: 0, 'aria-label': t('Warnings') });
    this.link = h('p', { class: 'live' }, t('Connecting…'));
    this.lock = h('div', { class: 'lock', hidden: true, role: 'alertdialog', 'aria-label': t('Exam locked') },
      h('p', {}, t('The proctor has locked your exam. Please wait; you will be able to continue when they unlock it.')));
    this.say = h('form', { class: 'inline', onsubmit: e => this.send(e) },
      h('label', { for: 'say' }, t('Message')), h('input', { id: 'say', name: 'text', required: true, maxlength: 2000 }),
      h('button', { type: 'submit' }, t('Send')));
    this.checks = h('ul', { class: 'checks', 'aria-label': t('System check') });
    // Enabled once the system check has run (the recording needs the camera),
    // the identity check is complete and the rules are accepted.
    this.startButton = h('button', { type: 'button', disabled: true, onclick: () => this.start() }, t('Start the exam'));
    this.identity = new IdentityCheck(this.base, this.video, () => this.ready());
    this.rules = h('input', { type: 'checkbox', name: 'rules', onchange: () => this.ready() });
    this.template = await api('GET', `${this.base}/template`);
    const examUrl = this.template?.addons?.exam_url;
    show(
      h('h1', {}, s.subject || t('Exam')),
      h('p', {}, t('Status:'), ' ', this.statusBox, ' ', this.timer),
      this.lock,
      h('div', { class: 'exam' },
        h('section', { class: 'exam-page' }, examUrl
          ? h('iframe', { src: examUrl, title: t('Exam page'), referrerpolicy: 'no-referrer', sandbox: 'allow-forms allow-scripts allow-same-origin allow-popups' })
          : h('div', { class: 'card' }, h('h2', {}, t('Before you start')), this.checks, this.identity.box,
            h('h2', {}, t('Rules')),
            h('p', {}, t('Keep this window in front and in full screen during the exam. Your camera and microphone are checked while the exam runs.')),
            h('label', { class: 'check' }, this.rules, t('I accept these rules.')),
            h('div', {}, this.startButton))),
        h('aside', { class: 'panel', 'aria-label': t('Proctoring panel') },
          this.video, this.link, h('h2', {}, t('Warnings')), this.warnings, h('h2', {}, t('Chat')), this.chat, this.say)));
    if (examUrl) {
      this.checks = null;
      document.querySelector('.exam').before(this.identity.box);
    }
    if (this.template?.addons?.screen) {
      this.shareButton = h('button', { type: 'button', onclick: () => this.shareScreen() }, t('Share your entire screen'));
      (this.checks ?? this.link).after(this.shareButton);
    }
    this.watchKeys();
    this.connect();
    this.evidence = h('p', { class: 'evidence' }, '');
    this.link.after(this.evidence);
    this.recorder = new Recorder(s.id, state => { this.evidence.textContent = t('Evidence upload: {state}', { state: t(state) }); });
    // Exposed for the browser tests, which compare it with what the server stored.
    window.invigilRecorder = this.recorder;
    await this.recorder.start();
    await this.systemCheck();
    if (this.s.status === 'created') {
      await this.identity.load().catch(e => notice(e.message, 'error'));
    } else {
      this.identity.box.hidden = true;
    }
    this.checked = true;
    this.ready();
    if (this.s.status === 'started') this.record();
    this.tick = setInterval(() => this.sample(), 500);
    this.showTimer();
  }

  // Start waits for the system check, the identity check and the rules
  // (with an exam page beside the panel, the rules are the school's).
  ready() {
    const rules = this.rules.checked || !this.rules.isConnected;
    this.startButton.disabled = !(this.checked && this.identity.complete && rules) || this.s.status !== 'created';
  }

  async systemCheck() {
    const item = (ok, text) => this.checks?.append(h('li', { class: ok ? 'ok' : 'fail' }, `${ok ? '✓' : '✗'} ${text}`));
    const supported = !!(navigator.mediaDevices?.getUserMedia && window.WebSocket && window.MediaRecorder && window.indexedDB);
    item(supported, t(supported ? 'This browser is supported.' : 'This browser lacks features the exam needs; please use a current Chrome, Edge or Firefox.'));
    this.unsupported = !supported;
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
      this.video.srcObject = this.stream;
      item(true, t('Camera and microphone work.'));
      this.listen();
    } catch (e) {
      item(false, t('Camera or microphone not available: {error}. Allow access in the browser’s address bar and reload.', { error: e.message }));
    }
    // Live video goes through the relay; say now if this network blocks it.
    const relay = await relayReachable(this.s.id).catch(() => false);
    item(relay, t(relay ? 'The proctor can receive your video (relay reachable).' : 'The video relay cannot be reached from this network; ask your school to allow it (see the administrator’s guide).'));
  }

  listen() {
    const track = this.stream.getAudioTracks()[0];
    if (!track) return;
    const audio = new AudioContext();
    const analyser = audio.createAnalyser();
    analyser.fftSize = 512;
    audio.createMediaStreamSource(new MediaStream([track])).connect(analyser);
    const data = new Uint8Array(analyser.fftSize);
    this.level = () => {
      analyser.getByteTimeDomainData(data);
      let peak = 0;
      for (const v of data) peak = Math.max(peak, Math.abs(v - 128));
      return peak / 128;
    };
  }

  // Recording and snapshots run while the exam does.
  record() {
    const addons = this.template?.addons ?? {};
    if (this.recording || !this.recorder) return;
    this.recording = true;
    if (addons.recording && this.stream) this.recorder.record(this.stream, 'webcam');
    if (addons.recording && this.screen) this.recorder.record(this.screen, 'screen');
    if (addons.webcam || addons.face_check) {
      this.snapshots = setInterval(() => this.recorder.snapshot(this.video), this.period ?? 10000);
    }
  }

  stopRecording() {
    clearInterval(this.snapshots);
    this.recorder?.stop();
    this.recording = false;
  }

  async shareScreen() {
    try {
      this.screen = await navigator.mediaDevices.getDisplayMedia({ video: { displaySurface: 'monitor' }, audio: false });
      const surface = this.screen.getVideoTracks()[0]?.getSettings().displaySurface;
      if (surface && surface !== 'monitor') notice(t('Please share the entire screen, not a window or a tab.'), 'error');
      else notice(t('Screen shared.'));
    } catch (e) {
      notice(t('Screen sharing was refused: {error}', { error: e.message }), 'error');
    }
  }

  // Keystroke rhythm (k1): a paste, or more keys in half a second than a
  // person types (over 8, i.e. 16 per second), marks that moment.
  watchKeys() {
    this.keys = 0;
    this.pasted = false;
    this.onKey = () => { this.keys += 1; };
    this.onPaste = () => { this.pasted = true; };
    document.addEventListener('keydown', this.onKey, true);
    document.addEventListener('paste', this.onPaste, true);
  }

  connect() {
    this.hub = new Hub(frame => this.onFrame(frame), state => {
      this.link.textContent = t(state === 'online' ? 'Connected to the proctor.' : 'Connection lost — reconnecting. Keep working; nothing you send is lost.');
      this.link.className = `live ${state}`;
    });
    this.hub.join(this.s.id);
    this.sender = new Sender(this.hub, this.s.id, () => [this.stream, this.screen].filter(Boolean));
  }

  onFrame(frame) {
    if (frame.session !== this.s.id) return;
    switch (frame.type) {
      case 'joined':
        this.lock.hidden = !frame.locked;
        this.period = Math.max(1000, (frame.heartbeat_ms ?? 5000) * 2);
        for (const e of frame.missed ?? []) if (e.kind === 'chat') this.addChat(e.author, e.data.text);
        break;
      case 'chat': this.addChat(frame.author, frame.text); break;
      case 'signal': this.sender?.onSignal(frame).catch(e => notice(e.message, 'error')); break;
      case 'action':
        if (frame.action === 'warn') {
          this.warnings.append(h('li', {}, `${when(frame.time)} — ${frame.comment || t('The proctor warned you.')}`));
          notice(t('Warning from the proctor: {text}', { text: frame.comment || t('please keep to the rules.') }), 'error');
        }
        if (frame.action === 'lock') this.lock.hidden = false;
        if (frame.action === 'unlock') this.lock.hidden = true;
        break;
      case 'status':
        this.s.status = frame.status;
        this.statusBox.textContent = t(frame.status);
        this.statusBox.className = `status ${frame.status}`;
        if (frame.status === 'stopped' || frame.status === 'concluded') {
          this.stopRecording();
          notice(t('The exam has ended.'));
        }
        break;
      case 'error': notice(frame.message, 'error'); break;
    }
  }

  addChat(author, text) {
    this.chat.append(h('li', {}, h('strong', {}, author), ' ', text));
  }

  async send(event) {
    event.preventDefault();
    const text = this.say.text.value;
    try {
      await this.hub.request({ type: 'chat', session: this.s.id, text });
      this.addChat(this.app.me.username, text);
      this.say.reset();
    } catch (e) {
      notice(e.message, 'error');
    }
  }

  async start() {
    try {
      // Not awaited: some browsers never settle it when full screen is refused.
      document.documentElement.requestFullscreen?.().catch(() => {});
      this.s = await post(`${this.base}/start`);
      this.statusBox.textContent = t(this.s.status);
      this.statusBox.className = `status ${this.s.status}`;
      this.startButton.disabled = true;
      this.showTimer();
      this.record();
    } catch (e) {
      notice(e.message, 'error');
    }
  }

  // Every half second: which metrics are violated now; each period the
  // shares (0–100) go to the hub as one samples frame.
  sample() {
    if (this.s.status !== 'started') return;
    const video = this.stream?.getVideoTracks()[0];
    const now = {
      b1: this.unsupported,
      b2: !document.hasFocus() || document.visibilityState !== 'visible',
      b3: !document.fullscreenElement,
      c1: !video || video.readyState !== 'live' || video.muted || !video.enabled,
      m1: !this.level || this.level() < 0.01,
      k1: this.pasted || this.keys > 8,
    };
    this.keys = 0;
    this.pasted = false;
    if (this.template?.addons?.screen) {
      const track = this.screen?.getVideoTracks()[0];
      now.s1 = !track || track.readyState !== 'live';
      // Chromium tells whether the desktop spans more than one display.
      now.s2 = window.screen.isExtended === true;
    }
    for (const [code, bad] of Object.entries(now)) this.samples.set(code, (this.samples.get(code) ?? 0) + (bad ? 1 : 0));
    this.ticks += 1;
    if (this.ticks * 500 >= (this.period ?? 10000)) {
      const values = Object.fromEntries([...this.samples].map(([k, v]) => [k, Math.round((100 * v) / this.ticks)]));
      this.hub.request({ type: 'samples', session: this.s.id, values }).catch(() => {});
      this.samples.clear();
      this.ticks = 0;
    }
  }

  showTimer() {
    clearInterval(this.clock);
    const s = this.s;
    const ends = [s.deadline, s.started_at && s.duration_limit_secs ? s.started_at + s.duration_limit_secs : null]
      .filter(Boolean).map(end => end + (s.extra_secs ?? 0));
    if (!ends.length || s.status !== 'started') { this.timer.textContent = ''; return; }
    const end = Math.min(...ends);
    const draw = () => {
      const left = Math.max(0, end - Math.floor(Date.now() / 1000));
      this.timer.textContent = t('Time left {time}', { time: `${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')}` });
    };
    draw();
    this.clock = setInterval(draw, 1000);
  }

  stop() {
    this.stopRecording();
    this.sender?.close();
    document.removeEventListener('keydown', this.onKey, true);
    document.removeEventListener('paste', this.onPaste, true);
    for (const track of this.screen?.getTracks() ?? []) track.stop();
    clearInterval(this.tick);
    clearInterval(this.clock);
    this.hub?.close();
    for (const t of this.stream?.getTracks() ?? []) t.stop();
  }
}
