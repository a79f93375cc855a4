// callguard screens: the agent's own screen (`/agent`). The agent's current call (an agent
// token sees only its own calls) with its live transcript; coaching hints from the playbook
// as the detectors hear the customer (and the agent's own wording); the suggested handling
// script when the call escalates; and a clear notice when a supervisor takes the call over.
// Other roles get a picker of the active calls to see what an agent sees.

import { $, CUSTOMER_TYPES, boot, chip, clear, clock, gauge, h, isQaSignal, levelBadge } from './common.js';
import { CallBook, Live, connectionPill, lastPrompt, transcriptView } from './live.js';
import { CUSTOMER_TYPE_HINT, HINTS, TIME_LIMITS } from './playbook.js';

const me = await boot('agent');
const book = new CallBook();
const pill = connectionPill();
clear($('#tools'), pill.el);
let chosen = null; // the call shown; null: follow the newest active call
const picker = $('#picker');

clear($('#limits'), TIME_LIMITS.map(([en, zh]) => h('li', null, en, h('span', { class: 'zh-line', lang: 'zh' }, zh))));

const live = new Live({
  onState: pill.update,
  onMessage(m) {
    const call = book.apply(m);
    if (m.type === 'call_started' && me.role === 'agent') chosen = null;
    if (m.type === 'snapshot' || m.type === 'call_started' || m.type === 'call_ended') paintPicker();
    const shown = current();
    if (m.type === 'snapshot' || !call || !shown || call.id === shown.id) paint();
  },
});

/** The call on screen: the picked one, else the newest active call, else the last one. */
function current() {
  if (chosen && book.calls.has(chosen)) return book.calls.get(chosen);
  const all = [...book.calls.values()].sort((a, b) => (a.ended - b.ended) || (b.startedMs - a.startedMs));
  return all[0] || null;
}

function paintPicker() {
  if (me.role === 'agent') {
    clear(picker, h('span', { class: 'muted' }, me.agent ? `Extension ${me.agent}` : ''));
    return;
  }
  const select = h('select', { id: 'call-picker', 'aria-label': 'Call to show' },
    h('option', { value: '' }, 'Newest active call'),
    [...book.calls.values()].map((c) => h('option', { value: c.id, selected: c.id === chosen },
      `${c.id}${c.info.agent ? ` · agent ${c.info.agent}` : ''}${c.ended ? ' (ended)' : ''}`)));
  select.addEventListener('change', () => { chosen = select.value || null; paint(); });
  clear(picker, h('label', null, 'Call ', select));
}

function paint() {
  const c = current();
  const head = $('#call-head');
  const list = $('#transcript');
  if (!c) {
    clear(head, h('div', { class: 'waiting' },
      h('strong', null, 'Waiting for your next call'), h('span', { class: 'zh-line', lang: 'zh' }, '等待来电')));
    clear(list);
    $('#script').hidden = true;
    $('#joining').hidden = true;
    clear($('#hints'), h('li', { class: 'muted' }, 'Hints appear here during a call. 通话中将在此显示提示。'));
    document.body.dataset.call = '';
    return;
  }
  document.body.dataset.call = c.id;
  clear(head,
    gauge(c.score, c.level, 64),
    h('div', { class: 'call-head-meta' },
      h('h2', null, c.id),
      h('div', { class: 'muted' }, c.ended ? 'Call ended' : 'On the call', ' · ', h('span', { class: 'elapsed' }, clock(CallBook.now(c))),
        c.info.lang ? ` · ${c.info.lang}` : '')),
    levelBadge(c.level));
  transcriptView(list, c);
  paintJoining(c);
  paintScript(c);
  paintHints(c);
}

/** The supervisor's decision on this call's newest prompt. */
function paintJoining(c) {
  const box = $('#joining');
  const p = lastPrompt(c);
  if (!p || p.status.state === 'open' || !p.status.decision) {
    box.hidden = true;
    return;
  }
  const d = p.status.decision;
  box.hidden = false;
  box.className = `joining state-${p.status.state}`;
  if (p.status.state === 'accepted') {
    clear(box, h('strong', null, 'A supervisor is joining'), h('span', { lang: 'zh' }, ' · 主管正在接入'),
      h('p', null, `${d.by} is taking this call over. Tell the customer: “My supervisor is joining us now.” 请告知客户:“我们的主管马上为您处理。”`));
  } else {
    clear(box, h('strong', null, 'No transfer needed'), h('span', { lang: 'zh' }, ' · 无需转接'),
      h('p', null, `${d.by} reviewed the prompt${d.reason ? `: “${d.reason}”` : ''}. Carry on, and keep the customer's feelings first.`));
  }
}

/** The suggested handling script of the newest prompt, in the call's language. */
function paintScript(c) {
  const box = $('#script');
  const p = lastPrompt(c);
  const alert = p && p.alert;
  if (!alert || !alert.suggestion) {
    box.hidden = true;
    return;
  }
  const sug = alert.suggestion;
  const ct = CUSTOMER_TYPES[alert.customer_type];
  const cth = CUSTOMER_TYPE_HINT[alert.customer_type];
  box.hidden = false;
  clear(box,
    h('h2', null, 'Suggested script ', h('span', { class: 'zh' }, '建议话术')),
    h('div', { class: 'chips' }, (alert.reasons || []).map((r) => chip(r.kind))),
    ct ? h('p', { class: 'muted small' }, `${ct[0]} customer · ${ct[1]}`, cth ? ` — ${cth[0]} ${cth[1]}` : '') : null,
    h('p', { class: 'say', lang: sug.lang }, sug.opening),
    h('ol', { class: 'steps', lang: sug.lang }, (sug.steps || []).map((st) => h('li', null, st))),
    sug.deadline ? h('p', { class: 'deadline small', lang: sug.lang }, h('strong', null, 'Time limits: '), sug.deadline) : null);
}

/** The hint kind of a QA flag: the agent's wording and dead air by name, the agent's own
 * talk-over and pace apart from the customer's. */
const qaHintKind = (q) => (q.kind === 'agent_conduct' || q.kind === 'dead_air' ? q.kind : `agent_${q.kind}`);

/** One hint per kind the call has shown, newest first; the agent's own matters (QA flags:
 * wording, talk-over, pace, dead air) first of all. */
function paintHints(c) {
  const seen = new Map();
  const own = new Set();
  for (const sg of c.signals) if (!isQaSignal(sg) && sg.kind !== 'dead_air') seen.set(sg.kind, { at: sg.at_ms });
  for (const q of c.qa) {
    const k = qaHintKind(q);
    own.add(k);
    seen.set(k, { at: q.at_ms, hint: q.hint, terms: q.terms });
  }
  const kinds = [...seen.entries()].sort((a, b) =>
    (own.has(b[0]) - own.has(a[0])) || (b[1].at - a[1].at));
  const items = kinds.filter(([k]) => HINTS[k]).map(([k, info]) => {
    const hint = HINTS[k];
    return h('li', { class: `hint kind-${k}`, 'data-kind': k },
      h('div', { class: 'hint-title' }, hint.title[0], h('span', { class: 'zh-line', lang: 'zh' }, hint.title[1])),
      h('span', { class: 'hint-at muted small' }, clock(info.at)),
      info.hint ? h('p', { class: 'hint-server' }, info.hint) : null,
      h('p', null, hint.do[0], h('span', { class: 'zh-line', lang: 'zh' }, hint.do[1])),
      h('p', { class: 'say' }, hint.say[0], h('span', { class: 'zh-line', lang: 'zh' }, hint.say[1])));
  });
  clear($('#hints'), items.length ? items : h('li', { class: 'muted' }, 'All calm so far. Listen fully, confirm the need, promise concrete times. 认真倾听,确认诉求,承诺具体时间。'));
}

setInterval(() => {
  const c = current();
  const el = document.querySelector('#call-head .elapsed');
  if (c && el && !c.ended) el.textContent = clock(CallBook.now(c));
}, 1000);

paint();
live.connect();
