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

/** The student's side: one connection per proctor who asks to watch. */
export class Sender {
  constructor(hub, session, streams) {
    this.hub = hub;
    this.session = session;
    this.streams = streams; // () => MediaStream[]
    this.peers = new Map();
    this.candidates = new Map();
  }

  async onSignal(frame) {
    const { from, payload } = frame;
    if (payload?.type === 'watch') return this.offer(from);
    const pc = this.peers.get(from);
    const queue = this.candidates.get(from);
    if (!pc || !queue) return;
    if (payload?.sdp) {
      await pc.setRemoteDescription(payload.sdp);
      await queue.flush(pc);
    }
    if (payload?.candidate) await queue.add(pc, payload.candidate);
  }

  async offer(to) {
    // A repeated request while a connection is being made or works is
    // answered by that connection, not by tearing it down.
    const current = this.peers.get(to);
    if (current && ['new', 'connecting', 'connected'].includes(current.connectionState) && current.remoteDescription === null) return;
    if (current && current.connectionState === 'connected') return;
    current?.close();
    const pc = new RTCPeerConnection(await iceConfig(this.session));
    this.peers.set(to, pc);
    this.candidates.set(to, new Candidates());
    for (const stream of this.streams()) {
      for (const track of stream.getVideoTracks()) pc.addTrack(track, stream);
    }
    pc.onicecandidate = e => { if (e.candidate) this.signal(to, { candidate: e.candidate.toJSON() }); };
    await pc.setLocalDescription(await pc.createOffer());
    this.signal(to, { sdp: pc.localDescription.toJSON() });
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
  }

  watch() {
    // Once per connection attempt: a new request only when none is under way.
    if (this.pc && ['new', 'connecting', 'connected'].includes(this.pc.connectionState)) return;
    if (Date.now() - (this.asked ?? 0) < 5000) return;
    this.asked = Date.now();
    this.hub.send({ type: 'signal', session: this.session, to: this.student, payload: { type: 'watch' } });
  }

  async onSignal(frame) {
    if (frame.from !== this.student) return;
    const { payload } = frame;
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
        if (e.candidate) this.hub.send({ type: 'signal', session: this.session, to: this.student, payload: { candidate: e.candidate.toJSON() } });
      };
      await pc.setRemoteDescription(payload.sdp);
      await queue.flush(pc);
      await pc.setLocalDescription(await pc.createAnswer());
      this.hub.send({ type: 'signal', session: this.session, to: this.student, payload: { sdp: pc.localDescription.toJSON() } });
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
