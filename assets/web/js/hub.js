// The live hub connection: joins sessions, resumes after a drop from the last
// sequence number seen (so no chat message is missed), answers the server's
// heartbeat rhythm, and reconnects with growing pauses.

export class Hub {
  constructor(onFrame, onState) {
    this.onFrame = onFrame;
    this.onState = onState ?? (() => {});
    this.sessions = new Map(); // session id → last seq seen
    this.pending = new Map(); // ref → {resolve, reject}
    this.nextRef = 1;
    this.retry = 500;
    this.closed = false;
    this.connect();
  }

  connect() {
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v1/ws`;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      this.retry = 500;
      this.onState('online');
      for (const [session, seq] of this.sessions) this.send({ type: 'join', session, after_seq: seq });
    };
    ws.onmessage = event => {
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      if (frame.ref !== undefined && this.pending.has(frame.ref)) {
        const { resolve, reject } = this.pending.get(frame.ref);
        this.pending.delete(frame.ref);
        if (frame.type === 'error') reject(new Error(frame.message)); else resolve(frame);
      }
      if (frame.session && typeof frame.seq === 'number') this.seen(frame.session, frame.seq);
      if (frame.type === 'joined') {
        this.seen(frame.session, frame.last_seq ?? 0);
        if (frame.heartbeat_ms) this.beat(frame.heartbeat_ms);
      }
      this.onFrame(frame);
    };
    ws.onclose = () => {
      clearInterval(this.heart);
      for (const { reject } of this.pending.values()) reject(new Error('The connection dropped; sending again after reconnect.'));
      this.pending.clear();
      if (this.closed) return;
      this.onState('offline');
      setTimeout(() => this.connect(), this.retry);
      this.retry = Math.min(this.retry * 2, 10000);
    };
  }

  seen(session, seq) {
    if (this.sessions.has(session) && seq > (this.sessions.get(session) ?? 0)) this.sessions.set(session, seq);
  }

  beat(ms) {
    clearInterval(this.heart);
    this.heart = setInterval(() => this.send({ type: 'ping' }), ms);
  }

  join(session) {
    if (!this.sessions.has(session)) this.sessions.set(session, 0);
    if (this.ws.readyState === WebSocket.OPEN) this.send({ type: 'join', session });
  }

  send(frame) {
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Sends a frame and resolves with its ack (or rejects with the error). */
  request(frame) {
    const ref = this.nextRef++;
    return new Promise((resolve, reject) => {
      if (!this.send({ ...frame, ref })) {
        reject(new Error('Not connected; try again in a moment.'));
        return;
      }
      this.pending.set(ref, { resolve, reject });
    });
  }

  close() {
    this.closed = true;
    clearInterval(this.heart);
    this.ws.close();
  }
}
