// callguard screens: what every page shares. Signing in (a token in sessionStorage, or
// `#token=cg_...` in the address, checked with /api/me), the top bar, /api calls, small DOM
// helpers, labels for levels and signal kinds, time formatting and the risk-over-time plot.
// No framework, no build step, nothing loaded from anywhere but this server.

const TOKEN_KEY = 'callguard.token';

// ---------------------------------------------------------------------------------------------
// DOM helpers. Text always goes in as text nodes: transcripts are never parsed as HTML.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);

// ---------------------------------------------------------------------------------------------
// Vocabulary.

export const LEVELS = ['calm', 'watch', 'escalate'];
export const levelRank = (l) => Math.max(0, LEVELS.indexOf(l));
export const LEVEL_LABEL = { calm: 'Calm', watch: 'Watch', escalate: 'Escalate' };

/** Signal kinds: English label, Chinese label. */
export const KINDS = {
  raised_voice: ['Raised voice', '音量升高'],
  repeated_complaint: ['Repeated complaint', '重复投诉'],
  complaint: ['Complaint', '投诉'],
  threat_media: ['Media threat', '威胁曝光'],
  threat_social: ['Social media threat', '威胁发社交平台'],
  threat_legal: ['Legal threat', '威胁起诉'],
  threat_regulator: ['Regulator threat', '威胁向监管部门投诉'],
  churn: ['Churn risk', '流失风险'],
  escalation_request: ['Asks for a manager', '要求找主管'],
  agent_conduct: ['Agent conduct', '坐席用语不当'],
  interruption: ['Talk-over', '抢话'],
  dead_air: ['Dead air', '静音'],
  speaking_rate: ['Speaking fast', '语速过快'],
};

/** Kinds that are the agent's QA matter when the agent's leg shows them (a flag, never risk). */
export const isQaSignal = (m) => m.kind === 'agent_conduct'
  || (m.leg === 'agent' && (m.kind === 'interruption' || m.kind === 'speaking_rate'));

/** A timing signal's measurements, in words: talk-over, dead air, speaking rate. */
export function timingText(sg) {
  const t = sg.timing;
  if (!t) return '';
  if (sg.kind === 'interruption') {
    const n = t.per_minute > 1 ? `, ${t.per_minute} in a minute` : '';
    return ` over the ${t.over || 'other leg'} for ${(t.overlap_ms / 1000).toFixed(1)} s${n}`;
  }
  if (sg.kind === 'dead_air') return ` ${Math.round((t.silence_ms || 0) / 1000)} s of silence`;
  if (sg.kind === 'speaking_rate') {
    const base = t.baseline_per_s ? ` (was ${t.baseline_per_s.toFixed(1)})` : '';
    return ` ${Number(t.syllables_per_s).toFixed(1)} syllables/s${base}`;
  }
  return '';
}
export const kindLabel = (k) => (KINDS[k] ? KINDS[k][0] : k);

export const OUTCOMES = {
  live: 'Live',
  hangup: 'Hung up',
  disconnected: 'Disconnected',
  source_error: 'Source error',
  recovered: 'Recovered',
  lost_edge: 'Edge lost',
};

export const CUSTOMER_TYPES = {
  emotion_led: ['Emotion-led', '情绪主导型'],
  problem_led: ['Problem-led', '问题主导型'],
  instigating: ['Instigating', '恶意煽动型'],
};

export const LEG_LABEL = { customer: 'Customer', agent: 'Agent', mixed: 'Call' };

/** A reason chip: the kind's name, with a count or points when given. */
export function chip(kind, extra) {
  const [en, zh] = KINDS[kind] || [kind, ''];
  return h('span', { class: `chip kind-${kind}`, title: zh ? `${en} · ${zh}` : en },
    en, extra ? h('span', { class: 'chip-extra' }, extra) : null);
}

export function levelBadge(level) {
  return h('span', { class: `badge level-${level}` }, LEVEL_LABEL[level] || level);
}

// ---------------------------------------------------------------------------------------------
// Time.

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** Call time, `m:ss`. */
export function clock(ms) {
  const t = Math.max(0, Math.floor((ms || 0) / 1000));
  return `${Math.floor(t / 60)}:${pad(t % 60)}`;
}

/** A wall-clock time in the browser's zone, `YYYY-MM-DD HH:MM:SS`. */
export function dateTime(unixMs) {
  if (!unixMs) return '';
  const d = new Date(unixMs);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function timeOfDay(unixMs) {
  const d = new Date(unixMs);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A span of time for people: `45 s`, `3 min 05 s`, `1 h 02 min`. */
export function span(ms) {
  const t = Math.max(0, Math.round((ms || 0) / 1000));
  if (t < 60) return `${t} s`;
  if (t < 3600) return `${Math.floor(t / 60)} min ${pad(t % 60)} s`;
  return `${Math.floor(t / 3600)} h ${pad(Math.floor((t % 3600) / 60))} min`;
}

// ---------------------------------------------------------------------------------------------
// The token and /api.

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

/** `#token=cg_...` in the address: keep it for this tab, then take it out of the address bar. */
function takeFragmentToken() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (!m) return;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
  history.replaceState(history.state, '', location.pathname + location.search);
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

/** A JSON request to /api with the token; throws ApiError with the server's code and message. */
export async function api(path, { method = 'GET', body, tokenOverride } = {}) {
  const headers = { Authorization: `Bearer ${tokenOverride || token()}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, 'network', 'the server cannot be reached');
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!res.ok) {
    throw new ApiError(res.status, data && data.error, (data && data.message) || text.trim() || res.statusText);
  }
  return data;
}

/** A same-origin URL with the token in its query (for `<audio src>` and download links). */
export function withToken(url) {
  return `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token())}`;
}

export function wsUrl() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/ws?token=${encodeURIComponent(token())}`;
}

/** Who a token belongs to: {name, role, agent, may: {...}} from /api/me. */
function whoIs(tok) {
  return api('/api/me', { tokenOverride: tok });
}

export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
}

// What the screens offer: the server's `may` from /api/me (the role rules live there).
export const canDecide = (me) => !!(me && me.may && me.may.accept_transfer);
export const canDismiss = (me) => !!(me && me.may && me.may.dismiss_alert);
export const canNote = (me) => !!(me && me.may && me.may.annotate);
export const canDelete = (me) => !!(me && me.may && me.may.delete);

const PII = { card: 'card number', phone: 'phone number', id: 'ID number', email: 'e-mail address', digits: 'digits' };

/** Transcript text with redaction placeholders (`[card]`, `[phone]`, ...) shown as tags. */
export function richText(text) {
  const out = [];
  let last = 0;
  const re = /\[(card|phone|id|email|digits)\]/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (m.index > last) out.push(text.slice(last, m.index));
    out.push(h('span', { class: 'redacted', title: `${PII[m[1]]} removed` }, PII[m[1]]));
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

// ---------------------------------------------------------------------------------------------
// The page frame: top bar and sign-in.

const NAV = [
  ['/', 'Live wall', 'wall'],
  ['/agent', 'Agent', 'agent'],
  ['/calls', 'Calls', 'calls'],
];

function topBar(page, me) {
  const nav = h('nav', { class: 'nav' },
    NAV.filter(([, , id]) => !(me && !(me.may && me.may.watch_all) && id === 'wall'))
      .map(([href, label, id]) => h('a', { href, class: id === page ? 'active' : null }, label)));
  const who = me
    ? h('div', { class: 'who' },
      h('span', { class: 'who-name', id: 'who' }, `signed in as ${me.name} (${me.role})`),
      h('button', { type: 'button', class: 'btn-quiet', id: 'sign-out', onclick: signOut }, 'Sign out'))
    : null;
  return h('div', { class: 'bar' },
    h('a', { class: 'brand', href: '/' },
      h('img', { src: '/ui/favicon.svg', alt: '', width: 22, height: 22 }), 'callguard'),
    nav,
    h('div', { class: 'tools', id: 'tools' }),
    who);
}

function signInForm(message) {
  return new Promise((resolve) => {
    const input = h('input', {
      type: 'password', id: 'token-input', name: 'token', autocomplete: 'off', spellcheck: 'false',
      placeholder: 'cg_…', required: true, 'aria-label': 'Access token',
    });
    const err = h('p', { class: 'error', id: 'signin-error', role: 'alert' }, message || '');
    const button = h('button', { type: 'submit', class: 'btn-primary', id: 'sign-in' }, 'Sign in');
    const form = h('form', { class: 'signin', id: 'signin' },
      h('h1', null, 'Sign in to callguard'),
      h('p', { class: 'muted' }, 'Paste the access token you were given (',
        h('code', null, 'callguard token create'), '). It is kept in this tab only. 请输入访问令牌。'),
      input, button, err);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const tok = input.value.trim();
      button.disabled = true;
      err.textContent = '';
      try {
        const me = await whoIs(tok);
        sessionStorage.setItem(TOKEN_KEY, tok);
        form.remove();
        resolve(me);
      } catch (e) {
        err.textContent = e.status === 401 || e.status === 403
          ? 'That token was not accepted.' : `Cannot sign in: ${e.message}`;
        button.disabled = false;
      }
    });
    clear(document.querySelector('main'), form);
    input.focus();
  });
}

/**
 * Starts a page: reads a token from the address or the tab, checks it, draws the top bar,
 * and resolves with who is signed in ({name, role, agent}). Without a valid token the page
 * shows the sign-in form first.
 */
export async function boot(page) {
  takeFragmentToken();
  const header = document.querySelector('header');
  clear(header, topBar(page, null));
  let me = null;
  let message = '';
  if (token()) {
    try {
      me = await whoIs(token());
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      message = e.status === 401 || e.status === 403
        ? 'Your token is no longer accepted: sign in again.' : `Cannot reach callguard: ${e.message}`;
    }
  }
  if (!me) {
    const main = document.querySelector('main');
    const saved = [...main.childNodes];
    me = await signInForm(message);
    main.replaceChildren(...saved);
  }
  document.body.dataset.role = me.role;
  clear(header, topBar(page, me));
  return me;
}

let toastTimer = 0;
/** A short message at the bottom of the screen. */
export function toast(text, kind = 'info') {
  let el = document.getElementById('toast');
  if (!el) {
    el = h('div', { id: 'toast', role: 'status' });
    document.body.append(el);
  }
  el.className = `toast show ${kind}`;
  el.textContent = text;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.className = 'toast'; }, 5000);
}

// ---------------------------------------------------------------------------------------------
// The risk gauge and the risk-over-time plot (inline SVG).

/** A half-circle gauge of a 0..100 score, coloured by level. */
export function gauge(score, level, size = 64) {
  const r = 26;
  const frac = Math.max(0, Math.min(1, (score || 0) / 100));
  const arc = (f) => {
    const a = Math.PI * (1 - f);
    return [32 + r * Math.cos(a), 34 - r * Math.sin(a)];
  };
  const [x, y] = arc(frac);
  const large = 0;
  return s('svg', { class: `gauge level-${level}`, viewBox: '0 0 64 40', width: size, height: size * 40 / 64, role: 'img', 'aria-label': `risk ${Math.round(score || 0)} of 100, ${level}` },
    s('path', { class: 'gauge-track', d: `M ${32 - r} 34 A ${r} ${r} 0 0 1 ${32 + r} 34` }),
    frac > 0.005 ? s('path', { class: 'gauge-value', d: `M ${32 - r} 34 A ${r} ${r} 0 ${large} 1 ${x.toFixed(2)} ${y.toFixed(2)}` }) : null,
    s('text', { class: 'gauge-text', x: 32, y: 33, 'text-anchor': 'middle' }, String(Math.round(score || 0))));
}

/**
 * Draws score over call time into `box`: level bands, the score as steps, alerts as red
 * flags, signals as dots along the bottom, and a playhead. Returns {setPlayhead(ms)}.
 * opts: points [{at_ms, score, level}], duration (ms), alerts [{at_ms, label}],
 * signals [{at_ms, kind}], height, axis (draw time labels), onSeek(ms).
 */
export function riskPlot(box, opts) {
  const width = Math.max(160, box.clientWidth || 300);
  const height = opts.height || 80;
  const axis = opts.axis ? 16 : 0;
  const top = 4;
  const plotH = height - axis - top;
  const duration = Math.max(1000, opts.duration || 0,
    ...(opts.points || []).map((p) => p.at_ms), ...(opts.alerts || []).map((a) => a.at_ms));
  const x = (ms) => (ms / duration) * width;
  const y = (score) => top + plotH - (Math.max(0, Math.min(100, score)) / 100) * plotH;

  const svg = s('svg', {
    class: 'risk-plot', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': 'risk score over the call',
  });
  // Bands at the default thresholds (watch 30, escalate 60).
  svg.append(
    s('rect', { class: 'band band-escalate', x: 0, y: y(100), width, height: y(60) - y(100) }),
    s('rect', { class: 'band band-watch', x: 0, y: y(60), width, height: y(30) - y(60) }),
    s('rect', { class: 'band band-calm', x: 0, y: y(30), width, height: y(0) - y(30) }),
  );
  // The score as held between reports, from 0 at the start to the end of the call.
  const pts = [...(opts.points || [])].sort((a, b) => a.at_ms - b.at_ms);
  let d = `M 0 ${y(0)}`;
  for (const p of pts) {
    d += ` H ${x(p.at_ms).toFixed(1)} V ${y(p.score).toFixed(1)}`;
  }
  d += ` H ${x(duration).toFixed(1)}`;
  svg.append(
    s('path', { class: 'score-area', d: `${d} V ${y(0)} Z` }),
    s('path', { class: 'score-line', d }),
  );
  for (const p of pts) {
    svg.append(s('circle', { class: `score-dot level-${p.level}`, cx: x(p.at_ms), cy: y(p.score), r: 2.5 },
      s('title', null, `${clock(p.at_ms)}  score ${Math.round(p.score)} (${p.level})`)));
  }
  for (const sg of opts.signals || []) {
    svg.append(s('circle', { class: `signal-mark kind-${sg.kind}`, cx: x(sg.at_ms), cy: top + plotH - 4, r: 3.5 },
      s('title', null, `${clock(sg.at_ms)}  ${kindLabel(sg.kind)}`)));
  }
  for (const a of opts.alerts || []) {
    const ax = x(a.at_ms);
    svg.append(s('g', { class: 'alert-mark' },
      s('line', { x1: ax, x2: ax, y1: top, y2: top + plotH }),
      s('path', { d: `M ${ax} ${top} l 9 4 l -9 4 Z` }),
      s('title', null, `${clock(a.at_ms)}  ${a.label || 'transfer prompt'}`)));
  }
  if (axis) {
    const step = [5, 10, 15, 30, 60, 120, 300, 600].find((st) => duration / 1000 / st <= width / 60) || 600;
    for (let t = 0; t <= duration / 1000; t += step) {
      const tx = x(t * 1000);
      svg.append(
        s('line', { class: 'tick', x1: tx, x2: tx, y1: top + plotH, y2: top + plotH + 4 }),
        s('text', { class: 'tick-label', x: Math.min(width - 14, Math.max(12, tx)), y: height - 2, 'text-anchor': 'middle' }, clock(t * 1000)));
    }
  }
  svg.append(s('line', { class: 'axis', x1: 0, x2: width, y1: top + plotH, y2: top + plotH }));
  const head = s('line', { class: 'playhead', x1: 0, x2: 0, y1: 0, y2: top + plotH, visibility: 'hidden' });
  svg.append(head);
  if (opts.onSeek) {
    svg.classList.add('seekable');
    svg.addEventListener('click', (ev) => {
      const rect = svg.getBoundingClientRect();
      opts.onSeek(((ev.clientX - rect.left) / rect.width) * duration);
    });
  }
  clear(box, svg);
  return {
    setPlayhead(ms) {
      const hidden = ms === null || ms === undefined || Number.isNaN(ms);
      head.setAttribute('visibility', hidden ? 'hidden' : 'visible');
      if (hidden) return;
      const px = Math.min(width - 1, Math.max(1, x(ms)));
      head.setAttribute('x1', px);
      head.setAttribute('x2', px);
    },
  };
}
