// callguard screens: one stored call's review (`/calls/{id}`). The recording (customer left,
// agent right) with the transcript beside it: clicking a line plays from there and the line
// being heard is highlighted as it plays; the risk over the call with its prompts and
// signals marked and a playhead; each transfer prompt with its reasons, evidence, suggestion
// and who handled it; QA flags; QA notes (read and add, not for agents); exports.

import {
  $, CUSTOMER_TYPES, OUTCOMES, api, boot, canDelete, canNote, chip, clear, clock, dateTime, h,
  levelBadge, richText, riskPlot, span, timingText, toast, withToken,
} from './common.js';

const me = await boot('calls');
const id = decodeURIComponent(location.pathname.split('/').filter(Boolean)[1] || '');
const root = $('#review');

let detail;
try {
  detail = await api(`/api/calls/${encodeURIComponent(id)}`);
} catch (e) {
  clear(root, h('div', { class: 'panel error-panel' },
    h('h1', null, e.status === 404 ? 'No such call' : 'The call cannot be shown'),
    h('p', null, e.message), h('p', null, h('a', { href: '/calls' }, '← All calls'))));
  throw e;
}

const call = detail.call;
document.title = `${call.call_id} · callguard`;
const base = `/api/calls/${encodeURIComponent(call.id)}`;
const durationMs = Math.max(call.duration_ms || 0, ...detail.segments.map((sg) => sg.end_ms));

// ---- header
const exportLink = (fmt, label) => h('a', {
  class: 'btn-quiet export', href: withToken(`${base}/transcript.${fmt}?download=1`), download: '', 'data-format': fmt,
}, `↓ ${label}`);
const head = h('section', { class: 'review-head panel' },
  h('div', { class: 'review-title' },
    h('a', { href: '/calls', class: 'back muted' }, '← Calls'),
    h('h1', null, call.call_id),
    levelBadge(call.max_level),
    h('span', { class: 'muted' }, ` peak ${Math.round(call.max_score || 0)}`)),
  h('dl', { class: 'facts' },
    fact('Started', dateTime(call.started_unix_ms)),
    fact('Duration', span(call.duration_ms)),
    fact('Agent', call.agent || '—'),
    fact('Source', call.source || '—'),
    fact('Language', call.language || '—'),
    fact('Outcome', OUTCOMES[call.outcome] || call.outcome),
    fact('Transfer prompts', String(call.alerts || 0)),
    detail.summary && detail.summary.customer_type && CUSTOMER_TYPES[detail.summary.customer_type]
      ? fact('Customer', CUSTOMER_TYPES[detail.summary.customer_type].join(' · ')) : null),
  h('div', { class: 'chips' }, (call.reasons || []).map((k) => chip(k))),
  h('div', { class: 'exports' }, h('span', { class: 'muted' }, 'Export transcript '),
    exportLink('vtt', 'WebVTT'), exportLink('srt', 'SRT'), exportLink('json', 'JSON'),
    canDelete(me) ? h('button', { type: 'button', class: 'btn-danger', id: 'delete', onclick: del }, 'Delete call') : null));

function fact(k, v) {
  return h('div', null, h('dt', null, k), h('dd', null, v));
}

async function del() {
  if (!confirm(`Delete ${call.call_id} with its recording, transcript and notes? This cannot be undone.`)) return;
  try {
    await api(base, { method: 'DELETE' });
    location.href = '/calls';
  } catch (e) {
    toast(e.message, 'error');
  }
}

// ---- player, plot, transcript
const audio = h('audio', { id: 'player', controls: true, preload: 'metadata' });
let player;
if (call.has_audio) {
  audio.src = withToken(`${base}/audio.wav`);
  player = h('div', { class: 'player' }, audio, h('div', { class: 'muted small' }, 'Customer on the left channel, agent on the right. 左声道客户,右声道坐席。'));
} else {
  player = h('p', { class: 'muted' }, call.audio_deleted ? 'The recording was deleted by the retention policy.' : 'No recording was kept for this call.');
}

const plotBox = h('div', { class: 'review-plot', id: 'plot' });
const transcript = h('ol', { class: 'transcript transcript-review', id: 'transcript' });
const lineEls = detail.segments.map((sg, i) => {
  const li = h('li', {
    class: `line leg-${sg.leg}`, 'data-start': sg.start_ms, 'data-end': sg.end_ms, 'data-index': i,
    lang: sg.lang || null, tabindex: 0, role: 'button', title: 'Play from here',
  },
  h('span', { class: 'line-who' }, sg.leg === 'customer' ? 'Customer' : sg.leg === 'agent' ? 'Agent' : 'Call'),
  h('span', { class: 'line-time' }, `${clock(sg.start_ms)}–${clock(sg.end_ms)}`),
  h('span', { class: 'line-text' }, richText(sg.text)));
  const play = () => seek(sg.start_ms, true);
  li.addEventListener('click', play);
  li.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); play(); } });
  return li;
});
if (!lineEls.length) {
  lineEls.push(h('li', { class: 'muted' }, call.transcript_deleted ? 'The transcript was deleted by the retention policy.' : 'No words were transcribed.'));
}
transcript.append(...lineEls);

function seek(ms, play) {
  if (!call.has_audio) return;
  audio.currentTime = ms / 1000;
  follow(ms);
  if (play) audio.play().catch(() => { /* the browser may refuse to play; the position is set */ });
}

let currentIdx = -1;
function follow(ms) {
  let idx = -1;
  for (let i = 0; i < detail.segments.length; i++) {
    if (detail.segments[i].start_ms <= ms + 1) idx = i; else break;
  }
  // Only the line still being spoken (or the last one begun) is "current".
  if (idx !== currentIdx) {
    if (currentIdx >= 0 && lineEls[currentIdx]) lineEls[currentIdx].classList.remove('current');
    currentIdx = idx;
    const el = idx >= 0 ? lineEls[idx] : null;
    if (el) {
      el.classList.add('current');
      const top = el.offsetTop - transcript.offsetTop;
      if (top < transcript.scrollTop || top + el.offsetHeight > transcript.scrollTop + transcript.clientHeight) {
        transcript.scrollTo({ top: top - transcript.clientHeight / 3, behavior: 'smooth' });
      }
    }
  }
  if (plot) plot.setPlayhead(ms);
}
audio.addEventListener('timeupdate', () => follow(audio.currentTime * 1000));
audio.addEventListener('seeked', () => follow(audio.currentTime * 1000));

// ---- prompts, QA flags, notes
const alertsBox = h('section', { class: 'panel alerts', id: 'alerts' },
  h('h2', null, 'Transfer prompts ', h('span', { class: 'zh' }, '转接提示')),
  detail.alerts.length ? detail.alerts.map(alertCard) : h('p', { class: 'muted' }, 'No transfer prompt in this call.'));

function alertCard(rec) {
  const a = rec.alert;
  const d = rec.decision;
  const fired = rec.fired_unix_ms ? `fired ${dateTime(rec.fired_unix_ms)}` : '';
  return h('article', { class: `alert-card state-${rec.state}`, 'data-alert-id': rec.alert_id },
    h('div', { class: 'alert-head' },
      h('button', { type: 'button', class: 'btn-quiet at', title: 'Play from here', onclick: () => seek(Math.max(0, (a && a.evidence && a.evidence.quotes[0] ? a.evidence.quotes[0].start_ms : rec.at_ms)), true) }, `▶ ${clock(rec.at_ms)}`),
      levelBadge(rec.level), h('strong', null, ` score ${Math.round(rec.score)}`),
      h('span', { class: `state state-${rec.state}` }, rec.state === 'open' ? 'never answered' : rec.state),
      rec.escalated ? h('span', { class: 'state escalated' }, 're-sent: unanswered') : null,
      h('span', { class: 'muted small' }, fired)),
    d ? h('p', { class: `decision decision-${rec.state}` },
      `${rec.state === 'accepted' ? 'Accepted' : 'Dismissed'} by ${d.by} (${d.role}) at ${dateTime(d.at_unix_ms)}, `,
      h('strong', null, `${span(d.time_to_ack_ms)} after the prompt`),
      d.reason ? `. Why: “${d.reason}”` : '') : null,
    a ? h('div', { class: 'chips' }, (a.reasons || []).map((r) => chip(r.kind, `+${Math.round(r.points)}${r.count > 1 ? ` ×${r.count}` : ''}`))) : null,
    a && a.evidence ? h('div', { class: 'evidence' },
      (a.evidence.quotes || []).map((q) => h('blockquote', null, h('span', { class: 'muted' }, `${q.leg === 'agent' ? 'Agent' : 'Customer'} ${clock(q.start_ms)} `), richText(q.text))),
      (a.evidence.raised_voice || []).map((v) => h('p', { class: 'small muted' },
        `Raised voice at ${clock(v.start_ms)}: +${Number(v.db_over_baseline).toFixed(1)} dB over the caller's baseline (${(v.cues || []).join(', ')})`))) : null,
    a && a.suggestion ? h('div', { class: 'suggestion', lang: a.suggestion.lang },
      CUSTOMER_TYPES[a.customer_type] ? h('div', { class: 'muted small' }, `Suggested handling for a ${CUSTOMER_TYPES[a.customer_type][0].toLowerCase()} customer · ${CUSTOMER_TYPES[a.customer_type][1]}`) : null,
      h('p', { class: 'opening' }, a.suggestion.opening),
      h('ol', { class: 'steps' }, (a.suggestion.steps || []).map((st) => h('li', null, st))),
      a.suggestion.deadline ? h('p', { class: 'deadline small' }, h('strong', null, 'Time limits: '), a.suggestion.deadline) : null) : null);
}

const qaBox = h('section', { class: 'panel qa', id: 'qa-flags' },
  h('h2', null, 'QA flags ', h('span', { class: 'zh' }, '质检标记')),
  detail.qa_flags.length ? h('ul', { class: 'qa-list' }, detail.qa_flags.map((f) => h('li', null,
    h('button', { type: 'button', class: 'btn-quiet at', onclick: () => seek((f.quotes && f.quotes[0] ? f.quotes[0].start_ms : f.at_ms), true) }, `▶ ${clock(f.at_ms)}`),
    chip(f.kind), ' ', (f.terms || []).map((t) => h('mark', null, t)),
    (f.quotes || []).map((q) => h('blockquote', null, q.text)),
    h('p', { class: 'small' }, f.hint)))) : h('p', { class: 'muted' }, 'No QA flags.'));

const notesList = h('ul', { class: 'notes', id: 'notes' });
function noteItem(n) {
  return h('li', { class: 'note', 'data-note-id': n.id },
    h('div', { class: 'note-meta muted small' }, `${n.author} · ${dateTime(n.created_unix_ms)}`),
    h('p', null, n.text));
}
function paintNotes() {
  clear(notesList, detail.notes.length ? detail.notes.map(noteItem) : h('li', { class: 'muted' }, 'No notes yet.'));
}
paintNotes();
let noteForm = null;
if (canNote(me)) {
  const text = h('textarea', { name: 'text', id: 'note-text', rows: 3, maxlength: 4000, required: true, placeholder: 'What should the team learn from this call? 质检备注……' });
  const button = h('button', { type: 'submit', class: 'btn-primary', id: 'add-note' }, 'Add note');
  noteForm = h('form', { class: 'note-form', id: 'note-form' }, text, button);
  noteForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = text.value.trim();
    if (!body) return;
    button.disabled = true;
    try {
      const note = await api(`${base}/notes`, { method: 'POST', body: { text: body } });
      detail.notes.push(note);
      paintNotes();
      text.value = '';
      toast('Note added.', 'ok');
    } catch (e) {
      toast(`The note was not saved: ${e.message}`, 'error');
    } finally {
      button.disabled = false;
    }
  });
}
const notesBox = h('section', { class: 'panel notes-panel' }, h('h2', null, 'QA notes ', h('span', { class: 'zh' }, '质检备注')), notesList, noteForm);

const signalsList = detail.signals.length ? h('ul', { class: 'signal-list small' }, detail.signals.map((sg) => h('li', null,
  h('button', { type: 'button', class: 'btn-quiet at', onclick: () => seek(sg.start_ms, true) }, `▶ ${clock(sg.at_ms)}`),
  chip(sg.kind), ' ', (sg.terms || []).map((t) => h('mark', null, t)), sg.count ? ` ×${sg.count}` : '',
  sg.raised ? h('span', { class: 'muted' }, ` +${Number(sg.raised.db_over_baseline).toFixed(1)} dB`) : null,
  sg.timing ? h('span', { class: 'muted' }, `${sg.leg === 'agent' && sg.kind !== 'dead_air' ? ' agent:' : ''}${timingText(sg)}`) : null))) : null;

clear(root,
  head,
  h('div', { class: 'review-grid' },
    h('div', { class: 'review-main' },
      h('section', { class: 'panel listen' },
        h('h2', null, 'Listen ', h('span', { class: 'zh' }, '录音与转写')),
        player,
        h('div', { class: 'plot-legend small muted' },
          h('span', { class: 'lg lg-score' }, 'risk score'), h('span', { class: 'lg lg-alert' }, 'transfer prompt'),
          h('span', { class: 'lg lg-signal' }, 'signal'), ' · click the plot or a line to play from there'),
        plotBox,
        transcript)),
    h('div', { class: 'review-side' }, alertsBox, qaBox, notesBox,
      signalsList ? h('section', { class: 'panel' }, h('h2', null, 'Signals ', h('span', { class: 'zh' }, '检测信号')), signalsList) : null)));

let plot = null;
function drawPlot() {
  plot = riskPlot(plotBox, {
    points: detail.risk, duration: durationMs, height: 130, axis: true,
    alerts: detail.alerts.map((a) => ({ at_ms: a.at_ms, label: `transfer prompt, score ${Math.round(a.score)} (${a.state})` })),
    signals: detail.signals.map((sg) => ({ at_ms: sg.at_ms, kind: sg.kind })),
    onSeek: (ms) => seek(ms, false),
  });
  plot.setPlayhead(call.has_audio ? audio.currentTime * 1000 : null);
}
drawPlot();
let resizeTimer = 0;
window.addEventListener('resize', () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(drawPlot, 150); });
document.body.dataset.ready = 'true';
