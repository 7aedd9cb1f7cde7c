// Agent page: live call cards for one employee, fed by the SSE card stream.
// All data from the server is written with textContent or validated attributes, never as HTML.
'use strict';

(() => {
  const STREAM_PATH = '/api/v2/telephony/cards/stream';
  const HISTORY_PATH = '/api/v2/telephony/history/';
  const TOKEN_KEY = 'vats-bridge.agent.token';
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 30000;
  const PROBE_TIMEOUT_MS = 10000;
  const HEALTHY_STREAM_MS = 10000;
  const FADE_MS = window.matchMedia('(prefers-reduced-motion: reduce)').matches ? 0 : 450;
  const ANNOUNCE_BATCH_MS = 400;
  const BASE_TITLE = 'Calls · vats-bridge';

  // The API's names come from the gateway (/agent/vocabulary.js, made from the protos);
  // a label is its name as words: 'in-progress' reads 'In progress'.
  const VOCABULARY = window.VATS_VOCABULARY;
  const asLabel = (name) => name.charAt(0).toUpperCase() + name.slice(1).replaceAll('-', ' ');
  const labels = (names) => new Map(names.map((name) => [name, asLabel(name)]));
  const STATUS_LABELS = labels(VOCABULARY.statuses);
  const ACTIVE_STATUSES = new Set(VOCABULARY.activeStatuses);
  const DIRECTION_LABELS = labels(VOCABULARY.directions);
  const CONNECTION_TEXT = {
    'signed-out': 'Signed out',
    connecting: 'Connecting…',
    live: 'Live',
    reconnecting: 'Disconnected · reconnecting…',
    rejected: 'Token rejected',
  };

  const byId = (id) => document.getElementById(id);
  const ui = {
    status: byId('connection-status'),
    statusText: document.querySelector('#connection-status .conn-text'),
    retryNow: byId('retry-now'),
    signOut: byId('sign-out'),
    signin: byId('signin'),
    form: byId('token-form'),
    tokenInput: byId('token-input'),
    tokenError: byId('token-error'),
    board: byId('board'),
    staleNote: byId('stale-note'),
    count: byId('call-count'),
    empty: byId('empty-state'),
    list: byId('cards'),
    announcer: byId('announcer'),
    template: byId('card-template'),
    details: byId('details'),
    detailsTitle: byId('details-title'),
    detailsError: byId('details-error'),
    detailsBody: byId('details-body'),
    detailsClose: byId('details-close'),
  };

  const state = {
    token: null,
    source: null,
    opened: false,
    openedAt: 0,
    generation: 0, // bumped whenever a connection is replaced or dropped; stale callbacks ignore themselves
    lastEventId: null,
    attempt: 0,
    retryTimer: null,
    retryDue: 0,
    connection: 'signed-out',
    cards: new Map(), // call id (string) -> {el, card, leaveTimer}
    announceQueue: [],
    announceTimer: null,
  };

  // ---- token storage (localStorage can be unavailable, e.g. in some private modes) ----

  function loadToken() {
    try {
      return window.localStorage.getItem(TOKEN_KEY);
    } catch {
      return null;
    }
  }

  function saveToken(token) {
    try {
      window.localStorage.setItem(TOKEN_KEY, token);
    } catch {
      // the token then lives only as long as this page
    }
  }

  function forgetToken() {
    try {
      window.localStorage.removeItem(TOKEN_KEY);
    } catch {
      // nothing stored
    }
  }

  // ---- connection ----

  function streamUrl() {
    const params = new URLSearchParams({ access_token: state.token });
    // A new EventSource cannot send Last-Event-ID itself; the gateway also reads it from the query.
    if (state.lastEventId) params.set('last_event_id', state.lastEventId);
    return `${STREAM_PATH}?${params.toString()}`;
  }

  function connect() {
    clearRetry();
    closeSource();
    const generation = ++state.generation;
    // After a loss, keep saying "disconnected" until a connection actually opens.
    if (state.connection !== 'reconnecting') setConnection('connecting');
    else renderConnectionText();
    let source;
    try {
      source = new EventSource(streamUrl());
    } catch {
      scheduleReconnect();
      return;
    }
    state.source = source;
    state.opened = false;
    source.addEventListener('open', () => {
      if (generation !== state.generation) return;
      state.opened = true;
      state.openedAt = Date.now();
      setConnection('live');
    });
    source.addEventListener('error', () => {
      if (generation !== state.generation) return;
      onStreamError(generation);
    });
    for (const type of ['show', 'update', 'hide', 'reset']) {
      source.addEventListener(type, (event) => {
        if (generation !== state.generation) return;
        onStreamEvent(type, event);
      });
    }
  }

  function closeSource() {
    if (state.source) {
      state.source.close();
      state.source = null;
    }
    state.opened = false;
  }

  function onStreamError(generation) {
    const wasOpen = state.opened;
    closeSource();
    if (wasOpen) {
      // The stream dropped: reconnect ourselves (with backoff) rather than relying on the browser's
      // fixed-interval retry, resuming from the last event seen. A stream that lived a while was
      // healthy, so start the backoff afresh; one that keeps dropping at once keeps backing off.
      if (Date.now() - state.openedAt >= HEALTHY_STREAM_MS) state.attempt = 0;
      scheduleReconnect();
      return;
    }
    // EventSource hides the HTTP status of a failed connection; ask for it once to tell a rejected
    // token apart from a server that is down.
    setConnection('reconnecting');
    probeStatus(generation);
  }

  async function probeStatus(generation) {
    const controller = new AbortController();
    const timer = window.setTimeout(() => controller.abort(), PROBE_TIMEOUT_MS);
    let status = 0;
    let message = '';
    try {
      const response = await fetch(streamUrl(), {
        headers: { Accept: 'text/event-stream' },
        cache: 'no-store',
        credentials: 'same-origin',
        signal: controller.signal,
      });
      status = response.status;
      if (!response.ok) message = await errorMessage(response);
    } catch {
      status = 0; // network failure: the server is unreachable
    } finally {
      window.clearTimeout(timer);
      controller.abort(); // never keep the probe's stream open
    }
    if (generation !== state.generation) return;
    if (status === 401 || status === 403) {
      onTokenRejected(status, message);
    } else if (status === 400 && state.lastEventId) {
      // The server no longer accepts our resume point: start afresh (it sends a snapshot).
      state.lastEventId = null;
      clearCards();
      scheduleReconnect();
    } else if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
      // Retrying cannot fix this (e.g. a service token instead of an employee token).
      onTokenRejected(status, message);
    } else {
      scheduleReconnect();
    }
  }

  async function errorMessage(response) {
    try {
      const body = await response.json();
      const message = body && body.error && body.error.message;
      return typeof message === 'string' ? message : '';
    } catch {
      return '';
    }
  }

  function scheduleReconnect() {
    clearRetry();
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** state.attempt);
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    state.attempt += 1;
    state.retryDue = Date.now() + delay;
    state.retryTimer = window.setTimeout(connect, delay);
    setConnection('reconnecting');
  }

  function clearRetry() {
    if (state.retryTimer !== null) {
      window.clearTimeout(state.retryTimer);
      state.retryTimer = null;
    }
    state.retryDue = 0;
  }

  function stopConnection() {
    state.generation += 1;
    clearRetry();
    closeSource();
    state.attempt = 0;
  }

  function setConnection(name) {
    state.connection = name;
    ui.status.dataset.state = name;
    renderConnectionText();
    ui.retryNow.hidden = name !== 'reconnecting';
    ui.board.setAttribute('aria-busy', name === 'connecting' ? 'true' : 'false');
    ui.board.classList.toggle('is-stale', name === 'reconnecting');
    refreshSummary();
  }

  function renderConnectionText() {
    let text = CONNECTION_TEXT[state.connection] || state.connection;
    if (state.connection === 'reconnecting' && state.retryDue) {
      const seconds = Math.max(0, Math.ceil((state.retryDue - Date.now()) / 1000));
      if (seconds > 0) text = `Disconnected · reconnecting in ${seconds} s`;
    }
    if (ui.statusText.textContent !== text) ui.statusText.textContent = text;
  }

  // ---- stream events ----

  function onStreamEvent(type, event) {
    if (event.lastEventId) state.lastEventId = event.lastEventId;
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      return;
    }
    if (data === null || typeof data !== 'object') return;
    if (type === 'show' || type === 'update') upsertCard(data);
    else if (type === 'hide') hideCard(data);
    else if (type === 'reset') clearCards();
  }

  // ---- cards ----

  function callIdOf(card) {
    const id = Number(card.call_id);
    return Number.isSafeInteger(id) ? String(id) : null;
  }

  function upsertCard(card) {
    const id = callIdOf(card);
    if (id === null) return;
    let entry = state.cards.get(id);
    const isNew = entry === undefined;
    if (isNew) {
      const el = ui.template.content.firstElementChild.cloneNode(true);
      el.setAttribute('data-call-id', id);
      entry = { el, card, leaveTimer: null };
      state.cards.set(id, entry);
    } else if (entry.leaveTimer !== null) {
      window.clearTimeout(entry.leaveTimer);
      entry.leaveTimer = null;
      entry.el.classList.remove('is-leaving');
      entry.el.removeAttribute('inert');
    }
    entry.card = card;
    renderCard(entry.el, card);
    if (isNew) {
      placeCard(entry);
      entry.el.classList.add('is-new');
      window.setTimeout(() => entry.el.classList.remove('is-new'), 2500);
      if (ACTIVE_STATUSES.has(card.call_status)) queueAnnouncement(card);
    }
    refreshSummary();
  }

  function hideCard(card) {
    const id = callIdOf(card);
    if (id === null) return;
    const entry = state.cards.get(id);
    if (entry === undefined || entry.leaveTimer !== null) return;
    // Show the final state (e.g. "Answered") while the card fades out.
    entry.card = { ...entry.card, ...card };
    renderCard(entry.el, entry.card);
    entry.el.classList.add('is-leaving');
    entry.el.setAttribute('inert', '');
    entry.leaveTimer = window.setTimeout(() => {
      entry.el.remove();
      if (state.cards.get(id) === entry) state.cards.delete(id);
      refreshSummary();
    }, FADE_MS);
    refreshSummary();
  }

  function clearCards() {
    for (const entry of state.cards.values()) {
      if (entry.leaveTimer !== null) window.clearTimeout(entry.leaveTimer);
    }
    state.cards.clear();
    ui.list.replaceChildren();
    refreshSummary();
  }

  function sortKey(card) {
    const time = Date.parse(card.created_at);
    return [Number.isNaN(time) ? 0 : time, Number(card.call_id) || 0];
  }

  function isNewer(a, b) {
    const [ta, ia] = sortKey(a);
    const [tb, ib] = sortKey(b);
    return ta !== tb ? ta > tb : ia > ib;
  }

  function placeCard(entry) {
    // Newest call first: insert before the first card that is older than this one.
    for (const candidate of ui.list.children) {
      const other = state.cards.get(candidate.getAttribute('data-call-id'));
      if (other !== undefined && other !== entry && isNewer(entry.card, other.card)) {
        ui.list.insertBefore(entry.el, candidate);
        return;
      }
    }
    ui.list.appendChild(entry.el);
  }

  function field(el, name) {
    return el.querySelector(`[data-field="${name}"]`);
  }

  function text(value) {
    if (value === null || value === undefined) return '';
    return String(value).trim();
  }

  function renderCard(el, card) {
    const status = text(card.call_status);
    const direction = text(card.direction);
    const phone = text(card.phone);
    const contact = text(card.contact_name);
    const channel = text(card.channel_name);
    const employee = text(card.user_name);
    const pbxCallId = text(card.pbx_call_id);
    const callId = callIdOf(card);
    const ticketId = Number(card.ticket_id);

    el.setAttribute('data-status', status);
    el.setAttribute('data-direction', direction);
    el.classList.toggle('is-active', ACTIVE_STATUSES.has(status));

    const directionLabel = DIRECTION_LABELS.get(direction) || direction || 'Call';
    setText(field(el, 'direction'), directionLabel);

    const statusLabel = STATUS_LABELS.get(status) || status || 'Unknown';
    setText(field(el, 'status'), statusLabel);

    const phoneLink = field(el, 'phone');
    setText(phoneLink, phone ? formatPhone(phone) : 'Unknown number');
    const dialable = phone.replace(/[^\d+]/g, '');
    if (dialable) phoneLink.setAttribute('href', `tel:${dialable}`);
    else phoneLink.removeAttribute('href');

    const contactEl = field(el, 'contact');
    setText(contactEl, contact || 'Unknown contact');
    contactEl.classList.toggle('is-muted', !contact);

    const ticket = field(el, 'ticket');
    if (Number.isSafeInteger(ticketId) && ticketId > 0) {
      setText(ticket, `#${ticketId}`);
      if (callId !== null) ticket.setAttribute('href', HISTORY_PATH + callId);
      ticket.setAttribute('aria-label', `Ticket ${ticketId}`);
    } else {
      setText(ticket, '—');
      ticket.removeAttribute('href');
      ticket.removeAttribute('aria-label');
    }

    const channelId = Number(card.channel_id);
    setText(
      field(el, 'channel'),
      channel || (Number.isSafeInteger(channelId) && channelId > 0 ? `Channel ${channelId}` : '—'),
    );

    const userId = Number(card.user_id);
    const employeeEl = field(el, 'employee');
    const hasUser = card.user_id !== null && card.user_id !== undefined && Number.isSafeInteger(userId);
    setText(employeeEl, employee || (hasUser ? `Employee ${userId}` : 'Not assigned'));
    employeeEl.classList.toggle('is-muted', !employee && !hasUser);

    setText(field(el, 'call-id'), callId === null ? '—' : callId);
    field(el, 'pbx-wrap').hidden = !pbxCallId;
    setText(field(el, 'pbx'), pbxCallId);

    const started = field(el, 'started');
    const createdAt = new Date(text(card.created_at));
    if (Number.isNaN(createdAt.getTime())) {
      setText(started, '—');
      started.removeAttribute('datetime');
      started.removeAttribute('title');
    } else {
      started.setAttribute('datetime', createdAt.toISOString());
      started.setAttribute('title', createdAt.toLocaleString());
      setText(started, formatStarted(createdAt));
    }

    renderRecording(el, card.audio_record);
    renderElapsed(el, card);

    field(el, 'direction-wrap').setAttribute('data-direction', direction);
    const article = el.querySelector('article');
    article.setAttribute(
      'aria-label',
      `${directionLabel} call, ${phone || 'unknown number'}${contact ? `, ${contact}` : ''}, ${statusLabel}`,
    );
  }

  function renderRecording(el, value) {
    const wrap = field(el, 'recording-wrap');
    const audio = field(el, 'audio');
    const url = safeHttpUrl(value);
    if (url === null) {
      wrap.hidden = true;
      if (audio.hasAttribute('src')) {
        audio.removeAttribute('src');
        audio.load();
      }
      return;
    }
    wrap.hidden = false;
    if (audio.getAttribute('src') !== url) audio.setAttribute('src', url);
  }

  function safeHttpUrl(value) {
    if (typeof value !== 'string' || value === '') return null;
    try {
      const url = new URL(value, window.location.href);
      return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
    } catch {
      return null;
    }
  }

  function renderElapsed(el, card) {
    const start = Date.parse(card.created_at);
    const elapsedEl = field(el, 'elapsed');
    if (Number.isNaN(start)) {
      setText(elapsedEl, '—');
      return;
    }
    setText(elapsedEl, formatDuration(Math.max(0, Math.floor((Date.now() - start) / 1000))));
  }

  function setText(el, value) {
    const next = String(value);
    if (el.textContent !== next) el.textContent = next;
  }

  function formatDuration(totalSeconds) {
    const hours = Math.floor(totalSeconds / 3600);
    const minutes = Math.floor((totalSeconds % 3600) / 60);
    const seconds = totalSeconds % 60;
    const ss = String(seconds).padStart(2, '0');
    if (hours > 0) return `${hours}:${String(minutes).padStart(2, '0')}:${ss}`;
    return `${minutes}:${ss}`;
  }

  function formatStarted(date) {
    const now = new Date();
    const time = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    if (date.toDateString() === now.toDateString()) return time;
    return `${date.toLocaleDateString([], { day: 'numeric', month: 'short' })}, ${time}`;
  }

  function formatPhone(phone) {
    // Russian numbers in E.164 read better grouped; anything else is shown as given.
    const match = /^\+7(\d{3})(\d{3})(\d{2})(\d{2})$/.exec(phone);
    return match ? `+7 ${match[1]} ${match[2]}-${match[3]}-${match[4]}` : phone;
  }

  function visibleCardCount() {
    let count = 0;
    for (const entry of state.cards.values()) if (entry.leaveTimer === null) count += 1;
    return count;
  }

  function refreshSummary() {
    const count = visibleCardCount();
    setText(ui.count, count);
    ui.count.setAttribute('aria-label', `${count} active ${count === 1 ? 'call' : 'calls'}`);
    ui.empty.hidden = count > 0;
    setText(
      ui.empty,
      state.connection === 'live'
        ? 'No active calls right now. New calls appear here as soon as the phone rings.'
        : 'Not connected yet: calls appear here once the connection is up.',
    );
    ui.staleNote.hidden = state.connection !== 'reconnecting' || count === 0;
    const ringing = [...state.cards.values()].filter(
      (entry) => entry.leaveTimer === null && entry.card.call_status === 'ringing',
    ).length;
    document.title = ringing > 0 ? `(${ringing}) ${BASE_TITLE}` : BASE_TITLE;
  }

  // ---- screen reader announcements, batched so a snapshot of many cards is one message ----

  function queueAnnouncement(card) {
    state.announceQueue.push(card);
    if (state.announceTimer === null) {
      state.announceTimer = window.setTimeout(flushAnnouncements, ANNOUNCE_BATCH_MS);
    }
  }

  function flushAnnouncements() {
    const queue = state.announceQueue;
    state.announceQueue = [];
    state.announceTimer = null;
    if (queue.length === 0) return;
    let message;
    if (queue.length === 1) {
      const card = queue[0];
      const direction = (DIRECTION_LABELS.get(text(card.direction)) || 'New').toLowerCase();
      const phone = text(card.phone) || 'unknown number';
      const contact = text(card.contact_name);
      const channel = text(card.channel_name);
      message = `New ${direction} call: ${phone}${contact ? `, ${contact}` : ''}${channel ? `, on ${channel}` : ''}`;
    } else {
      message = `${queue.length} new calls`;
    }
    ui.announcer.textContent = message;
  }

  // ---- call details (the ticket link) ----

  function detail(name) {
    return ui.details.querySelector(`[data-detail="${name}"]`);
  }

  function listItems(list, items, render) {
    list.replaceChildren();
    if (!items.length) {
      const empty = document.createElement('li');
      empty.className = 'is-muted';
      empty.textContent = 'None';
      list.append(empty);
      return;
    }
    for (const item of items) {
      const li = document.createElement('li');
      render(li, item);
      list.append(li);
    }
  }

  function timeText(value) {
    const date = new Date(text(value));
    return Number.isNaN(date.getTime()) ? '' : date.toLocaleString();
  }

  function renderDetails(call) {
    ui.detailsTitle.textContent = `${formatPhone(text(call.phone)) || 'Call'} · call ${call.call_id}`;
    const ticket = call.ticket || {};
    setText(detail('ticket'), ticket.ticket_id ? `#${ticket.ticket_id}` : '—');
    setText(detail('phone'), formatPhone(text(call.phone)));
    setText(detail('contact'), text((call.contact || {}).name) || 'Unknown contact');
    setText(detail('status'), STATUS_LABELS.get(call.call_status) || text(call.call_status));
    const talk = Number(call.talk_duration_seconds);
    setText(detail('talk'), Number.isFinite(talk) && talk > 0 ? formatDuration(Math.round(talk)) : '—');
    listItems(detail('history'), call.status_history || [], (li, change) => {
      li.textContent = `${STATUS_LABELS.get(change.call_status) || text(change.call_status)} · ${timeText(change.at)}`;
    });
    listItems(detail('comments'), call.comments || [], (li, comment) => {
      li.textContent = `${text(comment.text)} · ${timeText(comment.created_at)}`;
    });
    listItems(detail('recordings'), call.recordings || [], (li, recording) => {
      const label = document.createElement('span');
      const seconds = Number(recording.duration_seconds);
      const length = Number.isFinite(seconds) && seconds > 0 ? ` · ${formatDuration(Math.round(seconds))}` : '';
      label.textContent = `${text(recording.format).toUpperCase()}${length} · ${timeText(recording.created_at)}`;
      li.append(label);
      const url = safeHttpUrl(recording.url);
      if (url !== null) {
        const audio = document.createElement('audio');
        audio.controls = true;
        audio.preload = 'none';
        audio.src = url;
        li.append(audio);
      }
    });
  }

  async function openDetails(callId) {
    ui.detailsError.hidden = true;
    ui.detailsBody.hidden = true;
    ui.detailsTitle.textContent = `Call ${callId}`;
    if (!ui.details.open) ui.details.showModal();
    try {
      const response = await fetch(HISTORY_PATH + encodeURIComponent(callId), {
        headers: { Authorization: `Bearer ${state.token}`, Accept: 'application/json' },
        cache: 'no-store',
      });
      if (!response.ok) throw new Error(`${await errorMessage(response)} (HTTP ${response.status})`);
      const body = await response.json();
      renderDetails(body.data || {});
      ui.detailsBody.hidden = false;
    } catch (error) {
      ui.detailsError.textContent = `Could not load the call: ${error.message || error}`;
      ui.detailsError.hidden = false;
    }
  }

  ui.list.addEventListener('click', (event) => {
    const link = event.target.closest('[data-field="ticket"]');
    if (!link || !state.token) return;
    const item = link.closest('[data-call-id]');
    if (!item) return;
    event.preventDefault();
    openDetails(item.getAttribute('data-call-id'));
  });

  ui.detailsClose.addEventListener('click', () => ui.details.close());

  // ---- sign in / out ----

  function showSignin(errorMessage) {
    ui.board.hidden = true;
    ui.signOut.hidden = true;
    ui.signin.hidden = false;
    ui.tokenError.hidden = !errorMessage;
    ui.tokenError.textContent = errorMessage || '';
    ui.tokenInput.setAttribute('aria-invalid', errorMessage ? 'true' : 'false');
    ui.tokenInput.value = '';
    ui.tokenInput.focus();
  }

  function showBoard() {
    ui.signin.hidden = true;
    ui.board.hidden = false;
    ui.signOut.hidden = false;
  }

  function start(token) {
    stopConnection();
    state.token = token;
    state.lastEventId = null;
    clearCards();
    showBoard();
    connect();
  }

  function signOut() {
    stopConnection();
    forgetToken();
    state.token = null;
    state.lastEventId = null;
    clearCards();
    setConnection('signed-out');
    showSignin('');
  }

  function onTokenRejected(status, detail) {
    stopConnection();
    forgetToken();
    state.token = null;
    state.lastEventId = null;
    clearCards();
    setConnection('rejected');
    let message;
    if (status === 401) message = 'The token was rejected. Check it and enter it again.';
    else if (status === 403) message = 'This token may not watch call cards. Use an employee token.';
    else message = 'The server refused this token for the call list. Use an employee token.';
    const reason = detail ? `${detail}, HTTP ${status}` : `HTTP ${status}`;
    showSignin(`${message} (${reason})`);
  }

  ui.form.addEventListener('submit', (event) => {
    event.preventDefault();
    const token = ui.tokenInput.value.trim();
    if (!token) {
      ui.tokenError.textContent = 'Enter your employee token.';
      ui.tokenError.hidden = false;
      ui.tokenInput.setAttribute('aria-invalid', 'true');
      ui.tokenInput.focus();
      return;
    }
    ui.tokenInput.value = '';
    saveToken(token);
    start(token);
  });

  ui.signOut.addEventListener('click', signOut);

  ui.retryNow.addEventListener('click', () => {
    if (state.token) connect();
  });

  window.addEventListener('online', () => {
    if (state.token && state.connection === 'reconnecting') connect();
  });

  // Another tab signed in or out: follow it.
  window.addEventListener('storage', (event) => {
    if (event.key !== TOKEN_KEY) return;
    if (!event.newValue) {
      if (state.token) signOut();
    } else if (event.newValue !== state.token) {
      start(event.newValue);
    }
  });

  window.setInterval(() => {
    for (const entry of state.cards.values()) renderElapsed(entry.el, entry.card);
    if (state.connection === 'reconnecting') renderConnectionText();
  }, 1000);

  const stored = loadToken();
  if (stored) {
    start(stored);
  } else {
    setConnection('signed-out');
    showSignin('');
  }
})();
