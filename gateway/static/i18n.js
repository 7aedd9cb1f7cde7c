// The pages' words in Russian and English, the language choice, and how times, dates,
// durations and numbers are written. Every string a page shows comes from here.
'use strict';

(() => {
  const LANG_KEY = 'vats-bridge.lang';
  const DEFAULT_LOCALES = { en: 'en-GB', ru: 'ru-RU' };

  // A plural is an object of Intl.PluralRules categories; `{n}` is the number.
  const STRINGS = {
    en: {
      'lang.label': 'Language',
      'skip.content': 'Skip to content',
      'noscript': 'This page needs JavaScript to show live calls.',

      'conn.signed-out': 'Signed out',
      'conn.connecting': 'Connecting…',
      'conn.live': 'Live',
      'conn.reconnecting': 'Disconnected · reconnecting…',
      'conn.reconnecting-in': 'Disconnected · reconnecting in {s} s',
      'conn.rejected': 'Token rejected',
      'action.retry': 'Retry now',
      'action.sign-out': 'Sign out',
      'action.close': 'Close',
      'action.more': 'Show more',
      'loading': 'Loading…',
      'none': 'None',
      'dash': '—',

      'signin.remember': 'Remember me on this computer',
      'signin.submit': 'Connect',
      'signin.empty': 'Enter your token.',
      'signin.rejected': 'The token was rejected. Check it and enter it again.',
      'signin.expired': 'The token has expired. Ask your administrator for a new one.',
      'signin.refused': 'The server refused this token.',
      'signin.reason': '{detail}, HTTP {status}',
      'signin.reason-status': 'HTTP {status}',

      'status.ringing': 'Ringing',
      'status.in-progress': 'In progress',
      'status.canceled': 'Canceled',
      'status.missed': 'Missed',
      'status.failed': 'Failed',
      'status.answered': 'Answered',
      'status.busy': 'Busy',
      'direction.incoming': 'Incoming',
      'direction.outgoing': 'Outgoing',
      'call.unknown-number': 'Unknown number',
      'call.unknown-contact': 'Unknown contact',
      'call.not-assigned': 'Not assigned',
      'call.channel-n': 'Channel {id}',
      'call.employee-n': 'Employee {id}',
      'call.ticket-n': 'Ticket {id}',
      'call.raw-phone': 'As sent by the PBX: {phone}',

      'agent.page-title': 'Calls · vats-bridge',
      'agent.title': 'Calls',
      'agent.signin-title': 'Sign in to see your calls',
      'agent.signin-help':
        'Paste your employee access token. It is kept until you close the browser, or until you sign out if you tick “Remember me”.',
      'agent.token-label': 'Employee token',
      'agent.forbidden': 'This token may not watch call cards. Use an employee token.',
      'agent.views': 'Views',
      'tab.now': 'Now',
      'tab.recent': 'Recent',
      'tab.missed': 'Missed',

      'now.heading': 'Active calls',
      'now.count': { one: '{n} active call', other: '{n} active calls' },
      'now.stale': 'Connection lost: the list may be out of date until it reconnects.',
      'now.empty-live': 'No active calls right now. New calls appear here as soon as the phone rings.',
      'now.empty-offline': 'Not connected yet: calls appear here once the connection is up.',
      'card.ticket': 'Ticket',
      'card.channel': 'Channel',
      'card.employee': 'Employee',
      'card.started': 'Started',
      'card.call': 'Call',
      'card.pbx-call': 'PBX call',
      'card.elapsed-title': 'Time since the call started',
      'card.duration': 'Duration',
      'card.aria': '{direction} call, {phone}, {status}',
      'card.aria-contact': '{direction} call, {phone}, {contact}, {status}',
      'announce.one': 'New {direction} call: {phone}',
      'announce.many': { one: '{n} new call', other: '{n} new calls' },

      'recent.heading': 'Recent calls',
      'recent.empty': 'No finished calls yet.',
      'recent.error': 'Could not load the calls: {reason}',
      'recent.wait': 'Wait',
      'recent.talk': 'Talk',
      'recent.started': 'Started',
      'recent.employee': 'Employee',
      'recent.channel': 'Channel',
      'recent.comments': 'Comments',
      'recent.recording': 'Recording',

      'missed.heading': 'Missed calls to return',
      'missed.empty': 'Nobody is waiting for a callback.',
      'missed.error': 'Could not load the missed calls: {reason}',
      'missed.attempts': { one: '{n} missed call', other: '{n} missed calls' },
      'missed.count': { one: '{n} caller waiting', other: '{n} callers waiting' },
      'missed.last': 'Last attempt',
      'missed.first': 'Waiting since',
      'missed.waiting': 'waiting {span}',
      'missed.last-status': 'Last status',
      'missed.channel': 'Channel',
      'missed.call-back': 'Call back',
      'missed.mark': 'Mark as called back',
      'missed.marking': 'Saving…',
      'missed.mark-error': 'Could not mark it: {reason}',

      'details.call': 'Call',
      'details.call-n': 'Call {id}',
      'details.title': '{phone} · call {id}',
      'details.ticket': 'Ticket',
      'details.phone': 'Phone',
      'details.contact': 'Contact',
      'details.status': 'Status',
      'details.channel': 'Channel',
      'details.employee': 'Employee',
      'details.wait': 'Wait',
      'details.talk': 'Talk time',
      'details.history': 'Status history',
      'details.comments': 'Comments',
      'details.recordings': 'Recordings',
      'details.error': 'Could not load the call: {reason}',

      'board.page-title': 'Board · vats-bridge',
      'board.title': 'Board',
      'board.signin-title': 'Sign in to see the whole line',
      'board.signin-help':
        'Paste a supervisor or admin token. It is kept until you close the browser, or until you sign out if you tick “Remember me”.',
      'board.token-label': 'Supervisor or admin token',
      'board.forbidden': 'The board is for supervisors and admins: this token may not open it.',
      'board.calls': 'Active calls',
      'board.calls-empty': 'No active calls right now.',
      'board.col-status': 'Status',
      'board.col-time': 'Time',
      'board.col-phone': 'Caller',
      'board.col-channel': 'Channel',
      'board.col-who': 'Who',
      'board.col-started': 'Started',
      'board.waiting': 'waiting',
      'board.talking': 'talking',
      'board.rings-for': 'Rings for {names}',
      'board.has-it': 'With {name}',
      'board.nobody': 'Nobody',
      'board.employees': 'Employees',
      'board.employees-empty': 'No telephony employees.',
      'state.on-call': 'On a call',
      'state.ringing': 'Phone ringing',
      'state.free': 'Free',
      'board.figures': 'Today by channel',
      'board.day': '{date}, {timezone}',
      'board.figures-empty': 'No channels yet.',
      'board.col-incoming': 'Incoming',
      'board.col-answered': 'Answered',
      'board.col-missed': 'Missed',
      'board.col-rate': 'Answer rate',
      'board.col-avg-wait': 'Average wait',
      'board.col-avg-talk': 'Average talk',
      'board.col-callbacks': 'Open callbacks',
      'board.updated': 'Updated at {time}',
      'board.calls-count': { one: '{n} active call', other: '{n} active calls' },
    },
    ru: {
      'lang.label': 'Язык',
      'skip.content': 'Перейти к содержимому',
      'noscript': 'Чтобы видеть звонки, на странице должен работать JavaScript.',

      'conn.signed-out': 'Вход не выполнен',
      'conn.connecting': 'Подключение…',
      'conn.live': 'На связи',
      'conn.reconnecting': 'Нет связи · переподключение…',
      'conn.reconnecting-in': 'Нет связи · повтор через {s} с',
      'conn.rejected': 'Токен отклонён',
      'action.retry': 'Повторить',
      'action.sign-out': 'Выйти',
      'action.close': 'Закрыть',
      'action.more': 'Показать ещё',
      'loading': 'Загрузка…',
      'none': 'Нет',
      'dash': '—',

      'signin.remember': 'Запомнить меня на этом компьютере',
      'signin.submit': 'Подключиться',
      'signin.empty': 'Введите токен.',
      'signin.rejected': 'Токен не принят. Проверьте его и введите снова.',
      'signin.expired': 'Срок действия токена истёк. Попросите у администратора новый.',
      'signin.refused': 'Сервер не принял этот токен.',
      'signin.reason': '{detail}, HTTP {status}',
      'signin.reason-status': 'HTTP {status}',

      'status.ringing': 'Вызов',
      'status.in-progress': 'Идёт разговор',
      'status.canceled': 'Отменён',
      'status.missed': 'Пропущен',
      'status.failed': 'Сбой',
      'status.answered': 'Отвечен',
      'status.busy': 'Занято',
      'direction.incoming': 'Входящий',
      'direction.outgoing': 'Исходящий',
      'call.unknown-number': 'Номер неизвестен',
      'call.unknown-contact': 'Контакт неизвестен',
      'call.not-assigned': 'Не назначен',
      'call.channel-n': 'Канал {id}',
      'call.employee-n': 'Сотрудник {id}',
      'call.ticket-n': 'Обращение {id}',
      'call.raw-phone': 'Как передала АТС: {phone}',

      'agent.page-title': 'Звонки · vats-bridge',
      'agent.title': 'Звонки',
      'agent.signin-title': 'Войдите, чтобы видеть свои звонки',
      'agent.signin-help':
        'Вставьте свой токен сотрудника. Он хранится, пока открыт браузер, а если отмечено «Запомнить меня» — до выхода.',
      'agent.token-label': 'Токен сотрудника',
      'agent.forbidden': 'С этим токеном нельзя следить за карточками звонков. Нужен токен сотрудника.',
      'agent.views': 'Разделы',
      'tab.now': 'Сейчас',
      'tab.recent': 'Недавние',
      'tab.missed': 'Пропущенные',

      'now.heading': 'Активные звонки',
      'now.count': {
        one: '{n} активный звонок',
        few: '{n} активных звонка',
        many: '{n} активных звонков',
        other: '{n} активного звонка',
      },
      'now.stale': 'Связь потеряна: пока она не восстановится, список может быть неточным.',
      'now.empty-live': 'Сейчас активных звонков нет. Новый звонок появится здесь, как только зазвонит телефон.',
      'now.empty-offline': 'Подключения пока нет: звонки появятся, когда связь установится.',
      'card.ticket': 'Обращение',
      'card.channel': 'Канал',
      'card.employee': 'Сотрудник',
      'card.started': 'Начало',
      'card.call': 'Звонок',
      'card.pbx-call': 'Звонок в АТС',
      'card.elapsed-title': 'Время с начала звонка',
      'card.duration': 'Длительность',
      'card.aria': '{direction} звонок, {phone}, {status}',
      'card.aria-contact': '{direction} звонок, {phone}, {contact}, {status}',
      'announce.one': 'Новый звонок ({direction}): {phone}',
      'announce.many': {
        one: '{n} новый звонок',
        few: '{n} новых звонка',
        many: '{n} новых звонков',
        other: '{n} нового звонка',
      },

      'recent.heading': 'Недавние звонки',
      'recent.empty': 'Завершённых звонков пока нет.',
      'recent.error': 'Не удалось загрузить звонки: {reason}',
      'recent.wait': 'Ожидание',
      'recent.talk': 'Разговор',
      'recent.started': 'Начало',
      'recent.employee': 'Сотрудник',
      'recent.channel': 'Канал',
      'recent.comments': 'Комментарии',
      'recent.recording': 'Запись',

      'missed.heading': 'Пропущенные: кому перезвонить',
      'missed.empty': 'Никто не ждёт обратного звонка.',
      'missed.error': 'Не удалось загрузить пропущенные: {reason}',
      'missed.attempts': {
        one: '{n} пропущенный звонок',
        few: '{n} пропущенных звонка',
        many: '{n} пропущенных звонков',
        other: '{n} пропущенного звонка',
      },
      'missed.count': {
        one: '{n} абонент ждёт',
        few: '{n} абонента ждут',
        many: '{n} абонентов ждут',
        other: '{n} абонента ждут',
      },
      'missed.last': 'Последняя попытка',
      'missed.first': 'Ждёт с',
      'missed.waiting': 'ждёт {span}',
      'missed.last-status': 'Последний статус',
      'missed.channel': 'Канал',
      'missed.call-back': 'Перезвонить',
      'missed.mark': 'Отметить: перезвонили',
      'missed.marking': 'Сохранение…',
      'missed.mark-error': 'Не удалось отметить: {reason}',

      'details.call': 'Звонок',
      'details.call-n': 'Звонок {id}',
      'details.title': '{phone} · звонок {id}',
      'details.ticket': 'Обращение',
      'details.phone': 'Телефон',
      'details.contact': 'Контакт',
      'details.status': 'Статус',
      'details.channel': 'Канал',
      'details.employee': 'Сотрудник',
      'details.wait': 'Ожидание',
      'details.talk': 'Разговор',
      'details.history': 'История статусов',
      'details.comments': 'Комментарии',
      'details.recordings': 'Записи',
      'details.error': 'Не удалось загрузить звонок: {reason}',

      'board.page-title': 'Табло · vats-bridge',
      'board.title': 'Табло',
      'board.signin-title': 'Войдите, чтобы видеть всю линию',
      'board.signin-help':
        'Вставьте токен супервизора или администратора. Он хранится, пока открыт браузер, а если отмечено «Запомнить меня» — до выхода.',
      'board.token-label': 'Токен супервизора или администратора',
      'board.forbidden': 'Табло доступно только супервизорам и администраторам: с этим токеном его не открыть.',
      'board.calls': 'Активные звонки',
      'board.calls-empty': 'Сейчас активных звонков нет.',
      'board.col-status': 'Статус',
      'board.col-time': 'Время',
      'board.col-phone': 'Абонент',
      'board.col-channel': 'Канал',
      'board.col-who': 'Кто',
      'board.col-started': 'Начало',
      'board.waiting': 'ожидание',
      'board.talking': 'разговор',
      'board.rings-for': 'Вызывает: {names}',
      'board.has-it': 'Говорит: {name}',
      'board.nobody': 'Никто',
      'board.employees': 'Сотрудники',
      'board.employees-empty': 'Нет сотрудников телефонии.',
      'state.on-call': 'На звонке',
      'state.ringing': 'Звонит телефон',
      'state.free': 'Свободен',
      'board.figures': 'Сегодня по каналам',
      'board.day': '{date}, {timezone}',
      'board.figures-empty': 'Каналов пока нет.',
      'board.col-incoming': 'Входящие',
      'board.col-answered': 'Отвечено',
      'board.col-missed': 'Пропущено',
      'board.col-rate': 'Доля отвеченных',
      'board.col-avg-wait': 'Среднее ожидание',
      'board.col-avg-talk': 'Средний разговор',
      'board.col-callbacks': 'Ждут перезвона',
      'board.updated': 'Обновлено в {time}',
      'board.calls-count': {
        one: '{n} активный звонок',
        few: '{n} активных звонка',
        many: '{n} активных звонков',
        other: '{n} активного звонка',
      },
    },
  };
  const LANGUAGES = Object.freeze(Object.keys(STRINGS));
  const listeners = [];
  let lang = 'en';
  let locale = DEFAULT_LOCALES.en;
  let formats = null;

  function storedLang() {
    try {
      const value = window.localStorage.getItem(LANG_KEY);
      return LANGUAGES.includes(value) ? value : null;
    } catch {
      return null;
    }
  }

  function browserTags() {
    const tags = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language];
    return tags.filter((tag) => typeof tag === 'string' && tag !== '');
  }

  function baseOf(tag) {
    return tag.toLowerCase().split('-')[0];
  }

  function detectLang() {
    const stored = storedLang();
    if (stored) return stored;
    for (const tag of browserTags()) {
      if (LANGUAGES.includes(baseOf(tag))) return baseOf(tag);
    }
    return 'en';
  }

  // The browser's own variant of the language when it has one (en-US, ru-RU), else a default.
  function localeFor(language) {
    const own = browserTags().find((tag) => baseOf(tag) === language);
    try {
      return own ? Intl.getCanonicalLocales(own)[0] : DEFAULT_LOCALES[language];
    } catch {
      return DEFAULT_LOCALES[language];
    }
  }

  function makeFormats() {
    const clock = { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' };
    return {
      time: new Intl.DateTimeFormat(locale, clock),
      timeSeconds: new Intl.DateTimeFormat(locale, { ...clock, second: '2-digit' }),
      dayMonth: new Intl.DateTimeFormat(locale, { day: 'numeric', month: 'short' }),
      // A calendar day given as "YYYY-MM-DD" names the same day wherever the browser is.
      calendarDay: new Intl.DateTimeFormat(locale, {
        day: 'numeric',
        month: 'long',
        year: 'numeric',
        timeZone: 'UTC',
      }),
      full: new Intl.DateTimeFormat(locale, {
        day: 'numeric',
        month: 'long',
        year: 'numeric',
        ...clock,
        second: '2-digit',
      }),
      plural: new Intl.PluralRules(locale),
      integer: new Intl.NumberFormat(locale, { maximumFractionDigits: 0 }),
      percent: new Intl.NumberFormat(locale, { style: 'percent', maximumFractionDigits: 0 }),
      hours: new Intl.NumberFormat(locale, { style: 'unit', unit: 'hour', unitDisplay: 'short' }),
      minutes: new Intl.NumberFormat(locale, { style: 'unit', unit: 'minute', unitDisplay: 'short' }),
      seconds: new Intl.NumberFormat(locale, { style: 'unit', unit: 'second', unitDisplay: 'short' }),
      days: new Intl.NumberFormat(locale, { style: 'unit', unit: 'day', unitDisplay: 'long' }),
    };
  }

  function use(language) {
    lang = language;
    locale = localeFor(language);
    formats = makeFormats();
    document.documentElement.lang = language;
  }

  function fill(template, params) {
    return template.replace(/\{(\w+)\}/g, (whole, name) =>
      params && Object.hasOwn(params, name) ? String(params[name]) : whole,
    );
  }

  function lookup(key) {
    const own = STRINGS[lang][key];
    return own === undefined ? STRINGS.en[key] : own;
  }

  // t('missed.attempts', {n: 3}) picks the plural form for n.
  function t(key, params) {
    let value = lookup(key);
    if (value === undefined) return key;
    if (typeof value === 'object') {
      const n = Number(params && params.n);
      value = value[formats.plural.select(n)] || value.other;
      params = { ...params, n: formats.integer.format(n) };
    }
    return fill(value, params);
  }

  // A wire name's label in the page's language; a name newer than this page reads as words.
  function label(kind, name) {
    const value = lookup(`${kind}.${name}`);
    if (typeof value === 'string') return value;
    const words = String(name || '').replaceAll('-', ' ');
    return words.charAt(0).toUpperCase() + words.slice(1);
  }

  function asDate(value) {
    if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value;
    if (typeof value !== 'string' || value === '') return null;
    const date = new Date(value);
    return Number.isNaN(date.getTime()) ? null : date;
  }

  function sameDay(a, b) {
    return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
  }

  // "14:05" today, "27 Nov, 14:05" ("27 нояб., 14:05") on another day; local time, 24-hour clock.
  function when(value) {
    const date = asDate(value);
    if (date === null) return '';
    const time = formats.time.format(date);
    return sameDay(date, new Date()) ? time : `${formats.dayMonth.format(date)}, ${time}`;
  }

  function full(value) {
    const date = asDate(value);
    return date === null ? '' : formats.full.format(date);
  }

  // "m:ss", or "h:mm:ss" from an hour on: the same in both languages.
  function clock(totalSeconds) {
    const whole = Math.max(0, Math.floor(totalSeconds));
    const hours = Math.floor(whole / 3600);
    const minutes = Math.floor((whole % 3600) / 60);
    const ss = String(whole % 60).padStart(2, '0');
    return hours > 0 ? `${hours}:${String(minutes).padStart(2, '0')}:${ss}` : `${minutes}:${ss}`;
  }

  // A longer span in words: "2 hr 5 min" / "2 ч 5 мин"; under a minute, seconds.
  function span(totalSeconds) {
    const whole = Math.max(0, Math.floor(totalSeconds));
    if (whole < 60) return formats.seconds.format(whole);
    const hours = Math.floor(whole / 3600);
    const minutes = Math.floor((whole % 3600) / 60);
    if (hours === 0) return formats.minutes.format(minutes);
    if (hours >= 48) return formats.days.format(Math.floor(hours / 24));
    const inHours = formats.hours.format(hours);
    return minutes ? `${inHours} ${formats.minutes.format(minutes)}` : inHours;
  }

  function percent(fraction) {
    return formats.percent.format(fraction);
  }

  function integer(value) {
    return formats.integer.format(value);
  }

  // The day of a "YYYY-MM-DD" string, as written in the page's language.
  function day(value) {
    const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(String(value || ''));
    if (!match) return '';
    const [year, month, date] = match.slice(1).map(Number);
    return formats.calendarDay.format(new Date(Date.UTC(year, month - 1, date)));
  }

  // Fills [data-i18n] elements' text and [data-i18n-attr="attr:key;attr:key"] attributes.
  function apply(root) {
    for (const el of root.querySelectorAll('[data-i18n]')) {
      const value = t(el.getAttribute('data-i18n'));
      if (el.textContent !== value) el.textContent = value;
    }
    for (const el of root.querySelectorAll('[data-i18n-attr]')) {
      for (const pair of el.getAttribute('data-i18n-attr').split(';')) {
        const [attr, key] = pair.split(':').map((part) => part.trim());
        if (attr && key) el.setAttribute(attr, t(key));
      }
    }
  }

  // A fresh copy of a page <template>'s element, its words in the page's language.
  function fromTemplate(id) {
    const el = document.getElementById(id).content.firstElementChild.cloneNode(true);
    apply(el);
    return el;
  }

  function setLang(language) {
    if (!LANGUAGES.includes(language) || language === lang) return;
    try {
      window.localStorage.setItem(LANG_KEY, language);
    } catch {
      // the choice then lasts as long as this page
    }
    use(language);
    apply(document);
    for (const listener of listeners) listener(language);
  }

  // Wires a <select> of languages: shows the current one, switches and remembers on change.
  function bindSwitch(select) {
    select.value = lang;
    select.addEventListener('change', () => setLang(select.value));
    listeners.push(() => {
      select.value = lang;
    });
  }

  use(detectLang());

  window.VatsI18n = Object.freeze({
    get lang() {
      return lang;
    },
    get locale() {
      return locale;
    },
    t,
    label,
    // Whether `language` has its own words for `key` (a test checks every wire name has).
    has: (language, key) => Object.hasOwn(STRINGS[language] || {}, key),
    languages: LANGUAGES,
    when,
    full,
    clock,
    span,
    percent,
    integer,
    day,
    apply,
    fromTemplate,
    setLang,
    bindSwitch,
    onChange: (listener) => listeners.push(listener),
    time: (value) => {
      const date = asDate(value);
      return date === null ? '' : formats.time.format(date);
    },
    timeSeconds: (value) => {
      const date = asDate(value);
      return date === null ? '' : formats.timeSeconds.format(date);
    },
  });
})();
