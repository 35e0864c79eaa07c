// Drives duet's web page in a real headless Chromium (puppeteer-core, Debian's chromium) for
// tests/browser.rs. One scenario per run:
//   node drive.cjs SCENARIO URL [ARGS…]
// It prints `step NAME` lines as it goes (the Rust side waits for them to play its part),
// then one line `result JSON`; anything wrong exits non-zero with the reason on stderr.
'use strict';
const path = require('path');
const fs = require('fs');
const puppeteer = require(path.join(process.env.DUET_PUPPETEER, 'node_modules', 'puppeteer-core'));

const [scenario, url, ...args] = process.argv.slice(2);
const LIMIT = 60000;
const step = (name) => console.log('step ' + name);

async function launch(extra = []) {
  return puppeteer.launch({
    executablePath: process.env.DUET_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // Puppeteer otherwise follows the Network domain, and Chromium then copies every
    // WebSocket message (base64) to this script: 1 GiB into the page took 2.8 times as long.
    networkEnabled: false,
    // Over a pipe, Chromium ends when this script does, even when it is killed.
    pipe: true,
    // The tests' HTTPS server has a certificate made at its start.
    args: ['--no-sandbox', '--disable-gpu', '--ignore-certificate-errors', '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream', '--autoplay-policy=no-user-gesture-required', ...extra],
  });
}

// A page that fails the test on any script error, CSP violation or dialog (an XSS would
// open one).
async function open(browser, hash) {
  const page = await browser.newPage();
  page.setDefaultTimeout(LIMIT);
  const problems = [];
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push('console error: ' + m.text());
  });
  page.on('dialog', async (d) => { problems.push('dialog: ' + d.message()); await d.dismiss(); });
  await page.goto(url + '/' + hash, { waitUntil: 'load' });
  return { page, problems };
}

const textOf = (page, sel) => page.$eval(sel, (el) => el.textContent);
const waitText = (page, sel, needle) => page.waitForFunction(
  (s, n) => document.querySelector(s) && document.querySelector(s).textContent.includes(n), {}, sel, needle);

async function chat() {
  const browser = await launch();
  const { page, problems } = await open(browser, '#chat');
  // Keyboard: the arrow keys move between the tabs, and back.
  await page.focus('#tab-chat');
  await page.keyboard.press('ArrowRight');
  await page.waitForFunction(() => !document.querySelector('#voice').hidden && document.activeElement.id === 'tab-voice');
  await page.keyboard.press('ArrowLeft');
  await page.waitForFunction(() => !document.querySelector('#chat').hidden);
  await page.type('#nick', 'webby');
  await page.type('#room', 'lobby');
  await page.click('#join');
  await waitText(page, '#log', 'you joined room lobby');
  step('joined');
  await waitText(page, '#members', 'netcat');
  await page.type('#say', 'hi from the browser');
  await page.keyboard.press('Enter');
  await waitText(page, '#log', 'hi from nc');
  await waitText(page, '#log', 'onerror=alert(1)');
  // The same string as a nickname: refused by the server, and the refusal is shown as text.
  await page.type('#say', '/nick <img src=x onerror=alert(1)>');
  await page.keyboard.press('Enter');
  await waitText(page, '#log', 'error: bad nickname');
  await page.type('#say', '<b>bold?</b> <img src=x onerror=alert(2)>');
  await page.keyboard.press('Enter');
  step('xss-sent');
  await page.waitForFunction(() => document.querySelector('#members').textContent.includes('webby'));
  const result = await page.evaluate(() => ({
    log: document.querySelector('#log').textContent,
    members: document.querySelector('#members').textContent,
    images: document.querySelectorAll('#log img, #log b').length,
    lines: [...document.querySelectorAll('#log .line')].map((l) => l.textContent),
  }));
  result.problems = problems;
  await browser.close();
  return result;
}

async function sendFile() {
  const [token, file] = args;
  const browser = await launch();
  const { page, problems } = await open(browser, '#files');
  await page.$eval('#send-token', (el) => { el.value = ''; });
  await page.type('#send-token', token);
  const input = await page.$('#file');
  await input.uploadFile(file);
  await page.click('#send-file');
  await waitText(page, '#send-status', 'waiting for peer');
  step('waiting');
  await page.waitForFunction(() => /^sent |failed|cancelled/.test(document.querySelector('#send-status').textContent),
    { timeout: LIMIT * 3 });
  const result = await page.evaluate(() => ({
    status: document.querySelector('#send-status').textContent,
    progress: document.querySelector('#send-progress').value,
  }));
  result.problems = problems;
  await browser.close();
  return result;
}

async function receiveFile() {
  const [token] = args;
  const browser = await launch();
  const { page, problems } = await open(browser, '#files');
  await page.type('#recv-token', token);
  await page.click('#recv-file');
  await waitText(page, '#recv-status', 'waiting for peer');
  step('waiting');
  await page.waitForFunction(() => /^received |failed|cancelled/.test(document.querySelector('#recv-status').textContent),
    { timeout: LIMIT * 3 });
  const result = await page.evaluate(async () => {
    const got = window.duetReceived;
    const digest = got ? await crypto.subtle.digest('SHA-256', await got.blob.arrayBuffer()) : null;
    return {
      status: document.querySelector('#recv-status').textContent,
      progress: document.querySelector('#recv-progress').value,
      name: got ? got.name : null,
      size: got ? got.blob.size : null,
      sha256: digest ? [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('') : null,
      save: document.querySelector('#save').download,
    };
  });
  result.problems = problems;
  await browser.close();
  return result;
}

// Talks into the fake microphone (a WAV), then hangs up.
async function talk() {
  const [token, wav, seconds] = args;
  const browser = await launch(['--use-file-for-fake-audio-capture=' + wav + '%noloop']);
  const { page, problems } = await open(browser, '#voice');
  await page.$eval('#voice-token', (el) => { el.value = ''; });
  await page.type('#voice-token', token);
  await page.click('#voice-start');
  await page.waitForFunction(() => window.duetVoice.open);
  step('talking');
  await new Promise((r) => setTimeout(r, Number(seconds) * 1000));
  await page.click('#voice-stop');
  await waitText(page, '#voice-status', 'call ended');
  const result = await page.evaluate(() => ({
    status: document.querySelector('#voice-status').textContent,
    delay: document.querySelector('#voice-delay').textContent,
    sent: window.duetVoice.sent, dropped: window.duetVoice.dropped,
  }));
  result.problems = problems;
  await browser.close();
  return result;
}

// Listens until the other side hangs up, then hangs up too; returns what it heard.
async function listen() {
  const [token, out] = args;
  const browser = await launch();
  const { page, problems } = await open(browser, '#voice');
  await page.$eval('#voice-token', (el) => { el.value = ''; });
  await page.type('#voice-token', token);
  await page.click('#voice-start');
  await waitText(page, '#voice-status', 'waiting for peer');
  step('waiting');
  await page.waitForFunction(() => window.duetVoice.peerEnded, { timeout: LIMIT * 2 });
  await page.click('#voice-stop');
  await waitText(page, '#voice-status', 'call ended');
  const heard = await page.evaluate(() => {
    const v = window.duetVoice;
    const all = new Uint8Array(v.heardSamples * 2);
    let at = 0;
    for (const part of v.heard) { all.set(new Uint8Array(part.buffer), at); at += part.byteLength; }
    let s = '';
    for (let i = 0; i < all.length; i += 0x8000) s += String.fromCharCode(...all.subarray(i, i + 0x8000));
    return { pcm: btoa(s), received: v.received, delay: document.querySelector('#voice-delay').textContent };
  });
  fs.writeFileSync(out, Buffer.from(heard.pcm, 'base64'));
  const result = { received: heard.received, delay: heard.delay, problems };
  await browser.close();
  return result;
}

// A page of another origin tries this server's WebSocket: the server's /healthz opened as
// localhost (no policy of its own to stop the script) opens ws://127.0.0.1, whose origin
// differs.
async function foreignOrigin() {
  const browser = await launch();
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  // Any page of another origin will do; the server's own text responses are sandboxed
  // (no script, no connections), which this stand-in for a foreign site must not be.
  await page.setBypassCSP(true);
  await page.goto(url.replace('127.0.0.1', 'localhost') + '/healthz');
  const closed = await page.evaluate((ws) => new Promise((resolve) => {
    const socket = new WebSocket(ws);
    socket.onclose = (e) => resolve({ code: e.code, reason: e.reason });
  }), url.replace('http://', 'ws://') + '/ws');
  await browser.close();
  return { closed, problems };
}

// Opens pipe downloads as pages: a sender's HTML or SVG must run nothing on the relay's
// origin (each script, if it ran, would set the title to "ran").
async function hostilePipes() {
  const browser = await launch();
  const outcomes = {};
  for (const token of args) {
    const page = await browser.newPage();
    page.setDefaultTimeout(LIMIT);
    let navigated = true;
    try {
      await page.goto(url + '/' + token, { waitUntil: 'load' });
    } catch (e) {
      // A download (Content-Disposition: attachment) is no page at all.
      navigated = false;
    }
    const title = navigated ? await page.evaluate(() => document.title).catch(() => '') : '';
    const origin = navigated ? await page.evaluate(() => self.origin).catch(() => '') : '';
    outcomes[token] = { navigated, ran: title === 'ran', origin };
    await page.close();
  }
  await browser.close();
  return { outcomes, problems: [] };
}

// The chat reconnects by itself after the server drops it (here: --idle-timeout).
async function reconnect() {
  const browser = await launch();
  const { page, problems } = await open(browser, '#chat');
  await page.type('#nick', 'again');
  await page.type('#room', 'back');
  await page.click('#join');
  await page.waitForFunction(() => document.querySelector('#log').textContent.split('you joined room back').length > 2,
    { timeout: LIMIT });
  const result = { log: await textOf(page, '#log'), status: await textOf(page, '#chat-status'), problems };
  await browser.close();
  return result;
}

// `make screenshots`: the three tabs with something in them, at desktop and phone sizes.
// The other side is played here with plain TCP, as `nc` would.
async function screenshots() {
  const [out] = args;
  const net = require('net');
  const { hostname, port } = new URL(url);
  const nc = net.connect(Number(port), hostname);
  nc.on('data', () => {});
  nc.write('/nick ana\n/join tea\n');
  const browser = await launch();
  const { page } = await open(browser, '#chat');
  await page.setViewport({ width: 1000, height: 720 });
  await page.type('#nick', 'bo');
  await page.type('#room', 'tea');
  await page.click('#join');
  await waitText(page, '#members', 'ana');
  for (const line of ['hello from a terminal', 'this is nc, in the same room']) nc.write(line + '\n');
  await waitText(page, '#log', 'same room');
  await page.type('#say', 'hi ana, this is a browser');
  await page.keyboard.press('Enter');
  await page.screenshot({ path: path.join(out, 'chat.png') });
  await page.setViewport({ width: 390, height: 760, deviceScaleFactor: 2 });
  await page.screenshot({ path: path.join(out, 'chat-phone.png') });
  await page.setViewport({ width: 1000, height: 720 });
  await page.click('#tab-voice');
  await page.$eval('#voice-token', (el) => { el.value = 'tea-voice'; el.dispatchEvent(new Event('input')); });
  await page.click('#voice-start');
  await page.waitForFunction(() => document.querySelector('#voice-status').textContent.includes('waiting'))
    .catch(async (e) => { throw new Error(e.message + ': ' + await textOf(page, '#voice-status')); });
  await page.screenshot({ path: path.join(out, 'voice.png') });
  await page.click('#tab-files');
  const file = path.join(out, 'notes.txt');
  fs.writeFileSync(file, 'notes\n'.repeat(100000));
  await page.$eval('#send-token', (el) => { el.value = 'notes'; el.dispatchEvent(new Event('input')); });
  await (await page.$('#file')).uploadFile(file);
  const receiver = net.connect(Number(port), hostname);
  receiver.on('data', () => {});
  receiver.write('/pipe notes\n');
  await page.click('#send-file');
  await waitText(page, '#send-status', 'sent ');
  receiver.end();
  await page.screenshot({ path: path.join(out, 'files.png') });
  // An encrypted transfer offered from a phone: the code, the link and its QR code.
  await page.setViewport({ width: 390, height: 844, deviceScaleFactor: 2 });
  await (await page.$('#send-files')).uploadFile(file);
  await page.click('#e2e-send');
  await page.waitForFunction(() => document.querySelector('#code').textContent !== '');
  await page.evaluate(() => document.querySelector('#e2e').scrollIntoView());
  await page.screenshot({ path: path.join(out, 'files-phone.png') });
  await page.click('#e2e-cancel');
  fs.unlinkSync(file);
  nc.end();
  await browser.close();
  return { problems: [] };
}

// Downloads of this browser go to `dir`, and the test can wait for them to finish.
async function downloadsTo(browser, dir) {
  const cdp = await browser.target().createCDPSession();
  await cdp.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: dir, eventsEnabled: true });
  const states = new Map();
  cdp.on('Browser.downloadProgress', (e) => states.set(e.guid, e.state));
  return states;
}

// An end-to-end transfer the page receives: `/#r=CODE` starts it on its own. Every file is
// a download streamed into DIR; the result says how the page ended and how downloads did.
async function e2eReceive(fragment = '#r=', waiting = 'waiting for the sender') {
  const [code, dir, wantFiles] = args;
  const browser = await launch();
  const downloads = await downloadsTo(browser, dir);
  const { page, problems } = await open(browser, fragment + code);
  await waitText(page, '#e2e-status', waiting);
  console.log('step idle ' + browser.process().pid);
  await page.waitForFunction(() => window.duetTransfer, { timeout: LIMIT * 10 });
  const transfer = await page.evaluate(() => window.duetTransfer);
  if (transfer.done) {
    const settled = () => downloads.size >= Number(wantFiles) && [...downloads.values()].every((s) => s !== 'inProgress');
    for (let i = 0; i < 600 && !settled(); i++) await new Promise((r) => setTimeout(r, 100));
  } else {
    await new Promise((r) => setTimeout(r, 1000));
  }
  const result = {
    transfer, downloads: [...downloads.values()], problems,
    status: await textOf(page, '#e2e-status'), address: await page.evaluate(() => location.href),
  };
  await browser.close();
  return result;
}

// An end-to-end transfer the page sends: FILES chosen in `#send-files`; prints `step code
// CODE` once the page shows it, then waits for the end.
async function e2eSend(wormhole = false) {
  const browser = await launch();
  console.log('step pid ' + browser.process().pid);
  const { page, problems } = await open(browser, '#files');
  await (await page.$('#send-files')).uploadFile(...args);
  if (wormhole) await page.click('#send-wormhole');
  await page.click('#e2e-send');
  await page.waitForFunction(() => document.querySelector('#code').textContent !== '');
  const code = await textOf(page, '#code');
  console.log('step code ' + code);
  const link = await page.$eval('#code-link', (a) => a.href);
  const qr = await page.$eval('#qr', (c) => c.width);
  await page.waitForFunction(() => window.duetTransfer, { timeout: LIMIT * 10 });
  const result = { transfer: await page.evaluate(() => window.duetTransfer), code, link, qr, problems,
    status: await textOf(page, '#e2e-status') };
  await browser.close();
  return result;
}

// The end of a scenario where the page sends: prints `step code CODE` once the page shows
// it, waits for the transfer's end, and gives what the page reported (with `extra`).
async function sentResult(browser, page, problems, extra = {}) {
  await page.waitForFunction(() => document.querySelector('#code').textContent !== '');
  console.log('step code ' + await textOf(page, '#code'));
  await page.waitForFunction(() => window.duetTransfer, { timeout: LIMIT * 3 });
  const result = { transfer: await page.evaluate(() => window.duetTransfer), ...extra, problems, status: await textOf(page, '#e2e-status') };
  await browser.close();
  return result;
}

// A message to a magic-wormhole receiver: the wormhole box ticked, TEXT typed, Send;
// prints `step code CODE`.
async function wormholeSendText() {
  const [text] = args;
  const browser = await launch();
  const { page, problems } = await open(browser, '#files');
  await page.click('#send-wormhole');
  await page.type('#send-text', text);
  await page.click('#e2e-send');
  return sentResult(browser, page, problems);
}

// Digests of what a directory handle holds, by path (folders as "dir").
const listTree = async (root) => {
  const out = {};
  const hex = (b) => [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, '0')).join('');
  const walk = async (dir, prefix) => {
    for await (const [name, handle] of dir.entries()) {
      if (handle.kind === 'directory') { out[prefix + name] = 'dir'; await walk(handle, prefix + name + '/'); }
      else out[prefix + name] = hex(await crypto.subtle.digest('SHA-256', await (await handle.getFile()).arrayBuffer()));
    }
  };
  await walk(root, '');
  return out;
};

// A folder sent with the "Send a folder" button: the folder picker answered with
// `album/` in the origin's private file system, which this scenario fills first (a text,
// 3 MiB in a subfolder, an empty folder); with `wormhole`, to a wormhole app. Prints `step
// code CODE`; the result lists what was sent, with digests.
async function e2eSendFolder(wormhole = false) {
  const browser = await launch();
  const { page, problems } = await open(browser, '#files');
  // Through CDP, which the page's CSP (no eval) does not govern.
  await page.evaluate('window.listTree = ' + listTree.toString());
  const sent = await page.evaluate(async () => {
    const root = await navigator.storage.getDirectory();
    const album = await root.getDirectoryHandle('album', { create: true });
    const put = async (dir, name, bytes) => { const w = await (await dir.getFileHandle(name, { create: true })).createWritable(); await w.write(bytes); await w.close(); };
    await put(album, 'notes.txt', 'a folder from the page\n'.repeat(100));
    const big = new Uint8Array(3 << 20);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 12)) & 255;
    await put(await album.getDirectoryHandle('sub', { create: true }), 'big.bin', big);
    await album.getDirectoryHandle('empty', { create: true });
    window.showDirectoryPicker = async () => (await navigator.storage.getDirectory()).getDirectoryHandle('album');
    return window.listTree(album);
  });
  if (wormhole) await page.click('#send-wormhole');
  await page.click('#send-folder');
  return sentResult(browser, page, problems, { sent });
}

// Two files dropped on the panel (a DragEvent carrying a DataTransfer the page cannot tell
// from a person's): NAME=TEXT pairs. Prints `step code CODE`.
async function e2eDrop() {
  const browser = await launch();
  const { page, problems } = await open(browser, '#files');
  await page.evaluate((pairs) => {
    const dt = new DataTransfer();
    for (const pair of pairs) { const at = pair.indexOf('='); dt.items.add(new File([pair.slice(at + 1)], pair.slice(0, at))); }
    document.getElementById('e2e').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, args);
  return sentResult(browser, page, problems);
}

// Page to page: one page sends FILES, another opens its link and receives them into DIR.
async function e2ePageToPage() {
  const [dir, ...files] = args;
  const browser = await launch();
  const downloads = await downloadsTo(browser, dir);
  const sender = await open(browser, '#files');
  await (await sender.page.$('#send-files')).uploadFile(...files);
  await sender.page.click('#e2e-send');
  await sender.page.waitForFunction(() => document.querySelector('#code').textContent !== '');
  const link = await sender.page.$eval('#code-link', (a) => a.href);
  // The receiver in a browser context of its own, as on another device: its service
  // worker (which claims every page of its origin in its context) is not the sender's.
  const context = await browser.createBrowserContext();
  const cdp = await browser.target().createCDPSession();
  await cdp.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: dir, eventsEnabled: true, browserContextId: context.id });
  cdp.on('Browser.downloadProgress', (e) => downloads.set(e.guid, e.state));
  const receiver = await context.newPage();
  const problems = sender.problems;
  receiver.on('pageerror', (e) => problems.push('page error: ' + e.message));
  await receiver.goto(link);
  const done = (p, who) => p.waitForFunction(() => window.duetTransfer, { timeout: LIMIT * 5 }).then(() => p.evaluate(() => window.duetTransfer),
    (e) => { throw new Error(who + ': ' + e.message); });
  const [sent, received] = await Promise.all([done(sender.page, 'sender'), done(receiver, 'receiver')]);
  for (let i = 0; i < 300 && (downloads.size < files.length || [...downloads.values()].some((s) => s === 'inProgress')); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const result = { sent, received, downloads: [...downloads.values()], problems };
  await browser.close();
  return result;
}

// The page on plain http:// under a name (not localhost): no secure context, so no
// WebCrypto. It must say so and offer no transfer at all.
async function insecure() {
  const { port } = new URL(url);
  const browser = await launch(['--host-resolver-rules=MAP duet.test 127.0.0.1']);
  const page = await browser.newPage();
  await page.goto('http://duet.test:' + port + '/#files', { waitUntil: 'load' });
  const result = await page.evaluate(() => ({
    secure: window.isSecureContext,
    warned: !document.querySelector('#insecure').hidden,
    text: document.querySelector('#insecure').textContent,
    disabled: ['send-files', 'e2e-send', 'recv-code', 'e2e-recv'].every((id) => document.getElementById(id).disabled),
  }));
  result.problems = [];
  await browser.close();
  return result;
}

// A browser whose WebAssembly lacks SIMD (Safari before 16.4), played by one whose compile
// refuses it as such a browser's would: the receive link says what the page needs.
async function noSimd() {
  const browser = await launch();
  const page = await browser.newPage();
  await page.evaluateOnNewDocument(() => {
    WebAssembly.compile = () => Promise.reject(new WebAssembly.CompileError('invalid opcode 0xfd'));
  });
  await page.goto(url + '/#r=' + args[0], { waitUntil: 'load' });
  await waitText(page, '#e2e-status', 'WebAssembly');
  const result = { status: await textOf(page, '#e2e-status'), problems: [] };
  await browser.close();
  return result;
}

// Installable (Chromium's own check) and, as on Android's Share menu, a file shared to the
// installed page: POSTed to the manifest's share target, which the service worker takes;
// the page then sends it and prints `step code CODE`.
async function share() {
  const browser = await launch();
  const { page, problems } = await open(browser, '#files');
  await page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
  const cdp = await page.createCDPSession();
  const { installabilityErrors } = await cdp.send('Page.getInstallabilityErrors');
  const manifest = await page.evaluate(async () => (await fetch('/manifest.webmanifest')).json());
  // A page loaded once the worker runs is controlled by it: its fetch reaches the worker.
  const app = await browser.newPage();
  app.on('pageerror', (e) => problems.push('page error: ' + e.message));
  await app.goto(url + '/#files', { waitUntil: 'load' });
  const status = await app.evaluate(async () => {
    const form = new FormData();
    form.append('files', new File(['shared from another app\n'], 'shared.txt', { type: 'text/plain' }));
    return (await fetch('/share', { method: 'POST', body: form })).status;
  });
  // Where the worker sends the app after a share (a new document, not a jump in this one).
  await app.goto('about:blank');
  await app.goto(url + '/#share', { waitUntil: 'load' });
  await app.waitForFunction(() => document.querySelector('#code').textContent !== '');
  console.log('step code ' + await textOf(app, '#code'));
  await app.waitForFunction(() => window.duetTransfer, { timeout: LIMIT * 2 });
  const result = { installabilityErrors, shareTarget: manifest.share_target, status, transfer: await app.evaluate(() => window.duetTransfer), problems };
  await browser.close();
  return result;
}

// Receiving into a folder (the File System Access API): the folder picker is answered with
// the origin's private file system, a real directory handle Chromium writes through the
// same API. Types CODE (duet's, or a wormhole code: `waiting` is what the page then says),
// presses Receive, then lists what the folder holds, with digests.
async function e2eFolder(waiting = 'waiting for the sender') {
  const [code, existing] = args;
  const browser = await launch();
  const page = await browser.newPage();
  page.setDefaultTimeout(LIMIT);
  const problems = [];
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  await page.evaluateOnNewDocument(() => { window.showDirectoryPicker = () => navigator.storage.getDirectory(); });
  await page.goto(url + '/#files', { waitUntil: 'load' });
  // Through CDP, which the page's CSP (no eval) does not govern.
  await page.evaluate('window.listTree = ' + listTree.toString());
  if (existing) {
    await page.evaluate(async (name) => {
      const root = await navigator.storage.getDirectory();
      const w = await (await root.getFileHandle(name, { create: true })).createWritable();
      await w.write('already here'); await w.close();
    }, existing);
  }
  await page.type('#recv-code', code);
  await page.click('#e2e-recv');
  await waitText(page, '#e2e-status', waiting);
  console.log('step idle');
  await page.waitForFunction(() => window.duetTransfer, { timeout: LIMIT * 5 });
  const files = await page.evaluate(async () => window.listTree(await navigator.storage.getDirectory()));
  const result = { transfer: await page.evaluate(() => window.duetTransfer), files, problems, status: await textOf(page, '#e2e-status') };
  await browser.close();
  return result;
}

// Receiving into a folder, broken off and tried again: `step half` once a fifth has
// arrived (the test then kills the sender), `step broken`, then the same code again
// (`step idle` twice); the result lists the folder as e2e-folder does.
async function e2eFolderResume() {
  const [code] = args;
  const browser = await launch();
  const page = await browser.newPage();
  page.setDefaultTimeout(LIMIT);
  const problems = [];
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  await page.evaluateOnNewDocument(() => { window.showDirectoryPicker = () => navigator.storage.getDirectory(); });
  await page.goto(url + '/#files', { waitUntil: 'load' });
  await page.type('#recv-code', code);
  await page.click('#e2e-recv');
  await waitText(page, '#e2e-status', 'waiting for the sender');
  console.log('step idle');
  await page.waitForFunction(() => document.querySelector('#e2e-progress').value > 0.2, { polling: 10 });
  console.log('step half');
  await page.waitForFunction(() => window.duetTransfer, { timeout: LIMIT * 5 });
  console.log('step broken ' + JSON.stringify(await textOf(page, '#e2e-status')));
  await page.evaluate(() => { window.duetTransfer = undefined; });
  await page.click('#e2e-recv');
  await waitText(page, '#e2e-status', 'waiting for the sender');
  console.log('step idle');
  await page.waitForFunction(() => window.duetTransfer, { timeout: LIMIT * 5 });
  const files = await page.evaluate(async () => {
    const out = {};
    for await (const [name, handle] of (await navigator.storage.getDirectory()).entries()) {
      const f = await handle.getFile();
      out[name] = [...new Uint8Array(await crypto.subtle.digest('SHA-256', await f.arrayBuffer()))].map((x) => x.toString(16).padStart(2, '0')).join('');
    }
    return out;
  });
  const result = { transfer: await page.evaluate(() => window.duetTransfer), files, problems, status: await textOf(page, '#e2e-status') };
  await browser.close();
  return result;
}

// One page receives from several (hostile) senders in turn: for each CODE it opens
// `/#r=CODE`, prints `step idle CODE`, and keeps what the page said and downloaded.
async function e2eHostile() {
  const [dir, ...codes] = args;
  const browser = await launch();
  const downloads = await downloadsTo(browser, dir);
  const { page, problems } = await open(browser, '#files');
  const said = {};
  for (const code of codes) {
    await page.goto('about:blank');
    await page.goto(url + '/#r=' + code, { waitUntil: 'load' });
    await waitText(page, '#e2e-status', 'waiting for the sender');
    console.log('step idle ' + code);
    await page.waitForFunction(() => window.duetTransfer, { timeout: LIMIT * 2 });
    said[code] = await textOf(page, '#e2e-status');
  }
  const result = { said, downloads: [...downloads.values()], problems };
  await browser.close();
  return result;
}

const scenarios = { 'no-simd': noSimd, 'e2e-hostile': e2eHostile, 'e2e-folder-resume': e2eFolderResume, 'e2e-folder': () => e2eFolder(), share, insecure, 'e2e-page-to-page': e2ePageToPage, 'e2e-receive': () => e2eReceive(), 'wormhole-receive': () => e2eReceive('#w=', 'waiting for the wormhole sender'), 'e2e-send': () => e2eSend(), 'wormhole-send': () => e2eSend(true), 'wormhole-send-text': wormholeSendText, 'e2e-send-folder': () => e2eSendFolder(), 'wormhole-send-folder': () => e2eSendFolder(true), 'e2e-drop': e2eDrop, 'wormhole-receive-folder': () => e2eFolder('waiting for the wormhole sender'), chat, screenshots, 'foreign-origin': foreignOrigin, 'hostile-pipes': hostilePipes, reconnect, 'send-file': sendFile, 'receive-file': receiveFile, talk, listen };
const run = scenarios[scenario];
if (!run) { console.error('no scenario ' + scenario); process.exit(2); }
run().then((result) => {
  console.log('result ' + JSON.stringify(result));
  process.exit(0);
}, (e) => {
  console.error(scenario + ' failed: ' + (e && e.stack || e));
  process.exit(1);
});
