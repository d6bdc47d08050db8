// The zeroci web UI: hash-routed pages over the HTTP API (SPEC.md §5).
// Every API call sends the token kept in localStorage; live updates come
// from server-sent events read with fetch() (see sse.js). Text from the
// server is only ever set as text, never as markup.
import { readSSE, HTTPError } from './sse.js';
import { newState, renderLine } from './ansi.js';

const TOKEN_KEY = 'zeroci.token';
const FINAL_BUILD = new Set(['success', 'failure', 'canceled', 'error']);
const FINAL_JOB = new Set(['success', 'failure', 'canceled', 'skipped', 'error']);
const NO_LOG_YET = new Set(['pending', 'queued', 'blocked', 'skipped']);

const app = document.getElementById('app');
const nav = document.getElementById('nav');
const flashBox = document.getElementById('flash');
let page = null; // the AbortController of the page shown

// ---- small helpers ----

const token = () => localStorage.getItem(TOKEN_KEY) || '';
const enc = encodeURIComponent;

// h makes an element: attrs are properties or attributes (on* are event
// listeners); children are nodes or strings (set as text).
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function flash(message, kind = 'error') {
  flashBox.replaceChildren(h('div', { class: 'flash ' + kind }, message,
    h('button', { class: 'link', type: 'button', onclick: () => flashBox.replaceChildren() }, '×')));
}

function badge(status) {
  return h('span', { class: 'badge st-' + (status || 'unknown') }, status || '?');
}

function ago(t) {
  if (!t) return '';
  const s = Math.round((Date.now() - Date.parse(t)) / 1000);
  if (!Number.isFinite(s)) return '';
  if (s < 60) return `${Math.max(s, 0)}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return new Date(t).toLocaleString();
}

function duration(from, to) {
  if (!from) return '';
  const end = to ? Date.parse(to) : Date.now();
  let s = Math.max(0, Math.round((end - Date.parse(from)) / 1000));
  if (!Number.isFinite(s)) return '';
  const m = Math.floor(s / 60);
  s %= 60;
  return m ? `${m}m ${s}s` : `${s}s`;
}

// fill replaces the children of el, leaving out null and false entries
// (replaceChildren itself would show them as text).
function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

// debounce runs fn at most once per ms, and never after signal aborts.
function debounce(fn, ms, signal) {
  let timer = null;
  return () => {
    if (timer || signal.aborted) return;
    timer = setTimeout(() => { timer = null; if (!signal.aborted) fn(); }, ms);
  };
}

// ---- the API ----

// api calls the HTTP API and returns the decoded JSON; it throws an
// HTTPError with the server's message. A refused token sends to login.
async function api(method, path, body, signal) {
  const headers = { Authorization: 'Bearer ' + token() };
  const init = { method, headers, signal, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!resp.ok) {
    const err = new HTTPError(resp.status, data?.code || '', data?.error || `${resp.status} ${resp.statusText}`);
    if (resp.status === 401) logout('The server refused the token: ' + err.message);
    throw err;
  }
  return data;
}

// followEvents calls onEvent with each hub event of repo (all repos when
// empty) until signal aborts; onOpen runs after each (re)connection, so a
// page can reload what it may have missed while connecting.
function followEvents(repo, signal, onEvent, onOpen) {
  const url = '/api/v1/events' + (repo ? '?repo=' + enc(repo) : '');
  readSSE(url, {
    token, signal, onOpen,
    onEvent: (ev) => {
      if (!ev.hasData || ev.event !== 'message') return; // e.g. caught-up
      try { onEvent(JSON.parse(ev.data)); } catch { /* not an event */ }
    },
  }).catch((err) => {
    if (err.status === 401) logout('The server refused the token.');
    else if (!signal.aborted) flash('Live updates stopped: ' + err.message);
  });
}

function logout(message) {
  localStorage.removeItem(TOKEN_KEY);
  if (message) flash(message);
  if (location.hash !== '#/login') location.hash = '#/login';
}

// ---- routing ----

function parseRoute() {
  try {
    return location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    return ['?'];
  }
}

function route() {
  page?.abort();
  page = new AbortController();
  const signal = page.signal;
  const p = parseRoute();
  renderNav();
  app.replaceChildren();
  if (p[0] !== 'login' && !token()) {
    location.hash = '#/login';
    return;
  }
  let run;
  if (p[0] === 'login') run = () => loginPage(signal);
  else if (p.length === 0 || (p[0] === 'repos' && p.length === 1)) run = () => reposPage(signal);
  else if (p[0] === 'repos' && p.length === 2) run = () => buildsPage(p[1], signal);
  else if (p[0] === 'repos' && p[2] === 'builds' && p.length === 4 && /^\d+$/.test(p[3])) run = () => buildPage(p[1], Number(p[3]), signal);
  else run = async () => app.append(h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/repos' }, 'Repositories')));
  run().catch((err) => {
    if (signal.aborted || err.name === 'AbortError') return;
    app.append(h('p', { class: 'error' }, err.message));
  });
}

function renderNav() {
  if (!token()) { nav.replaceChildren(); return; }
  nav.replaceChildren(
    h('a', { href: '#/repos' }, 'Repositories'),
    h('button', { class: 'link', type: 'button', id: 'logout', onclick: () => logout('Logged out.') }, 'Log out'));
}

// ---- pages ----

async function loginPage(signal) {
  const input = h('input', { id: 'token', type: 'password', name: 'token', autocomplete: 'current-password', placeholder: 'zci_…', required: true, size: 50 });
  const msg = h('p', { class: 'error' });
  const form = h('form', {
    class: 'card login',
    onsubmit: async (e) => {
      e.preventDefault();
      const tok = input.value.trim();
      if (!tok) return;
      try {
        const resp = await fetch('/api/v1/repos', { headers: { Authorization: 'Bearer ' + tok }, signal });
        if (resp.status === 401) { msg.textContent = 'The server does not know this token.'; return; }
        if (!resp.ok && resp.status !== 403) { msg.textContent = `The server answered ${resp.status}.`; return; }
      } catch (err) {
        msg.textContent = 'Cannot reach the server: ' + err.message;
        return;
      }
      localStorage.setItem(TOKEN_KEY, tok);
      flashBox.replaceChildren();
      location.hash = '#/repos';
    },
  },
  h('h1', {}, 'Log in'),
  h('p', { class: 'muted' }, 'Paste an API token. The server wrote the admin token to ', h('code', {}, 'DATA_DIR/admin.token'),
    ' on its first start; ', h('code', {}, 'zeroci token create'), ' makes others.'),
  h('label', { for: 'token' }, 'Token'), input, ' ',
  h('button', { type: 'submit', id: 'login' }, 'Log in'), msg);
  app.append(form);
  input.focus();
}

async function reposPage(signal) {
  const rows = h('tbody');
  const name = h('input', { name: 'name', placeholder: 'name', required: true, pattern: '[a-z0-9][a-z0-9._\\-]{0,62}' });
  const url = h('input', { name: 'url', placeholder: 'git URL', required: true, size: 40 });
  const branch = h('input', { name: 'branch', placeholder: 'default branch (main)' });
  const load = async () => {
    const data = await api('GET', '/api/v1/repos', undefined, signal);
    const repos = Array.isArray(data) ? data : (data?.repos || []);
    rows.replaceChildren(...repos.map((r) => h('tr', { 'data-repo': r.name },
      h('td', {}, h('a', { href: '#/repos/' + enc(r.name) }, r.name)),
      h('td', { class: 'mono' }, r.url),
      h('td', {}, r.default_branch),
      h('td', { class: 'muted' }, ago(r.created_at)))));
    if (!repos.length) rows.append(h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'No repositories yet.')));
  };
  const add = h('form', {
    class: 'inline',
    onsubmit: async (e) => {
      e.preventDefault();
      const body = { name: name.value.trim(), url: url.value.trim() };
      if (branch.value.trim()) body.default_branch = branch.value.trim();
      try {
        await api('POST', '/api/v1/repos', body, signal);
        name.value = url.value = branch.value = '';
        await load();
      } catch (err) { flash(err.message); }
    },
  }, name, url, branch, h('button', { type: 'submit' }, 'Add repository'));
  app.append(h('h1', {}, 'Repositories'),
    h('table', { class: 'list repos' }, h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'URL'), h('th', {}, 'Branch'), h('th', {}, 'Added'))), rows),
    h('details', { class: 'card' }, h('summary', {}, 'Add a repository'), add));
  await load();
  const reload = debounce(() => load().catch(() => {}), 200, signal);
  followEvents('', signal, (ev) => { if (ev.type?.startsWith('repo.')) reload(); }, reload);
}

async function buildsPage(repo, signal) {
  const base = `/api/v1/repos/${enc(repo)}`;
  const rows = h('tbody');
  const ref = h('input', { name: 'ref', placeholder: 'ref (default branch)' });
  const load = async () => {
    const builds = await api('GET', base + '/builds?limit=50', undefined, signal);
    const list = Array.isArray(builds) ? builds : (builds?.builds || []);
    rows.replaceChildren(...list.map((b) => h('tr', { 'data-build': b.number, class: 'st-row-' + b.status },
      h('td', {}, h('a', { href: `#/repos/${enc(repo)}/builds/${b.number}` }, '#' + b.number)),
      h('td', {}, badge(b.status)),
      h('td', {}, b.ref, ' ', h('span', { class: 'mono muted' }, (b.commit || '').slice(0, 10))),
      h('td', {}, b.event, b.user ? ` by ${b.user}` : ''),
      h('td', { class: 'muted' }, ago(b.created_at)),
      h('td', { class: 'muted' }, duration(b.started_at, b.finished_at)))));
    if (!list.length) rows.append(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No builds yet.')));
  };
  const trigger = h('form', {
    class: 'inline',
    onsubmit: async (e) => {
      e.preventDefault();
      const body = ref.value.trim() ? { ref: ref.value.trim() } : {};
      try {
        const b = await api('POST', base + '/builds', body, signal);
        location.hash = `#/repos/${enc(repo)}/builds/${b.number}`;
      } catch (err) { flash(err.message); }
    },
  }, ref, h('button', { type: 'submit', id: 'trigger' }, 'Trigger build'));
  app.append(h('h1', {}, h('a', { href: '#/repos' }, 'Repositories'), ' / ', repo), trigger,
    h('table', { class: 'list builds' }, h('thead', {}, h('tr', {},
      h('th', {}, 'Build'), h('th', {}, 'Status'), h('th', {}, 'Ref'), h('th', {}, 'Trigger'), h('th', {}, 'Created'), h('th', {}, 'Duration'))), rows));
  await load();
  const reload = debounce(() => load().catch(() => {}), 200, signal);
  followEvents(repo, signal, (ev) => { if (ev.type?.startsWith('build.') || ev.type?.startsWith('job.')) reload(); }, reload);
}

// layers groups jobs by their depth in the depends_on graph, keeping the
// pipeline's order inside a layer.
export function layers(jobs) {
  const byId = new Map(jobs.map((j) => [j.id, j]));
  const depth = new Map();
  const visit = (id, path) => {
    if (depth.has(id)) return depth.get(id);
    if (path.has(id)) return 0; // a cycle: the server refuses those; don't loop
    path.add(id);
    let d = 0;
    for (const dep of byId.get(id)?.depends_on || []) {
      if (byId.has(dep)) d = Math.max(d, visit(dep, path) + 1);
    }
    path.delete(id);
    depth.set(id, d);
    return d;
  };
  const out = [];
  for (const j of jobs) {
    const d = visit(j.id, new Set());
    (out[d] ||= []).push(j);
  }
  return out.filter(Boolean);
}

async function buildPage(repo, number, signal) {
  const base = `/api/v1/repos/${enc(repo)}/builds/${number}`;
  const head = h('div', { class: 'build-head' });
  const graph = h('div', { class: 'graph', id: 'graph' });
  const logs = h('div', { class: 'logs', id: 'logs' });
  const views = new Map(); // job id → its log view
  let build = null;

  // act runs a button's action, with the button disabled meanwhile.
  const act = async (button, fn) => {
    button.disabled = true;
    try { await fn(); } catch (err) { if (!signal.aborted) flash(err.message); } finally { button.disabled = false; }
  };
  const cancel = h('button', { type: 'button', id: 'cancel', class: 'danger', onclick: (e) => act(e.currentTarget, async () => { await api('POST', base + '/cancel', {}, signal); await refresh(); }) }, 'Cancel');
  const retry = h('button', { type: 'button', id: 'retry', onclick: (e) => act(e.currentTarget, async () => {
    const b = await api('POST', base + '/retry', {}, signal);
    location.hash = `#/repos/${enc(repo)}/builds/${b.number}`;
  }) }, 'Retry');

  const renderHead = () => {
    const b = build;
    cancel.hidden = FINAL_BUILD.has(b.status);
    retry.hidden = !FINAL_BUILD.has(b.status);
    fill(head,
      h('div', { class: 'row' }, badge(b.status), h('span', { id: 'build-status', class: 'sr' }, b.status),
        h('span', {}, b.ref, ' @ ', h('span', { class: 'mono' }, (b.commit || '').slice(0, 12))),
        h('span', { class: 'muted' }, b.event, b.user ? ` by ${b.user}` : ''),
        h('span', { class: 'muted' }, 'created ', ago(b.created_at)),
        b.started_at ? h('span', { class: 'muted' }, 'took ', duration(b.started_at, b.finished_at)) : null,
        b.retry_of ? h('a', { href: `#/repos/${enc(repo)}/builds/${b.retry_of}` }, `retry of #${b.retry_of}`) : null,
        h('span', { class: 'spacer' }), cancel, retry),
      b.params && Object.keys(b.params).length ? h('p', { class: 'mono muted' }, Object.entries(b.params).map(([k, v]) => `${k}=${v}`).join(' ')) : null,
      b.error ? h('pre', { class: 'build-error' }, b.error) : null);
  };

  const jobCard = (j) => {
    const approve = j.status === 'blocked'
      ? h('button', { type: 'button', class: 'approve', onclick: (e) => { e.stopPropagation(); act(e.currentTarget, async () => { await api('POST', `${base}/jobs/${enc(j.id)}/approve`, {}, signal); await refresh(); }); } }, 'Approve')
      : null;
    return h('div', {
      class: 'job st-' + j.status, 'data-job': j.id, 'data-status': j.status, tabindex: 0,
      onclick: () => views.get(j.id)?.section.scrollIntoView({ behavior: 'smooth', block: 'start' }),
    },
    h('div', { class: 'row' }, h('strong', {}, j.id), badge(j.status)),
    h('div', { class: 'muted small' },
      j.started_at ? duration(j.started_at, j.finished_at) : '',
      j.exit_code !== undefined && j.exit_code !== null ? ` · exit ${j.exit_code}` : '',
      j.attempt > 1 ? ` · attempt ${j.attempt}` : ''),
    j.depends_on?.length ? h('div', { class: 'muted small' }, 'needs ', j.depends_on.join(', ')) : null,
    j.reason ? h('div', { class: 'reason' }, j.reason) : null,
    approve);
  };

  const renderGraph = () => {
    const jobs = build.jobs || [];
    if (!jobs.length) { graph.replaceChildren(h('p', { class: 'muted' }, build.error ? 'No jobs.' : 'Planning…')); return; }
    graph.replaceChildren(...layers(jobs).map((layer) => h('div', { class: 'layer' }, layer.map(jobCard))));
  };

  // A log view per job, following its log once the job has started.
  const syncLogs = () => {
    for (const j of build.jobs || []) {
      let v = views.get(j.id);
      if (!v) {
        const pre = h('pre', { class: 'log' });
        const state = h('span', { class: 'muted small' });
        const section = h('details', { class: 'log-section', 'data-job': j.id, id: 'log-' + j.id }, h('summary', {}, j.id, ' ', state), pre);
        v = { pre, state, section, lines: 0, following: false, ansi: newState() };
        views.set(j.id, v);
        logs.append(section);
      }
      v.section.dataset.status = j.status;
      if (!v.following && !NO_LOG_YET.has(j.status)) {
        v.section.open = v.section.open || j.status !== 'success' || (build.jobs || []).length <= 3;
        followLog(j.id, v);
      }
      if (!v.following) v.state.textContent = j.status === 'skipped' ? '(skipped: no log)' : '(waiting for the job to start)';
    }
  };

  const followLog = (job, v) => {
    v.following = true;
    v.state.textContent = '(live)';
    readSSE(`${base}/jobs/${enc(job)}/log?follow=1`, {
      token, signal,
      onEvent: (ev) => {
        if (ev.event === 'end') { v.state.textContent = `(${plural(v.lines, 'line')})`; v.section.dataset.ended = 'true'; return; }
        if (!ev.hasData) return;
        const n = Number(ev.id);
        if (Number.isInteger(n) && n > 0) {
          if (n <= v.lines) return; // already shown (a resumed stream)
          v.lines = n;
        } else {
          v.lines++;
        }
        const stick = v.pre.scrollTop + v.pre.clientHeight >= v.pre.scrollHeight - 24;
        const line = h('div', { class: 'line', 'data-n': v.lines });
        renderLine(line, ev.data, v.ansi);
        v.pre.append(line);
        if (stick) v.pre.scrollTop = v.pre.scrollHeight;
      },
    }).catch((err) => {
      if (signal.aborted) return;
      if (err.status === 401) { logout('The server refused the token.'); return; }
      v.state.textContent = err.status === 404 ? '(no log)' : '(log: ' + err.message + ')';
    });
  };

  const refresh = async () => {
    build = await api('GET', base, undefined, signal);
    renderHead();
    renderGraph();
    syncLogs();
  };

  app.append(
    h('h1', {}, h('a', { href: '#/repos' }, 'Repositories'), ' / ', h('a', { href: '#/repos/' + enc(repo) }, repo), ' / ', '#' + number),
    head, h('h2', {}, 'Jobs'), graph, h('h2', {}, 'Logs'), logs);
  await refresh();

  const reload = debounce(() => refresh().catch(() => {}), 150, signal);
  followEvents(repo, signal, (ev) => { if (ev.build === number) reload(); }, reload);
  // A slow poll as well, in case the event stream is interrupted; it
  // stops once the build is finished and every job is final.
  const poll = setInterval(() => {
    if (signal.aborted) { clearInterval(poll); return; }
    const done = build && FINAL_BUILD.has(build.status) && (build.jobs || []).every((j) => FINAL_JOB.has(j.status) || j.status === 'blocked');
    if (!done) reload();
  }, 5000);
  signal.addEventListener('abort', () => clearInterval(poll), { once: true });
}

window.addEventListener('hashchange', route);
route();
