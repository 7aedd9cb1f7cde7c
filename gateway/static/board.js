// Supervisor board: every active call with its waiting or talk time ticking, each telephony
// employee's state, and today's figures per channel, all from the board's SSE stream.
// All data from the server is written with textContent or validated attributes, never as HTML.
'use strict';

(() => {
  const I = window.VatsI18n;
  const S = window.VatsSession;
  const t = I.t;
  const { text, setText, field, idText } = S;

  const BOARD_STREAM = '/api/v2/telephony/board/stream';
  const TOKEN_KEY = 'vats-bridge.board.token';

  const byId = (id) => document.getElementById(id);
  const ui = {
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

  const state = {
    board: null,
    // The server's clock minus this browser's: timers count from the server's times.
    clockOffset: 0,
  };

  function now() {
    return Date.now() + state.clockOffset;
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
        el = I.fromTemplate(templateId);
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
    S.showPhone(field(el, 'phone'), call, t);
    setText(field(el, 'contact'), text(call.contact_name));
    setText(field(el, 'direction'), call.direction ? I.label('direction', text(call.direction)) : '');
    setText(field(el, 'channel'), S.nameOr(t, call.channel_name, call.channel_id, 'call.channel-n'));
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
    setText(field(el, 'name'), S.nameOr(t, person.name, person.employee_id, 'call.employee-n'));
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
    el.setAttribute('data-channel-id', idText(figures.channel_id) || '');
    const channel = S.nameOr(t, figures.channel_name, figures.channel_id, 'call.channel-n');
    setText(field(el, 'channel'), channel);
    // A long name is shortened to fit its column: the whole of it on hover.
    field(el, 'channel').setAttribute('title', channel);
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
    const board = S.eventData(event);
    if (board === null) return;
    const at = Date.parse(board.at);
    if (!Number.isNaN(at)) state.clockOffset = at - Date.now();
    state.board = board;
    renderBoard();
  }

  // ---- connection, sign in / out ----

  const session = S.signedInPage({
    tokenKey: TOKEN_KEY,
    t,
    view: ui.view,
    forbiddenKey: 'board.forbidden',
    stream: {
      path: BOARD_STREAM,
      events: ['board'],
      onEvent: (type, event) => onBoard(event),
    },
    onState: (name) => {
      ui.view.classList.toggle('is-stale', name === 'reconnecting');
      ui.view.setAttribute('aria-busy', name === 'connecting' ? 'true' : 'false');
    },
    onForget: () => {
      state.board = null;
      ui.callsBody.replaceChildren();
      ui.employees.replaceChildren();
      ui.figuresBody.replaceChildren();
      setText(ui.day, '');
      setText(ui.updated, '');
      renderCalls([]);
    },
  });

  window.setInterval(tick, 1000);

  I.bindSwitch(byId('lang-select'));
  I.onChange(() => {
    renderBoard();
    session.render();
    document.title = t('board.page-title');
  });

  I.apply(document);
  document.title = t('board.page-title');
  document.documentElement.classList.add('is-ready');
  session.resume();
})();
