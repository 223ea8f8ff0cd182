// Live video from the student to the proctors, by WebRTC through invigil's
// own TURN relay (relay-only ICE, so it works behind NAT and strict
// firewalls and never reveals a participant's addresses). Offers, answers and
// candidates travel as hub `signal` frames, which the server relays only
// between participants of the same session.
import { api } from './api.js';

// Candidates can arrive before the description they belong to has been
// applied (applying it awaits); they wait here instead of being lost, since
// with relay-only ICE a lost candidate is a missing TURN permission.
class Candidates {
  constructor() { this.waiting = []; }
  async add(pc, candidate) {
    if (pc?.remoteDescription) await pc.addIceCandidate(candidate).catch(() => {});
    else this.waiting.push(candidate);
  }
  async flush(pc) {
    const waiting = this.waiting.splice(0);
    for (const c of waiting) await pc.addIceCandidate(c).catch(() => {});
  }
}

async function iceConfig(session) {
  const ice = await api('GET', `/api/v1/sessions/${encodeURIComponent(session)}/ice`);
  return { iceServers: ice.iceServers, iceTransportPolicy: 'relay' };
}

/** The student's side: one connection per viewer that asks to watch (a
 * proctor may have the wall and a session view open at once; each is its own
 * viewer). */
export class Sender {
  constructor(hub, session, streams) {
    this.hub = hub;
    this.session = session;
    this.streams = streams; // () => MediaStream[]
    this.peers = new Map(); // "user viewer" → RTCPeerConnection
    this.candidates = new Map();
  }

  async onSignal(frame) {
    const { from, payload } = frame;
    const viewer = payload?.viewer ?? '';
    const key = `${from} ${viewer}`;
    if (payload?.type === 'watch') return this.offer(key, from, viewer);
    if (payload?.type === 'bye') {
      this.peers.get(key)?.close();
      this.peers.delete(key);
      this.candidates.delete(key);
      return;
    }
    const pc = this.peers.get(key);
    const queue = this.candidates.get(key);
    if (!pc || !queue) return;
    if (payload?.sdp) {
      await pc.setRemoteDescription(payload.sdp);
      await queue.flush(pc);
    }
    if (payload?.candidate) await queue.add(pc, payload.candidate);
  }

  async offer(key, to, viewer) {
    // A viewer asks only when it has no working connection, so its request
    // replaces whatever this side still holds for it.
    this.peers.get(key)?.close();
    const pc = new RTCPeerConnection(await iceConfig(this.session));
    this.peers.set(key, pc);
    this.candidates.set(key, new Candidates());
    for (const stream of this.streams()) {
      for (const track of stream.getVideoTracks()) pc.addTrack(track, stream);
    }
    pc.onicecandidate = e => { if (e.candidate) this.signal(to, { candidate: e.candidate.toJSON(), viewer }); };
    await pc.setLocalDescription(await pc.createOffer());
    this.signal(to, { sdp: pc.localDescription.toJSON(), viewer });
  }

  signal(to, payload) {
    this.hub.send({ type: 'signal', session: this.session, to, payload });
  }

  close() {
    for (const pc of this.peers.values()) pc.close();
    this.peers.clear();
  }
}

/** The proctor's side: asks the student for video and shows what arrives. */
export class Viewer {
  constructor(hub, session, student, video) {
    this.hub = hub;
    this.session = session;
    this.student = student;
    this.video = video;
    this.pc = null;
    this.candidates = new Candidates();
    this.id = crypto.randomUUID();
  }

  send(payload) {
    this.hub.send({ type: 'signal', session: this.session, to: this.student, payload: { ...payload, viewer: this.id } });
  }

  watch() {
    // Once per connection attempt: a new request only when none is under way.
    if (this.pc && ['new', 'connecting', 'connected'].includes(this.pc.connectionState)) return;
    if (Date.now() - (this.asked ?? 0) < 5000) return;
    this.asked = Date.now();
    this.send({ type: 'watch' });
  }

  async onSignal(frame) {
    const { payload } = frame;
    if (frame.from !== this.student || (payload?.viewer && payload.viewer !== this.id)) return;
    if (payload?.sdp?.type === 'offer') {
      this.pc?.close();
      // Candidates of this offer that arrive while it is being applied wait.
      this.pc = null;
      this.candidates = new Candidates();
      const queue = this.candidates;
      const pc = new RTCPeerConnection(await iceConfig(this.session));
      this.pc = pc;
      pc.ontrack = e => {
        if (this.video.srcObject !== e.streams[0]) this.video.srcObject = e.streams[0];
      };
      pc.onicecandidate = e => {
        if (e.candidate) this.send({ candidate: e.candidate.toJSON() });
      };
      await pc.setRemoteDescription(payload.sdp);
      await queue.flush(pc);
      await pc.setLocalDescription(await pc.createAnswer());
      this.send({ sdp: pc.localDescription.toJSON() });
    } else if (payload?.candidate) {
      await this.candidates.add(this.pc, payload.candidate);
    }
  }

  /** The candidate types of the pair in use, e.g. ['relay', 'relay']. */
  async route() {
    if (!this.pc) return null;
    const stats = await this.pc.getStats();
    for (const s of stats.values()) {
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        const pair = stats.get(s.selectedCandidatePairId);
        return [stats.get(pair.localCandidateId)?.candidateType, stats.get(pair.remoteCandidateId)?.candidateType];
      }
    }
    return null;
  }

  close() {
    // The student's side frees its connection for this viewer at once.
    if (this.pc) this.send({ type: 'bye' });
    this.pc?.close();
  }
}

/** Whether the relay can be reached from this network: gathers relay-only
 * candidates and waits for the first one (the student's system check). */
export async function relayReachable(session, ms = 8000) {
  const pc = new RTCPeerConnection(await iceConfig(session));
  try {
    pc.createDataChannel('check');
    const found = new Promise(resolve => {
      pc.onicecandidate = e => { if (e.candidate?.type === 'relay' || / typ relay /.test(e.candidate?.candidate ?? '')) resolve(true); };
      setTimeout(() => resolve(false), ms);
    });
    await pc.setLocalDescription(await pc.createOffer());
    return await found;
  } finally {
    pc.close();
  }
}
