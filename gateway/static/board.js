// Supervisor board: every active call with its waiting or talk time ticking, each telephony
// employee's state, and today's figures per channel, all from the board's SSE stream.
// All data from the server is written with textContent or validated attributes, never as HTML.
'use strict';

(() => {
  const I = window.VatsI18n;
  const S = window.VatsSession;
  const t = I.t;
  const { text, setText, field } = S;

  const BOARD_STREAM = '/api/v2/telephony/board/stream';
  const TOKEN_KEY = 'vats-bridge.board.token';

  const byId = (id) => document.getElementById(id);
  const ui = {
    status: byId('connection-status'),
    retryNow: byId('retry-now'),
    signOut: byId('sign-out'),
    lang: byId('lang-select'),
    signin: byId('signin'),
    form: byId('token-form'),
    tokenInput: byId('token-input'),
    remember: byId('remember-me'),
    tokenError: byId('token-error'),
    view: byId('board-view'),
    day: byId('board-day'),
    updated: byId('board-updated'),
    callsCount: byId('calls-count'),
    callsEmpty: byId('calls-empty'),
    callsTable: byId('calls-table'),
    callsBody: byId('calls-body'),
    employees: byId('employees'),
    employeesEmpty: byId('employees-empty'),
    figuresBody: byId('figures-body'),
    figuresEmpty: byId('figures-empty'),
  };

  const store = S.tokenStore(TOKEN_KEY);
  const badge = S.connectionBadge(ui.status, ui.retryNow, t);
  const state = {
    token: null,
    stream: null,
    board: null,
    // The server's clock minus this browser's: timers count from the server's times.
    clockOffset: 0,
  };

  function now() {
    return Date.now() + state.clockOffset;
  }

  function fromTemplate(id) {
    const el = byId(id).content.firstElementChild.cloneNode(true);
    I.apply(el);
    return el;
  }

  function array(value) {
    return Array.isArray(value) ? value : [];
  }

  // Rows keyed by id, updated in place and put in the given order; the rest removed.
  function keyedRows(container, items, idOf, templateId, render) {
    const existing = new Map();
    for (const el of container.children) existing.set(el.getAttribute('data-key'), el);
    const wanted = [];
    for (const item of items) {
      const key = idOf(item);
      if (key === null || wanted.some((el) => el.getAttribute('data-key') === key)) continue;
      let el = existing.get(key);
      if (!el) {
        el = fromTemplate(templateId);
        el.setAttribute('data-key', key);
      }
      render(el, item);
      wanted.push(el);
    }
    for (const el of existing.values()) if (!wanted.includes(el)) el.remove();
    wanted.forEach((el, index) => {
      if (container.children[index] !== el) container.insertBefore(el, container.children[index] || null);
    });
  }

  function idText(value) {
    const id = S.positiveId(value);
    return id === null ? null : String(id);
  }

  // ---- active calls ----

  // Ringing: how long the caller has waited; answered: how long they have talked.
  function timerOf(call) {
    const answered = Date.parse(call.answered_at);
    if (!Number.isNaN(answered)) return { since: answered, kind: 'board.talking' };
    return { since: Date.parse(call.created_at), kind: 'board.waiting' };
  }

  function renderTimer(el, call) {
    const { since, kind } = timerOf(call);
    setText(field(el, 'timer'), Number.isNaN(since) ? t('dash') : I.clock((now() - since) / 1000));
    setText(field(el, 'timer-kind'), t(kind));
  }

  // Answered: who has the call; still ringing: whose phones ring (its audience, else the
  // employee it is bound to).
  function whoText(call) {
    const user = text(call.user_name);
    const answered = !Number.isNaN(Date.parse(call.answered_at));
    if (user && answered) return t('board.has-it', { name: user });
    const names = array(call.audience).map((person) => text(person && person.name)).filter(Boolean);
    if (!names.length && user) names.push(user);
    return names.length ? t('board.rings-for', { names: names.join(', ') }) : t('board.nobody');
  }

  function renderCall(el, call) {
    const status = text(call.call_status);
    el.setAttribute('data-call-id', idText(call.call_id) || '');
    el.setAttribute('data-status', status);
    setText(field(el, 'status'), I.label('status', status));
    renderTimer(el, call);
    const phone = field(el, 'phone');
    const raw = text(call.phone);
    setText(phone, text(call.phone_display) || raw || t('call.unknown-number'));
    if (raw) phone.setAttribute('title', raw);
    else phone.removeAttribute('title');
    setText(field(el, 'contact'), text(call.contact_name));
    setText(field(el, 'direction'), call.direction ? I.label('direction', text(call.direction)) : '');
    const channelId = S.positiveId(call.channel_id);
    const channel = text(call.channel_name) || (channelId ? t('call.channel-n', { id: channelId }) : t('dash'));
    setText(field(el, 'channel'), channel);
    setText(field(el, 'who'), whoText(call));
    const started = field(el, 'started');
    setText(started, I.time(call.created_at) || t('dash'));
    if (I.time(call.created_at)) started.setAttribute('datetime', new Date(call.created_at).toISOString());
  }

  function renderCalls(calls) {
    keyedRows(ui.callsBody, calls, (call) => idText(call.call_id), 'call-row-template', renderCall);
    setText(ui.callsCount, calls.length);
    ui.callsCount.setAttribute('aria-label', t('board.calls-count', { n: calls.length }));
    ui.callsEmpty.hidden = calls.length > 0;
    ui.callsTable.hidden = calls.length === 0;
  }

  function tick() {
    if (!state.board) return;
    const calls = new Map(array(state.board.calls).map((call) => [idText(call.call_id), call]));
    for (const row of ui.callsBody.children) {
      const call = calls.get(row.getAttribute('data-key'));
      if (call) renderTimer(row, call);
    }
  }

  // ---- employees and figures ----

  function renderEmployee(el, person) {
    const stateName = text(person.state);
    el.setAttribute('data-employee-id', idText(person.employee_id) || '');
    el.setAttribute('data-state', stateName);
    const id = S.positiveId(person.employee_id);
    setText(field(el, 'name'), text(person.name) || (id ? t('call.employee-n', { id }) : t('dash')));
    setText(field(el, 'state'), I.label('state', stateName));
  }

  function count(value) {
    const number = Number(value);
    return Number.isFinite(number) ? I.integer(number) : t('dash');
  }

  function maybe(value, format) {
    const number = Number(value);
    return value === null || value === undefined || !Number.isFinite(number) ? t('dash') : format(number);
  }

  function renderFigures(el, figures) {
    const id = S.positiveId(figures.channel_id);
    el.setAttribute('data-channel-id', id === null ? '' : String(id));
    setText(field(el, 'channel'), text(figures.channel_name) || (id ? t('call.channel-n', { id }) : t('dash')));
    setText(field(el, 'incoming'), count(figures.incoming));
    setText(field(el, 'answered'), count(figures.answered));
    setText(field(el, 'missed'), count(figures.missed));
    setText(field(el, 'rate'), maybe(figures.answer_rate, I.percent));
    setText(field(el, 'avg-wait'), maybe(figures.average_wait_seconds, I.clock));
    setText(field(el, 'avg-talk'), maybe(figures.average_talk_seconds, I.clock));
    setText(field(el, 'callbacks'), count(figures.open_callbacks));
  }

  function renderBoard() {
    const board = state.board;
    if (!board) return;
    renderCalls(array(board.calls));
    const employees = array(board.employees);
    const employeeId = (person) => idText(person.employee_id);
    keyedRows(ui.employees, employees, employeeId, 'employee-template', renderEmployee);
    ui.employeesEmpty.hidden = employees.length > 0;
    const figures = array(board.figures);
    keyedRows(ui.figuresBody, figures, (row) => idText(row.channel_id), 'figure-row-template', renderFigures);
    ui.figuresEmpty.hidden = figures.length > 0;
    const day = I.day(board.day);
    setText(ui.day, day ? t('board.day', { date: day, timezone: text(board.timezone) }) : '');
    setText(ui.updated, board.at ? t('board.updated', { time: I.timeSeconds(board.at) }) : '');
  }

  function onBoard(event) {
    let board;
    try {
      board = JSON.parse(event.data);
    } catch {
      return;
    }
    if (board === null || typeof board !== 'object') return;
    const at = Date.parse(board.at);
    if (!Number.isNaN(at)) state.clockOffset = at - Date.now();
    state.board = board;
    renderBoard();
  }

  // ---- connection, sign in / out ----

  function setConnection(name) {
    badge.set(name, state.stream);
    ui.view.classList.toggle('is-stale', name === 'reconnecting');
    ui.view.setAttribute('aria-busy', name === 'connecting' ? 'true' : 'false');
  }

  function showSignin(errorMessage) {
    ui.view.hidden = true;
    ui.signOut.hidden = true;
    ui.signin.hidden = false;
    ui.tokenError.hidden = !errorMessage;
    ui.tokenError.textContent = errorMessage || '';
    ui.tokenInput.setAttribute('aria-invalid', errorMessage ? 'true' : 'false');
    ui.tokenInput.value = '';
    ui.tokenInput.focus();
  }

  function forgetEverything() {
    if (state.stream) state.stream.stop();
    state.stream = null;
    state.token = null;
    state.board = null;
    ui.callsBody.replaceChildren();
    ui.employees.replaceChildren();
    ui.figuresBody.replaceChildren();
    setText(ui.day, '');
    setText(ui.updated, '');
    renderCalls([]);
  }

  function start(token) {
    forgetEverything();
    state.token = token;
    ui.signin.hidden = true;
    ui.view.hidden = false;
    ui.signOut.hidden = false;
    state.stream = S.liveStream(BOARD_STREAM, token, {
      events: ['board'],
      onEvent: (type, event) => onBoard(event),
      onState: setConnection,
      onRejected,
    });
    state.stream.start();
  }

  function signOut() {
    forgetEverything();
    store.forget();
    setConnection('signed-out');
    showSignin('');
  }

  function onRejected(status, detail) {
    forgetEverything();
    store.forget();
    setConnection('rejected');
    showSignin(S.refusalMessage(t, status, detail, 'board.forbidden'));
  }

  ui.form.addEventListener('submit', (event) => {
    event.preventDefault();
    const token = ui.tokenInput.value.trim();
    if (!token) {
      ui.tokenError.textContent = t('signin.empty');
      ui.tokenError.hidden = false;
      ui.tokenInput.setAttribute('aria-invalid', 'true');
      ui.tokenInput.focus();
      return;
    }
    ui.tokenInput.value = '';
    store.save(token, ui.remember.checked);
    start(token);
  });

  ui.signOut.addEventListener('click', signOut);
  ui.retryNow.addEventListener('click', () => {
    if (state.stream) state.stream.retryNow();
  });
  window.addEventListener('online', () => {
    if (state.stream && badge.name === 'reconnecting') state.stream.retryNow();
  });
  window.addEventListener('storage', (event) => {
    if (event.key !== TOKEN_KEY || event.storageArea !== window.localStorage) return;
    if (!event.newValue) {
      if (state.token && store.load() === null) signOut();
    } else if (event.newValue !== state.token) {
      start(event.newValue);
    }
  });

  window.setInterval(() => {
    tick();
    if (badge.name === 'reconnecting') badge.render();
  }, 1000);

  I.bindSwitch(ui.lang);
  I.onChange(() => {
    renderBoard();
    badge.render();
    document.title = t('board.page-title');
  });

  I.apply(document);
  document.title = t('board.page-title');
  document.documentElement.classList.add('is-ready');
  const stored = store.load();
  ui.remember.checked = store.remembered();
  if (stored) {
    start(stored);
  } else {
    setConnection('signed-out');
    showSignin('');
  }
})();
