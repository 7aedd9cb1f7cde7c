// What the agent page and the board share: where the token is kept, calls to the API with
// it in the Authorization header, a live SSE stream opened with one-time stream tickets (so
// that no token ever appears in a URL), and signing in and out.
'use strict';

(() => {
  const TICKETS_PATH = '/api/v2/telephony/stream-tickets';
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 30000;
  const PROBE_TIMEOUT_MS = 10000;
  const HEALTHY_STREAM_MS = 10000;

  // ---- the token: this browser session only, or kept until sign-out when remembered ----

  function storage(name) {
    try {
      return window[name];
    } catch {
      return null; // storage can be switched off (some private modes)
    }
  }

  function tokenStore(key) {
    const read = (name) => {
      try {
        return storage(name)?.getItem(key) || null;
      } catch {
        return null;
      }
    };
    const remove = (name) => {
      try {
        storage(name)?.removeItem(key);
      } catch {
        // nothing stored
      }
    };
    return {
      key,
      load: () => read('sessionStorage') || read('localStorage'),
      remembered: () => read('localStorage') !== null,
      save(token, remember) {
        remove(remember ? 'sessionStorage' : 'localStorage');
        try {
          storage(remember ? 'localStorage' : 'sessionStorage')?.setItem(key, token);
        } catch {
          // the token then lives only as long as this page
        }
      },
      forget() {
        remove('sessionStorage');
        remove('localStorage');
      },
    };
  }

  // ---- the API ----

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail.message ? `${detail.message} (HTTP ${status})` : `HTTP ${status}`);
      this.status = status;
      this.detail = detail;
    }
  }

  // The API's error body: {"error": {"code", "message"}}; empty strings when it has none.
  async function errorDetail(response) {
    try {
      const error = (await response.json()).error || {};
      return {
        code: typeof error.code === 'string' ? error.code : '',
        message: typeof error.message === 'string' ? error.message : '',
      };
    } catch {
      return { code: '', message: '' };
    }
  }

  // JSON from the API with the token in the header; an ApiError for any answer but 2xx.
  async function api(token, path, options = {}) {
    const response = await fetch(path, {
      method: options.method || 'GET',
      headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' },
      cache: 'no-store',
      credentials: 'omit',
      signal: options.signal,
    });
    if (!response.ok) throw new ApiError(response.status, await errorDetail(response));
    return response.status === 204 ? null : response.json();
  }

  // ---- a live stream ----

  // Opens `path` as an EventSource with a fresh ticket for every connection and reconnects
  // itself with backoff: a browser's own reconnect would reuse a spent ticket.
  //   options.events: event names to listen to; options.onEvent(type, event)
  //   options.params(): extra query parameters (e.g. {last_event_id}) for the next connection
  //   options.onState(name): 'connecting' | 'live' | 'reconnecting'
  //   options.onRejected(status, detail): the token may not open this stream; nothing retries
  //   options.onResumeRefused(): the server no longer accepts the resume point
  function liveStream(path, token, options) {
    const state = {
      source: null,
      opened: false,
      openedAt: 0,
      generation: 0,
      attempt: 0,
      retryTimer: null,
      retryDue: 0,
      name: 'connecting',
    };

    function setState(name) {
      state.name = name;
      options.onState(name);
    }

    function closeSource() {
      if (state.source) state.source.close();
      state.source = null;
      state.opened = false;
    }

    function clearRetry() {
      if (state.retryTimer !== null) window.clearTimeout(state.retryTimer);
      state.retryTimer = null;
      state.retryDue = 0;
    }

    function scheduleReconnect() {
      clearRetry();
      const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** state.attempt);
      const delay = Math.round(base * (0.75 + Math.random() * 0.5));
      state.attempt += 1;
      state.retryDue = Date.now() + delay;
      state.retryTimer = window.setTimeout(connect, delay);
      setState('reconnecting');
    }

    function query(extra) {
      const params = new URLSearchParams(extra);
      for (const [name, value] of Object.entries(options.params ? options.params() : {})) {
        if (value !== null && value !== undefined && value !== '') params.set(name, value);
      }
      const text = params.toString();
      return text ? `${path}?${text}` : path;
    }

    // A status that retrying cannot change ends the stream; anything else is retried.
    function settle(status, detail) {
      if (status === 400 && options.params && Object.keys(options.params()).length) {
        if (options.onResumeRefused) options.onResumeRefused();
        scheduleReconnect();
      } else if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
        stop();
        options.onRejected(status, detail);
      } else {
        scheduleReconnect();
      }
    }

    async function ticket(generation) {
      let response;
      try {
        response = await fetch(TICKETS_PATH, {
          method: 'POST',
          headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' },
          cache: 'no-store',
          credentials: 'omit',
        });
      } catch {
        return { status: 0, detail: null };
      }
      if (generation !== state.generation) return null;
      if (!response.ok) return { status: response.status, detail: await errorDetail(response) };
      try {
        const body = await response.json();
        if (typeof body.ticket === 'string' && body.ticket) return { ticket: body.ticket };
      } catch {
        // an answer that is not a ticket: retried like a server error
      }
      return { status: 502, detail: null };
    }

    async function connect() {
      clearRetry();
      closeSource();
      const generation = ++state.generation;
      // After a loss, keep saying "disconnected" until a connection actually opens.
      if (state.name !== 'reconnecting') setState('connecting');
      const got = await ticket(generation);
      if (got === null || generation !== state.generation) return;
      if (!got.ticket) {
        settle(got.status, got.detail);
        return;
      }
      let source;
      try {
        source = new EventSource(query({ ticket: got.ticket }));
      } catch {
        scheduleReconnect();
        return;
      }
      state.source = source;
      source.addEventListener('open', () => {
        if (generation !== state.generation) return;
        state.opened = true;
        state.openedAt = Date.now();
        setState('live');
      });
      source.addEventListener('error', () => {
        if (generation === state.generation) onError(generation);
      });
      for (const type of options.events) {
        source.addEventListener(type, (event) => {
          if (generation === state.generation) options.onEvent(type, event);
        });
      }
    }

    function onError(generation) {
      const wasOpen = state.opened;
      closeSource();
      if (wasOpen) {
        // The stream dropped: a stream that lived a while was healthy, so start the backoff
        // afresh; one that keeps dropping at once keeps backing off.
        if (Date.now() - state.openedAt >= HEALTHY_STREAM_MS) state.attempt = 0;
        scheduleReconnect();
        return;
      }
      // EventSource hides the HTTP status of a failed connection: ask once more, with the
      // token in the header, to tell a refused token from a server that is down.
      setState('reconnecting');
      probe(generation);
    }

    async function probe(generation) {
      const controller = new AbortController();
      const timer = window.setTimeout(() => controller.abort(), PROBE_TIMEOUT_MS);
      let status = 0;
      let detail = { code: '', message: '' };
      try {
        const response = await fetch(query({}), {
          headers: { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' },
          cache: 'no-store',
          credentials: 'omit',
          signal: controller.signal,
        });
        status = response.status;
        if (!response.ok) detail = await errorDetail(response);
      } catch {
        status = 0; // the server is unreachable
      } finally {
        window.clearTimeout(timer);
        controller.abort(); // never keep the probe's stream open
      }
      if (generation !== state.generation) return;
      settle(status, detail);
    }

    function stop() {
      state.generation += 1;
      clearRetry();
      closeSource();
      state.attempt = 0;
    }

    return {
      start: connect,
      stop,
      retryNow: () => connect(),
      get state() {
        return state.name;
      },
      // Seconds until the next attempt while reconnecting, else 0.
      secondsToRetry: () => (state.retryDue ? Math.max(0, Math.ceil((state.retryDue - Date.now()) / 1000)) : 0),
    };
  }

  // The JSON object an SSE event carries; null when it carries none.
  function eventData(event) {
    try {
      const data = JSON.parse(event.data);
      return data !== null && typeof data === 'object' ? data : null;
    } catch {
      return null;
    }
  }

  // ---- small DOM helpers ----

  function text(value) {
    if (value === null || value === undefined) return '';
    return String(value).trim();
  }

  function setText(el, value) {
    const next = String(value);
    if (el.textContent !== next) el.textContent = next;
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

  // A tel: link for a raw phone, or null when nothing in it can be dialled.
  function telHref(phone) {
    const dialable = text(phone).replace(/[^\d+*#]/g, '');
    return /\d/.test(dialable) ? `tel:${dialable}` : null;
  }

  function field(el, name) {
    return el.querySelector(`[data-field="${name}"]`);
  }

  function positiveId(value) {
    const id = Number(value);
    return Number.isSafeInteger(id) && id > 0 ? id : null;
  }

  // An id as the text a page keys its elements by; null when it is no id.
  function idText(value) {
    const id = positiveId(value);
    return id === null ? null : String(id);
  }

  // A name; else, for a known id, the numbered stand-in `key` ("Channel 3"); else `fallbackKey`.
  function nameOr(t, name, id, key, fallbackKey = 'dash') {
    const known = positiveId(id);
    return text(name) || (known ? t(key, { id: known }) : t(fallbackKey));
  }

  // A call's phone as people read it, the number as the PBX sent it on hover.
  function showPhone(el, call, t) {
    const raw = text(call.phone);
    setText(el, text(call.phone_display) || raw || t('call.unknown-number'));
    if (raw) el.setAttribute('title', raw);
    else el.removeAttribute('title');
  }

  // The connection badge and its "retry now" button, shared by both pages.
  function connectionBadge(statusEl, retryButton, t) {
    const textEl = statusEl.querySelector('.conn-text');
    let name = 'signed-out';
    let stream = null;
    function render() {
      let label = t(`conn.${name}`);
      const seconds = name === 'reconnecting' && stream ? stream.secondsToRetry() : 0;
      if (seconds > 0) label = t('conn.reconnecting-in', { s: seconds });
      setText(textEl, label);
    }
    return {
      set(nextName, nextStream) {
        name = nextName;
        if (nextStream !== undefined) stream = nextStream;
        statusEl.dataset.state = name;
        retryButton.hidden = name !== 'reconnecting';
        render();
      },
      render,
      get name() {
        return name;
      },
    };
  }

  // The message for a token a stream refused, in the page's language.
  function refusalMessage(t, status, detail, forbiddenKey) {
    const { code = '', message: said = '' } = detail || {};
    let message;
    if (status === 401 && /expired/i.test(`${code} ${said}`)) message = t('signin.expired');
    else if (status === 401) message = t('signin.rejected');
    else if (status === 403) message = t(forbiddenKey);
    else message = t('signin.refused');
    const reason = said ? t('signin.reason', { detail: said, status }) : t('signin.reason-status', { status });
    return `${message} (${reason})`;
  }

  // ---- a signed-in page ----

  // What every page used with a token shares, on the elements both pages have (the top bar
  // and the sign-in form): the token kept as asked, the connection badge and the page's live
  // stream, sign-in, sign-out, "retry now", and another tab signing in or out.
  //   options.tokenKey: where the token is kept; options.t: the page's words
  //   options.view: the element shown while signed in
  //   options.forbiddenKey: the message for a token the page may not be used with (403)
  //   options.stream: {path, events, onEvent, params?, onResumeRefused?}, as for liveStream
  //   options.onState(name, previous): after the badge shows the stream's state
  //   options.onStart(): the page is shown and its stream opened for a new token (optional)
  //   options.onForget(): drop all the page shows
  function signedInPage(options) {
    const byId = (id) => document.getElementById(id);
    const ui = {
      status: byId('connection-status'),
      retryNow: byId('retry-now'),
      signOut: byId('sign-out'),
      signin: byId('signin'),
      form: byId('token-form'),
      tokenInput: byId('token-input'),
      remember: byId('remember-me'),
      tokenError: byId('token-error'),
    };
    const { t, view } = options;
    const store = tokenStore(options.tokenKey);
    const badge = connectionBadge(ui.status, ui.retryNow, t);
    const session = { token: null, stream: null };

    function setState(name) {
      const previous = badge.name;
      badge.set(name, session.stream);
      options.onState(name, previous);
    }

    function showSignin(errorMessage) {
      view.hidden = true;
      ui.signOut.hidden = true;
      ui.signin.hidden = false;
      ui.tokenError.hidden = !errorMessage;
      ui.tokenError.textContent = errorMessage || '';
      ui.tokenInput.setAttribute('aria-invalid', errorMessage ? 'true' : 'false');
      ui.tokenInput.value = '';
      ui.tokenInput.focus();
    }

    function forget() {
      if (session.stream) session.stream.stop();
      session.stream = null;
      session.token = null;
      options.onForget();
    }

    function start(token) {
      forget();
      session.token = token;
      ui.signin.hidden = true;
      view.hidden = false;
      ui.signOut.hidden = false;
      session.stream = liveStream(options.stream.path, token, {
        ...options.stream,
        onState: setState,
        onRejected: rejected,
      });
      session.stream.start();
      if (options.onStart) options.onStart();
    }

    function signOut() {
      forget();
      store.forget();
      setState('signed-out');
      showSignin('');
    }

    function rejected(status, detail) {
      if (session.token === null) return;
      forget();
      store.forget();
      setState('rejected');
      showSignin(refusalMessage(t, status, detail, options.forbiddenKey));
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
      if (session.stream) session.stream.retryNow();
    });
    window.addEventListener('online', () => {
      if (session.stream && badge.name === 'reconnecting') session.stream.retryNow();
    });
    // Another tab signed in or out with a remembered token: follow it.
    window.addEventListener('storage', (event) => {
      if (event.key !== store.key || event.storageArea !== window.localStorage) return;
      if (!event.newValue) {
        if (session.token && store.load() === null) signOut();
      } else if (event.newValue !== session.token) {
        start(event.newValue);
      }
    });
    window.setInterval(() => {
      if (badge.name === 'reconnecting') badge.render();
    }, 1000);

    return {
      get token() {
        return session.token;
      },
      get connection() {
        return badge.name;
      },
      // The badge again, in the page's language.
      render: badge.render,
      // The token was refused (e.g. 401 to an API call): sign out and say why.
      rejected,
      // The page's first start: with the token kept from before, else at the sign-in form.
      resume() {
        const stored = store.load();
        ui.remember.checked = store.remembered();
        if (stored) {
          start(stored);
        } else {
          setState('signed-out');
          showSignin('');
        }
      },
    };
  }

  window.VatsSession = Object.freeze({
    tokenStore,
    api,
    ApiError,
    liveStream,
    eventData,
    text,
    setText,
    safeHttpUrl,
    telHref,
    field,
    positiveId,
    idText,
    nameOr,
    showPhone,
    connectionBadge,
    refusalMessage,
    signedInPage,
  });
})();
