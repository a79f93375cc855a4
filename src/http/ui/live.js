// callguard screens: the live side shared by the wall and the agent screen. `Live` keeps a
// /ws connection up (exponential backoff, rebuilt from each snapshot, commands matched to
// their replies); `CallBook` folds the protocol's messages into one model per active call;
// `transcriptView` draws a call's lines (customer and agent apart, partials in progress).

import { ApiError, api, clock, clear, h, isQaSignal, richText, signOut, wsUrl } from './common.js';

const MAX_BACKOFF_S = 30;

/** A self-healing /ws connection. onState({state, retryIn}) reports connected/reconnecting. */
export class Live {
  constructor({ onMessage, onState }) {
    this.onMessage = onMessage;
    this.onState = onState || (() => {});
    this.attempt = 0;
    this.nextId = 1;
    this.pending = new Map();
    this.ws = null;
    this.gotSnapshot = false;
    this.timer = 0;
    setInterval(() => {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send('{"type":"ping"}');
    }, 25000);
  }

  connect() {
    clearInterval(this.timer);
    this.onState({ state: 'connecting' });
    this.gotSnapshot = false;
    const ws = new WebSocket(wsUrl());
    this.ws = ws;
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      if (msg.type === 'snapshot') {
        this.attempt = 0;
        this.gotSnapshot = true;
        this.onState({ state: 'connected' });
      }
      if ((msg.type === 'ack' || msg.type === 'error' || msg.type === 'pong') && msg.id && this.pending.has(msg.id)) {
        const { resolve, reject } = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        if (msg.type === 'error') reject(new ApiError(0, msg.code, msg.message));
        else resolve(msg);
        return;
      }
      this.onMessage(msg);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      for (const { reject } of this.pending.values()) reject(new ApiError(0, 'disconnected', 'the connection dropped'));
      this.pending.clear();
      this.retry(ev, !this.gotSnapshot);
    };
  }

  async retry(ev, refused) {
    // Refused before any snapshot: perhaps the token was revoked. Ask /api/me.
    if (refused && this.attempt > 0) {
      try { await api('/api/me'); } catch (e) {
        if (e.status === 401) { signOut(); return; }
      }
    }
    const delay = Math.min(MAX_BACKOFF_S, 2 ** this.attempt);
    this.attempt += 1;
    let left = delay;
    const tick = () => {
      if (left <= 0) { clearInterval(this.timer); this.connect(); return; }
      this.onState({ state: 'reconnecting', retryIn: left, reason: ev && ev.reason });
      left -= 1;
    };
    tick();
    this.timer = setInterval(tick, 1000);
  }

  /** Sends a command; resolves with its `ack`, rejects with its `error`. */
  send(cmd) {
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        reject(new ApiError(0, 'disconnected', 'not connected: try again in a moment'));
        return;
      }
      const id = `c${this.nextId++}`;
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ ...cmd, id }));
      setTimeout(() => {
        if (this.pending.delete(id)) reject(new ApiError(0, 'timeout', 'no reply from the server'));
      }, 10000);
    });
  }
}

/** The connection state as a small pill in the top bar. */
export function connectionPill() {
  const el = h('span', { class: 'conn conn-connecting', id: 'conn', role: 'status' }, 'Connecting…');
  return {
    el,
    update({ state, retryIn }) {
      el.className = `conn conn-${state}`;
      el.textContent = state === 'connected' ? 'Live' :
        state === 'reconnecting' ? `Reconnecting in ${retryIn} s` : 'Connecting…';
      el.title = state === 'connected' ? 'connected to callguard' : 'not connected';
    },
  };
}

function newCall(info, startedMs) {
  return {
    id: info.call_id,
    info,
    startedMs: startedMs || Date.now(),
    level: 'calm',
    score: 0,
    risk: [],
    lines: [],
    partial: {},
    lastFinalEnd: {},
    reasons: new Map(),
    signals: [],
    alerts: new Map(),
    qa: [],
    ended: false,
    endedAt: 0,
    summary: null,
    lastAt: 0,
    version: 0,
  };
}

/** The active calls as the protocol describes them. apply() returns the call it changed. */
export class CallBook {
  constructor() {
    this.calls = new Map();
  }

  /** Call time now (ms since the call started, by this browser's clock). */
  static now(call) {
    return call.ended ? Math.max(call.lastAt, (call.endedAt || Date.now()) - call.startedMs) : Math.max(call.lastAt, Date.now() - call.startedMs);
  }

  apply(m) {
    if (m.type === 'snapshot') {
      this.calls.clear();
      for (const v of m.calls || []) {
        const c = newCall(v.call, v.started_unix_ms);
        c.level = v.level;
        c.score = v.score;
        for (const line of v.last_lines || []) this.transcript(c, line);
        for (const a of v.alerts || []) this.alert(c, a, null);
        for (const st of v.alert_status || []) this.status(c, st);
        if (v.lost_edge) this.lose(c, v.lost_edge);
        const at = Math.max(0, Date.now() - c.startedMs);
        if (c.score > 0) c.risk.push({ at_ms: at, score: c.score, level: c.level });
        this.calls.set(c.id, c);
      }
      return null;
    }
    const id = m.call_id;
    if (!id) return null;
    let c = this.calls.get(id);
    if (m.type === 'call_started') {
      if (!c || c.ended) {
        c = newCall(m.call);
        this.calls.set(id, c);
      } else {
        c.info = m.call;
      }
      c.version++;
      return c;
    }
    if (!c) return null;
    if (typeof m.at_ms === 'number') c.lastAt = Math.max(c.lastAt, m.at_ms);
    switch (m.type) {
      case 'call_ended':
        c.ended = true;
        c.endedAt = c.endedAt || Date.now();
        c.lost = null;
        c.partial = {};
        break;
      case 'call_lost':
        this.lose(c, m.edge);
        break;
      case 'call_resumed':
        c.ended = false;
        c.endedAt = null;
        c.lost = null;
        break;
      case 'transcript':
        this.transcript(c, m);
        break;
      case 'signal':
        c.signals.push(m);
        // The agent's own QA matters are flags for QA, not reasons on the wall.
        if (!isQaSignal(m)) c.reasons.set(m.kind, (c.reasons.get(m.kind) || 0) + 1);
        break;
      case 'risk':
        c.level = m.level;
        c.score = m.score;
        c.risk.push({ at_ms: m.at_ms, score: m.score, level: m.level });
        break;
      case 'alert':
        this.alert(c, m, { state: 'open', escalated: false, fired_unix_ms: Date.now() });
        c.level = m.level;
        c.score = Math.max(c.score, m.score);
        c.risk.push({ at_ms: m.at_ms, score: m.score, level: m.level });
        break;
      case 'alert_updated':
        if (m.alert) this.alert(c, m.alert, null);
        this.status(c, m);
        break;
      case 'qa_flag':
        c.qa.push(m);
        break;
      case 'summary':
        c.summary = m;
        break;
      default:
        return null;
    }
    c.version++;
    return c;
  }

  /** A cluster call whose edge died: over as far as anyone knows, its last state kept. */
  lose(c, edge) {
    c.ended = true;
    c.endedAt = Date.now();
    c.lost = edge;
    c.partial = {};
  }

  transcript(c, t) {
    if (t.final === false) {
      if ((c.lastFinalEnd[t.leg] || 0) >= t.end_ms) return;
      c.partial[t.leg] = t;
      return;
    }
    delete c.partial[t.leg];
    c.lastFinalEnd[t.leg] = Math.max(c.lastFinalEnd[t.leg] || 0, t.end_ms);
    if (c.lines.some((l) => l.leg === t.leg && l.start_ms === t.start_ms && l.text === t.text)) return;
    c.lines.push(t);
    c.lines.sort((a, b) => a.start_ms - b.start_ms || a.end_ms - b.end_ms);
  }

  alert(c, a, status) {
    const prev = c.alerts.get(a.alert_id);
    c.alerts.set(a.alert_id, { alert: a, status: (prev && prev.status) || status || { state: 'open', escalated: false, fired_unix_ms: Date.now() } });
    for (const r of a.reasons || []) if (!c.reasons.has(r.kind)) c.reasons.set(r.kind, r.count || 1);
  }

  status(c, st) {
    const prev = c.alerts.get(st.alert_id);
    const status = {
      state: st.state, escalated: st.escalated, fired_unix_ms: st.fired_unix_ms,
      decision: st.decision || null,
    };
    c.alerts.set(st.alert_id, { alert: prev ? prev.alert : null, status });
  }

  /** Active calls first, then by level, then by score, then the newest. */
  sorted() {
    const rank = { calm: 0, watch: 1, escalate: 2 };
    return [...this.calls.values()].sort((a, b) =>
      (a.ended - b.ended) || (rank[b.level] - rank[a.level]) || (b.score - a.score) || (b.startedMs - a.startedMs));
  }
}

/** A call's open prompt, if any (the newest). */
export function openPrompt(call) {
  let found = null;
  for (const entry of call.alerts.values()) if (entry.status.state === 'open') found = entry;
  return found;
}

/** The ids of a call's open prompts, oldest first. */
export function openPromptIds(call) {
  const ids = [];
  for (const [id, entry] of call.alerts.entries()) if (entry.status.state === 'open') ids.push(id);
  return ids;
}

/** The call's most recent prompt of any state. */
export function lastPrompt(call) {
  let found = null;
  for (const entry of call.alerts.values()) found = entry;
  return found;
}

/** Draws a call's transcript into `list` (an <ol>): the last `max` final lines and partials. */
export function transcriptView(list, call, max = 0) {
  const lines = max ? call.lines.slice(-max) : call.lines;
  const items = lines.map((l) => lineItem(l, false));
  for (const p of Object.values(call.partial).sort((a, b) => a.start_ms - b.start_ms)) items.push(lineItem(p, true));
  if (!items.length) items.push(h('li', { class: 'line-empty muted' }, call.ended ? 'No words were transcribed.' : 'Listening…'));
  clear(list, items);
  list.scrollTop = list.scrollHeight;
}

function lineItem(l, partial) {
  return h('li', { class: `line leg-${l.leg}${partial ? ' partial' : ''}`, 'data-start': l.start_ms, lang: l.lang || null },
    h('span', { class: 'line-who' }, l.leg === 'customer' ? 'Customer' : l.leg === 'agent' ? 'Agent' : 'Call'),
    h('span', { class: 'line-time' }, clock(l.start_ms)),
    h('span', { class: 'line-text' }, richText(l.text), partial ? h('span', { class: 'typing', 'aria-label': 'still speaking' }, ' …') : null));
}
