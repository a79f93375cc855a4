// The web screens in Firefox (Debian's firefox-esr, driven over WebDriver BiDi by
// puppeteer-core), against a live daemon started by tests/web_ui_firefox.rs: an escalating
// English call (held open after its words until this script has answered its prompt) and a
// replayed Mandarin call. A supervisor signs in with a #token= link on the wall, sees both
// calls and the Chinese words rendered, accepts the English call's transfer prompt and sees
// "Taken by"; after the calls the list has both, and the English call's review plays its
// recording from a clicked line and draws the risk plot. Any page error, console error,
// failed request or request leaving the daemon fails the run.
// Screenshots go to $SCREENSHOTS (firefox-wall.png, firefox-review.png). Exits non-zero on
// any failure.
//
// Environment: CALLGUARD_URL, TOKEN_SUPERVISOR, SUPERVISOR_NAME (default sue), CALL_ID (the
// English call), ZH_CALL_ID (the Mandarin call), DONE_FILE (written once the prompt is
// answered, so the English call hangs up), SCREENSHOTS, FIREFOX (default
// /usr/bin/firefox-esr), FIREFOX_PID_FILE (where to write Firefox's process id: its own
// process group, which the test ends should this script be killed), TIME_LIMIT_S (default
// 150: then the script ends Firefox and fails), PROFILE_DIR (an empty folder for Firefox's
// profile and HOME; default a temporary one).

import puppeteer from 'puppeteer-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};
const BASE = env('CALLGUARD_URL');
const SUP = env('TOKEN_SUPERVISOR');
const SUP_NAME = env('SUPERVISOR_NAME', 'sue');
const CALL = env('CALL_ID');
const ZH_CALL = env('ZH_CALL_ID');
const DONE = env('DONE_FILE', '');
const SHOTS = env('SCREENSHOTS');
const LIVE_TIMEOUT = 120_000;
const TIME_LIMIT_MS = Number(env('TIME_LIMIT_S', '150')) * 1000;
const CJK = '[\\u3400-\\u9fff]';

const t0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  log('ok:', what);
}

// Firefox's own background traffic (updates, telemetry, safe browsing, remote settings,
// captive-portal and connectivity checks, DNS over HTTPS) is switched off on top of what
// puppeteer and Firefox's remote agent already switch off; and every request that is not for
// the loopback goes to a proxy on a closed local port, so nothing can leave the machine.
const quietPrefs = {
  'app.update.enabled': false,
  'app.update.auto': false,
  'browser.safebrowsing.provider.mozilla.updateURL': '',
  'browser.safebrowsing.provider.google4.updateURL': '',
  'browser.region.network.url': '',
  'browser.region.update.enabled': false,
  'browser.newtabpage.activity-stream.feeds.snippets': false,
  'browser.newtabpage.activity-stream.telemetry': false,
  'browser.ping-centre.telemetry': false,
  'captivedetect.canonicalURL': '',
  'network.captive-portal-service.enabled': false,
  'network.connectivity-service.enabled': false,
  'network.dns.disablePrefetch': true,
  'network.predictor.enabled': false,
  'network.prefetch-next': false,
  'network.trr.mode': 5,
  'services.settings.server': 'http://127.0.0.1:9/v1',
  'toolkit.telemetry.enabled': false,
  'toolkit.telemetry.server': '',
  'toolkit.telemetry.unified': false,
  'network.proxy.type': 1,
  'network.proxy.http': '127.0.0.1',
  'network.proxy.http_port': 9,
  'network.proxy.share_proxy_settings': true,
  'network.proxy.no_proxies_on': '127.0.0.1, localhost',
  'network.proxy.allow_hijacking_localhost': false,
  'network.proxy.failover_direct': false,
};

fs.mkdirSync(SHOTS, { recursive: true });
// A fresh profile, removed at the end; HOME points into it too, so Firefox (run as root or
// not) writes nothing outside it. The test gives a folder of its own (removed by the test
// whatever happens to this script); else a temporary one.
const profile = process.env.PROFILE_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'callguard-firefox-'));
fs.mkdirSync(profile, { recursive: true });
let browser;
// However a step hangs (the launch included), the run ends in time and takes Firefox along.
setTimeout(() => {
  console.error(`FAILED: still running after ${TIME_LIMIT_MS / 1000} s`);
  browser?.process()?.kill('SIGKILL');
  fs.rmSync(profile, { recursive: true, force: true });
  process.exit(2);
}, TIME_LIMIT_MS).unref();
browser = await puppeteer.launch({
  browser: 'firefox',
  executablePath: env('FIREFOX', '/usr/bin/firefox-esr'),
  headless: true,
  userDataDir: path.join(profile, 'profile'),
  extraPrefsFirefox: quietPrefs,
  env: { ...process.env, HOME: profile, MOZ_HEADLESS: '1' },
  protocolTimeout: 60_000,
});
const firefoxPid = browser.process()?.pid;
if (process.env.FIREFOX_PID_FILE && firefoxPid) fs.writeFileSync(process.env.FIREFOX_PID_FILE, `${firefoxPid}\n`);
log(`started ${await browser.version()}`);

const problems = [];
let requests = 0;
const page = await browser.newPage();
page.setDefaultTimeout(20_000);
await page.setViewport({ width: 1440, height: 900 });
page.on('pageerror', (e) => problems.push(`page error: ${e.message || e}`));
page.on('console', (m) => {
  if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
});
page.on('requestfailed', (r) => {
  const err = r.failure()?.errorText || 'failed';
  // A media load cut short by seeking, or a fetch cut short by leaving the page, is not a
  // failure of the page.
  if (/NS_BINDING_ABORTED/.test(err)) return;
  problems.push(`request failed: ${r.url()} ${err}`);
});
page.on('request', (r) => {
  requests += 1;
  const u = r.url();
  if (!u.startsWith(BASE) && !u.startsWith(BASE.replace('http', 'ws')) && !u.startsWith('data:')) {
    problems.push(`external request: ${u}`);
  }
});

/** Waits until an element matching `sel` has text matching `re`; returns that text. */
async function waitText(sel, re, timeout = 20_000) {
  const h = await page.waitForFunction((s, src, flags) => {
    const r = new RegExp(src, flags);
    const el = [...document.querySelectorAll(s)].find((e) => r.test(e.textContent));
    return el ? el.textContent : false;
  }, { timeout }, sel, re.source, re.flags);
  return h.jsonValue();
}

let exitCode = 0;
try {
  // ---- sign in with a #token= link: the token leaves the address bar
  await page.goto(`${BASE}/#token=${SUP}`);
  await waitText('#who', new RegExp(`signed in as ${SUP_NAME} \\(supervisor\\)`));
  check(!page.url().includes('token'), `signed in by link, and the token left the address bar (${page.url()})`);
  await page.waitForSelector('#conn.conn-connected');
  log('ok: the wall is live');
  // The watchers work in this browser: an uncaught error and a console error are seen (and
  // then forgotten), and the page's requests are seen.
  await page.evaluate(() => {
    setTimeout(() => { throw new Error('callguard-probe'); });
    console.error('callguard-probe');
  });
  for (let i = 0; i < 50 && problems.filter((p) => p.includes('callguard-probe')).length < 2; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const probes = problems.filter((p) => p.includes('callguard-probe'));
  check(probes.some((p) => p.startsWith('page error')) && probes.some((p) => p.startsWith('console error')), 'page errors and console errors are caught');
  problems.splice(0, problems.length, ...problems.filter((p) => !p.includes('callguard-probe')));
  check(requests >= 5, `the page's requests are watched (${requests} so far)`);

  // ---- both calls on the wall; the Mandarin one in Chinese characters
  const card = (id) => `article.card[data-call-id="${id}"]`;
  await page.waitForSelector(card(CALL), { timeout: LIVE_TIMEOUT });
  await page.waitForSelector(card(ZH_CALL), { timeout: LIVE_TIMEOUT });
  log('ok: both calls have a card');
  const zhText = await waitText(`${card(ZH_CALL)} .line .line-text`, new RegExp(`${CJK}{2}`), LIVE_TIMEOUT);
  const zhBox = await page.evaluate((sel, src) => {
    const el = [...document.querySelectorAll(sel)].find((e) => new RegExp(src).test(e.textContent));
    const r = el.getBoundingClientRect();
    return { w: r.width, h: r.height, font: getComputedStyle(el).fontFamily };
  }, `${card(ZH_CALL)} .line .line-text`, `${CJK}{2}`);
  check(zhBox.w > 20 && zhBox.h > 5, `a Chinese line renders (“${zhText.trim().slice(0, 30)}”, ${zhBox.w.toFixed(0)}×${zhBox.h.toFixed(0)} px)`);
  // Each Chinese character takes room of its own: none is dropped or drawn zero-width.
  const glyphs = await page.evaluate((ch) => {
    const probe = document.createElement('span');
    probe.style.cssText = 'position:absolute;visibility:hidden;white-space:nowrap;font-size:20px';
    document.querySelector('main').append(probe);
    probe.textContent = ch;
    const one = probe.getBoundingClientRect().width;
    probe.textContent = ch.repeat(10);
    const ten = probe.getBoundingClientRect().width;
    probe.remove();
    return { one, ten };
  }, zhText.match(new RegExp(CJK))[0]);
  check(glyphs.one > 10 && Math.abs(glyphs.ten - 10 * glyphs.one) < 2, `Chinese characters have their width (${glyphs.one.toFixed(1)} px at 20 px)`);

  // ---- the escalating call's transfer prompt, accepted while the call is live
  await page.waitForSelector(`${card(CALL)} .line`, { timeout: LIVE_TIMEOUT });
  log('ok: the English call\'s transcript is live');
  await page.waitForSelector(`${card(CALL)} button[data-action="accept"]`, { timeout: LIVE_TIMEOUT });
  check(await page.$eval(card(CALL), (el) => el.classList.contains('prompt')), 'the card is marked as a transfer prompt');
  const panel = await page.$eval(`${card(CALL)} .prompt-panel`, (el) => el.innerText);
  check(/Media threat/.test(panel), `the prompt gives its reasons (${panel.slice(0, 100).replace(/\n/g, ' | ')})`);
  const banner = await page.$eval('#banner', (el) => (el.hidden ? '' : el.textContent));
  check(banner.includes(CALL), 'the banner is up and names the call');
  await page.screenshot({ path: path.join(SHOTS, 'firefox-wall.png'), fullPage: true });
  log('saved firefox-wall.png');
  await page.locator(`${card(CALL)} button[data-action="accept"]`).click();
  await waitText(`${card(CALL)} .decision-accepted`, new RegExp(`Taken by ${SUP_NAME}`), 15_000);
  log('ok: Accept shows "Taken by"');
  check(await page.$eval(card(CALL), (el) => !el.classList.contains('prompt')), 'the card is no longer marked as a prompt');

  // ---- hang up; both calls end and are listed
  if (DONE) fs.writeFileSync(DONE, 'done\n');
  await page.waitForSelector(`${card(CALL)} .card-foot a.review-link[href^="/calls/"]`, { timeout: LIVE_TIMEOUT });
  await page.waitForSelector(`${card(ZH_CALL)} .card-foot a.review-link[href^="/calls/"]`, { timeout: LIVE_TIMEOUT });
  log('ok: both calls ended, each with a link to its review');
  await page.goto(`${BASE}/calls`);
  await page.waitForSelector(`tr.row[data-call-id="${CALL}"]`);
  await page.waitForSelector(`tr.row[data-call-id="${ZH_CALL}"]`);
  log('ok: /calls lists both calls');

  // ---- the English call's review
  await Promise.all([page.waitForNavigation(), page.locator(`tr.row[data-call-id="${CALL}"] a.call-link`).click()]);
  check(/\/calls\/\d+$/.test(page.url()), `the row opens the review (${page.url()})`);
  await page.waitForSelector('body[data-ready="true"]');
  const lines = await page.$$('#transcript .line');
  check(lines.length >= 3, `the review shows the transcript (${lines.length} lines)`);
  await page.waitForFunction(() => document.querySelector('#player')?.readyState >= 1 && document.querySelector('#player').duration > 0);
  const duration = await page.$eval('#player', (a) => a.duration);
  check(duration > 20, `the recording's metadata loaded (${duration.toFixed(1)} s)`);
  const target = lines[2];
  const startMs = Number(await target.evaluate((el) => el.dataset.start));
  await target.click();
  await page.waitForFunction((s) => Math.abs(document.querySelector('#player').currentTime - s) <= 0.5, { timeout: 5000 }, startMs / 1000)
    .catch(() => {});
  const pos = await page.$eval('#player', (a) => a.currentTime);
  check(Math.abs(pos - startMs / 1000) <= 0.5, `clicking a line seeks to its start (${pos.toFixed(2)} s vs ${(startMs / 1000).toFixed(2)} s)`);
  await page.waitForSelector('#transcript .line.current');
  check(await target.evaluate((el) => el.classList.contains('current')), 'the clicked line is highlighted');
  await page.$eval('#player', (a) => a.pause());
  const plot = await page.$eval('#plot svg', (svg) => {
    const line = svg.querySelector('.score-line');
    const box = svg.getBoundingClientRect();
    return { lines: svg.querySelectorAll('.score-line').length, marks: svg.querySelectorAll('.alert-mark').length, len: line ? line.getTotalLength() : 0, w: box.width, h: box.height };
  });
  check(plot.lines === 1 && plot.len > 50 && plot.w > 200 && plot.h > 40, `the risk plot is drawn (${plot.w.toFixed(0)}×${plot.h.toFixed(0)} px, a ${plot.len.toFixed(0)} px score line)`);
  check(plot.marks >= 1, 'the plot marks the prompt');
  const alertText = await page.$eval('#alerts .alert-card', (el) => el.innerText);
  check(alertText.includes(`Accepted by ${SUP_NAME}`), 'the review says who took the prompt');
  await page.$eval('#player', (a) => new Promise((done) => {
    a.addEventListener('seeked', done, { once: true });
    a.currentTime = 0;
  }));
  await page.screenshot({ path: path.join(SHOTS, 'firefox-review.png'), fullPage: true });
  log('saved firefox-review.png');

  check(problems.length === 0, `no page errors, console errors, failed or external requests${problems.length ? `:\n  ${problems.join('\n  ')}` : ''}`);
  log('all Firefox checks passed');
} catch (e) {
  exitCode = 1;
  console.error(`FAILED: ${e.stack || e}`);
  if (problems.length) console.error(`page problems:\n  ${problems.join('\n  ')}`);
  try {
    await page.screenshot({ path: path.join(SHOTS, 'firefox-failure.png'), fullPage: true });
  } catch { /* best effort */ }
} finally {
  if (DONE && !fs.existsSync(DONE)) fs.writeFileSync(DONE, 'failed\n');
  await browser.close().catch(() => {});
  fs.rmSync(profile, { recursive: true, force: true });
}
process.exit(exitCode);
