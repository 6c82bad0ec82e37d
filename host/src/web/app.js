// The chathttp web client (PROTOCOL.md B3): ChatHTTP/1.1 over a WebSocket, one request or
// response per message. A peer's text (names, chat lines, refusal reasons) is only ever
// inserted with textContent, after its controls are made visible (C1).
'use strict';

const HISTORY_ON_JOIN = 50;
const LOG_LIMIT = 2000;
const LOG_BYTES_LIMIT = 4 * 1024 * 1024;
const RETRY_MAX_MS = 15000;
const NAME_TAKEN_PATIENCE_MS = 5 * 60 * 1000;
const CHAT_OPEN = '[ ';
const CHAT_SEPARATOR = ' ] : ';
const JOINED_SUFFIX = ' has just entered the chat room...\n';
const LEFT_SUFFIX = ' has just left the chat room...\n';
const MEMBERS_HEADING = 'Online users:\n';
const SHUTDOWN_NOTICE = 'Server is shutting down...\n';

const $ = (id) => document.getElementById(id);
const encoder = new TextEncoder();

const state = {
  name: '',
  ws: null,
  // 'joining' until the welcome, 'replay' until the history marker, then 'live'.
  phase: 'idle',
  // The user wants to be in the room: a dropped connection is retried.
  wanted: false,
  resuming: false,
  lastId: null,
  members: [],
  retries: 0,
  retryTimer: null,
  // When a resume first met its name taken (401), if it is meeting it still.
  takenSince: 0,
  // Characters of text in the log, as shown (C3).
  logBytes: 0,
};

// C1: controls (other than LF and TAB in chat text), DEL, C1 controls and the bidi
// controls shown as visible placeholders. The terminal client uses the Control Pictures
// (␛) for C0; a page cannot count on its fonts having them, so here every one is \u{1b}.
function visible(text, keepLines) {
  let out = '';
  for (const c of text) {
    const code = c.codePointAt(0);
    const bidi = code === 0x200e || code === 0x200f || (code >= 0x202a && code <= 0x202e) ||
      (code >= 0x2066 && code <= 0x2069);
    const control = code < 0x20 || (code >= 0x7f && code <= 0x9f) || bidi;
    if (!control || (keepLines && (c === '\n' || c === '\t'))) {
      out += c;
    } else {
      out += '\\u{' + code.toString(16) + '}';
    }
  }
  return out;
}

// One ChatHTTP response: status, headers (names in lower case), body.
function parseResponse(text) {
  const end = text.indexOf('\n\n');
  const head = (end < 0 ? text : text.slice(0, end)).replace(/\r/g, '').split('\n');
  const body = end < 0 ? '' : text.slice(end + 2);
  const status = head[0].split(' ');
  const headers = {};
  for (const line of head.slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { code: parseInt(status[1], 10) || 0, reason: status.slice(2).join(' '), headers, body };
}

function request(method, body, extra) {
  const bytes = encoder.encode(body || '').length;
  let head = method + ' / HTTP/1.1\nUser_Agent: ' + state.name + '\nContent_Length: ' + bytes + '\n';
  if (extra) head += extra;
  return head + '\n' + (body || '');
}

function send(text) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(text);
    return true;
  }
  return false;
}

// ---- the log ----------------------------------------------------------------------------

function colorClass(name) {
  let hash = 0;
  for (const c of name) hash = (hash * 31 + c.codePointAt(0)) >>> 0;
  return 'c' + (hash % 12);
}

function timeOf(response) {
  const datetime = response && response.headers.datetime;
  if (datetime && /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/.test(datetime)) return datetime.slice(11, 16);
  const now = new Date();
  return String(now.getHours()).padStart(2, '0') + ':' + String(now.getMinutes()).padStart(2, '0');
}

function append(item, size) {
  const log = $('log');
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  item.dataset.size = String(size || 0);
  state.logBytes += size || 0;
  log.appendChild(item);
  while (log.childElementCount > LOG_LIMIT || state.logBytes > LOG_BYTES_LIMIT) {
    state.logBytes -= Number(log.firstElementChild.dataset.size);
    log.firstElementChild.remove();
  }
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function span(className, text) {
  const element = document.createElement('span');
  element.className = className;
  element.textContent = text;
  return element;
}

function showChat(response, from, text, replayed) {
  const item = document.createElement('li');
  item.className = replayed ? 'chat replayed' : 'chat';
  const shown = visible(text, true);
  item.append(span('time', timeOf(response)), span('from ' + colorClass(from), visible(from, false)));
  // In a column of its own, so that a line of the text can never start where names do.
  item.append(span('text', shown));
  append(item, shown.length + from.length);
}

function showNotice(text, kind) {
  const item = document.createElement('li');
  item.className = kind || 'notice';
  if (kind !== 'rule') item.append(span('time', timeOf(null)));
  item.append(document.createTextNode(text));
  append(item, text.length);
}

function showMembers() {
  const list = $('members');
  list.replaceChildren(...state.members.map((name) => {
    const item = document.createElement('li');
    item.className = colorClass(name);
    item.textContent = visible(name, false);
    return item;
  }));
  $('count').textContent = '(' + state.members.length + ')';
}

// ---- the connection -------------------------------------------------------------------

function connect() {
  clearTimeout(state.retryTimer);
  const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
  const ws = new WebSocket(scheme + location.host + '/ws');
  state.ws = ws;
  state.phase = 'joining';
  ws.onopen = () => {
    const ask = state.lastId ? 'after ' + state.lastId : String(HISTORY_ON_JOIN);
    ws.send(request('ADD', '', 'History: ' + ask + '\n'));
  };
  ws.onmessage = (event) => {
    if (ws === state.ws && typeof event.data === 'string') receive(parseResponse(event.data));
  };
  ws.onclose = () => {
    if (ws === state.ws) dropped();
  };
}

function dropped() {
  state.ws = null;
  const wasJoining = state.phase === 'joining' && !state.resuming;
  state.phase = 'idle';
  if (!state.wanted) return;
  if (wasJoining) {
    $('login-error').textContent = 'Cannot reach the server.';
    $('join').disabled = false;
    state.wanted = false;
    return;
  }
  $('offline').hidden = false;
  $('send').disabled = true;
  state.resuming = true;
  // Once at once (a blip), then with the backoff.
  if (state.retries === 0) {
    state.retries = 1;
    connect();
  } else {
    retryLater();
  }
}

function receive(response) {
  const { code, body, headers } = response;
  if (code === 202) return; // the greeting
  if (code === 503) {
    // C2: only the shutdown notice ends the session; any other 503 is shown.
    const shutdown = body === SHUTDOWN_NOTICE;
    if (state.phase === 'joining' && !state.resuming) return refuse(body);
    showNotice(shutdown ? 'The server is shutting down.' : 'Server busy: ' + visible(body.trim(), false), 'problem');
    // A busy server turned the join away but kept the connection: try again later.
    if (state.phase === 'joining') retryLater();
    return;
  }
  if (state.phase === 'joining') return joined(response);
  if (state.phase === 'replay') {
    if (code === 200 && body.startsWith('History: ')) return marker(body);
    // Dimmed as history on a first join; what was missed while away reads as new.
    if (code === 200 && headers['message_id'] && isChat(body)) return chat(response, !state.resuming);
    state.phase = 'live'; // the server keeps no history: this is live already
  }
  if (code >= 400) {
    showNotice(code + ' ' + visible(body.trim(), false), 'problem');
    return;
  }
  if (isChat(body)) return chat(response, false);
  if (body.endsWith(JOINED_SUFFIX) && !body.slice(0, -1).includes('\n')) {
    const name = body.slice(0, -JOINED_SUFFIX.length);
    if (!state.members.includes(name)) state.members.push(name);
    showMembers();
    showNotice(visible(name, false) + ' joined');
    return;
  }
  if (body.endsWith(LEFT_SUFFIX) && !body.slice(0, -1).includes('\n')) {
    const name = body.slice(0, -LEFT_SUFFIX.length);
    state.members = state.members.filter((member) => member !== name);
    showMembers();
    showNotice(visible(name, false) + ' left');
    return;
  }
  if (body.startsWith(MEMBERS_HEADING)) {
    state.members = body.slice(MEMBERS_HEADING.length).split('\n').filter((name) => name !== '');
    showMembers();
  }
}

function isChat(body) {
  return body.startsWith(CHAT_OPEN) && body.indexOf(CHAT_SEPARATOR) > CHAT_OPEN.length - 1;
}

function chat(response, replayed) {
  const body = response.body;
  const split = body.indexOf(CHAT_SEPARATOR);
  const from = body.slice(CHAT_OPEN.length, split);
  const text = body.slice(split + CHAT_SEPARATOR.length).replace(/\n$/, '');
  const id = response.headers['message_id'];
  if (id && /^[\x21-\x7e]{1,200}$/.test(id)) state.lastId = id;
  showChat(response, from, text, replayed);
}

function joined(response) {
  if (response.code !== 200) {
    // 401: the name is taken, most likely by our own old connection, which the server has
    // not yet noticed gone (TCP keepalive finds it within about three minutes): try again,
    // for a while; past that someone else has the name.
    if (state.resuming && response.code === 401) {
      state.takenSince = state.takenSince || Date.now();
      if (Date.now() - state.takenSince < NAME_TAKEN_PATIENCE_MS) return retryLater();
    }
    return refuse(response.body);
  }
  state.retries = 0;
  state.takenSince = 0;
  state.phase = 'replay';
  $('offline').hidden = true;
  $('send').disabled = false;
  if (!state.resuming) {
    $('login').hidden = true;
    $('chat').hidden = false;
    $('me').textContent = 'as ' + visible(state.name, false);
    $('message').focus();
  }
  send(request('GET', ''));
}

// Gives up this connection and tries again after the backoff, still offline.
function retryLater() {
  if (state.ws) {
    state.ws.onclose = null;
    state.ws.close();
    state.ws = null;
  }
  state.phase = 'idle';
  const delay = Math.min(RETRY_MAX_MS, 1000 * 2 ** Math.min(state.retries, 4));
  state.retries += 1;
  state.retryTimer = setTimeout(connect, delay);
}

function marker(body) {
  state.phase = 'live';
  const count = parseInt(body.slice('History: '.length), 10) || 0;
  const missed = body.includes('some were missed');
  if (state.resuming) {
    let text = count + (count === 1 ? ' message' : ' messages') + ' while you were away';
    if (missed) text += '; some were missed';
    showNotice(text, 'rule');
  } else if (count > 0) {
    showNotice('─── history ───', 'rule');
  }
  state.resuming = false;
}

function refuse(body) {
  state.wanted = false;
  if (state.ws) {
    state.ws.onclose = null;
    state.ws.close();
    state.ws = null;
  }
  state.phase = 'idle';
  if (!$('chat').hidden) {
    showNotice('Could not rejoin: ' + visible(body.trim(), false), 'problem');
    $('offline').hidden = true;
    return;
  }
  $('login-error').textContent = visible(body.trim(), false) || 'Refused.';
  $('join').disabled = false;
}

// ---- the page ---------------------------------------------------------------------------

$('login-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const name = $('name').value.trim();
  if (!name) return;
  $('login-error').textContent = '';
  $('join').disabled = true;
  state.name = name;
  state.wanted = true;
  state.resuming = false;
  state.lastId = null;
  state.takenSince = 0;
  connect();
});

$('compose').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = $('message').value;
  if (text.trim() === '' || state.phase !== 'live') return;
  if (send(request('POST', text + '\n'))) {
    $('message').value = '';
    $('message').rows = 1;
  }
});

$('message').addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $('compose').requestSubmit();
  }
});

$('message').addEventListener('input', () => {
  $('message').rows = Math.min(6, $('message').value.split('\n').length);
});

$('leave').addEventListener('click', () => {
  state.wanted = false;
  clearTimeout(state.retryTimer);
  send(request('DELETE', ''));
  if (state.ws) state.ws.close();
  state.ws = null;
  state.members = [];
  state.logBytes = 0;
  $('log').replaceChildren();
  $('offline').hidden = true;
  $('chat').hidden = true;
  $('login').hidden = false;
  $('join').disabled = false;
  $('name').focus();
});
