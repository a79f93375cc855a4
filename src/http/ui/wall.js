// callguard screens: the supervisors' live wall (`/`). Every active call as a card, riskiest
// first: a gauge, risk over time, reason chips and the live transcript. A transfer prompt
// turns its card red, raises a banner, may beep, and offers Accept transfer / Dismiss (for
// supervisors; QA watches read-only). Who took or dismissed a prompt shows for everyone.
// A call can raise a second prompt while its first is still open (a new kind of trouble):
// the card shows the newest open one, and Accept or Dismiss answers every open prompt of the
// call. Agents are sent to their own screen.

import {
  $, CUSTOMER_TYPES, LEVEL_LABEL, api, boot, canDecide, canDismiss, chip, clear, clock, gauge, h,
  kindLabel, richText, riskPlot, span, toast,
} from './common.js';
import { CallBook, Live, connectionPill, lastPrompt, openPrompt, openPromptIds, transcriptView } from './live.js';

const FADE_AFTER_MS = 120000;

const me = await boot('wall');
if (!(me.may && me.may.watch_all)) {
  location.replace('/agent');
  await new Promise(() => {}); // the page is going away
}

const book = new CallBook();
const cards = new Map();
const grid = $('#wall');
const banner = $('#banner');
const empty = $('#empty');
const pill = connectionPill();
const live = new Live({ onMessage, onState: pill.update });

// Sound: off by default; a click on the toggle is the gesture that lets the page play.
let audio = null;
let soundOn = localStorage.getItem('callguard.sound') === 'on';
const soundBtn = h('button', { type: 'button', class: 'btn-quiet', id: 'sound', 'aria-pressed': String(soundOn), onclick: toggleSound });
function paintSound() {
  soundBtn.textContent = soundOn ? 'Sound: on' : 'Sound: off';
  soundBtn.title = soundOn ? 'A beep sounds on each transfer prompt' : 'Beep on transfer prompts';
  soundBtn.setAttribute('aria-pressed', String(soundOn));
}
function toggleSound() {
  soundOn = !soundOn;
  localStorage.setItem('callguard.sound', soundOn ? 'on' : 'off');
  if (soundOn) beep(1);
  paintSound();
}
function beep(times) {
  if (!soundOn) return;
  try {
    audio = audio || new AudioContext();
    for (let i = 0; i < times; i++) {
      const t = audio.currentTime + i * 0.35;
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = i % 2 ? 660 : 880;
      gain.gain.setValueAtTime(0.0001, t);
      gain.gain.exponentialRampToValueAtTime(0.3, t + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.25);
      osc.connect(gain).connect(audio.destination);
      osc.start(t);
      osc.stop(t + 0.3);
    }
  } catch { /* no audio device: the banner is enough */ }
}
paintSound();
clear($('#tools'), soundBtn, pill.el);

function onMessage(m) {
  const call = book.apply(m);
  if (m.type === 'snapshot') {
    for (const card of cards.values()) card.el.remove();
    cards.clear();
    for (const c of book.calls.values()) render(c);
  } else if (call) {
    render(call);
    if (m.type === 'alert') beep(3);
    if (m.type === 'alert_updated' && m.escalated && m.state === 'open') beep(5);
  }
  if (m.type === 'error') toast(m.message, 'error');
  order();
  paintBanner();
}

function render(call) {
  let card = cards.get(call.id);
  if (!card) {
    card = makeCard(call);
    cards.set(call.id, card);
    grid.append(card.el);
  }
  card.update(call);
}

function makeCard(call) {
  const parts = {
    gauge: h('div', { class: 'card-gauge' }),
    title: h('h2', { class: 'card-title' }),
    sub: h('div', { class: 'card-sub muted' }),
    badge: h('div', { class: 'card-badge' }),
    chips: h('div', { class: 'chips' }),
    plot: h('div', { class: 'card-plot' }),
    prompt: h('div', { class: 'prompt-slot' }),
    transcript: h('ol', { class: 'transcript', 'aria-live': 'polite' }),
    foot: h('footer', { class: 'card-foot' }),
  };
  const el = h('article', { class: 'card', 'data-call-id': call.id },
    h('div', { class: 'card-head' }, parts.gauge, h('div', { class: 'card-meta' }, parts.title, parts.sub), parts.badge),
    parts.chips, parts.plot, parts.prompt, parts.transcript, parts.foot);
  let promptKey = '';
  let reviewHref = '';
  return {
    el,
    update(c) {
      const open = c.ended ? null : openPrompt(c);
      // The newest open prompt; once none is open, the newest of all with what became of it.
      const latest = open || lastPrompt(c);
      el.className = `card level-${c.level}${open ? ' prompt' : ''}${open && open.status.escalated ? ' escalated' : ''}${c.ended ? ' ended' : ''}`;
      clear(parts.gauge, gauge(c.score, c.level, 72));
      parts.title.textContent = c.id;
      clear(parts.sub,
        c.info.agent ? h('span', null, `agent ${c.info.agent}`) : h('span', null, 'no agent'),
        ' · ', c.info.source || '',
        c.info.lang ? ` · ${c.info.lang}` : '',
        ' · ', h('span', { class: 'elapsed', 'data-started': c.startedMs }, clock(CallBook.now(c))));
      clear(parts.badge, h('span', { class: `badge level-${c.level}` }, LEVEL_LABEL[c.level] || c.level));
      clear(parts.chips, [...c.reasons.entries()].map(([k, n]) => chip(k, n > 1 ? `×${n}` : '')));
      riskPlot(parts.plot, {
        points: c.risk, duration: CallBook.now(c), height: 56,
        alerts: [...c.alerts.values()].filter((e) => e.alert).map((e) => ({ at_ms: e.alert.at_ms, label: 'transfer prompt' })),
        signals: c.signals.map((sg) => ({ at_ms: sg.at_ms, kind: sg.kind })),
      });
      // The prompt panel is redrawn only when the prompt changes, so a half-typed
      // dismissal reason survives the transcript's updates; when a newer prompt of the call
      // replaces the one being dismissed, the reason moves over to it.
      const key = latest ? `${latest.alert && latest.alert.alert_id}|${latest.status.state}|${latest.status.escalated}|${!!latest.alert}|${c.ended}` : '';
      if (key !== promptKey) {
        promptKey = key;
        const typing = parts.prompt.querySelector('input.dismiss-reason');
        const draft = typing ? { text: typing.value, focused: document.activeElement === typing } : null;
        clear(parts.prompt, latest ? promptPanel(c, latest, draft) : null);
        const moved = draft && draft.focused && parts.prompt.querySelector('input.dismiss-reason');
        if (moved) {
          moved.focus();
          moved.setSelectionRange(moved.value.length, moved.value.length);
        }
      }
      const more = parts.prompt.querySelector('.prompt-more');
      if (more) {
        const n = open ? openPromptIds(c).length - 1 : 0;
        more.hidden = n <= 0;
        more.textContent = n > 0 ? `${n} earlier prompt${n > 1 ? 's' : ''} of this call still open: your answer covers ${n > 1 ? 'them' : 'it'} too.` : '';
      }
      transcriptView(parts.transcript, c, 8);
      if (c.ended) {
        const why = c.lost ? `Lost with its edge (${c.lost}): this is the last known state. ` : 'Call ended. ';
        if (parts.foot.dataset.why !== why) {
          parts.foot.dataset.why = why;
          const link = h('a', { class: 'review-link', href: '/calls' }, 'Review this call →');
          clear(parts.foot, h('span', { class: 'muted' }, why), link);
          findReview(c).then((href) => { if (href) { reviewHref = href; link.href = href; } });
        }
        // A lost call stays until the hub forgets it (its call_ended).
        if (!c.fadeTimer && !c.lost) c.fadeTimer = setTimeout(() => { el.classList.add('gone'); setTimeout(() => { el.remove(); cards.delete(c.id); book.calls.delete(c.id); paintEmpty(); }, 1000); }, FADE_AFTER_MS);
      } else {
        clear(parts.foot);
        delete parts.foot.dataset.why;
        reviewHref = '';
      }
      return reviewHref;
    },
  };
}

/** The stored call's review page: the newest stored call with this call id. */
async function findReview(c) {
  for (let i = 0; i < 5; i++) {
    try {
      const page = await api('/api/calls?limit=50');
      const row = (page.items || []).find((r) => r.call_id === c.id && r.started_unix_ms >= c.startedMs - 60000);
      if (row) return `/calls/${row.id}`;
    } catch { /* try again: the store may lag a moment */ }
    await new Promise((r) => setTimeout(r, 2000));
  }
  return null;
}

/** A prompt's panel; `draft` ({text, focused}) opens its dismissal form with a reason typed. */
function promptPanel(call, entry, draft) {
  const { alert, status } = entry;
  const decided = status.state !== 'open';
  const panel = h('section', { class: `prompt-panel state-${status.state}${status.escalated ? ' escalated' : ''}`, 'data-alert-id': alert ? alert.alert_id : '' });
  const head = h('div', { class: 'prompt-head' },
    h('strong', null, decided ? 'Transfer prompt' : call.ended ? 'Unanswered transfer prompt' : status.escalated ? 'UNANSWERED — take this call over' : 'Take this call over'),
    h('span', { class: 'since', 'data-fired': status.fired_unix_ms || Date.now(), 'data-state': status.state }));
  panel.append(head);
  if (decided && status.decision) {
    const d = status.decision;
    panel.append(h('p', { class: `decision decision-${status.state}` },
      status.state === 'accepted' ? `Taken by ${d.by}` : `Dismissed by ${d.by}`,
      d.reason ? `: “${d.reason}”` : '',
      h('span', { class: 'muted' }, ` · after ${span(d.time_to_ack_ms)}`)));
  } else if (decided) {
    panel.append(h('p', { class: 'decision' }, status.state));
  }
  if (!decided && call.ended) panel.append(h('p', { class: 'decision' }, 'The call ended before anyone took it over.'));
  if (alert) {
    panel.append(h('div', { class: 'chips' }, (alert.reasons || []).map((r) => chip(r.kind, `+${Math.round(r.points)}`))));
    if (!decided && !call.ended) {
      const quotes = (alert.evidence && alert.evidence.quotes) || [];
      if (quotes.length) {
        panel.append(h('div', { class: 'evidence' }, quotes.slice(0, 3).map((q) =>
          h('blockquote', null, h('span', { class: 'muted' }, `${q.leg === 'agent' ? 'Agent' : 'Customer'} ${clock(q.start_ms)} `), richText(q.text)))));
      }
      const sug = alert.suggestion;
      if (sug) {
        const ct = CUSTOMER_TYPES[alert.customer_type];
        panel.append(h('div', { class: 'suggestion', lang: sug.lang },
          ct ? h('div', { class: 'muted small' }, `${ct[0]} customer · ${ct[1]}`) : null,
          h('p', { class: 'opening' }, sug.opening),
          h('ol', { class: 'steps' }, (sug.steps || []).map((st) => h('li', null, st))),
          sug.deadline ? h('p', { class: 'deadline small' }, h('strong', null, 'Time limits: '), sug.deadline) : null));
      }
    }
  }
  if (!decided && !call.ended) panel.append(h('p', { class: 'prompt-more muted small', hidden: true }));
  if (!decided && !call.ended && (canDecide(me) || canDismiss(me)) && alert) {
    // Answers every prompt of the call still open, oldest first (so the one shown, the
    // newest, goes last and the panel is redrawn once); resolves with how many took.
    const answer = async (cmd) => {
      const ids = openPromptIds(call);
      if (!ids.includes(alert.alert_id)) ids.push(alert.alert_id);
      let took = 0;
      let failure = null;
      for (const id of ids) {
        try {
          await live.send({ ...cmd, alert_id: id });
          took += 1;
        } catch (e) {
          failure = failure || e;
        }
      }
      if (!took && failure) throw failure;
      return took;
    };
    const accept = canDecide(me) ? h('button', { type: 'button', class: 'btn-accept', 'data-action': 'accept' }, 'Accept transfer') : null;
    const dismiss = canDismiss(me) ? h('button', { type: 'button', class: 'btn-dismiss', 'data-action': 'dismiss' }, 'Dismiss') : null;
    const actions = h('div', { class: 'prompt-actions' }, accept, dismiss);
    if (accept) accept.addEventListener('click', async () => {
      accept.disabled = true;
      try {
        await answer({ type: 'accept_transfer' });
        toast(`You took ${call.id} over.`, 'ok');
      } catch (e) {
        toast(e.message, 'error');
        accept.disabled = false;
      }
    });
    const openDismiss = (text, focus) => {
      const reason = h('input', { type: 'text', class: 'dismiss-reason', maxlength: 500, required: true, placeholder: 'Why is no transfer needed?', 'aria-label': 'Reason for dismissing' });
      reason.value = text;
      const submit = h('button', { type: 'submit', class: 'btn-dismiss' }, 'Dismiss prompt');
      const form = h('form', { class: 'dismiss-form' }, reason, submit,
        h('button', { type: 'button', class: 'btn-quiet', onclick: () => form.replaceWith(actions) }, 'Cancel'));
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        submit.disabled = true;
        try {
          await answer({ type: 'dismiss_alert', reason: reason.value.trim() });
        } catch (e) {
          toast(e.message, 'error');
          submit.disabled = false;
        }
      });
      actions.replaceWith(form);
      if (focus) reason.focus();
    };
    if (dismiss) dismiss.addEventListener('click', () => openDismiss('', true));
    panel.append(actions);
    if (dismiss && draft) openDismiss(draft.text, false);
  } else if (!decided && !call.ended && !canDecide(me)) {
    panel.append(h('p', { class: 'muted small' }, 'Waiting for a supervisor to act.'));
  }
  return panel;
}

let lastOrder = '';
function order() {
  const sorted = book.sorted().map((c) => c.id).filter((id) => cards.has(id));
  const key = sorted.join('\n');
  if (key !== lastOrder) {
    lastOrder = key;
    for (const id of sorted) grid.append(cards.get(id).el);
    // Moving a card resets its scroll position: keep each transcript at its newest line.
    for (const list of grid.querySelectorAll('.transcript')) list.scrollTop = list.scrollHeight;
  }
  paintEmpty();
}

function paintEmpty() {
  empty.hidden = cards.size > 0;
}

function paintBanner() {
  const open = [];
  for (const c of book.calls.values()) {
    if (c.ended) continue;
    const p = openPrompt(c);
    if (p) open.push([c, p]);
  }
  banner.hidden = open.length === 0;
  document.title = open.length ? `(${open.length}) Transfer prompt · callguard` : 'Live calls · callguard';
  clear(banner, open.map(([c, p]) => h('div', { class: `banner-item${p.status.escalated ? ' escalated' : ''}` },
    h('strong', null, p.status.escalated ? 'UNANSWERED TRANSFER PROMPT' : 'TRANSFER PROMPT'),
    h('span', null, ` ${c.id}`, c.info.agent ? ` (agent ${c.info.agent})` : '', ': ',
      p.alert ? (p.alert.reasons || []).map((r) => kindLabel(r.kind)).join(', ') : ''),
    h('span', { class: 'since', 'data-fired': p.status.fired_unix_ms, 'data-state': 'open' }),
    h('button', { type: 'button', class: 'btn-quiet', onclick: () => cards.get(c.id).el.scrollIntoView({ behavior: 'smooth', block: 'center' }) }, 'Show'))));
  tick();
}

/** Once a second: how long each prompt has waited, each call's running time. */
function tick() {
  const now = Date.now();
  for (const el of document.querySelectorAll('.since[data-fired]')) {
    const waited = now - Number(el.dataset.fired);
    el.textContent = el.dataset.state === 'open' && !el.closest('.ended') ? ` fired ${span(waited)} ago` : '';
  }
  for (const c of book.calls.values()) {
    const card = cards.get(c.id);
    const el = card && card.el.querySelector('.elapsed');
    if (el && !c.ended) el.textContent = clock(CallBook.now(c));
  }
}
setInterval(tick, 1000);

live.connect();
