// The web screens in a real browser (Debian's Chromium via playwright-core), against a live
// daemon started by tests/web_ui.rs. A supervisor signs in on the wall, sees an escalating
// call and its transfer prompt and accepts it; the call's agent sees "A supervisor is
// joining"; QA sees the prompt but no buttons. The supervisor dismisses a second call's
// prompt with a reason, which everyone's wall then shows. After the calls, the supervisor
// finds them in /calls, reviews the accepted one (seek by clicking a line, risk plot, the
// prompt and who took it), adds a QA note, exports WebVTT, and reviews the dismissed one.
//
// Then the daemon restarts under the open wall pages, coordinated over stdio: this script
// prints RESTART-NOW and waits for a STOPPED line on stdin; checks that the pages show the
// connection lost; prints START-NOW and waits for RESTARTED; checks that the pages come back
// by themselves (no reload) and that the restarted daemon lost nothing (every call, the
// transcript, the recording, the decisions and the note).
// Screenshots go to $SCREENSHOTS. Exits non-zero on any failure.
//
// Environment: CALLGUARD_URL, TOKEN_SUPERVISOR, TOKEN_AGENT, TOKEN_QA, CALL_ID (the call
// whose prompt is accepted), DISMISS_CALL_ID (the one whose prompt is dismissed),
// CALM_CALL_ID (the calm call beside them), SUPERVISOR_NAME, DONE_FILE (written once the live
// part is done, so the callers can hang up), SCREENSHOTS, CHROMIUM (default
// /usr/bin/chromium), RESTART (default 1; 0 skips the restart, for running against a daemon
// nobody restarts).

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};
const BASE = env('CALLGUARD_URL');
const SUP = env('TOKEN_SUPERVISOR');
const AGENT = env('TOKEN_AGENT');
const QA = env('TOKEN_QA');
const CALL = env('CALL_ID');
const DISMISS_CALL = env('DISMISS_CALL_ID');
const CALM_CALL = env('CALM_CALL_ID');
const RESTART = env('RESTART', '1') !== '0';
const SUP_NAME = env('SUPERVISOR_NAME', 'sue');
const DONE = env('DONE_FILE', '');
const SHOTS = env('SCREENSHOTS');
const LIVE_TIMEOUT = 120_000;
// Markup in the reason: it must show as typed, never as HTML.
const REASON = `<b>No transfer</b>: a senior assessor reviews the claim today ${Date.now()}`;

const t0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  log('ok:', what);
}

// The lines the test sends on stdin, one at a time.
const stdinLines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
/** Prints `request` for the test and waits for its `answer` line. */
async function ask(request, answer) {
  console.log(request);
  const next = await Promise.race([
    stdinLines.next(),
    new Promise((_, reject) => setTimeout(() => reject(new Error(`no ${answer} within 90 s`)), 90_000)),
  ]);
  if (next.done || next.value.trim() !== answer) throw new Error(`expected ${answer} on stdin, got ${next.done ? 'the end' : next.value}`);
  log(`got ${answer}`);
}

fs.mkdirSync(SHOTS, { recursive: true });
// Playwright gives every launch a fresh temporary user-data dir; each role gets its own
// context (its own sessionStorage, cookies and downloads).
const browser = await chromium.launch({
  executablePath: env('CHROMIUM', '/usr/bin/chromium'),
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--no-first-run', '--disable-quic', '--disable-sync'],
});
const pages = [];
async function newPage() {
  const ctx = await browser.newContext({ viewport: { width: 1440, height: 900 }, acceptDownloads: true });
  const page = await ctx.newPage();
  pages.push(page);
  return page;
}

const problems = [];
let wrongTokenTried = false;
// While the daemon is down for the restart, the pages' attempts to reach it fail, and the
// browser says so: those failures (and only those) are expected then.
let daemonDown = false;
const downNoise = /ERR_CONNECTION_REFUSED|ERR_CONNECTION_RESET|ERR_EMPTY_RESPONSE|WebSocket connection to .* failed/;
const tolerated = [];
function watch(page, who) {
  page.on('pageerror', (e) => problems.push(`${who}: page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    // The browser logs the 401 of the wrong token the test signs in with on purpose.
    if (who === 'supervisor' && wrongTokenTried && / 401 /.test(m.text())) { wrongTokenTried = false; return; }
    if (daemonDown && downNoise.test(m.text())) { tolerated.push(`${who}: ${m.text()}`); return; }
    problems.push(`${who}: console error: ${m.text()}`);
  });
  page.on('requestfailed', (r) => {
    const url = r.url();
    const err = r.failure() && r.failure().errorText;
    if (daemonDown && downNoise.test(err || '')) { tolerated.push(`${who}: ${url} ${err}`); return; }
    // Loads cut short by a navigation or a seeking player are not failures.
    if (err !== 'net::ERR_ABORTED') problems.push(`${who}: request failed: ${url} ${err}`);
  });
  page.on('request', (r) => {
    if (!r.url().startsWith(BASE) && !r.url().startsWith(BASE.replace('http', 'ws')) && !r.url().startsWith('data:')) {
      problems.push(`${who}: external request: ${r.url()}`);
    }
  });
}

let exitCode = 0;
try {
  // ---- the supervisor signs in on the wall with the form
  const sup = await newPage();
  watch(sup, 'supervisor');
  await sup.goto(`${BASE}/`);
  await sup.locator('#token-input').fill('cg_wrong');
  wrongTokenTried = true;
  await sup.locator('#sign-in').click();
  await sup.locator('#signin-error').filter({ hasText: 'not accepted' }).waitFor();
  log('ok: a wrong token is refused');
  await sup.locator('#token-input').fill(SUP);
  await sup.locator('#sign-in').click();
  await sup.locator('#who').filter({ hasText: `signed in as ${SUP_NAME} (supervisor)` }).waitFor();
  log('ok: supervisor signed in');
  await sup.locator('#conn.conn-connected').waitFor();

  // ---- the agent signs in with a #token= link, which leaves the address bar
  const agent = await newPage();
  watch(agent, 'agent');
  await agent.goto(`${BASE}/#token=${AGENT}`);
  await agent.waitForURL(`${BASE}/agent`);
  check(!agent.url().includes('token'), 'the agent token left the address bar and / sent the agent to /agent');
  await agent.locator('#who').filter({ hasText: '(agent)' }).waitFor();

  // ---- QA, read-only
  const qa = await newPage();
  watch(qa, 'qa');
  await qa.goto(`${BASE}/#token=${QA}`);
  await qa.locator('#who').filter({ hasText: '(qa)' }).waitFor();

  // ---- the second escalating call: its first prompt comes in, and the supervisor starts to
  // dismiss it (the reason is finished later, once the call has said all it will)
  const dcard = sup.locator(`article.card[data-call-id="${DISMISS_CALL}"]`);
  const dismiss = dcard.locator('button[data-action="dismiss"]');
  await dismiss.waitFor({ timeout: LIVE_TIMEOUT });
  log('ok: the second call has its prompt');
  check(await dcard.evaluate((el) => el.classList.contains('prompt')), 'its card is marked as a transfer prompt');
  check((await sup.locator('#banner').innerText()).includes(DISMISS_CALL), 'the banner names the second call');
  const dpanelText = await dcard.locator('.prompt-panel').innerText();
  check(/Legal threat|Regulator threat/.test(dpanelText), `its prompt gives its reasons (${dpanelText.slice(0, 120).replace(/\n/g, ' | ')})`);
  const qaDcard = qa.locator(`article.card[data-call-id="${DISMISS_CALL}"]`);
  await qaDcard.locator('.prompt-panel').waitFor({ timeout: LIVE_TIMEOUT });
  await dismiss.click();
  const reasonBox = dcard.locator('form.dismiss-form input.dismiss-reason');
  await reasonBox.waitFor({ timeout: 5000 });
  check(await reasonBox.evaluate((el) => el === document.activeElement), 'Dismiss asks for a reason, with the cursor in the box');
  check(await dcard.locator('button[data-action="accept"]').count() === 0, 'the reason form stands in for the buttons');
  const draft = REASON.slice(0, 20);
  await reasonBox.pressSequentially(draft);
  // Marks this panel: a redraw (a newer prompt of the call) replaces it.
  const firstPrompt = await dcard.locator('.prompt-panel').evaluate((el) => { el.dataset.testMark = 'first'; return el.dataset.alertId; });

  // ---- the call appears, then its transfer prompt
  const card = sup.locator(`article.card[data-call-id="${CALL}"]`);
  await card.waitFor({ timeout: LIVE_TIMEOUT });
  log('ok: the call is on the wall');
  await card.locator('.line').first().waitFor({ timeout: LIVE_TIMEOUT });
  log('ok: its transcript is live');
  const accept = card.locator('button[data-action="accept"]');
  await accept.waitFor({ timeout: LIVE_TIMEOUT });
  check(await card.evaluate((el) => el.classList.contains('prompt')), 'the card is marked as a transfer prompt');
  check(await sup.locator('#banner').isVisible(), 'the banner is up');
  check((await sup.locator('#banner').innerText()).includes(CALL), 'the banner names the call');
  const panelText = await card.locator('.prompt-panel').innerText();
  check(/Media threat/.test(panelText), `the prompt gives its reasons (${panelText.slice(0, 120).replace(/\n/g, ' | ')})`);
  check(await card.locator('.prompt-panel .suggestion .opening').count() === 1, 'the prompt has a suggested opening');
  check(await card.locator('.prompt-panel blockquote').count() >= 1, 'the prompt quotes its evidence');
  const since = card.locator('.prompt-panel .since');
  const firstSince = await since.evaluate((el) => el.textContent);
  check(/fired \d+ s ago/.test(firstSince), `the prompt says when it fired (${firstSince.trim()})`);
  await sup.waitForFunction((before) => {
    const now = document.querySelector('.card.prompt .prompt-panel .since')?.textContent || '';
    return /fired \d+ s ago/.test(now) && now !== before;
  }, firstSince, { timeout: 5000 });
  log('ok: the time since the prompt ticks');
  const otherLines = await card.locator('.line.leg-customer').count();
  check(otherLines >= 1 && await card.locator('.line.leg-agent').count() >= 1, 'customer and agent lines are told apart');

  // QA sees the prompt, and no buttons.
  const qaCard = qa.locator(`article.card[data-call-id="${CALL}"]`);
  await qaCard.locator('.prompt-panel').waitFor({ timeout: LIVE_TIMEOUT });
  check(await qa.locator('button[data-action="accept"], button[data-action="dismiss"]').count() === 0, 'QA has no Accept or Dismiss button');

  // The agent sees the call and the suggested script.
  await agent.locator(`body[data-call="${CALL}"]`).waitFor({ timeout: LIVE_TIMEOUT });
  await agent.locator('#script').waitFor({ state: 'visible', timeout: LIVE_TIMEOUT });
  check(await agent.locator('#hints .hint').count() >= 1, 'the agent gets coaching hints');

  await sup.screenshot({ path: path.join(SHOTS, 'wall.png'), fullPage: true });
  log('saved wall.png');

  // ---- accept
  await accept.click();
  await card.locator('.decision-accepted').filter({ hasText: `Taken by ${SUP_NAME}` }).waitFor({ timeout: 15000 });
  log('ok: the supervisor sees "Taken by"');
  await qaCard.locator('.decision-accepted').filter({ hasText: `Taken by ${SUP_NAME}` }).waitFor({ timeout: 15000 });
  log('ok: QA sees who took it');
  await agent.locator('#joining.state-accepted').filter({ hasText: 'A supervisor is joining' }).waitFor({ timeout: 15000 });
  log('ok: the agent sees that a supervisor is joining');
  // The second call's prompt may be up by now: the banner drops this one.
  check(await sup.locator('#banner').isHidden() || !(await sup.locator('#banner').innerText()).includes(CALL), 'the banner drops the prompt once it is taken');
  await agent.screenshot({ path: path.join(SHOTS, 'agent.png'), fullPage: true });
  log('saved agent.png');
  check(await agent.locator(`[data-call-id="${DISMISS_CALL}"], body[data-call="${DISMISS_CALL}"]`).count() === 0, 'the agent does not see another agent\'s call');

  // ---- the second call's prompt, dismissed with the reason
  // The call goes on to a regulator threat, a new kind of trouble: a second prompt while the
  // first is open (unless both came together). Wait for it, so nothing fires after the
  // dismissal.
  await dcard.locator('.prompt-panel .chip.kind-threat_regulator').waitFor({ timeout: LIVE_TIMEOUT });
  const shownPrompt = await dcard.locator('.prompt-panel').evaluate((el) => [el.dataset.alertId, el.dataset.testMark || '']);
  check(await reasonBox.inputValue() === draft,
    shownPrompt[1] === 'first' ? 'the half-typed reason survives the live updates' :
      `the half-typed reason moved over to the newer prompt (${firstPrompt} → ${shownPrompt[0]})`);
  const moreText = await dcard.locator('.prompt-more').evaluate((el) => (el.hidden ? '' : el.textContent));
  if (shownPrompt[0] !== firstPrompt) check(/1 earlier prompt of this call still open/.test(moreText), `the card says an earlier prompt is still open (${moreText})`);
  await reasonBox.fill(REASON);
  await dcard.locator('form.dismiss-form button[type=submit]').click();
  const dismissed = `Dismissed by ${SUP_NAME}: “${REASON}”`;
  const dDecision = dcard.locator('.decision-dismissed');
  await dDecision.filter({ hasText: dismissed }).waitFor({ timeout: 15000 });
  log('ok: the supervisor sees "Dismissed by" with the reason');
  check(await dDecision.locator('b').count() === 0, 'the reason shows as text, not markup');
  check(await dcard.locator('form.dismiss-form, button[data-action="dismiss"]').count() === 0, 'the form is gone once the prompt is dismissed');
  check(!(await dcard.evaluate((el) => el.classList.contains('prompt'))), 'the card is no longer marked as a prompt');
  await qaDcard.locator('.decision-dismissed').filter({ hasText: dismissed }).waitFor({ timeout: 15000 });
  log('ok: QA sees who dismissed it and why');
  check(await sup.locator('#banner').isHidden(), 'the banner is down once both prompts are handled');

  // ---- hang up, then find the calls in the history
  if (DONE) fs.writeFileSync(DONE, 'done\n');
  await card.locator('.card-foot a.review-link[href^="/calls/"]').waitFor({ timeout: LIVE_TIMEOUT });
  log('ok: the ended call links to its review');
  const dReview = dcard.locator('.card-foot a.review-link[href^="/calls/"]');
  await dReview.waitFor({ timeout: LIVE_TIMEOUT });
  const dismissedUrl = new URL(await dReview.getAttribute('href'), BASE).href;
  await dDecision.filter({ hasText: dismissed }).waitFor({ timeout: 5000 });
  await qaDcard.locator('.decision-dismissed').filter({ hasText: dismissed }).waitFor({ timeout: 5000 });
  log('ok: the dismissal still shows on the ended call, for the supervisor and QA');

  await sup.goto(`${BASE}/calls`);
  const row = sup.locator(`tr.row[data-call-id="${CALL}"]`);
  await row.waitFor({ timeout: 20000 });
  check(/1–\d+ of \d+/.test(await sup.locator('#range').innerText()), 'the list says which calls it shows');
  // A filter goes to the address and back.
  await sup.locator('select[name=level]').selectOption('escalate');
  await sup.locator('#filters button[type=submit]').click();
  await sup.waitForURL(/level=escalate/);
  await row.waitFor();
  await sup.locator('input[name=q]').fill('journalist');
  await sup.locator('#filters button[type=submit]').click();
  await sup.waitForURL(/q=journalist/);
  await row.waitFor();
  await sup.screenshot({ path: path.join(SHOTS, 'calls.png'), fullPage: true });
  log('saved calls.png');
  await sup.goBack();
  await sup.waitForURL((u) => !u.search.includes('q='));
  check(await sup.locator('input[name=q]').inputValue() === '', 'Back restores the previous filters');
  await row.locator('a.call-link').click();
  await sup.waitForURL(/\/calls\/\d+$/);
  const reviewUrl = sup.url();

  // ---- the review page
  await sup.locator('body[data-ready="true"]').waitFor();
  const lines = sup.locator('#transcript .line');
  check(await lines.count() >= 3, 'the review shows the transcript');
  await sup.waitForFunction(() => document.querySelector('#player')?.readyState >= 1, null, { timeout: 20000 });
  const duration = await sup.evaluate(() => document.querySelector('#player').duration);
  check(duration > 20, `the recording plays (${duration.toFixed(1)} s)`);
  const target = lines.nth(2);
  const startMs = Number(await target.getAttribute('data-start'));
  await target.click();
  const pos = await sup.evaluate(() => document.querySelector('#player').currentTime);
  check(Math.abs(pos - startMs / 1000) <= 0.5, `clicking a line seeks to its start (${pos.toFixed(2)} s vs ${(startMs / 1000).toFixed(2)} s)`);
  await sup.locator('#transcript .line.current').first().waitFor();
  check(await target.evaluate((el) => el.classList.contains('current')), 'the clicked line is highlighted');
  await sup.evaluate(() => document.querySelector('#player').pause());
  check(await sup.locator('#plot svg .score-line').count() === 1, 'the risk plot is drawn');
  check(await sup.locator('#plot svg .alert-mark').count() >= 1, 'the plot marks the prompt');
  check(await sup.locator('#plot svg .signal-mark').count() >= 1, 'the plot marks the signals');
  const alertText = await sup.locator('#alerts .alert-card').first().innerText();
  check(alertText.includes(`Accepted by ${SUP_NAME}`), 'the review says who took the prompt');
  check(/after the prompt/.test(alertText), 'and how long it waited');

  const note = `Handled well: supervisor joined quickly. 处理及时 ${Date.now()}`;
  await sup.locator('#note-text').fill(note);
  await sup.locator('#add-note').click();
  await sup.locator('#notes .note').filter({ hasText: note }).waitFor();
  log('ok: a QA note was added');

  const [download] = await Promise.all([
    sup.waitForEvent('download'),
    sup.locator('a.export[data-format="vtt"]').click(),
  ]);
  const vttPath = await download.path();
  const vtt = fs.readFileSync(vttPath, 'utf8');
  check(vtt.startsWith('WEBVTT'), 'the VTT export starts with WEBVTT');
  check(vtt.includes('<v Customer>'), 'the VTT export names the customer');
  await sup.evaluate(() => {
    document.querySelector('#player').currentTime = 0;
    document.getElementById('toast')?.remove();
  });
  await sup.screenshot({ path: path.join(SHOTS, 'review.png'), fullPage: true });
  log('saved review.png');

  // The note survives a reload; the agent sees its own call but cannot add notes.
  await agent.goto(reviewUrl);
  await agent.locator('body[data-ready="true"]').waitFor();
  check(await agent.locator('#note-form').count() === 0, 'the agent has no note form');
  check((await agent.locator('#notes').innerText()).includes('处理及时'), 'the note is stored (Chinese included)');

  // ---- the dismissed call's review
  await sup.goto(dismissedUrl);
  await sup.locator('body[data-ready="true"]').waitFor();
  check((await sup.locator('h1').first().innerText()).includes(DISMISS_CALL), 'the wall\'s link leads to the dismissed call');
  const dAlert = sup.locator('#alerts .alert-card.state-dismissed').first();
  await dAlert.waitFor({ timeout: 5000 });
  const dAlertText = await dAlert.innerText();
  check(dAlertText.includes(`Dismissed by ${SUP_NAME}`), 'the review says who dismissed the prompt');
  check(dAlertText.includes(`Why: “${REASON}”`), 'and why, as typed');
  check(await dAlert.locator('b').count() === 0, 'the reason is text, not markup, on the review too');
  // The call may have raised a second prompt (a new kind of threat) before the first was
  // answered: the one Dismiss answered them all.
  const dPrompts = await sup.locator('#alerts .alert-card').count();
  check(dPrompts >= 1 && await sup.locator('#alerts .alert-card.state-dismissed').count() === dPrompts, `every prompt of the call was dismissed (${dPrompts})`);

  if (RESTART) {
    // ---- the daemon restarts under two open walls
    await sup.goto(`${BASE}/`);
    await sup.locator('#conn.conn-connected').filter({ hasText: 'Live' }).waitFor({ timeout: 15000 });
    await qa.locator('#conn.conn-connected').waitFor({ timeout: 15000 });
    // A mark that a reload would wipe.
    for (const p of [sup, qa]) await p.evaluate(() => { window.callguardTestMark = 'same page'; });
    daemonDown = true;
    await ask('RESTART-NOW', 'STOPPED');
    for (const [p, who] of [[sup, 'supervisor'], [qa, 'QA']]) {
      const conn = p.locator('#conn.conn-reconnecting');
      await conn.filter({ hasText: /^Reconnecting in \d+ s$/ }).waitFor({ timeout: 15000 });
      check(await p.locator('#conn').getAttribute('title') === 'not connected', `${who}'s wall shows the connection lost ("${await conn.innerText()}")`);
    }
    // Still down a few seconds later: the retries fail, and the page keeps saying so.
    await sup.waitForTimeout(3000);
    const stillDown = await sup.locator('#conn').evaluate((el) => [el.className, el.textContent]);
    check(!stillDown[0].includes('conn-connected') && stillDown[1] !== 'Live', `the wall does not claim to be live while the daemon is down (${stillDown[1]})`);
    await ask('START-NOW', 'RESTARTED');
    const back = Date.now();
    for (const [p, who] of [[sup, 'supervisor'], [qa, 'QA']]) {
      // The backoff may be at 16 s by now.
      await p.locator('#conn.conn-connected').filter({ hasText: 'Live' }).waitFor({ timeout: 45000 });
      check(await p.evaluate(() => window.callguardTestMark) === 'same page', `${who}'s wall reconnected by itself, without a reload (${((Date.now() - back) / 1000).toFixed(1)} s after the restart)`);
    }
    daemonDown = false;
    log(`${tolerated.length} expected connection failures while the daemon was down`);
    check(await sup.locator('#who').filter({ hasText: `signed in as ${SUP_NAME} (supervisor)` }).count() === 1, 'still signed in after the restart');

    // ---- nothing was lost
    await sup.goto(`${BASE}/calls`);
    for (const id of [CALL, DISMISS_CALL, CALM_CALL]) {
      await sup.locator(`tr.row[data-call-id="${id}"]`).waitFor({ timeout: 15000 });
    }
    log('ok: the restarted daemon lists every call');
    const range = await sup.locator('#range').innerText();
    check(/ of 3\b/.test(range), `exactly those three (${range})`);
    await sup.goto(reviewUrl);
    await sup.locator('body[data-ready="true"]').waitFor();
    check(await sup.locator('#transcript .line').count() >= 3, 'the accepted call\'s transcript is still there');
    await sup.waitForFunction(() => document.querySelector('#player')?.readyState >= 1, null, { timeout: 20000 });
    const again = await sup.evaluate(() => document.querySelector('#player').duration);
    check(again > 20 && Math.abs(again - duration) < 0.5, `its recording still plays (${again.toFixed(1)} s)`);
    const alertAgain = await sup.locator('#alerts .alert-card').first().innerText();
    check(alertAgain.includes(`Accepted by ${SUP_NAME}`), 'the acceptance is still there');
    check((await sup.locator('#notes').innerText()).includes(note), 'the QA note is still there');
    await sup.goto(dismissedUrl);
    await sup.locator('body[data-ready="true"]').waitFor();
    check((await sup.locator('#alerts .alert-card.state-dismissed').first().innerText()).includes(`Why: “${REASON}”`), 'the dismissal and its reason are still there');
  }

  check(problems.length === 0, `no page errors or external requests${problems.length ? `:\n  ${problems.join('\n  ')}` : ''}`);
  log('all browser checks passed');
} catch (e) {
  exitCode = 1;
  console.error(`FAILED: ${e.stack || e}`);
  if (problems.length) console.error(`page problems:\n  ${problems.join('\n  ')}`);
  try {
    for (const [i, p] of pages.entries()) await p.screenshot({ path: path.join(SHOTS, `failure-${i}.png`), fullPage: true });
  } catch { /* best effort */ }
} finally {
  if (DONE && !fs.existsSync(DONE)) fs.writeFileSync(DONE, 'failed\n');
  await browser.close().catch(() => {});
}
process.exit(exitCode);
