// rgbxseg annotation UI. Plain ES2020, no framework, nothing loaded from the network.
// The HTTP API is specified in docs/annotation_api.md.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const el = {
    imageList: $('image-list'), imageFilter: $('image-filter'), progress: $('progress'), progressBar: $('progress-bar'),
    markDone: $('mark-done'), exportBtn: $('export'), exportResult: $('export-result'),
    view: $('modality-view'), sideField: $('side-modality-field'), sideModality: $('side-modality'),
    undo: $('undo'), redo: $('redo'), nextSurface: $('next-surface'), deleteSurface: $('delete-surface'),
    zoomIn: $('zoom-in'), zoomOut: $('zoom-out'), zoomFit: $('zoom-fit'), zoomLevel: $('zoom-level'),
    stage: $('stage'), stageInner: $('stage-inner'), stageMessage: $('stage-message'),
    canvas: $('canvas'), canvasSide: $('canvas-side'), sidePane: $('side-pane'),
    mainLabel: $('main-label'), sideLabel: $('side-label'),
    classPicker: $('class-picker'), classSwatch: $('class-swatch'), classLegend: $('class-legend'),
    surfaceList: $('surface-list'), surfaceEmpty: $('surface-empty'), surfaceCount: $('surface-count'),
    uncToggle: $('uncertainty-toggle'), currentOnly: $('current-only'), opacity: $('opacity'),
    status: $('status'), queue: $('queue'), cursor: $('cursor'), dims: $('dims'),
    title: $('image-title'), badge: $('image-status'), saved: $('saved'), engine: $('engine'),
    help: $('help'), helpButton: $('help-button'), helpClose: $('help-close'),
  };

  const STATUS_TEXT = { new: 'new', in_progress: 'in progress', done: 'done' };
  const EXPORT_FORMATS = ['png', 'surfaces', 'coco'];
  const FALLBACK_COLORS = ['#e6194b', '#3cb44b', '#ffe119', '#4363d8', '#f58231', '#911eb4', '#46f0f0', '#f032e6',
    '#bcf60c', '#fabebe', '#008080', '#e6beff', '#9a6324', '#fffac8', '#800000', '#aaffc3'];
  const ZOOM_MIN = 1;
  const ZOOM_MAX = 16;

  const app = {
    info: null,
    images: [],            // [{id, name, status, surfaces}]
    imageById: new Map(),
    liById: new Map(),
    openId: null,          // image shown (or being opened)
    opening: false,
    st: null,              // last State of the open image
    dec: null,             // decoded overlays of app.st
    seq: 0,
    views: ['rgb'],
    view: 'rgb',
    sideModality: null,
    showUnc: false,
    currentOnly: false,
    opacity: 0.55,
    zoom: 1,
    pending: [],           // clicks queued but not yet answered: {imageId, y, x, positive}
    hover: null,           // {y, x, canvas}
    pan: null,
  };

  // ---------------------------------------------------------------- auth and HTTP

  function readToken() {
    const h = location.hash.replace(/^#/, '');
    if (!h) return null;
    try { return new URLSearchParams(h).get('token'); } catch (_) { return null; }
  }
  let token = readToken();
  window.addEventListener('hashchange', () => {
    token = readToken();
    if (!app.info) start();  // a page locked out by a missing token retries with the new one
  });

  class ApiError extends Error {
    constructor(status, detail) { super(detail); this.status = status; this.detail = detail; }
  }

  async function errorDetail(res) {
    let detail = `${res.status} ${res.statusText || ''}`.trim();
    try {
      const body = await res.json();
      if (body && body.detail !== undefined) {
        if (typeof body.detail === 'string') detail = body.detail;
        else if (Array.isArray(body.detail)) detail = body.detail.map((d) => (d && d.msg) ? d.msg : JSON.stringify(d)).join('; ');
        else detail = JSON.stringify(body.detail);
      }
    } catch (_) { /* not JSON */ }
    return detail;
  }

  async function request(method, path, body) {
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, `network error (${e.message}): is the server still running?`);
    }
    if (!res.ok) throw new ApiError(res.status, await errorDetail(res));
    return res;
  }
  const getJSON = async (path) => (await request('GET', path)).json();
  const postJSON = async (path, body) => (await request('POST', path, body)).json();
  const imagePath = (id, rest) => `api/images/${encodeURIComponent(id)}/${rest}`;

  // Images go through fetch (so the Authorization header is sent) -> blob -> object URL -> <img>.
  async function loadImage(path) {
    const res = await request('GET', path);
    const blob = await res.blob();
    const url = URL.createObjectURL(blob);
    const img = new Image();
    img.src = url;
    try {
      await img.decode();
    } catch (_) {
      URL.revokeObjectURL(url);
      throw new ApiError(0, `cannot decode ${path}`);
    }
    return { img, url };
  }

  // ---------------------------------------------------------------- status bar and request queue

  function setStatus(text, kind) {
    el.status.textContent = text;
    el.status.classList.toggle('error', kind === 'error');
    el.status.classList.toggle('busy', kind === 'busy');
  }

  function reportError(e) {
    if (e instanceof ApiError) {
      if (e.status === 401 || e.status === 403) {
        setStatus(`${e.detail} (open the page with the URL printed by "rgbxseg annotate", it carries #token=…)`, 'error');
      } else {
        setStatus(e.detail, 'error');
      }
    } else {
      setStatus(String((e && e.message) || e), 'error');
      console.warn(e); // eslint-disable-line no-console
    }
  }

  // Every request that changes or loads state runs through one queue, strictly in order: clicks made
  // while the server is busy are kept and sent one after the other.
  let chain = Promise.resolve();
  let inFlight = 0;
  function updateBusy() {
    document.body.dataset.ready = inFlight ? '0' : '1';
    el.queue.textContent = inFlight > 1 ? `${inFlight - 1} queued` : '';
  }
  function enqueue(task) {
    inFlight++;
    updateBusy();
    const run = async () => {
      try { await task(); } catch (e) { reportError(e); } finally { inFlight--; updateBusy(); }
    };
    chain = chain.then(run);
    return chain;
  }

  // ---------------------------------------------------------------- PNG decoding and overlays

  function base64Bytes(b64) {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  // PLTE of a palette PNG (colour type 3), so a palette mask can be mapped back to indices.
  function pngPalette(bytes) {
    if (bytes.length < 33 || bytes[25] !== 3) return null;
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let p = 8; p + 8 <= bytes.length;) {
      const len = dv.getUint32(p);
      const type = String.fromCharCode(bytes[p + 4], bytes[p + 5], bytes[p + 6], bytes[p + 7]);
      if (type === 'PLTE') {
        const map = new Map();
        for (let i = 0; i < len / 3; i++) {
          const key = (bytes[p + 8 + 3 * i] << 16) | (bytes[p + 9 + 3 * i] << 8) | bytes[p + 10 + 3 * i];
          if (!map.has(key)) map.set(key, i);
        }
        return map;
      }
      if (type === 'IDAT' || type === 'IEND') break;
      p += 12 + len;
    }
    return null;
  }

  // Decodes an 8-bit PNG (grey or palette) to its raw values: {w, h, values: Uint8Array}.
  async function decodeValuePng(b64) {
    const bytes = base64Bytes(b64);
    const bmp = await createImageBitmap(new Blob([bytes], { type: 'image/png' }),
      { premultiplyAlpha: 'none', colorSpaceConversion: 'none' });
    const c = document.createElement('canvas');
    c.width = bmp.width;
    c.height = bmp.height;
    const ctx = c.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(bmp, 0, 0);
    if (bmp.close) bmp.close();
    const rgba = ctx.getImageData(0, 0, c.width, c.height).data;
    const n = c.width * c.height;
    const values = new Uint8Array(n);
    const palette = pngPalette(bytes);
    if (palette) {
      for (let i = 0, j = 0; i < n; i++, j += 4) {
        values[i] = palette.get((rgba[j] << 16) | (rgba[j + 1] << 8) | rgba[j + 2]) || 0;
      }
    } else {
      for (let i = 0, j = 0; i < n; i++, j += 4) values[i] = rgba[j];
    }
    return { w: c.width, h: c.height, values };
  }

  function hexToRgb(hex, fallbackIndex) {
    let m = /^#?([0-9a-f]{6})$/i.exec(hex || '');
    if (!m) {
      const s = /^#?([0-9a-f])([0-9a-f])([0-9a-f])$/i.exec(hex || '');
      if (s) m = [null, s[1] + s[1] + s[2] + s[2] + s[3] + s[3]];
    }
    if (!m) return hexToRgb(FALLBACK_COLORS[(fallbackIndex || 0) % FALLBACK_COLORS.length]);
    const v = parseInt(m[1], 16);
    return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
  }

  function surfaceColor(sf) {
    if (sf.color) return sf.color;
    const cls = app.info && app.info.classes.find((c) => c.id === sf.class_id);
    return cls ? cls.color : FALLBACK_COLORS[sf.id % FALLBACK_COLORS.length];
  }

  function toCanvas(imageData) {
    const c = document.createElement('canvas');
    c.width = imageData.width;
    c.height = imageData.height;
    c.getContext('2d').putImageData(imageData, 0, 0);
    return c;
  }

  // Joint mask -> two colour layers (other surfaces, current surface) + per-surface pixel areas;
  // uncertainty -> magenta heat layer with alpha proportional to the value.
  async function decodeState(s) {
    const dec = { ids: null, w: 0, h: 0, others: null, current: null, hasOthers: false, hasCurrent: false,
      unc: null, areas: new Uint32Array(256) };
    if (s.mask) {
      const m = await decodeValuePng(s.mask);
      dec.ids = m.values;
      dec.w = m.w;
      dec.h = m.h;
      const little = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
      const lut = new Uint32Array(256);
      for (const sf of s.surfaces || []) {
        if (sf.id < 0 || sf.id > 255) continue;
        const [r, g, b] = hexToRgb(surfaceColor(sf), sf.id);
        lut[sf.id] = little ? ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0 : ((r << 24) | (g << 16) | (b << 8) | 255) >>> 0;
      }
      for (let v = 1; v < 256; v++) {
        if (!lut[v]) {
          const [r, g, b] = hexToRgb(FALLBACK_COLORS[v % FALLBACK_COLORS.length]);
          lut[v] = little ? ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0 : ((r << 24) | (g << 16) | (b << 8) | 255) >>> 0;
        }
      }
      const others = new ImageData(m.w, m.h);
      const current = new ImageData(m.w, m.h);
      const o32 = new Uint32Array(others.data.buffer);
      const c32 = new Uint32Array(current.data.buffer);
      const cur = s.current || 0;
      const ids = m.values;
      const areas = dec.areas;
      let nOthers = 0;
      let nCurrent = 0;
      for (let i = 0; i < ids.length; i++) {
        const v = ids[i];
        if (v === 0) continue;
        areas[v]++;
        if (v === cur) { c32[i] = lut[v]; nCurrent++; } else { o32[i] = lut[v]; nOthers++; }
      }
      dec.hasOthers = nOthers > 0;
      dec.hasCurrent = nCurrent > 0;
      if (dec.hasOthers) dec.others = toCanvas(others);
      if (dec.hasCurrent) dec.current = toCanvas(current);
    }
    if (s.uncertainty) {
      const u = await decodeValuePng(s.uncertainty);
      const heat = new ImageData(u.w, u.h);
      const d = heat.data;
      for (let i = 0, j = 0; i < u.values.length; i++, j += 4) {
        d[j] = 255; d[j + 1] = 0; d[j + 2] = 255; d[j + 3] = Math.round(u.values[i] * 0.6);
      }
      dec.unc = toCanvas(heat);
    }
    return dec;
  }

  // ---------------------------------------------------------------- background images (RGB, modalities)

  let assets = null; // {id, released, map: Map(kind -> {state, img, url, err})}

  function assetsFor(id) {
    if (!assets || assets.id !== id) {
      if (assets) {
        assets.released = true;
        for (const e of assets.map.values()) if (e.url) URL.revokeObjectURL(e.url);
      }
      assets = { id, released: false, map: new Map() };
    }
    return assets;
  }

  function background(id, kind) {
    const a = assetsFor(id);
    let e = a.map.get(kind);
    if (!e) {
      e = { state: 'loading', img: null, url: null, err: null };
      a.map.set(kind, e);
      const path = kind === 'rgb' ? imagePath(id, 'rgb') : imagePath(id, `modality/${encodeURIComponent(kind)}`);
      loadImage(path).then((r) => {
        if (a.released) { URL.revokeObjectURL(r.url); return; }
        e.state = 'ok'; e.img = r.img; e.url = r.url;
        scheduleRender();
      }, (err) => {
        e.state = 'error'; e.err = err;
        if (!a.released) {
          setStatus(`${kind === 'rgb' ? 'image' : kind}: ${err.detail || err.message}`, 'error');
          scheduleRender();
        }
      });
    }
    return e;
  }

  // ---------------------------------------------------------------- layout and drawing

  function paneKinds() {
    if (app.view === 'side-by-side') return ['rgb', app.sideModality];
    return [app.view];
  }

  function layout() {
    const st = app.st;
    const side = app.view === 'side-by-side' && !!st;
    el.sidePane.hidden = !side;
    if (!st) return;
    const cs = getComputedStyle(el.stage);
    const availW = el.stage.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight) - 1;
    const availH = el.stage.clientHeight - parseFloat(cs.paddingTop) - parseFloat(cs.paddingBottom) - 1;
    const gap = 10;
    const perW = side ? (availW - gap) / 2 : availW;
    const fit = Math.max(0.01, Math.min(perW / st.width, availH / st.height));
    const scale = fit * app.zoom;
    const w = Math.max(1, Math.floor(st.width * scale));
    const h = Math.max(1, Math.floor(st.height * scale));
    sizeCanvas(el.canvas, w, h);
    if (side) sizeCanvas(el.canvasSide, w, h);
    // Put the canvas on whole CSS pixels (centring can leave it at .5): mouse events carry whole-pixel
    // coordinates, so this keeps the pixel under the pointer exactly the one clicked.
    el.stageInner.style.left = '0px';
    el.stageInner.style.top = '0px';
    const r = el.canvas.getBoundingClientRect();
    el.stageInner.style.left = `${Math.round(r.left) - r.left}px`;
    el.stageInner.style.top = `${Math.round(r.top) - r.top}px`;
    el.zoomLevel.textContent = `${Math.round(scale * 100)}%`;
    el.zoomLevel.title = `zoom ×${app.zoom.toFixed(2)} of fit`;
  }

  function sizeCanvas(c, w, h) {
    c.style.width = `${w}px`;
    c.style.height = `${h}px`;
    const dpr = window.devicePixelRatio || 1;
    const k = Math.min(dpr, 4096 / Math.max(w, h));
    const bw = Math.max(1, Math.round(w * k));
    const bh = Math.max(1, Math.round(h * k));
    if (c.width !== bw || c.height !== bh) { c.width = bw; c.height = bh; }
  }

  let renderQueued = false;
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => { renderQueued = false; render(); });
  }

  function render() {
    if (!app.st) return;
    const kinds = paneKinds();
    drawPane(el.canvas, kinds[0]);
    if (kinds.length > 1) drawPane(el.canvasSide, kinds[1]);
  }

  const scratch = document.createElement('canvas');
  const RING = [[1, 0], [-1, 0], [0, 1], [0, -1], [0.71, 0.71], [-0.71, 0.71], [0.71, -0.71], [-0.71, -0.71]];

  // A ring just outside the current surface, drawn at screen resolution so it stays crisp at any zoom.
  function drawOutline(ctx, src, W, H, k, color) {
    if (scratch.width !== W || scratch.height !== H) { scratch.width = W; scratch.height = H; }
    const s = scratch.getContext('2d');
    s.imageSmoothingEnabled = false;
    const ring = (r, fill) => {
      s.globalCompositeOperation = 'source-over';
      s.clearRect(0, 0, W, H);
      for (const [dx, dy] of RING) s.drawImage(src, dx * r, dy * r, W, H);
      s.globalCompositeOperation = 'destination-out';
      s.drawImage(src, 0, 0, W, H);
      s.globalCompositeOperation = 'source-in';
      s.fillStyle = fill;
      s.fillRect(0, 0, W, H);
      s.globalCompositeOperation = 'source-over';
      ctx.drawImage(scratch, 0, 0);
    };
    ctx.globalAlpha = 1;
    ring(3.5 * k, 'rgba(255,255,255,0.95)');
    ring(2.5 * k, color);
  }

  function drawDot(ctx, cx, cy, r, positive, pending) {
    ctx.beginPath();
    ctx.arc(cx, cy, r, 0, Math.PI * 2);
    if (pending) {
      ctx.setLineDash([r * 0.6, r * 0.5]);
      ctx.lineWidth = r * 0.45;
      ctx.strokeStyle = positive ? '#22c55e' : '#ef4444';
      ctx.stroke();
      ctx.setLineDash([]);
      return;
    }
    ctx.fillStyle = positive ? '#22c55e' : '#ef4444';
    ctx.fill();
    ctx.lineWidth = r * 0.35;
    ctx.strokeStyle = '#ffffff';
    ctx.stroke();
    ctx.beginPath();
    ctx.arc(cx, cy, r + r * 0.35, 0, Math.PI * 2);
    ctx.lineWidth = r * 0.2;
    ctx.strokeStyle = 'rgba(0,0,0,0.6)';
    ctx.stroke();
  }

  function drawPane(c, kind) {
    const st = app.st;
    const dec = app.dec;
    const ctx = c.getContext('2d');
    const W = c.width;
    const H = c.height;
    const sx = W / st.width;
    const sy = H / st.height;
    const k = W / (parseFloat(c.style.width) || W); // backing pixels per CSS pixel
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.globalAlpha = 1;
    ctx.globalCompositeOperation = 'source-over';
    ctx.fillStyle = '#15181d';
    ctx.fillRect(0, 0, W, H);

    const bg = kind ? background(st.id, kind) : null;
    if (bg && bg.state === 'ok') {
      ctx.imageSmoothingEnabled = sx / k < 2;
      ctx.imageSmoothingQuality = 'medium';
      ctx.drawImage(bg.img, 0, 0, W, H);
    } else {
      ctx.fillStyle = '#9ca3af';
      ctx.font = `${Math.round(14 * k)}px system-ui, sans-serif`;
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      const name = kind === 'rgb' ? 'image' : (kind || 'modality');
      ctx.fillText(bg && bg.state === 'error' ? `${name} unavailable` : `loading ${name}…`, W / 2, H / 2);
    }

    if (dec) {
      ctx.imageSmoothingEnabled = false;
      if (!app.currentOnly && dec.hasOthers) {
        ctx.globalAlpha = app.opacity * 0.7;
        ctx.drawImage(dec.others, 0, 0, W, H);
      }
      if (dec.hasCurrent) {
        ctx.globalAlpha = app.opacity;
        ctx.drawImage(dec.current, 0, 0, W, H);
        const sf = currentSurface();
        drawOutline(ctx, dec.current, W, H, k, sf ? surfaceColor(sf) : '#ffffff');
      }
      if (app.showUnc && dec.unc) {
        ctx.globalAlpha = 1;
        ctx.imageSmoothingEnabled = true;
        ctx.drawImage(dec.unc, 0, 0, W, H);
      }
    }
    ctx.globalAlpha = 1;

    const r = 5 * k;
    const sf = currentSurface();
    if (sf) for (const p of sf.clicks || []) drawDot(ctx, (p.x + 0.5) * sx, (p.y + 0.5) * sy, r, !!p.positive, false);
    for (const p of app.pending) {
      if (p.imageId === st.id) drawDot(ctx, (p.x + 0.5) * sx, (p.y + 0.5) * sy, r, p.positive, true);
    }

    // Where the cursor is on the other pane (side by side).
    if (app.hover && app.hover.canvas !== c) {
      const cx = (app.hover.x + 0.5) * sx;
      const cy = (app.hover.y + 0.5) * sy;
      const a = 9 * k;
      ctx.lineWidth = 3 * k;
      ctx.strokeStyle = 'rgba(0,0,0,0.7)';
      ctx.beginPath(); ctx.moveTo(cx - a, cy); ctx.lineTo(cx + a, cy); ctx.moveTo(cx, cy - a); ctx.lineTo(cx, cy + a); ctx.stroke();
      ctx.lineWidth = 1.2 * k;
      ctx.strokeStyle = '#ffffff';
      ctx.stroke();
    }
  }

  // ---------------------------------------------------------------- state

  function currentSurface() {
    const st = app.st;
    if (!st || !st.current) return null;
    return (st.surfaces || []).find((s) => s.id === st.current) || null;
  }

  function totalClicks(st) {
    return (st.surfaces || []).reduce((n, s) => n + ((s.clicks && s.clicks.length) || 0), 0);
  }

  async function applyState(s) {
    updateImageEntry(s.id, s.status, (s.surfaces || []).length);
    if (s.id !== app.openId) return; // an answer for an image no longer shown
    const seq = ++app.seq;
    const dec = await decodeState(s);
    if (seq !== app.seq || s.id !== app.openId) return;
    const first = !app.st || app.st.id !== s.id;
    app.st = s;
    app.dec = dec;
    app.opening = false;
    el.stageMessage.hidden = true;
    if (first) { app.zoom = 1; el.stage.scrollLeft = 0; el.stage.scrollTop = 0; }
    renderHeader();
    renderSurfaces();
    layout();
    render();
    document.body.dataset.clicks = String(totalClicks(s));
    document.body.dataset.image = s.id;
    document.body.dataset.current = String(s.current || '');
    updateBusy();
  }

  function renderHeader() {
    const st = app.st;
    if (!st) {
      el.title.textContent = app.openId || 'no image';
      el.badge.textContent = '–';
      el.badge.dataset.status = '';
      el.saved.textContent = '';
      el.dims.textContent = '';
      return;
    }
    const im = app.imageById.get(st.id);
    el.title.textContent = (im && im.name) || st.id;
    el.title.title = st.id;
    el.badge.textContent = STATUS_TEXT[st.status] || st.status || '–';
    el.badge.dataset.status = st.status || '';
    el.saved.textContent = st.saved === false ? '● not saved' : '✓ saved';
    el.saved.classList.toggle('unsaved', st.saved === false);
    el.dims.textContent = `${st.width} × ${st.height}`;
    const done = st.status === 'done';
    el.markDone.textContent = done ? 'Reopen' : 'Mark done';
    el.markDone.title = done ? 'Set this image back to in progress' : 'Mark this image as done';
    el.markDone.classList.toggle('is-done', done);
    el.undo.classList.toggle('dim', !st.can_undo);
    el.redo.classList.toggle('dim', !st.can_redo);
    el.deleteSurface.classList.toggle('dim', !st.current);
  }

  function renderSurfaces() {
    const st = app.st;
    const ul = el.surfaceList;
    ul.textContent = '';
    const surfaces = (st && st.surfaces) || [];
    const total = st && app.dec && app.dec.ids ? app.dec.ids.length : 0;
    const frag = document.createDocumentFragment();
    for (const sf of surfaces) {
      const li = document.createElement('li');
      li.dataset.surface = String(sf.id);
      if (sf.id === st.current) li.classList.add('current');
      const sw = document.createElement('span');
      sw.className = 'swatch';
      sw.style.background = surfaceColor(sf);
      const label = document.createElement('span');
      label.className = 'label';
      const cls = document.createElement('span');
      cls.className = 'cls';
      cls.textContent = `${surfaceName(sf)} #${sf.id}`;
      const meta = document.createElement('span');
      meta.className = 'meta';
      const clicks = sf.clicks || [];
      const pos = clicks.filter((c) => c.positive).length;
      const neg = clicks.length - pos;
      const area = total ? app.dec.areas[sf.id] || 0 : 0;
      meta.append(`${clicks.length} click${clicks.length === 1 ? '' : 's'} (`);
      const p = document.createElement('span'); p.className = 'pos'; p.textContent = `+${pos}`;
      const n = document.createElement('span'); n.className = 'neg'; n.textContent = `−${neg}`;
      meta.append(p, ' ', n, ')');
      if (total) meta.append(area ? ` · ${formatArea(area / total)}` : ' · empty');
      label.append(cls, meta);
      const del = document.createElement('button');
      del.type = 'button';
      del.className = 'delete';
      del.title = `Delete surface #${sf.id} (undoable)`;
      del.textContent = '✕';
      del.dataset.delete = String(sf.id);
      li.append(sw, label, del);
      li.title = `surface #${sf.id}: click to select it and correct it`;
      frag.append(li);
    }
    ul.append(frag);
    el.surfaceEmpty.hidden = surfaces.length > 0 || !st;
    el.surfaceCount.textContent = surfaces.length ? `(${surfaces.length})` : '';
    const cur = ul.querySelector('li.current');
    if (cur) cur.scrollIntoView({ block: 'nearest' });
  }

  function formatArea(f) {
    const pct = f * 100;
    return pct >= 10 ? `${pct.toFixed(0)}%` : pct >= 0.1 ? `${pct.toFixed(1)}%` : '<0.1%';
  }

  // The class name from /api/info (the state's "name" is the same by the API doc; the class id wins).
  function surfaceName(sf) {
    const c = app.info && app.info.classes.find((x) => x.id === sf.class_id);
    return c ? c.name : (sf.name || `surface ${sf.id}`);
  }

  function className(id) {
    const c = app.info && app.info.classes.find((x) => x.id === id);
    return c ? c.name : `class ${id}`;
  }

  // ---------------------------------------------------------------- image list

  function renderImageList() {
    const ul = el.imageList;
    ul.textContent = '';
    app.liById.clear();
    const frag = document.createDocumentFragment();
    for (const im of app.images) {
      const li = document.createElement('li');
      li.dataset.id = im.id;
      li.dataset.status = im.status;
      const dot = document.createElement('span');
      dot.className = 'dot';
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = im.name || im.id;
      const count = document.createElement('span');
      count.className = 'count';
      li.append(dot, name, count);
      frag.append(li);
      app.liById.set(im.id, li);
      decorateImageItem(im);
    }
    ul.append(frag);
    applyFilter();
    updateProgress();
  }

  function decorateImageItem(im) {
    const li = app.liById.get(im.id);
    if (!li) return;
    li.dataset.status = im.status;
    li.title = `${im.id}: ${STATUS_TEXT[im.status] || im.status}, ${im.surfaces || 0} surface${im.surfaces === 1 ? '' : 's'}`;
    li.querySelector('.count').textContent = im.surfaces ? String(im.surfaces) : '';
    li.classList.toggle('current', im.id === app.openId);
  }

  function updateImageEntry(id, status, surfaces) {
    const im = app.imageById.get(id);
    if (!im) return;
    if (status) im.status = status;
    if (typeof surfaces === 'number') im.surfaces = surfaces;
    decorateImageItem(im);
    updateProgress();
  }

  function markCurrentInList() {
    for (const [id, li] of app.liById) li.classList.toggle('current', id === app.openId);
    const li = app.liById.get(app.openId);
    if (li) li.scrollIntoView({ block: 'nearest' });
  }

  function updateProgress() {
    const total = app.images.length;
    const done = app.images.filter((im) => im.status === 'done').length;
    el.progress.textContent = `${done} / ${total} done`;
    el.progressBar.style.width = total ? `${(100 * done) / total}%` : '0';
  }

  function applyFilter() {
    const q = el.imageFilter.value.trim().toLowerCase();
    for (const [id, li] of app.liById) li.hidden = !!q && !id.toLowerCase().includes(q);
  }

  // ---------------------------------------------------------------- actions

  function openImage(id) {
    if (!id || !app.imageById.has(id)) return;
    enqueue(async () => {
      if (app.st && app.st.id === id) return;
      app.openId = id;
      app.opening = true;
      app.st = null;
      app.dec = null;
      app.hover = null;
      markCurrentInList();
      renderHeader();
      renderSurfaces();
      el.sidePane.hidden = true;
      clearCanvas(el.canvas);
      el.stageMessage.textContent = `opening ${id}…`;
      el.stageMessage.hidden = false;
      setStatus(`opening ${id}…`, 'busy');
      background(id, 'rgb'); // start downloading the image while the server opens it
      const t0 = performance.now();
      let s;
      try {
        s = await getJSON(imagePath(id, 'state'));
      } catch (e) {
        if (app.openId === id) {
          app.opening = false;
          el.stageMessage.textContent = `cannot open ${id}`;
        }
        throw e;
      }
      await applyState(s);
      setStatus(`opened ${id} in ${Math.round(performance.now() - t0)} ms`);
    });
  }

  function clearCanvas(c) {
    const ctx = c.getContext('2d');
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, c.width, c.height);
  }

  function openRelative(delta) {
    const visible = app.images.filter((im) => { const li = app.liById.get(im.id); return li && !li.hidden; });
    if (!visible.length) return;
    const i = visible.findIndex((im) => im.id === app.openId);
    const j = i < 0 ? 0 : Math.min(visible.length - 1, Math.max(0, i + delta));
    if (visible[j].id !== app.openId) openImage(visible[j].id);
  }

  function selectedClassId() {
    const v = parseInt(el.classPicker.value, 10);
    return Number.isFinite(v) ? v : (app.info && app.info.classes.length ? app.info.classes[0].id : 0);
  }

  // A state-changing POST for the open image; `done(state)` may set the status text.
  function post(action, body, done) {
    if (!app.st) { setStatus('no image open'); return; }
    const id = app.st.id;
    enqueue(async () => {
      const s = await postJSON(imagePath(id, action), body);
      await applyState(s);
      if (done) done(s);
    });
  }

  function queueClick(y, x, positive) {
    const id = app.st.id;
    const pend = { imageId: id, y, x, positive };
    app.pending.push(pend);
    scheduleRender();
    enqueue(async () => {
      try {
        // No current surface, or an untouched one of another class than the picker's: start (the server
        // relabels an untouched current surface) a surface of the selected class, then click into it.
        const sf = app.st && app.st.id === id ? currentSurface() : null;
        const untouched = sf && !(sf.clicks && sf.clicks.length) && sf.class_id !== selectedClassId();
        if (app.st && app.st.id === id && (!app.st.current || untouched)) {
          const made = await postJSON(imagePath(id, 'surface'), { class_id: selectedClassId() });
          await applyState(made);
        }
        const t0 = performance.now();
        const s = await postJSON(imagePath(id, 'click'), { y, x, positive });
        const rt = performance.now() - t0;
        removePending(pend);
        await applyState(s);
        const server = s.timing_ms && typeof s.timing_ms.click === 'number'
          ? ` (server ${Math.round(s.timing_ms.click)} ms)` : '';
        setStatus(`click ${Math.round(rt)} ms${server}`);
      } finally {
        if (removePending(pend)) scheduleRender();
      }
    });
  }

  function removePending(p) {
    const i = app.pending.indexOf(p);
    if (i < 0) return false;
    app.pending.splice(i, 1);
    return true;
  }

  function undoRedo(action) {
    if (!app.st) return;
    const id = app.st.id;
    enqueue(async () => {
      // The queue has run everything before this request, so app.st is the server's latest word: skip
      // a request that can only answer 409 (the browser would log it as a failed resource).
      const flag = action === 'undo' ? 'can_undo' : 'can_redo';
      if (app.st && app.st.id === id && app.st[flag] === false) { setStatus(`nothing to ${action}`); return; }
      try {
        const s = await postJSON(imagePath(id, action), {});
        await applyState(s);
        setStatus(action === 'undo' ? 'undone' : 'redone');
      } catch (e) {
        if (!(e instanceof ApiError && e.status === 409)) throw e;
        // another tab changed this image: show the server's state instead of a stale one
        await applyState(await getJSON(imagePath(id, 'state')));
        setStatus(`nothing to ${action}`);
      }
    });
  }

  function newSurface() {
    const cid = selectedClassId();
    post('surface', { class_id: cid }, (s) => setStatus(`new surface #${s.current} (${className(cid)}): click on it`));
  }

  function selectSurface(sid) {
    if (!app.st) return;
    if (app.st.current === sid) return;
    post('select', { surface: sid }, () => setStatus(`surface #${sid} selected`));
  }

  function deleteSurface(sid) {
    if (!app.st) return;
    if (!sid) { setStatus('no current surface to delete'); return; }
    post('delete', { surface: sid }, () => setStatus(`surface #${sid} deleted (z undoes)`));
  }

  function toggleDone() {
    if (!app.st) { setStatus('no image open'); return; }
    const status = app.st.status === 'done' ? 'in_progress' : 'done';
    post('status', { status }, (s) => setStatus(`${s.id} marked ${STATUS_TEXT[s.status] || s.status}`));
  }

  function exportAll() {
    enqueue(async () => {
      setStatus('exporting…', 'busy');
      const r = await postJSON('api/export', { formats: EXPORT_FORMATS });
      const files = r.files || [];
      setStatus(`exported ${files.length} file${files.length === 1 ? '' : 's'} to ${r.folder}`);
      const box = el.exportResult;
      box.textContent = '';
      const head = document.createElement('div');
      const b = document.createElement('b');
      b.textContent = `Exported ${files.length} file${files.length === 1 ? '' : 's'} to`;
      const folder = document.createElement('div');
      folder.className = 'folder';
      folder.textContent = r.folder;
      head.append(b, folder);
      box.append(head);
      if (files.length) {
        const det = document.createElement('details');
        const sum = document.createElement('summary');
        sum.textContent = 'files';
        det.append(sum);
        for (const f of files.slice(0, 500)) {
          const d = document.createElement('div');
          d.textContent = f;
          det.append(d);
        }
        if (files.length > 500) det.append(`… and ${files.length - 500} more`);
        box.append(det);
      }
      box.hidden = false;
    });
  }

  // ---------------------------------------------------------------- views, display options, zoom

  function setView(v) {
    if (!app.views.includes(v)) v = 'rgb';
    app.view = v;
    if (v !== 'rgb' && v !== 'side-by-side') app.sideModality = v;
    el.view.value = v;
    el.sideModality.value = app.sideModality || '';
    el.sideField.hidden = !(v === 'side-by-side' && el.sideModality.options.length > 1);
    el.mainLabel.textContent = v === 'side-by-side' || v === 'rgb' ? 'RGB' : v;
    el.sideLabel.textContent = app.sideModality || '';
    app.hover = null;
    layout();
    if (app.st) render();
  }

  function cycleView() {
    const i = app.views.indexOf(app.view);
    setView(app.views[(i + 1) % app.views.length]);
    setStatus(`view: ${el.view.options[el.view.selectedIndex].textContent}`);
  }

  function setUncertainty(on) {
    app.showUnc = on;
    el.uncToggle.checked = on;
    if (on && app.st && !app.st.uncertainty) setStatus('no uncertainty yet: it appears after the first click of the current surface');
    scheduleRender();
  }

  function zoomTo(z, anchorCanvas, cx, cy) {
    if (!app.st) return;
    z = Math.min(ZOOM_MAX, Math.max(ZOOM_MIN, z));
    const c = anchorCanvas || el.canvas;
    const r0 = c.getBoundingClientRect();
    const sr = el.stage.getBoundingClientRect();
    if (cx === undefined) { cx = sr.left + sr.width / 2; cy = sr.top + sr.height / 2; }
    const fx = r0.width ? (cx - r0.left) / r0.width : 0.5;
    const fy = r0.height ? (cy - r0.top) / r0.height : 0.5;
    app.zoom = z;
    layout();
    const r1 = c.getBoundingClientRect();
    el.stage.scrollLeft += r1.left + fx * r1.width - cx;
    el.stage.scrollTop += r1.top + fy * r1.height - cy;
    render();
  }

  // ---------------------------------------------------------------- canvas input

  function toImage(ev, c) {
    const st = app.st;
    if (!st) return null;
    const r = c.getBoundingClientRect();
    if (r.width <= 0 || r.height <= 0) return null;
    const fx = (ev.clientX - r.left) / r.width;
    const fy = (ev.clientY - r.top) / r.height;
    if (fx < 0 || fy < 0 || fx > 1 || fy > 1) return null;
    return {
      x: Math.min(st.width - 1, Math.max(0, Math.floor(fx * st.width))),
      y: Math.min(st.height - 1, Math.max(0, Math.floor(fy * st.height))),
    };
  }

  function onCanvasMouseDown(ev) {
    if (ev.button === 1) return; // middle button: pan (handled on the stage)
    if (ev.button !== 0 && ev.button !== 2) return;
    ev.preventDefault();
    if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur();
    if (!app.st || app.opening) return;
    const p = toImage(ev, ev.currentTarget);
    if (!p) return;
    const positive = ev.button === 0 && !ev.shiftKey;
    queueClick(p.y, p.x, positive);
  }

  function onCanvasMove(ev) {
    const p = toImage(ev, ev.currentTarget);
    if (!p) return;
    let text = `y ${p.y}, x ${p.x}`;
    if (app.dec && app.dec.ids && app.dec.w === app.st.width) {
      const v = app.dec.ids[p.y * app.dec.w + p.x];
      if (v) {
        const sf = (app.st.surfaces || []).find((s) => s.id === v);
        text += ` · #${v} ${sf ? surfaceName(sf) : ''}`;
      }
    }
    el.cursor.textContent = text;
    if (app.view === 'side-by-side') {
      app.hover = { y: p.y, x: p.x, canvas: ev.currentTarget };
      scheduleRender();
    }
  }

  function onCanvasLeave() {
    el.cursor.textContent = '';
    if (app.hover) { app.hover = null; scheduleRender(); }
  }

  for (const c of [el.canvas, el.canvasSide]) {
    c.addEventListener('mousedown', onCanvasMouseDown);
    c.addEventListener('contextmenu', (ev) => ev.preventDefault());
    c.addEventListener('mousemove', onCanvasMove);
    c.addEventListener('mouseleave', onCanvasLeave);
  }
  el.stage.addEventListener('contextmenu', (ev) => ev.preventDefault());

  el.stage.addEventListener('wheel', (ev) => {
    if (!app.st) return;
    ev.preventDefault();
    const unit = ev.deltaMode === 1 ? 16 : ev.deltaMode === 2 ? 400 : 1;
    const factor = Math.exp(-ev.deltaY * unit * 0.0015);
    const over = ev.target === el.canvasSide ? el.canvasSide : el.canvas;
    zoomTo(app.zoom * factor, over, ev.clientX, ev.clientY);
  }, { passive: false });

  el.stage.addEventListener('mousedown', (ev) => {
    if (ev.button !== 1) return;
    ev.preventDefault();
    app.pan = { x: ev.clientX, y: ev.clientY, left: el.stage.scrollLeft, top: el.stage.scrollTop };
    el.stage.classList.add('panning');
  });
  window.addEventListener('mousemove', (ev) => {
    if (!app.pan) return;
    el.stage.scrollLeft = app.pan.left - (ev.clientX - app.pan.x);
    el.stage.scrollTop = app.pan.top - (ev.clientY - app.pan.y);
  });
  window.addEventListener('mouseup', () => {
    if (!app.pan) return;
    app.pan = null;
    el.stage.classList.remove('panning');
  });

  if (typeof ResizeObserver === 'function') {
    let resizeQueued = false;
    new ResizeObserver(() => {
      if (resizeQueued) return;
      resizeQueued = true;
      requestAnimationFrame(() => { resizeQueued = false; layout(); render(); });
    }).observe(el.stage);
  } else {
    window.addEventListener('resize', () => { layout(); scheduleRender(); });
  }

  // ---------------------------------------------------------------- other controls

  el.imageList.addEventListener('click', (ev) => {
    const li = ev.target.closest('li[data-id]');
    if (li) openImage(li.dataset.id);
  });
  el.imageFilter.addEventListener('input', applyFilter);
  el.markDone.addEventListener('click', toggleDone);
  el.exportBtn.addEventListener('click', exportAll);
  el.undo.addEventListener('click', () => undoRedo('undo'));
  el.redo.addEventListener('click', () => undoRedo('redo'));
  el.nextSurface.addEventListener('click', newSurface);
  el.deleteSurface.addEventListener('click', () => deleteSurface(app.st && app.st.current));
  el.zoomIn.addEventListener('click', () => zoomTo(app.zoom * 1.25));
  el.zoomOut.addEventListener('click', () => zoomTo(app.zoom / 1.25));
  el.zoomFit.addEventListener('click', () => zoomTo(1));

  el.surfaceList.addEventListener('click', (ev) => {
    const del = ev.target.closest('button[data-delete]');
    if (del) { ev.stopPropagation(); deleteSurface(parseInt(del.dataset.delete, 10)); return; }
    const li = ev.target.closest('li[data-surface]');
    if (li) selectSurface(parseInt(li.dataset.surface, 10));
  });

  el.view.addEventListener('change', () => { setView(el.view.value); el.view.blur(); });
  el.sideModality.addEventListener('change', () => {
    app.sideModality = el.sideModality.value;
    el.sideModality.blur();
    setView('side-by-side');
  });
  el.classPicker.addEventListener('change', () => { updateClassUi(); el.classPicker.blur(); });
  el.classLegend.addEventListener('click', (ev) => {
    const li = ev.target.closest('li[data-class]');
    if (!li) return;
    el.classPicker.value = li.dataset.class;
    updateClassUi();
  });
  el.uncToggle.addEventListener('change', () => setUncertainty(el.uncToggle.checked));
  el.currentOnly.addEventListener('change', () => { app.currentOnly = el.currentOnly.checked; scheduleRender(); });
  el.opacity.addEventListener('input', () => { app.opacity = el.opacity.value / 100; scheduleRender(); });

  function showHelp(on) { el.help.hidden = !on; }
  el.helpButton.addEventListener('click', () => showHelp(el.help.hidden));
  el.helpClose.addEventListener('click', () => showHelp(false));
  el.help.addEventListener('click', (ev) => { if (ev.target === el.help) showHelp(false); });

  function updateClassUi() {
    const id = el.classPicker.value;
    const cls = app.info && app.info.classes.find((c) => String(c.id) === id);
    el.classSwatch.style.background = cls ? cls.color : '#ccc';
    for (const li of el.classLegend.children) li.classList.toggle('selected', li.dataset.class === id);
  }

  // ---------------------------------------------------------------- keyboard

  document.addEventListener('keydown', (ev) => {
    const t = ev.target;
    const tag = t && t.tagName;
    const typing = tag === 'TEXTAREA' || (tag === 'INPUT' && !['checkbox', 'radio', 'range', 'button'].includes(t.type));
    if (typing) {
      if (ev.key === 'Escape') t.blur();
      return;
    }
    const key = ev.key;
    const lower = key.length === 1 ? key.toLowerCase() : key;
    const helpOpen = !el.help.hidden;

    if (key === 'Escape') {
      if (helpOpen) { showHelp(false); ev.preventDefault(); }
      return;
    }
    if (ev.ctrlKey || ev.metaKey) {
      if (ev.altKey || helpOpen) return;
      if (lower === 'z') undoRedo(ev.shiftKey ? 'redo' : 'undo');
      else if (lower === 'y') undoRedo('redo');
      else return;
      ev.preventDefault();
      return;
    }
    if (ev.altKey) return;
    if (key === '?' || lower === 'h') {
      if (!ev.repeat) showHelp(!helpOpen);
      ev.preventDefault();
      return;
    }
    if (helpOpen) return;
    const arrowsBelongToTarget = tag === 'SELECT' || (tag === 'INPUT' && t.type === 'range');
    let handled = true;
    switch (lower) {
      case 'z': undoRedo(ev.shiftKey ? 'redo' : 'undo'); break;
      case 'y': undoRedo('redo'); break;
      case 'n': if (!ev.repeat) newSurface(); break;
      case 'd': if (!ev.repeat) deleteSurface(app.st && app.st.current); break;
      case 'u': if (!ev.repeat) setUncertainty(!app.showUnc); break;
      case 'm': if (!ev.repeat) cycleView(); break;
      case '+': case '=': zoomTo(app.zoom * 1.25); break;
      case '-': case '_': zoomTo(app.zoom / 1.25); break;
      case '0': zoomTo(1); break;
      case 'ArrowRight': case 'ArrowDown':
        if (arrowsBelongToTarget) handled = false; else if (!ev.repeat) openRelative(1);
        break;
      case 'ArrowLeft': case 'ArrowUp':
        if (arrowsBelongToTarget) handled = false; else if (!ev.repeat) openRelative(-1);
        break;
      default:
        if (/^[1-9]$/.test(key) && app.info && app.info.classes[+key - 1]) {
          el.classPicker.value = String(app.info.classes[+key - 1].id);
          updateClassUi();
          setStatus(`class for new surfaces: ${app.info.classes[+key - 1].name}`);
        } else {
          handled = false;
        }
    }
    if (handled) ev.preventDefault();
  });

  // ---------------------------------------------------------------- start

  function setupInfo(info) {
    app.info = info;
    info.classes = info.classes || [];
    info.modalities = info.modalities || [];
    el.classPicker.textContent = '';
    el.classLegend.textContent = '';
    info.classes.forEach((c, i) => {
      const o = document.createElement('option');
      o.value = String(c.id);
      o.textContent = c.name;
      el.classPicker.append(o);
      const li = document.createElement('li');
      li.dataset.class = String(c.id);
      li.title = i < 9 ? `${c.name} (key ${i + 1})` : c.name;
      const sw = document.createElement('span');
      sw.className = 'swatch';
      sw.style.background = c.color;
      const name = document.createElement('span');
      name.textContent = c.name;
      li.append(sw, name);
      if (i < 9) {
        const k = document.createElement('span');
        k.className = 'key';
        k.textContent = String(i + 1);
        li.append(k);
      }
      el.classLegend.append(li);
    });
    updateClassUi();

    app.views = ['rgb', ...info.modalities];
    if (info.modalities.length) app.views.push('side-by-side');
    el.view.textContent = '';
    for (const v of app.views) {
      const o = document.createElement('option');
      o.value = v;
      o.textContent = v === 'rgb' ? 'RGB' : v === 'side-by-side' ? 'side by side' : v;
      el.view.append(o);
    }
    el.sideModality.textContent = '';
    for (const m of info.modalities) {
      const o = document.createElement('option');
      o.value = m;
      o.textContent = m;
      el.sideModality.append(o);
    }
    app.sideModality = info.modalities[0] || null;
    setView('rgb');

    const eng = info.engine || {};
    const parts = [];
    if (eng.runtime) parts.push(`engine ${eng.runtime}`);
    if (eng.modalities && eng.modalities.length) parts.push(`uses RGB + ${eng.modalities.join(', ')}`);
    el.engine.textContent = parts.join(' · ');
  }

  window.addEventListener('unhandledrejection', (ev) => reportError(ev.reason));

  async function start() {
    document.body.dataset.ready = '0';
    setStatus('loading…', 'busy');
    let info;
    let images;
    try {
      [info, images] = await Promise.all([getJSON('api/info'), getJSON('api/images')]);
    } catch (e) {
      reportError(e);
      el.stageMessage.textContent = e instanceof ApiError && e.status === 401
        ? 'this server needs its token: open the URL it printed (…/#token=…)'
        : 'cannot reach the annotation server';
      el.stageMessage.hidden = false;
      el.mainLabel.hidden = true;
      document.body.dataset.ready = '1';
      return;
    }
    setupInfo(info);
    app.images = images || [];
    app.imageById = new Map(app.images.map((im) => [im.id, im]));
    renderImageList();
    if (!app.images.length) {
      setStatus('no images in the folder');
      el.stageMessage.textContent = 'no images';
      el.stageMessage.hidden = false;
      document.body.dataset.ready = '1';
      return;
    }
    const first = app.images.find((im) => im.status !== 'done') || app.images[0];
    openImage(first.id);
  }

  start();
})();
