// Agent page: the employee's live call cards (Now), the calls it could see (Recent) and the
// missed callers waiting for a callback (Missed).
// All data from the server is written with textContent or validated attributes, never as HTML.
'use strict';

(() => {
  const I = window.VatsI18n;
  const S = window.VatsSession;
  const t = I.t;
  const { text, setText, field } = S;

  const CARDS_STREAM = '/api/v2/telephony/cards/stream';
  const HISTORY_PATH = '/api/v2/telephony/history';
  const CALLBACKS_PATH = '/api/v2/telephony/callbacks';
  const TOKEN_KEY = 'vats-bridge.agent.token';
  const VIEWS = ['now', 'recent', 'missed'];
  const RECENT_PAGE = 25;
  const MISSED_PAGE = 50;
  const REFRESH_MS = 15000;
  const EVENT_REFRESH_MS = 300;
  const FADE_MS = window.matchMedia('(prefers-reduced-motion: reduce)').matches ? 0 : 450;
  const ANNOUNCE_BATCH_MS = 400;

  // The API's names come from the gateway (/agent/vocabulary.js, made from the protos).
  const VOCABULARY = window.VATS_VOCABULARY;
  const ACTIVE_STATUSES = new Set(VOCABULARY.activeStatuses);
  const FINAL_STATUSES = VOCABULARY.statuses.filter((name) => !ACTIVE_STATUSES.has(name));

  const byId = (id) => document.getElementById(id);
  const ui = {
    workspace: byId('workspace'),
    tabs: [...document.querySelectorAll('[role="tab"]')],
    now: byId('view-now'),
    staleNote: byId('stale-note'),
    count: byId('call-count'),
    missedCount: byId('missed-count'),
    empty: byId('empty-state'),
    list: byId('cards'),
    announcer: byId('announcer'),
    details: byId('details'),
    detailsTitle: byId('details-title'),
    detailsError: byId('details-error'),
    detailsBody: byId('details-body'),
    detailsClose: byId('details-close'),
  };

  const state = {
    lastEventId: null,
    view: 'now',
    cards: new Map(), // call id (string) -> {el, card, leaveTimer}
    announceQueue: [],
    announceTimer: null,
    eventRefresh: null,
    openCount: null,
  };

  // ---- how a call's parts read ----

  function callIdOf(call) {
    return S.idText(call.call_id);
  }

  function renderPhone(link, call) {
    S.showPhone(link, call, t);
    const href = S.telHref(text(call.phone));
    if (href) link.setAttribute('href', href);
    else link.removeAttribute('href');
  }

  function renderContact(el, call) {
    const contact = text(call.contact_name);
    setText(el, contact || t('call.unknown-contact'));
    el.classList.toggle('is-muted', !contact);
  }

  function channelText(call) {
    return S.nameOr(t, call.channel_name, call.channel_id, 'call.channel-n');
  }

  function employeeText(call, fallbackKey) {
    return S.nameOr(t, call.user_name, call.user_id, 'call.employee-n', fallbackKey);
  }

  function renderTicket(link, call) {
    const ticketId = S.positiveId(call.ticket_id);
    const callId = callIdOf(call);
    if (ticketId === null) {
      setText(link, t('dash'));
      link.removeAttribute('href');
      link.removeAttribute('aria-label');
      return;
    }
    setText(link, `#${ticketId}`);
    if (callId !== null) link.setAttribute('href', `${HISTORY_PATH}/${callId}`);
    link.setAttribute('aria-label', t('call.ticket-n', { id: ticketId }));
  }

  function renderTime(el, value) {
    const shown = I.when(value);
    if (!shown) {
      setText(el, t('dash'));
      el.removeAttribute('datetime');
      el.removeAttribute('title');
      return;
    }
    el.setAttribute('datetime', new Date(value).toISOString());
    el.setAttribute('title', I.full(value));
    setText(el, shown);
  }

  function renderDirection(el, call) {
    const direction = text(call.direction);
    field(el, 'direction-wrap').setAttribute('data-direction', direction);
    setText(field(el, 'direction'), direction ? I.label('direction', direction) : t('details.call'));
  }

  function seconds(value) {
    const number = Number(value);
    return value !== null && value !== undefined && Number.isFinite(number) && number >= 0 ? number : null;
  }

  // Recording links are signed and re-signed on every answer: a player keeps the link it has
  // while it is playing or part-way through, so that a refresh never restarts it.
  function renderRecording(wrap, audio, value) {
    const url = S.safeHttpUrl(value);
    if (url === null) {
      wrap.hidden = true;
      if (audio.hasAttribute('src')) {
        audio.removeAttribute('src');
        audio.load();
      }
      return;
    }
    wrap.hidden = false;
    const current = audio.getAttribute('src');
    if (current === url) return;
    const samePath = current !== null && new URL(current).pathname === new URL(url).pathname;
    const untouched = audio.paused && audio.currentTime === 0;
    if (!samePath || untouched) audio.setAttribute('src', url);
  }

  // ---- Now: live cards ----

  function onStreamEvent(type, event) {
    if (event.lastEventId) state.lastEventId = event.lastEventId;
    const data = S.eventData(event);
    if (data === null) return;
    if (type === 'show' || type === 'update') upsertCard(data);
    else if (type === 'hide') hideCard(data);
    else if (type === 'reset') clearCards();
    refreshListsSoon();
  }

  function upsertCard(card) {
    const id = callIdOf(card);
    if (id === null) return;
    let entry = state.cards.get(id);
    const isNew = entry === undefined;
    if (isNew) {
      const el = I.fromTemplate('card-template');
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
    // A call that ended goes to Recent at once; the next refresh brings its full record.
    if (!ACTIVE_STATUSES.has(text(card.call_status))) {
      recent.insert({ ...(entry ? entry.card : {}), ...card });
    }
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

  function isNewer(a, b) {
    const ta = Date.parse(a.created_at) || 0;
    const tb = Date.parse(b.created_at) || 0;
    return ta !== tb ? ta > tb : (Number(a.call_id) || 0) > (Number(b.call_id) || 0);
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

  function renderCard(el, card) {
    const status = text(card.call_status);
    el.setAttribute('data-status', status);
    el.setAttribute('data-direction', text(card.direction));
    el.classList.toggle('is-active', ACTIVE_STATUSES.has(status));
    renderDirection(el, card);
    setText(field(el, 'status'), I.label('status', status));
    renderPhone(field(el, 'phone'), card);
    renderContact(field(el, 'contact'), card);
    renderTicket(field(el, 'ticket'), card);
    setText(field(el, 'channel'), channelText(card));
    const employee = field(el, 'employee');
    setText(employee, employeeText(card, 'call.not-assigned'));
    employee.classList.toggle('is-muted', !text(card.user_name) && S.positiveId(card.user_id) === null);
    const callId = callIdOf(card);
    setText(field(el, 'call-id'), callId === null ? t('dash') : callId);
    const pbxCallId = text(card.pbx_call_id);
    field(el, 'pbx-wrap').hidden = !pbxCallId;
    setText(field(el, 'pbx'), pbxCallId);
    renderTime(field(el, 'started'), card.created_at);
    renderRecording(field(el, 'recording-wrap'), field(el, 'audio'), card.audio_record);
    renderElapsed(el, card);
    const params = {
      direction: I.label('direction', text(card.direction) || 'call'),
      phone: text(card.phone_display) || text(card.phone) || t('call.unknown-number'),
      contact: text(card.contact_name),
      status: I.label('status', status),
    };
    const aria = t(params.contact ? 'card.aria-contact' : 'card.aria', params);
    el.querySelector('article').setAttribute('aria-label', aria);
  }

  function renderElapsed(el, card) {
    const start = Date.parse(card.created_at);
    const elapsed = field(el, 'elapsed');
    setText(elapsed, Number.isNaN(start) ? t('dash') : I.clock((Date.now() - start) / 1000));
  }

  function visibleCardCount() {
    let count = 0;
    for (const entry of state.cards.values()) if (entry.leaveTimer === null) count += 1;
    return count;
  }

  function refreshSummary() {
    const count = visibleCardCount();
    setText(ui.count, count);
    ui.count.setAttribute('aria-label', t('now.count', { n: count }));
    ui.empty.hidden = count > 0;
    setText(ui.empty, session.connection === 'live' ? t('now.empty-live') : t('now.empty-offline'));
    ui.staleNote.hidden = session.connection !== 'reconnecting' || count === 0;
    let ringing = 0;
    for (const entry of state.cards.values()) {
      if (entry.leaveTimer === null && entry.card.call_status === 'ringing') ringing += 1;
    }
    const title = t('agent.page-title');
    document.title = ringing > 0 ? `(${ringing}) ${title}` : title;
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
    if (queue.length > 1) {
      ui.announcer.textContent = t('announce.many', { n: queue.length });
      return;
    }
    const card = queue[0];
    const parts = [
      t('announce.one', {
        direction: I.label('direction', text(card.direction) || 'call').toLowerCase(),
        phone: text(card.phone) || t('call.unknown-number'),
      }),
      text(card.contact_name),
      text(card.channel_name),
    ];
    ui.announcer.textContent = parts.filter(Boolean).join(', ');
  }

  // ---- Recent and Missed: lists loaded from the API a page at a time and kept fresh ----

  // One paged view. `refresh` reloads as many items as are shown (page by page) and puts
  // them in place, keeping each item's element (a playing recording keeps playing).
  function pagedList(options) {
    const list = byId(options.listId);
    const moreButton = byId(options.moreId);
    const emptyEl = byId(options.emptyId);
    const errorEl = byId(options.errorId);
    const model = {
      entries: new Map(), // id -> {el, item}
      order: [], // ids as shown
      next: null, // the next page's token
      loaded: false,
      busy: false,
      again: false, // a refresh was asked for while busy
      generation: 0, // bumped by reset: answers for an earlier one are dropped
    };

    function entryFor(item) {
      const id = options.idOf(item);
      let entry = model.entries.get(id);
      if (entry === undefined) {
        const el = I.fromTemplate(options.templateId);
        el.setAttribute(options.idAttribute, id);
        entry = { el, item };
        model.entries.set(id, entry);
      }
      entry.item = item;
      options.render(entry.el, item);
      return entry;
    }

    function place(items, next) {
      const ids = [];
      for (const item of items) {
        const id = options.idOf(item);
        if (id === null || ids.includes(id)) continue;
        entryFor(item);
        ids.push(id);
      }
      for (const [id, entry] of model.entries) {
        if (!ids.includes(id)) {
          entry.el.remove();
          model.entries.delete(id);
        }
      }
      ids.forEach((id, index) => {
        const el = model.entries.get(id).el;
        if (list.children[index] !== el) list.insertBefore(el, list.children[index] || null);
      });
      model.order = ids;
      model.next = next;
      model.loaded = true;
      renderState();
    }

    function renderState() {
      emptyEl.hidden = !model.loaded || model.order.length > 0;
      moreButton.hidden = !model.next;
    }

    function showError(error) {
      errorEl.hidden = error === null;
      setText(errorEl, error === null ? '' : t(options.errorKey, { reason: error.message || String(error) }));
      if (error instanceof S.ApiError && error.status === 401) session.rejected(401, error.detail);
    }

    async function fetchPage(pageToken) {
      const body = await S.api(session.token, options.url(pageToken));
      return {
        body,
        items: Array.isArray(body && body.data) ? body.data : [],
        next: (body && body.next_page_token) || null,
      };
    }

    async function run(task) {
      if (!session.token) return;
      if (model.busy) {
        model.again = true;
        return;
      }
      model.busy = true;
      const generation = model.generation;
      try {
        await task(() => generation !== model.generation);
        if (generation === model.generation) showError(null);
      } catch (error) {
        if (generation === model.generation) showError(error);
      } finally {
        if (generation === model.generation) {
          model.busy = false;
          if (model.again) {
            model.again = false;
            refresh();
          }
        }
      }
    }

    function refresh() {
      return run(async (stale) => {
        const wanted = Math.max(model.order.length, 1);
        const items = [];
        let pageToken = null;
        let first = true;
        do {
          const page = await fetchPage(pageToken);
          if (stale()) return;
          if (first && options.onFirstPage) options.onFirstPage(page.body);
          first = false;
          items.push(...page.items);
          pageToken = page.next;
        } while (pageToken && items.length < wanted);
        place(items, pageToken);
      });
    }

    function more() {
      if (!model.next) return Promise.resolve();
      return run(async (stale) => {
        const page = await fetchPage(model.next);
        if (stale()) return;
        place([...model.order.map((id) => model.entries.get(id).item), ...page.items], page.next);
      });
    }

    // An item known before the API has it (a call that just ended), put in its place
    // (before the first item that `options.before` says it comes before).
    function insert(item) {
      const id = options.idOf(item);
      if (id === null || !model.loaded) return;
      const known = model.entries.get(id);
      const items = model.order.map((other) => model.entries.get(other).item);
      if (known) {
        known.item = { ...known.item, ...item };
        options.render(known.el, known.item);
        return;
      }
      const index = items.findIndex((other) => options.before(item, other));
      items.splice(index === -1 ? items.length : index, 0, item);
      place(items, model.next);
    }

    function remove(id) {
      const entry = model.entries.get(id);
      if (!entry) return;
      entry.el.remove();
      model.entries.delete(id);
      model.order = model.order.filter((other) => other !== id);
      renderState();
    }

    function reset() {
      model.generation += 1;
      model.busy = false;
      model.again = false;
      model.loaded = false;
      model.next = null;
      model.order = [];
      model.entries.clear();
      list.replaceChildren();
      errorEl.hidden = true;
      renderState();
    }

    function rerender() {
      for (const entry of model.entries.values()) options.render(entry.el, entry.item);
    }

    moreButton.addEventListener('click', () => more());
    // Infinite scroll: reaching the "more" button loads the next page.
    if ('IntersectionObserver' in window) {
      new IntersectionObserver((seen) => {
        if (seen.some((entry) => entry.isIntersecting)) more();
      }).observe(moreButton);
    }

    return { refresh, insert, remove, reset, rerender, list };
  }

  function pageUrl(path, params, pageToken) {
    const query = new URLSearchParams(params);
    if (pageToken) query.set('page_token', pageToken);
    return `${path}?${query.toString()}`;
  }

  function waitSeconds(call) {
    const given = seconds(call.wait_seconds);
    if (given !== null) return given;
    const start = Date.parse(call.created_at);
    const answered = Date.parse(call.answered_at);
    return Number.isNaN(start) || Number.isNaN(answered) ? null : Math.max(0, (answered - start) / 1000);
  }

  function renderComments(listEl, comments) {
    const items = Array.isArray(comments) ? comments : [];
    listEl.hidden = items.length === 0;
    listEl.replaceChildren(
      ...items.map((comment) => {
        const li = document.createElement('li');
        const said = document.createElement('span');
        said.textContent = text(comment.text);
        const meta = document.createElement('span');
        meta.className = 'is-muted';
        meta.textContent = [text(comment.author), I.when(comment.created_at)].filter(Boolean).join(' · ');
        li.append(said, meta);
        return li;
      }),
    );
  }

  function renderRecent(el, call) {
    el.setAttribute('data-status', text(call.call_status));
    renderDirection(el, call);
    setText(field(el, 'status'), I.label('status', text(call.call_status)));
    renderTime(field(el, 'started'), call.created_at);
    renderTicket(field(el, 'ticket'), call);
    renderPhone(field(el, 'phone'), call);
    renderContact(field(el, 'contact'), call);
    const wait = waitSeconds(call);
    setText(field(el, 'wait'), wait === null ? t('dash') : I.clock(wait));
    const talk = seconds(call.talk_duration_seconds);
    setText(field(el, 'talk'), talk === null ? t('dash') : I.clock(talk));
    setText(field(el, 'employee'), employeeText(call, 'dash'));
    setText(field(el, 'channel'), channelText(call));
    renderComments(field(el, 'comments'), call.comments);
    renderRecording(field(el, 'recording-wrap'), field(el, 'audio'), call.audio_record);
  }

  const recent = pagedList({
    listId: 'recent-list',
    moreId: 'recent-more',
    emptyId: 'recent-empty',
    errorId: 'recent-error',
    templateId: 'recent-template',
    idAttribute: 'data-call-id',
    errorKey: 'recent.error',
    idOf: callIdOf,
    before: isNewer,
    render: renderRecent,
    // Only calls that ended: the active ones are the cards under Now.
    url: (pageToken) =>
      pageUrl(HISTORY_PATH, { page_size: RECENT_PAGE, status: FINAL_STATUSES.join(',') }, pageToken),
  });

  function callbackIdOf(callback) {
    const id = text(callback.callback_id);
    return id || null;
  }

  function renderMissed(el, callback) {
    renderPhone(field(el, 'phone'), callback);
    renderContact(field(el, 'contact'), callback);
    const attempts = Number(callback.attempts) || 1;
    el.setAttribute('data-attempts', String(attempts));
    setText(field(el, 'attempts'), t('missed.attempts', { n: attempts }));
    renderTime(field(el, 'last'), callback.last_missed_at);
    renderTime(field(el, 'first'), callback.first_missed_at);
    const since = Date.parse(callback.first_missed_at);
    setText(
      field(el, 'waiting'),
      Number.isNaN(since) ? '' : t('missed.waiting', { span: I.span((Date.now() - since) / 1000) }),
    );
    const lastStatus = text(callback.last_status);
    setText(field(el, 'last-status'), lastStatus ? I.label('status', lastStatus) : t('dash'));
    setText(field(el, 'channel'), channelText(callback));
    const call = field(el, 'call');
    const href = S.telHref(callback.phone);
    if (href) call.setAttribute('href', href);
    else call.removeAttribute('href');
    const mark = field(el, 'mark');
    if (!mark.disabled) setText(mark, t('missed.mark'));
  }

  const missed = pagedList({
    listId: 'missed-list',
    moreId: 'missed-more',
    emptyId: 'missed-empty',
    errorId: 'missed-error',
    templateId: 'missed-template',
    idAttribute: 'data-callback-id',
    errorKey: 'missed.error',
    idOf: callbackIdOf,
    render: renderMissed,
    url: (pageToken) => pageUrl(CALLBACKS_PATH, { state: 'open', page_size: MISSED_PAGE }, pageToken),
    onFirstPage: (body) => setOpenCount(Number(body && body.open_count)),
  });

  function setOpenCount(count) {
    state.openCount = Number.isSafeInteger(count) && count >= 0 ? count : null;
    ui.missedCount.hidden = !state.openCount;
    setText(ui.missedCount, state.openCount || 0);
    ui.missedCount.setAttribute('aria-label', t('missed.count', { n: state.openCount || 0 }));
  }

  async function markCalledBack(row) {
    const id = row.getAttribute('data-callback-id');
    const mark = field(row, 'mark');
    const error = field(row, 'error');
    mark.disabled = true;
    setText(mark, t('missed.marking'));
    error.hidden = true;
    try {
      await S.api(session.token, `${CALLBACKS_PATH}/${encodeURIComponent(id)}/called-back`, { method: 'POST' });
      missed.remove(id);
      if (state.openCount) setOpenCount(state.openCount - 1);
    } catch (failure) {
      if (failure instanceof S.ApiError && failure.status === 404) {
        missed.remove(id); // resolved or gone meanwhile
      } else {
        mark.disabled = false;
        setText(mark, t('missed.mark'));
        setText(error, t('missed.mark-error', { reason: failure.message || String(failure) }));
        error.hidden = false;
        return;
      }
    }
    missed.refresh();
  }

  function refreshLists() {
    recent.refresh();
    missed.refresh();
  }

  // A card event means a call changed: Recent and Missed follow shortly, once per burst.
  function refreshListsSoon() {
    if (state.eventRefresh !== null) return;
    state.eventRefresh = window.setTimeout(() => {
      state.eventRefresh = null;
      refreshLists();
    }, EVENT_REFRESH_MS);
  }

  // ---- views (tabs) ----

  function selectView(name, focus) {
    if (!VIEWS.includes(name)) name = 'now';
    state.view = name;
    for (const tab of ui.tabs) {
      const selected = tab.dataset.view === name;
      tab.setAttribute('aria-selected', String(selected));
      tab.tabIndex = selected ? 0 : -1;
      byId(tab.getAttribute('aria-controls')).hidden = !selected;
      if (selected && focus) tab.focus();
    }
    if (window.location.hash !== `#${name}`) window.history.replaceState(null, '', `#${name}`);
  }

  for (const tab of ui.tabs) {
    tab.addEventListener('click', () => selectView(tab.dataset.view, false));
    tab.addEventListener('keydown', (event) => {
      const index = ui.tabs.indexOf(tab);
      const moves = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: ui.tabs.length - 1 };
      if (!(event.key in moves)) return;
      event.preventDefault();
      const next = ui.tabs[(moves[event.key] + ui.tabs.length) % ui.tabs.length];
      selectView(next.dataset.view, true);
    });
  }

  window.addEventListener('hashchange', () => selectView(window.location.hash.slice(1), false));

  // ---- call details (a ticket link) ----

  function detail(name) {
    return ui.details.querySelector(`[data-detail="${name}"]`);
  }

  function listItems(list, items, render) {
    list.replaceChildren();
    if (!items.length) {
      const empty = document.createElement('li');
      empty.className = 'is-muted';
      empty.textContent = t('none');
      list.append(empty);
      return;
    }
    for (const item of items) {
      const li = document.createElement('li');
      render(li, item);
      list.append(li);
    }
  }

  function renderDetails(call) {
    const phone = text(call.phone_display) || text(call.phone);
    ui.detailsTitle.textContent = t('details.title', { phone: phone || t('details.call'), id: call.call_id });
    const ticket = call.ticket || {};
    setText(detail('ticket'), ticket.ticket_id ? `#${ticket.ticket_id}` : t('dash'));
    setText(detail('phone'), phone || t('dash'));
    detail('phone').setAttribute('title', text(call.phone));
    const contact = text((call.contact || {}).name) || text(call.contact_name);
    setText(detail('contact'), contact || t('call.unknown-contact'));
    setText(detail('status'), I.label('status', text(call.call_status)));
    setText(detail('channel'), channelText(call));
    setText(detail('employee'), employeeText(call, 'dash'));
    const wait = waitSeconds(call);
    setText(detail('wait'), wait === null ? t('dash') : I.clock(wait));
    const talk = seconds(call.talk_duration_seconds);
    setText(detail('talk'), talk === null ? t('dash') : I.clock(talk));
    listItems(detail('history'), call.status_history || [], (li, change) => {
      li.textContent = `${I.label('status', text(change.call_status))} · ${I.full(change.at)}`;
    });
    listItems(detail('comments'), call.comments || [], (li, comment) => {
      const who = text(comment.author);
      li.textContent = `${text(comment.text)} · ${who ? `${who}, ` : ''}${I.full(comment.created_at)}`;
    });
    listItems(detail('recordings'), call.recordings || [], (li, recording) => {
      const label = document.createElement('span');
      const length = seconds(recording.duration_seconds);
      const parts = [text(recording.format).toUpperCase(), length ? I.clock(length) : '', I.full(recording.created_at)];
      label.textContent = parts.filter(Boolean).join(' · ');
      li.append(label);
      const url = S.safeHttpUrl(recording.url);
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
    ui.detailsTitle.textContent = t('details.call-n', { id: callId });
    if (!ui.details.open) ui.details.showModal();
    try {
      const body = await S.api(session.token, `${HISTORY_PATH}/${encodeURIComponent(callId)}`);
      renderDetails((body && body.data) || {});
      ui.detailsBody.hidden = false;
    } catch (error) {
      ui.detailsError.textContent = t('details.error', { reason: error.message || String(error) });
      ui.detailsError.hidden = false;
    }
  }

  function onTicketClick(event) {
    const link = event.target.closest('[data-field="ticket"]');
    if (!link || !session.token) return;
    const item = link.closest('[data-call-id]');
    if (!item) return;
    event.preventDefault();
    openDetails(item.getAttribute('data-call-id'));
  }

  ui.list.addEventListener('click', onTicketClick);
  recent.list.addEventListener('click', onTicketClick);
  missed.list.addEventListener('click', (event) => {
    const mark = event.target.closest('[data-field="mark"]');
    if (mark && !mark.disabled) markCalledBack(mark.closest('[data-callback-id]'));
  });
  ui.detailsClose.addEventListener('click', () => ui.details.close());

  // ---- connection, sign in / out ----

  const session = S.signedInPage({
    tokenKey: TOKEN_KEY,
    t,
    view: ui.workspace,
    forbiddenKey: 'agent.forbidden',
    stream: {
      path: CARDS_STREAM,
      events: ['show', 'update', 'hide', 'reset'],
      onEvent: onStreamEvent,
      // The stream resumes after the last event seen; the gateway reads it from the query.
      params: () => (state.lastEventId ? { last_event_id: state.lastEventId } : {}),
      onResumeRefused: () => {
        state.lastEventId = null;
        clearCards();
      },
    },
    onState: (name, previous) => {
      ui.now.setAttribute('aria-busy', name === 'connecting' ? 'true' : 'false');
      ui.now.classList.toggle('is-stale', name === 'reconnecting');
      refreshSummary();
      // Back after a loss: whatever changed meanwhile shows in the lists too.
      if (name === 'live' && previous === 'reconnecting') refreshListsSoon();
    },
    onStart: refreshLists,
    onForget: () => {
      state.lastEventId = null;
      clearCards();
      recent.reset();
      missed.reset();
      setOpenCount(null);
      if (ui.details.open) ui.details.close();
    },
  });

  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && session.token) refreshLists();
  });

  window.setInterval(() => {
    for (const entry of state.cards.values()) renderElapsed(entry.el, entry.card);
  }, 1000);

  window.setInterval(() => {
    if (session.token && document.visibilityState === 'visible') refreshLists();
  }, REFRESH_MS);

  // ---- language ----

  I.bindSwitch(byId('lang-select'));
  I.onChange(() => {
    for (const entry of state.cards.values()) renderCard(entry.el, entry.card);
    recent.rerender();
    missed.rerender();
    setOpenCount(state.openCount);
    session.render();
    refreshSummary();
  });

  I.apply(document);
  selectView(window.location.hash.slice(1), false);
  // The words are in place: show the page (before focusing anything in it).
  document.documentElement.classList.add('is-ready');
  session.resume();
})();
