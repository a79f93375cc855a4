// callguard screens: the call history (`/calls`). A search form (words, dates, level,
// reason, outcome) over /api/calls, the results as a table, and paging. The filters live in
// the address's query, so a search can be linked to, reloaded and walked back with Back.

import {
  $, KINDS, OUTCOMES, api, boot, chip, clear, dateTime, h, levelBadge, span,
} from './common.js';

const FIELDS = ['q', 'from', 'to', 'level', 'reason', 'outcome', 'agent'];
const PAGE = 50;

const me = await boot('calls');

const form = $('#filters');
// An agent token only ever gets its own calls: no agent filter to offer.
if (me.role === 'agent') form.querySelector('.f-agent').remove();
const reason = form.elements.reason;
for (const [k, [en, zh]] of Object.entries(KINDS)) reason.append(h('option', { value: k }, `${en} · ${zh}`));
const outcome = form.elements.outcome;
for (const [k, label] of Object.entries(OUTCOMES)) outcome.append(h('option', { value: k }, label));

function params() {
  return new URLSearchParams(location.search);
}

function fillForm() {
  const p = params();
  for (const f of FIELDS) if (form.elements[f]) form.elements[f].value = p.get(f) || '';
}

function go(p, push = true) {
  const qs = p.toString();
  const url = qs ? `/calls?${qs}` : '/calls';
  if (push) history.pushState(null, '', url);
  load();
}

form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const p = new URLSearchParams();
  for (const f of FIELDS) {
    const v = form.elements[f] ? form.elements[f].value.trim() : '';
    if (v) p.set(f, v);
  }
  go(p);
});
form.addEventListener('reset', () => setTimeout(() => go(new URLSearchParams()), 0));
window.addEventListener('popstate', () => { fillForm(); load(); });

function page(delta) {
  const p = params();
  const offset = Math.max(0, (Number(p.get('offset')) || 0) + delta * PAGE);
  if (offset) p.set('offset', offset); else p.delete('offset');
  go(p);
}
$('#prev').addEventListener('click', () => page(-1));
$('#next').addEventListener('click', () => page(1));

let loading = 0;
async function load() {
  const mine = ++loading;
  const p = params();
  const q = new URLSearchParams();
  for (const f of FIELDS) if (p.get(f)) q.set(f, p.get(f));
  q.set('limit', PAGE);
  q.set('offset', Number(p.get('offset')) || 0);
  const status = $('#status');
  status.textContent = 'Searching…';
  status.classList.remove('error');
  let data;
  try {
    data = await api(`/api/calls?${q}`);
  } catch (e) {
    if (mine !== loading) return;
    status.textContent = `The search failed: ${e.message}`;
    status.classList.add('error');
    clear($('#results tbody'));
    return;
  }
  if (mine !== loading) return;
  const { items = [], total = 0, offset = 0 } = data || {};
  status.textContent = '';
  $('#results').classList.toggle('with-snippets', !!p.get('q'));
  const tbody = $('#results tbody');
  clear(tbody, items.length ? items.map(row) :
    h('tr', null, h('td', { colspan: 8, class: 'empty muted' }, p.toString() ? 'No calls match these filters. 没有符合条件的通话。' : 'No calls stored yet.')));
  const first = items.length ? offset + 1 : 0;
  $('#range').textContent = `${first}–${offset + items.length} of ${total}`;
  $('#prev').disabled = offset <= 0;
  $('#next').disabled = offset + items.length >= total;
}

function row(c) {
  const href = `/calls/${encodeURIComponent(c.id)}`;
  const tr = h('tr', { class: `row level-${c.max_level}`, 'data-id': c.id, 'data-call-id': c.call_id },
    h('td', { class: 'nowrap' }, dateTime(c.started_unix_ms)),
    h('td', null, h('a', { href, class: 'call-link' }, c.call_id)),
    h('td', null, c.agent || h('span', { class: 'muted' }, '—')),
    h('td', { class: 'num nowrap' }, span(c.duration_ms)),
    h('td', null, levelBadge(c.max_level), h('span', { class: 'muted small' }, ` ${Math.round(c.max_score || 0)}`),
      c.alerts ? h('span', { class: 'alert-count', title: 'transfer prompts' }, ` ⚑${c.alerts}`) : null),
    h('td', null, h('div', { class: 'chips' }, (c.reasons || []).map((k) => chip(k)))),
    h('td', null, h('span', { class: `outcome outcome-${c.outcome}` }, OUTCOMES[c.outcome] || c.outcome)),
    h('td', { class: 'snippet' }, highlight(c.snippet || '', params().get('q') || '')));
  tr.addEventListener('click', (ev) => {
    if (ev.target.closest('a')) return;
    location.href = href;
  });
  return tr;
}

/** The snippet with the searched words marked. */
function highlight(text, q) {
  const words = q.replace(/["*]/g, ' ').split(/\s+/).filter((w) => w.length > 0)
    .map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  if (!text || !words.length) return text;
  const re = new RegExp(`(${words.join('|')})`, 'gi');
  return text.split(re).map((part, i) => (i % 2 ? h('mark', null, part) : part));
}

fillForm();
load();
