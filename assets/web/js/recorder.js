// Evidence from the student's browser: the camera (and the shared screen) as
// WebM chunks from MediaRecorder, and JPEG snapshots, uploaded with tus 1.0.
// Every piece goes to IndexedDB first and leaves it only once the server has
// acknowledged it, so a dropped network or a reloaded page loses nothing: the
// queue is sent, in order, as soon as the server can be reached again.

const TUS = { 'Tus-Resumable': '1.0.0' };
const DB = 'invigil-evidence';

function open() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 1);
    request.onupgradeneeded = () => {
      const db = request.result;
      db.createObjectStore('uploads', { keyPath: 'key' });
      db.createObjectStore('pieces', { keyPath: 'n', autoIncrement: true });
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function tx(db, store, mode, work) {
  return new Promise((resolve, reject) => {
    const t = db.transaction(store, mode);
    const result = work(t.objectStore(store));
    t.oncomplete = () => resolve(result instanceof IDBRequest ? result.result : result);
    t.onerror = () => reject(t.error);
  });
}

const all = (db, store) => tx(db, store, 'readonly', s => s.getAll());

async function checksum(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return `sha256 ${btoa(String.fromCharCode(...digest))}`;
}

function metadata(fields) {
  return Object.entries(fields).map(([k, v]) => `${k} ${btoa(unescape(encodeURIComponent(v)))}`).join(',');
}

export class Recorder {
  /** `session`: the session id; `onState(text)` reports progress for the panel. */
  constructor(session, onState = () => {}) {
    this.session = session;
    this.base = `/api/v1/sessions/${encodeURIComponent(session)}/uploads`;
    this.onState = onState;
    this.recorders = [];
    this.stats = { produced: 0, sent: 0, pending: 0, snapshots: 0 };
    this.wake = null;
  }

  async start() {
    this.db = await open();
    this.running = true;
    this.loop();
    window.addEventListener('online', () => this.kick());
  }

  /** Records `stream` in chunks of `ms` milliseconds as upload `kind` (webcam or screen). */
  async record(stream, kind, ms = 5000) {
    const type = ['video/webm;codecs=vp8,opus', 'video/webm'].find(t => MediaRecorder.isTypeSupported(t));
    const recorder = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
    const key = `${this.session}/${kind}/${Date.now()}`;
    await tx(this.db, 'uploads', 'readwrite', s => s.put({ key, kind, url: null, offset: 0, ended: false, type: recorder.mimeType }));
    recorder.ondataavailable = event => { if (event.data.size) this.queue(key, event.data); };
    recorder.onstop = () => this.end(key);
    recorder.start(ms);
    this.recorders.push(recorder);
    return key;
  }

  /** One JPEG of the video element's current frame. */
  async snapshot(video) {
    if (!video.videoWidth) return;
    const canvas = document.createElement('canvas');
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext('2d').drawImage(video, 0, 0);
    const blob = await new Promise(resolve => canvas.toBlob(resolve, 'image/jpeg', 0.8));
    const key = `${this.session}/snapshot/${Date.now()}`;
    await tx(this.db, 'uploads', 'readwrite', s => s.put({ key, kind: 'snapshot', url: null, offset: 0, ended: true, length: blob.size, type: 'image/jpeg' }));
    await this.queue(key, blob);
    this.stats.snapshots += 1;
  }

  async queue(key, blob) {
    const bytes = await blob.arrayBuffer();
    this.stats.produced += bytes.byteLength;
    await tx(this.db, 'pieces', 'readwrite', s => s.add({ key, bytes }));
    this.kick();
  }

  async end(key) {
    await tx(this.db, 'uploads', 'readwrite', s => s.get(key)).then(async u => {
      if (!u) return;
      u.ended = true;
      await tx(this.db, 'uploads', 'readwrite', s => s.put(u));
    });
    this.kick();
  }

  /** Pieces recorded and not yet acknowledged by the server. */
  async queued() {
    return (await all(this.db, 'pieces')).length;
  }

  /** True once every piece is acknowledged and every upload finished. */
  async settled() {
    return (await all(this.db, 'pieces')).length === 0 && (await all(this.db, 'uploads')).length === 0;
  }

  stop() {
    for (const r of this.recorders) if (r.state !== 'inactive') r.stop();
    this.recorders = [];
  }

  kick() {
    this.wake?.();
  }

  // Sends the oldest piece until none is left, then waits for more. A failure
  // waits a little (longer each time) and tries the same piece again.
  async loop() {
    let pause = 1000;
    while (this.running) {
      let sentOne = false;
      try {
        sentOne = await this.sendOldest();
        pause = 1000;
      } catch (e) {
        console.warn('evidence upload failed, will retry:', e);
        this.onState(`offline: ${e.message}`);
        await new Promise(resolve => { this.wake = resolve; setTimeout(resolve, pause); });
        pause = Math.min(pause * 2, 15000);
        continue;
      }
      if (!sentOne) {
        this.onState(this.stats.pending ? 'sending' : 'all sent');
        await new Promise(resolve => { this.wake = resolve; setTimeout(resolve, 5000); });
      }
    }
  }

  async sendOldest() {
    const pieces = await all(this.db, 'pieces');
    this.stats.pending = pieces.length;
    const uploads = new Map((await all(this.db, 'uploads')).map(u => [u.key, u]));
    if (!pieces.length) {
      // Recordings whose last piece is sent get their final length.
      for (const u of uploads.values()) {
        if (u.ended && u.url) await this.finish(u);
      }
      return false;
    }
    const piece = pieces[0];
    const upload = uploads.get(piece.key);
    if (!upload) {
      await tx(this.db, 'pieces', 'readwrite', s => s.delete(piece.n));
      return true;
    }
    if (!upload.url) await this.create(upload);
    await this.patch(upload, piece);
    return true;
  }

  async create(upload) {
    const headers = { ...TUS, 'Upload-Metadata': metadata({ kind: upload.kind, filetype: upload.type, filename: upload.key }) };
    if (upload.length != null) headers['Upload-Length'] = String(upload.length);
    else headers['Upload-Defer-Length'] = '1';
    const response = await fetch(this.base, { method: 'POST', headers, credentials: 'same-origin' });
    if (response.status !== 201) throw new Error(await reason(response));
    upload.url = response.headers.get('Location');
    await tx(this.db, 'uploads', 'readwrite', s => s.put(upload));
  }

  async patch(upload, piece) {
    let bytes = piece.bytes;
    let response = await this.send(upload, bytes);
    if (response.status === 409 && response.headers.has('Upload-Offset')) {
      // The server has more than we think: a previous answer was lost after
      // the piece was stored. Skip what it already has.
      const have = Number(response.headers.get('Upload-Offset'));
      const skip = have - upload.offset;
      if (!(skip > 0 && skip <= bytes.byteLength)) throw new Error(`offset ${have} does not fit ${upload.offset}`);
      upload.offset = have;
      bytes = bytes.slice(skip);
      response = bytes.byteLength ? await this.send(upload, bytes) : null;
    }
    if (response && response.status !== 204) {
      if ([403, 404, 409, 410].includes(response.status)) {
        // The upload is gone (expired) or the session ended: nothing to retry.
        this.onState(await reason(response));
        await tx(this.db, 'pieces', 'readwrite', s => s.delete(piece.n));
        return;
      }
      throw new Error(await reason(response));
    }
    if (response) upload.offset = Number(response.headers.get('Upload-Offset'));
    this.stats.sent += piece.bytes.byteLength;
    // The piece leaves IndexedDB only now that the server holds it.
    const db = this.db;
    await new Promise((resolve, reject) => {
      const t = db.transaction(['uploads', 'pieces'], 'readwrite');
      t.objectStore('uploads').put(upload);
      t.objectStore('pieces').delete(piece.n);
      t.oncomplete = resolve;
      t.onerror = () => reject(t.error);
    });
  }

  async send(upload, bytes) {
    return fetch(upload.url, {
      method: 'PATCH',
      credentials: 'same-origin',
      headers: {
        ...TUS,
        'Content-Type': 'application/offset+octet-stream',
        'Upload-Offset': String(upload.offset),
        'Upload-Checksum': await checksum(bytes),
      },
      body: bytes,
    });
  }

  async finish(upload) {
    if (upload.kind !== 'snapshot') {
      const response = await fetch(upload.url, {
        method: 'PATCH',
        credentials: 'same-origin',
        headers: { ...TUS, 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': String(upload.offset), 'Upload-Length': String(upload.offset) },
      });
      if (response.status !== 204) throw new Error(await reason(response));
    }
    await tx(this.db, 'uploads', 'readwrite', s => s.delete(upload.key));
  }
}

async function reason(response) {
  try {
    const body = await response.json();
    return body.message ?? response.statusText;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}
