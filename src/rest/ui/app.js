// app.js - the taskmill dashboard: reads the REST API every two seconds and redraws the page.
//
// The token, when the server has tokens, is typed once and kept in sessionStorage (this tab
// only, gone when it closes); it goes in the Authorization header of every request. An admin
// token sees the workers, the history of attempts, the throughput and drain/resume; any other
// token sees what the API shows it: its own tasks and batches. Everything shown is put in the
// page as text (textContent), never as markup.
'use strict';

const REFRESH_MS = 2000;
const TOKEN_KEY = 'taskmill-token';
let token = sessionStorage.getItem(TOKEN_KEY) || '';
let admin = false;
let timer = null;

const $ = (id) => document.getElementById(id);

// el('td', {class: 'x'}, 'text', child, ...): an element with attributes and children.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

async function api(method, path, body) {
  const headers = {};
  if (token) headers.Authorization = 'Bearer ' + token;
  const r = await fetch(path, {method, headers, body, cache: 'no-store'});
  const type = r.headers.get('Content-Type') || '';
  const json = type.startsWith('application/json') ? await r.json().catch(() => null) : null;
  return {status: r.status, body: json};
}

// --- formatting ---------------------------------------------------------------------------

function bytes(n) {
  if (n === undefined || n === null) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + units[i];
}

function seconds(s) {
  if (s === undefined || s === null) return '';
  if (s < 60) return s.toFixed(1) + ' s';
  const m = Math.floor(s / 60);
  if (m < 60) return m + ' min ' + Math.round(s % 60) + ' s';
  return Math.floor(m / 60) + ' h ' + (m % 60) + ' min';
}

function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString();
}

function shortId(id) {
  return el('code', {title: id}, id ? id.slice(0, 8) : '');
}

function progressCell(p) {
  if (!p || p.percent === undefined) return el('td', {}, '');
  return el('td', {}, el('progress', {max: '100', value: String(p.percent)}),
            ' ' + p.percent.toFixed(1) + ' %');
}

// Replaces a table's rows; a row saying `empty` when there are none.
function fillTable(id, rows, empty) {
  const body = $(id).tBodies[0];
  const cols = $(id).tHead.rows[0].cells.length;
  body.replaceChildren(...(rows.length ? rows :
    [el('tr', {}, el('td', {class: 'empty', colspan: String(cols)}, empty))]));
}

function card(id, label, n) {
  return el('div', {class: 'card', id},
            el('span', {class: 'n'}, n === undefined ? '–' : n), el('span', {class: 'label'}, label));
}

// --- the parts of the page ----------------------------------------------------------------

function drawStatus(st) {
  $('states').replaceChildren(
    card('count-waiting', 'waiting', st.waiting), card('count-scheduled', 'scheduled', st.scheduled),
    card('count-working', 'working', st.working), card('count-done', 'done', st.done),
    card('count-failed', 'failed', st.failed),
    card('count-free', 'free workers', st.free_workers + ' / ' + st.max_workers));
  const b = st.waiting_by_priority || {};
  $('bands').replaceChildren(card('band-high', 'high', b.high), card('band-normal', 'normal', b.normal),
                             card('band-low', 'low', b.low));
  $('draining').hidden = !st.draining;
  const drain = $('drain');
  drain.hidden = !admin;
  drain.textContent = st.draining ? 'Resume' : 'Drain';
  drain.dataset.draining = st.draining ? '1' : '0';
}

function drawWorkers(w) {
  fillTable('workers', (w.workers || []).map((s) => {
    const busy = s.state === 'busy' && typeof s.progress === 'number';
    return el('tr', {'data-task': s.task_id || ''},
      el('td', {}, s.host || ''), el('td', {}, (s.kinds || []).join(', ')), el('td', {}, s.slot),
      el('td', {}, (s.state || '') + (s.held_because ? ' (' + s.held_because + ')' : '')),
      el('td', {}, s.task_id ? shortId(s.task_id) : '', s.task_type ? ' ' + s.task_type : ''),
      progressCell(busy ? {percent: s.progress} : null),
      el('td', {}, s.fps !== undefined ? s.fps.toFixed(1) : ''),
      el('td', {}, s.eta_seconds !== undefined ? seconds(s.eta_seconds) : ''),
      el('td', {}, bytes(s.rss_bytes)),
      el('td', {}, s.cpu_seconds !== undefined ? seconds(s.cpu_seconds) : ''));
  }), 'no worker is connected');
}

function drawRunning(list) {
  fillTable('running', list.tasks.map((t) => {
    const p = t.progress || {};
    return el('tr', {'data-task': t.id}, el('td', {}, shortId(t.id), ' ' + (t.file_name || '')),
      el('td', {}, t.task_type), progressCell(t.progress),
      el('td', {}, p.fps !== undefined ? p.fps.toFixed(1) : ''),
      el('td', {}, p.eta_seconds !== undefined ? seconds(p.eta_seconds) : ''));
  }), 'nothing of yours is running');
}

// One row per finished attempt: the admin's history, or a user's own finished tasks.
function attemptRow(a, id) {
  return el('tr', {'data-task': id},
    el('td', {}, when(a.finished_at)), el('td', {}, shortId(id)), el('td', {}, a.task_type || ''),
    el('td', {class: 'outcome-' + a.outcome}, a.outcome || ''), el('td', {}, seconds(a.wall_seconds)),
    el('td', {}, seconds(a.cpu_seconds)), el('td', {}, bytes(a.max_rss_bytes)), el('td', {}, a.host || ''));
}

function drawHistory(h) {
  fillTable('finished', h.attempts.map((a) => attemptRow(a, a.task_id)), 'nothing has finished yet');
}

function drawDone(list) {
  fillTable('finished', list.tasks.map((t) => {
    const last = (t.history || []).slice(-1)[0] || {task_type: t.task_type, outcome: t.state,
                                                     finished_at: t.finished_at};
    return attemptRow(last, t.id);
  }), 'none of your tasks has finished yet');
}

function drawFailed(list) {
  fillTable('failed', list.tasks.map((t) => {
    const e = t.error || {};
    const retry = el('button', {type: 'button', class: 'secondary retry', 'data-task': t.id}, 'Retry');
    retry.addEventListener('click', () => act(retry, 'POST', '/v1/tasks/' + t.id + '/retry'));
    return el('tr', {'data-task': t.id}, el('td', {}, shortId(t.id)), el('td', {}, t.file_name || ''),
      el('td', {class: 'error'}, el('code', {}, e.code || ''), ' ' + (e.message || '')),
      el('td', {}, when(t.finished_at)), el('td', {}, retry));
  }), 'no failed task');
}

function drawBatches(b) {
  fillTable('batches', b.batches.map((x) => {
    const state = x.finished ? 'finished' : x.sealed ? 'sealed' : 'open';
    const counts = Object.entries(x.counts || {}).filter(([, n]) => n > 0)
      .map(([k, n]) => n + ' ' + k).join(', ');
    return el('tr', {'data-batch': x.id}, el('td', {}, shortId(x.id)), el('td', {}, x.context || ''),
      progressCell({percent: x.progress || 0}), el('td', {}, x.total + (counts ? ' (' + counts + ')' : '')),
      el('td', {}, state));
  }), 'no batch');
}

// Bars of the attempts finished each minute: done below, failed and retried above.
function drawThroughput(t) {
  const svg = $('chart');
  const ns = 'http://www.w3.org/2000/svg';
  const mk = (tag, attrs) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  };
  const mins = t.minutes;
  const total = (m) => m.done + m.failed + m.retry;
  const max = Math.max(1, ...mins.map(total));
  const W = 600, H = 160, w = W / mins.length;
  const parts = [mk('line', {class: 'axis', x1: 0, y1: H, x2: W, y2: H})];
  let sum = 0;
  mins.forEach((m, i) => {
    sum += m.done;
    const hd = (m.done / max) * (H - 10), hf = ((m.failed + m.retry) / max) * (H - 10);
    const g = mk('g', {'data-minute': m.start, 'data-done': m.done});
    const title = mk('title', {});
    title.textContent = when(m.start) + ': ' + m.done + ' done, ' + (m.failed + m.retry) + ' failed';
    g.append(title);
    if (hd > 0) g.append(mk('rect', {class: 'done', x: i * w + 1, y: H - hd, width: w - 2, height: hd}));
    if (hf > 0) {
      g.append(mk('rect', {class: 'failed', x: i * w + 1, y: H - hd - hf, width: w - 2, height: hf}));
    }
    parts.push(g);
  });
  $('chart-max').textContent = 'top: ' + max + ' a minute';
  svg.replaceChildren(...parts);
  $('throughput-total').textContent = sum + ' done in the last hour';
}

// --- actions ------------------------------------------------------------------------------

async function act(button, method, path) {
  button.disabled = true;
  try {
    const r = await api(method, path);
    if (r.status >= 300) problem(describe(r));
  } catch (e) {
    problem('the server does not answer: ' + e.message);
  }
  button.disabled = false;
  refresh();
}

function describe(r) {
  const b = r.body || {};
  return 'HTTP ' + r.status + (b.code ? ' ' + b.code : '') + (b.message ? ': ' + b.message : '');
}

function problem(text) {
  $('problem').textContent = text;
  $('problem').hidden = !text;
}

async function loadTypes() {
  const r = await api('GET', '/v1/task-types');
  if (r.status !== 200) return;
  const sel = $('upload-type');
  sel.replaceChildren(...r.body.task_types.map((t) =>
    el('option', {value: t.name, 'data-input': t.input}, t.name)));
}

async function upload(ev) {
  ev.preventDefault();
  const out = $('upload-result');
  const file = $('upload-file').files[0];
  const form = new FormData();
  form.append('task_type', $('upload-type').value);
  form.append('priority', $('upload-priority').value);
  if ($('upload-params').value.trim()) form.append('params', $('upload-params').value.trim());
  if (file) {
    form.append('file_name', file.name);
    form.append('file_data', file, file.name);
  }
  $('upload-submit').disabled = true;
  out.hidden = false;
  out.className = '';
  out.textContent = file ? 'uploading ' + file.name + ' …' : 'submitting …';
  try {
    const r = await api('POST', '/v1/tasks', form);
    if (r.status === 201) {
      out.textContent = 'task ' + r.body.id + ' created (' + r.body.state + ')';
      out.dataset.task = r.body.id;
      $('upload').reset();
    } else {
      out.className = 'problem';
      out.textContent = describe(r);
    }
  } catch (e) {
    out.className = 'problem';
    out.textContent = 'the upload failed: ' + e.message;
  }
  $('upload-submit').disabled = false;
  refresh();
}

// --- the loop -----------------------------------------------------------------------------

let refreshing = false;

async function refresh() {
  if (refreshing) return; // a slow answer: the next tick asks again
  refreshing = true;
  try {
    await redraw();
  } finally {
    refreshing = false;
  }
}

async function redraw() {
  const q = (path, draw) => api('GET', path).then((r) => {
    if (r.status === 401) throw new Error('unauthorized');
    if (r.status !== 200) throw new Error(path + ': ' + describe(r));
    draw(r.body);
  });
  const parts = [
    q('/v1/status', drawStatus),
    q('/v1/batches?limit=10', drawBatches),
    q('/v1/tasks?state=failed&order=newest&limit=50', drawFailed),
  ];
  if (admin) {
    parts.push(q('/v1/workers', drawWorkers), q('/v1/workers/history?limit=50', drawHistory),
               q('/v1/workers/throughput', drawThroughput));
  } else {
    parts.push(q('/v1/tasks?state=in_progress&limit=100', drawRunning),
               q('/v1/tasks?state=done&order=newest&limit=50', drawDone));
  }
  const results = await Promise.allSettled(parts);
  const failed = results.find((r) => r.status === 'rejected');
  if (failed && failed.reason.message === 'unauthorized') return showLogin('the token was refused');
  problem(failed ? String(failed.reason.message) : '');
  $('live').textContent = 'updated ' + new Date().toLocaleTimeString();
  document.body.dataset.refreshed = String(Date.now());
}

function showLogin(why) {
  clearInterval(timer);
  timer = null;
  $('main').hidden = true;
  $('drain').hidden = true;
  $('forget').hidden = true;
  $('login').hidden = false;
  $('login-error').hidden = !why;
  $('login-error').textContent = why || '';
  $('token').focus();
}

// Who the token is: no token needed, a refused one, an admin's or another's.
async function start() {
  let r;
  try {
    r = await api('GET', '/v1/status');
  } catch (e) {
    problem('the server does not answer: ' + e.message);
    setTimeout(start, REFRESH_MS);
    return;
  }
  if (r.status === 401) return showLogin(token ? 'the token was refused' : '');
  admin = (await api('GET', '/v1/workers')).status === 200;
  $('who').textContent = token ? (admin ? 'admin token' : 'user token') : 'open server (loopback)';
  document.body.dataset.role = admin ? 'admin' : 'user';
  for (const s of document.querySelectorAll('.admin')) s.hidden = !admin;
  for (const s of document.querySelectorAll('.user')) s.hidden = admin;
  $('finished-title').textContent = admin ? 'Last 50 finished attempts' : 'Your finished tasks';
  $('login').hidden = true;
  $('main').hidden = false;
  $('forget').hidden = !token;
  await loadTypes();
  await refresh();
  if (!timer) timer = setInterval(refresh, REFRESH_MS);
}

document.addEventListener('DOMContentLoaded', () => {
  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    token = $('token').value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    $('token').value = '';
    start();
  });
  $('forget').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    token = '';
    showLogin('');
  });
  $('drain').addEventListener('click', () => {
    const on = $('drain').dataset.draining !== '1';
    act($('drain'), 'POST', on ? '/v1/admin/drain' : '/v1/admin/resume');
  });
  $('upload').addEventListener('submit', upload);
  start();
});
