// duet's service worker: streams a file the page receives into a download, so neither the
// page nor this worker ever holds the whole file. It answers only /.duet-download/ID, for
// downloads the page announced over a MessageChannel, and POST /share, the files another
// app shares to the installed page; every other request goes to the network untouched.
'use strict';
const announced = new Map();
self.addEventListener('install', () => self.skipWaiting());
// The files of the last share (the manifest's share target), until the page takes them.
let shared = null;
self.addEventListener('message', (e) => {
  const d = e.data || {};
  const port = e.ports && e.ports[0];
  if (d.take === 'shared' && port) { port.postMessage({ files: shared || [] }); shared = null; return; }
  if (typeof d.id !== 'string' || typeof d.name !== 'string' || !port) return;
  announced.set(d.id, { name: d.name, size: d.size, port });
  port.postMessage({ ready: true });
});
// Each piece arrives as a buffer of its own, garbage once the download has it, and V8 frees
// such buffers only when it collects: a worker that allocates little else collects rarely,
// and 2 GiB left about 180 MB of them waiting. A small throwaway array per piece (16 KB
// for up to 512 KiB) fills the young generation, so a collection comes every few dozen
// pieces: the same 2 GiB grew the browser by about 130 MB instead of 250 to 300.
let ballast = null;
function collectSooner() { ballast = new Array(4096).fill(0); return ballast; }
self.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  if (url.origin !== self.location.origin) return;
  if (e.request.method === 'POST' && url.pathname === '/share') {
    e.respondWith(e.request.formData().then((form) => {
      shared = form.getAll('files').filter((f) => f instanceof File);
      return Response.redirect('/#share', 303);
    }));
    return;
  }
  if (!url.pathname.startsWith('/.duet-download/')) return;
  const id = url.pathname.slice('/.duet-download/'.length);
  const d = announced.get(id);
  if (!d) { e.respondWith(new Response('no such download', { status: 404 })); return; }
  announced.delete(id);
  let wake = null;
  const body = new ReadableStream({
    start(c) {
      d.port.onmessage = (m) => {
        if (m.data.chunk) {
          c.enqueue(new Uint8Array(m.data.chunk, m.data.at || 0, m.data.len));
          collectSooner();
        }
        else if (m.data.end) c.close();
        else if (m.data.error) c.error(new Error(m.data.error));
        if (wake) { wake(); wake = null; }
      };
    },
    // Pieces are asked for one at a time, up to 4 ahead of the download (a frame each, at
    // most 1 MiB): the page writes the next only when it is asked for.
    pull() { return new Promise((r) => { wake = r; d.port.postMessage({ pull: true }); }); },
    cancel() { d.port.postMessage({ cancelled: true }); },
  }, { highWaterMark: 4 });
  const headers = {
    'Content-Type': 'application/octet-stream',
    'Content-Disposition': "attachment; filename*=UTF-8''" + encodeURIComponent(d.name),
    'X-Content-Type-Options': 'nosniff',
  };
  if (Number.isSafeInteger(d.size)) headers['Content-Length'] = String(d.size);
  e.respondWith(new Response(body, { headers }));
});
