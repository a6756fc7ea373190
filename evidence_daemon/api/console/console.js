/*
 * The auditors' web console: sign in with a bearer token, search recordings, read a recording's
 * summary and chain of custody, play its viewing copy or download its original through a
 * player grant that records the reason.
 *
 * What this file must never do:
 *  - put data into the DOM as markup. Everything shown comes from body cameras, stations or
 *    other users and is hostile: only textContent / createElement, never innerHTML with data;
 *  - keep the token anywhere but sessionStorage, or put it in a URL. Media elements cannot send
 *    headers, so they use a grant URL plus the HttpOnly session cookie set by POST /session;
 *  - fetch anything from another origin.
 */
(() => {
  "use strict";

  const API = "/api/v1";
  const TOKEN_KEY = "evidence-console.token"; // sessionStorage only
  const LANG_KEY = "evidence-console.lang"; // localStorage: a preference, not a secret
  const PAGE_SIZE = 50;
  const REASON_MIN = 3;
  const REASON_MAX = 500;

  const MESSAGES = {
    en: {
      title: "Evidence archive — audit console",
      language: "Language",
      signIn: "Sign in",
      signOut: "Sign out",
      token: "Access token",
      signInHint: "Every search and every viewing is recorded.",
      signingIn: "Checking token…",
      tokenRejected: "Token not accepted.",
      tooManyAttempts: "Too many attempts — wait and try again.",
      tooManyAttemptsFor: "Too many attempts — wait {s} s and try again.",
      sessionExpired: "Your token is no longer accepted; sign in again.",
      cookieFailed: "Signed in, but the player session could not be set up ({status}); playback may fail.",
      networkError: "Cannot reach the server.",
      serverError: "The server answered {status}: {message}",
      forbidden: "Your role may not do this.",
      notFound: "Not found.",
      search: "Search",
      searchButton: "Search",
      clear: "Clear",
      officer: "Officer",
      device: "Device",
      station: "Station",
      from: "From",
      to: "To",
      compliance: "Compliance",
      any: "Any",
      on_time: "On time",
      late: "Late",
      case: "Case",
      flag: "Flag",
      more: "More",
      searching: "Searching…",
      resultCount: "Recordings shown: {n}.",
      resultCountMore: "Recordings shown: {n}; more available.",
      noResults: "No recordings match.",
      colId: "ID",
      colStart: "Recorded start",
      colOfficer: "Officer",
      colDevice: "Device",
      colStation: "Station",
      colCompliance: "Compliance",
      colFlags: "Flags",
      colCases: "Cases",
      colHeld: "Held",
      yes: "yes",
      no: "no",
      open: "Open recording {id}",
      recording: "Recording",
      close: "Close",
      loading: "Loading…",
      summary: "Summary",
      viewing: "Viewing",
      fullId: "Full ID (SHA-256)",
      shortId: "Short ID",
      recordedStart: "Recorded start",
      recordedEnd: "Recorded end",
      duration: "Duration",
      size: "Size",
      extension: "Format",
      timeSource: "Time source",
      archivedAt: "Archived at",
      deadline: "Archive deadline",
      retainUntil: "Retain until",
      flags: "Flags",
      cases: "Cases",
      holds: "Legal holds",
      notes: "Notes",
      content: "Stored content",
      none: "none",
      unknown: "unknown",
      bytes: "bytes",
      seconds: "s",
      custody: "Chain of custody",
      colTime: "Time",
      colWriterSeq: "Writer#seq",
      colEvent: "Event",
      colActor: "Actor",
      colVerified: "Verified",
      colDetails: "Details",
      show: "show",
      custodyOk: "all entries verified",
      custodyBad: "NOT verified",
      custodyEmpty: "No custody events.",
      custodyCount: "{n} events.",
      entryVerified: "signature and link verified",
      entryNotVerified: "not verified",
      play: "Play viewing copy",
      download: "Download original",
      noProxy: "No viewing copy exists for this recording.",
      reasonTitle: "Reason for access",
      reasonLabel: "Reason (recorded in the chain of custody)",
      reasonForPlay: "You are about to view recording {id}.",
      reasonForDownload: "You are about to download the original of recording {id}.",
      reasonLength: "The reason must be 3 to 500 characters.",
      confirm: "Confirm",
      cancel: "Cancel",
      granting: "Recording your access…",
      auditRef: "Access recorded as {ref}; link valid until {expires}.",
      videoError: "The viewing copy cannot be played (media error {code}).",
      downloadStarted: "Download of the original started; access recorded as {ref}.",
      incidents: "Incidents and their footage",
      incidentsHint: "Dispatched incidents matched to the footage of the officers sent. Pending: the 24-hour window is still open.",
      coverage: "Coverage",
      missing: "Missing",
      partial: "Partial",
      pending: "Pending",
      covered: "Covered",
      colIncident: "Incident",
      colEnd: "End",
      colOfficers: "Officers",
      colType: "Type",
      colPlace: "Place",
      colCovered: "Covered",
      colRecordings: "Recordings",
      incidentCount: "{n} incidents shown. All: {missing} missing, {partial} partial, {pending} pending, {covered} covered.",
      noIncidents: "No incidents.",
    },
    zh: {
      title: "执法记录仪证据档案 — 审核控制台",
      language: "语言",
      signIn: "登录",
      signOut: "退出登录",
      token: "访问令牌",
      signInHint: "每一次查询和查看都会被记录。",
      signingIn: "正在验证令牌…",
      tokenRejected: "令牌未被接受。",
      tooManyAttempts: "尝试次数过多，请稍后再试。",
      tooManyAttemptsFor: "尝试次数过多，请等待 {s} 秒后再试。",
      sessionExpired: "令牌已失效，请重新登录。",
      cookieFailed: "已登录，但播放会话未能建立（{status}），播放可能失败。",
      networkError: "无法连接服务器。",
      serverError: "服务器返回 {status}：{message}",
      forbidden: "您的角色无权执行此操作。",
      notFound: "未找到。",
      search: "查询",
      searchButton: "查询",
      clear: "清空",
      officer: "警员编号",
      device: "设备编号",
      station: "采集站",
      from: "开始时间（起）",
      to: "开始时间（止）",
      compliance: "上传时效",
      any: "全部",
      on_time: "按时",
      late: "超时",
      case: "案件编号",
      flag: "异常标记",
      more: "加载更多",
      searching: "正在查询…",
      resultCount: "显示 {n} 条录像。",
      resultCountMore: "显示 {n} 条录像，还有更多。",
      noResults: "没有符合条件的录像。",
      colId: "编号",
      colStart: "录制开始",
      colOfficer: "警员",
      colDevice: "设备",
      colStation: "采集站",
      colCompliance: "时效",
      colFlags: "标记",
      colCases: "案件",
      colHeld: "保全",
      yes: "是",
      no: "否",
      open: "打开录像 {id}",
      recording: "录像",
      close: "关闭",
      loading: "正在加载…",
      summary: "概要",
      viewing: "查看",
      fullId: "完整编号（SHA-256）",
      shortId: "短编号",
      recordedStart: "录制开始",
      recordedEnd: "录制结束",
      duration: "时长",
      size: "大小",
      extension: "格式",
      timeSource: "时间来源",
      archivedAt: "归档时间",
      deadline: "归档期限",
      retainUntil: "保留至",
      flags: "异常标记",
      cases: "关联案件",
      holds: "证据保全",
      notes: "备注",
      content: "存储内容",
      none: "无",
      unknown: "未知",
      bytes: "字节",
      seconds: "秒",
      custody: "监管链",
      colTime: "时间",
      colWriterSeq: "写入方#序号",
      colEvent: "事件",
      colActor: "操作者",
      colVerified: "校验",
      colDetails: "详情",
      show: "展开",
      custodyOk: "全部条目校验通过",
      custodyBad: "校验未通过",
      custodyEmpty: "没有监管链事件。",
      custodyCount: "共 {n} 条事件。",
      entryVerified: "签名与链接校验通过",
      entryNotVerified: "校验未通过",
      play: "播放",
      download: "下载原始文件",
      noProxy: "此录像没有可播放的查看副本。",
      reasonTitle: "访问事由",
      reasonLabel: "事由（将记入监管链）",
      reasonForPlay: "您将查看录像 {id}。",
      reasonForDownload: "您将下载录像 {id} 的原始文件。",
      reasonLength: "事由须为 3 至 500 个字符。",
      confirm: "确认",
      cancel: "取消",
      granting: "正在记录您的访问…",
      auditRef: "本次访问已记录为 {ref}；链接有效期至 {expires}。",
      videoError: "查看副本无法播放（媒体错误 {code}）。",
      downloadStarted: "原始文件开始下载；本次访问已记录为 {ref}。",
      incidents: "警情与执法记录",
      incidentsHint: "接处警记录与出警民警的执法录像逐一比对。待定：24 小时归档期限尚未结束。",
      coverage: "录像覆盖",
      missing: "无录像",
      partial: "部分覆盖",
      pending: "待定",
      covered: "已覆盖",
      colIncident: "警情编号",
      colEnd: "结束时间",
      colOfficers: "出警民警",
      colType: "警情类型",
      colPlace: "地点",
      colCovered: "覆盖比例",
      colRecordings: "录像",
      incidentCount: "显示 {n} 起警情。全部：无录像 {missing}，部分覆盖 {partial}，待定 {pending}，已覆盖 {covered}。",
      noIncidents: "没有警情。",
    },
  };

  // ---------------------------------------------------------------- pure helpers

  /** "zh" or "en" from a BCP 47 tag such as "zh-CN" or "en-US". */
  function languageFor(tag) {
    return String(tag || "").toLowerCase().startsWith("zh") ? "zh" : "en";
  }

  function format(template, values) {
    return template.replace(/\{(\w+)\}/g, (whole, name) =>
      Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : whole);
  }

  function pad(number, width = 2) {
    return String(Math.trunc(Math.abs(number))).padStart(width, "0");
  }

  /**
   * A datetime-local value ("2026-11-25T09:00" or with seconds) read as the browser's local
   * time, written as an ISO 8601 instant with that moment's offset ("2026-11-25T09:00:00+08:00").
   * The offset is the one in force at that instant, so daylight saving time is right.
   */
  function localInputToIso(value) {
    if (!value) return "";
    const date = new Date(value); // date-time without offset: local time (ECMA-262)
    if (Number.isNaN(date.getTime())) throw new RangeError(`not a date-time: ${value}`);
    const offsetMinutes = -date.getTimezoneOffset();
    const sign = offsetMinutes >= 0 ? "+" : "-";
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
      `T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}` +
      `${sign}${pad(offsetMinutes / 60)}:${pad(offsetMinutes % 60)}`;
  }

  /** Characters as Python counts them (code points), for the 3–500 reason rule. */
  function codePointLength(text) {
    return [...text].length;
  }

  function humanSize(sizeBytes) {
    if (typeof sizeBytes !== "number" || !Number.isFinite(sizeBytes)) return "";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let size = sizeBytes;
    let unit = 0;
    while (size >= 1024 && unit < units.length - 1) {
      size /= 1024;
      unit += 1;
    }
    return unit === 0 ? `${size} B` : `${size.toFixed(1)} ${units[unit]}`;
  }

  /** The message in an error body, whatever shape the server used. */
  function errorText(body) {
    if (body == null) return "";
    if (typeof body === "string") return body;
    const detail = body.detail ?? body.message ?? body.error;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      return detail.map((item) => (item && item.msg) ? item.msg : JSON.stringify(item)).join("; ");
    }
    return detail == null ? JSON.stringify(body) : JSON.stringify(detail);
  }

  // ---------------------------------------------------------------- state

  const state = {
    lang: "en",
    token: null,
    me: null,
    query: null, // URLSearchParams of the search shown
    items: [],
    nextCursor: null,
    searchGeneration: 0,
    detail: null,
    custody: null,
    detailGeneration: 0,
    lastGrant: null, // {kind, audit, expires_at} of the last grant, for re-rendering
    incidents: [],
    incidentCursor: null,
    incidentCounts: {},
    incidentGeneration: 0,
  };

  const $ = (id) => document.getElementById(id);

  function t(key, values) {
    const table = MESSAGES[state.lang] || MESSAGES.en;
    const text = table[key] ?? MESSAGES.en[key] ?? key;
    return values ? format(text, values) : text;
  }

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function show(node, visible) {
    node.hidden = !visible;
  }

  function setMessage(node, text) {
    node.textContent = text || "";
    node.hidden = !text;
  }

  // ---------------------------------------------------------------- HTTP

  class ApiError extends Error {
    constructor(status, message, retryAfter) {
      super(message);
      this.status = status;
      this.retryAfter = retryAfter;
    }
  }

  /** A JSON request to the API with the bearer token. Throws ApiError (status 0: network). */
  async function api(path, { method = "GET", body, token = state.token } = {}) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(API + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "same-origin",
        redirect: "error",
      });
    } catch (error) {
      throw new ApiError(0, String(error && error.message ? error.message : error));
    }
    const text = await response.text();
    let parsed = null;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    if (!response.ok) {
      throw new ApiError(response.status, errorText(parsed) || response.statusText,
        response.headers.get("Retry-After"));
    }
    return parsed;
  }

  /** What to tell the user about a failed call. */
  function describeError(error) {
    if (!(error instanceof ApiError)) return String(error);
    switch (error.status) {
      case 0: return t("networkError");
      case 401: return t("tokenRejected");
      case 403: return t("forbidden");
      case 404: return t("notFound");
      case 429:
        return error.retryAfter && /^\d+$/.test(error.retryAfter)
          ? t("tooManyAttemptsFor", { s: error.retryAfter }) : t("tooManyAttempts");
      default: return t("serverError", { status: error.status, message: error.message });
    }
  }

  /** A call made while signed in: a 401 means the token was revoked, so sign out here. */
  async function authed(path, options) {
    try {
      return await api(path, options);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401 && state.token) {
        endSession(t("sessionExpired"));
      }
      throw error;
    }
  }

  // ---------------------------------------------------------------- language

  function applyLanguage() {
    document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
    document.title = t("title");
    for (const node of document.querySelectorAll("[data-i18n]")) {
      node.textContent = t(node.dataset.i18n);
    }
    $("lang").value = state.lang;
    renderWho();
    renderResults();
    renderDetail();
    renderCustody();
    renderGrant();
    renderIncidents();
  }

  function setLanguage(lang) {
    state.lang = lang === "zh" ? "zh" : "en";
    try {
      localStorage.setItem(LANG_KEY, state.lang);
    } catch {
      // storage disabled: the choice lasts for this page only
    }
    applyLanguage();
  }

  function initialLanguage() {
    let stored = null;
    try {
      stored = localStorage.getItem(LANG_KEY);
    } catch {
      stored = null;
    }
    if (stored === "zh" || stored === "en") return stored;
    return languageFor(navigator.language);
  }

  // ---------------------------------------------------------------- sign-in

  function renderWho() {
    const me = state.me;
    show($("who"), Boolean(me));
    show($("sign-out"), Boolean(me));
    $("who-name").textContent = me ? me.name : "";
    $("who-role").textContent = me ? me.role + (me.officer_id ? ` · ${me.officer_id}` : "") : "";
  }

  async function signIn(token) {
    const errorNode = $("signin-error");
    setMessage(errorNode, "");
    $("signin-button").disabled = true;
    setMessage($("notice"), t("signingIn"));
    try {
      const me = await api("/me", { token });
      startSession(token, me);
      $("token").value = "";
    } catch (error) {
      try {
        sessionStorage.removeItem(TOKEN_KEY);
      } catch {
        // nothing stored
      }
      setMessage(errorNode, describeError(error));
      setMessage($("notice"), "");
      $("token").select();
      return;
    } finally {
      $("signin-button").disabled = false;
    }
    await openMediaSession();
    runSearch(new URLSearchParams());
    loadIncidents();
  }

  function startSession(token, me) {
    state.token = token;
    state.me = me;
    sessionStorage.setItem(TOKEN_KEY, token);
    setMessage($("notice"), "");
    show($("signin"), false);
    show($("app"), true);
    renderWho();
  }

  /** The HttpOnly cookie that lets <video> fetch grant URLs (it cannot send headers). */
  async function openMediaSession() {
    try {
      await authed("/session", { method: "POST" });
    } catch (error) {
      if (state.token) {
        setMessage($("notice"), t("cookieFailed", {
          status: error instanceof ApiError ? error.status : error,
        }));
      }
    }
  }

  /** Forget everything of the signed-in user; the page shows no data afterwards. */
  function endSession(message) {
    state.token = null;
    state.me = null;
    state.query = null;
    state.items = [];
    state.nextCursor = null;
    state.searchGeneration += 1;
    state.detailGeneration += 1;
    state.detail = null;
    state.custody = null;
    state.lastGrant = null;
    state.incidents = [];
    state.incidentCursor = null;
    state.incidentCounts = {};
    state.incidentGeneration += 1;
    renderIncidents();
    setMessage($("incidents-status"), "");
    show($("incidents"), false);
    try {
      sessionStorage.clear();
    } catch {
      // nothing stored
    }
    stopPlayer();
    $("search-form").reset();
    setMessage($("search-status"), "");
    renderResults();
    closeDetail();
    renderWho();
    show($("app"), false);
    show($("signin"), true);
    setMessage($("signin-error"), message || "");
    setMessage($("notice"), "");
    const dialog = $("reason-dialog");
    if (dialog.open) dialog.close("cancel");
    $("token").focus();
  }

  async function signOut() {
    const token = state.token;
    endSession("");
    if (token) {
      try {
        await api("/session", { method: "DELETE", token });
      } catch {
        // the cookie dies with the browser session anyway; nothing more to do here
      }
    }
  }

  // ---------------------------------------------------------------- search

  function queryFromForm() {
    const params = new URLSearchParams();
    const text = {
      officer: "q-officer", device: "q-device", station: "q-station", case: "q-case",
      flag: "q-flag",
    };
    for (const [name, id] of Object.entries(text)) {
      const value = $(id).value.trim();
      if (value) params.set(name, value);
    }
    for (const name of ["from", "to"]) {
      const value = $(`q-${name}`).value;
      if (value) params.set(name, localInputToIso(value));
    }
    const compliance = $("q-compliance").value;
    if (compliance) params.set("compliance", compliance);
    return params;
  }

  async function runSearch(params, { append = false } = {}) {
    const generation = ++state.searchGeneration;
    const status = $("search-status");
    const query = new URLSearchParams(params);
    query.set("limit", String(PAGE_SIZE));
    if (append && state.nextCursor) query.set("cursor", state.nextCursor);
    status.textContent = t("searching");
    $("search-button").disabled = true;
    $("more").disabled = true;
    try {
      const page = await authed(`/recordings?${query}`);
      if (generation !== state.searchGeneration) return;
      state.query = params;
      state.items = append ? state.items.concat(page.items || []) : (page.items || []);
      state.nextCursor = page.next_cursor || null;
      renderResults();
    } catch (error) {
      if (generation !== state.searchGeneration || !state.token) return;
      status.textContent = describeError(error);
    } finally {
      if (generation === state.searchGeneration) {
        $("search-button").disabled = false;
        $("more").disabled = false;
      }
    }
  }

  function listText(values) {
    return Array.isArray(values) && values.length ? values.join(", ") : "";
  }

  function complianceText(value) {
    if (value === "on_time" || value === "late") return t(value);
    return value == null ? "" : String(value);
  }

  function renderResults() {
    const body = $("results-body");
    body.replaceChildren();
    for (const item of state.items) {
      const row = document.createElement("tr");
      row.dataset.id = item.id;
      const idCell = document.createElement("td");
      const open = el("button", item.short_id || String(item.id).slice(0, 12), "link open");
      open.type = "button";
      open.title = t("open", { id: item.id });
      open.addEventListener("click", () => openRecording(item.id));
      idCell.append(open);
      row.append(
        idCell,
        el("td", item.recorded_start ?? ""),
        el("td", item.officer_id ?? ""),
        el("td", item.device_id ?? ""),
        el("td", item.station ?? ""),
        el("td", complianceText(item.compliance), item.compliance === "late" ? "compliance-late" : ""),
        el("td", listText(item.flags), item.flags && item.flags.length ? "flagged" : ""),
        el("td", listText(item.cases)),
        el("td", item.held ? t("yes") : t("no"), item.held ? "held" : ""),
      );
      if (state.detail && state.detail.id === item.id) row.classList.add("selected");
      body.append(row);
    }
    show($("more"), Boolean(state.nextCursor));
    if (state.query) {
      const n = state.items.length;
      $("search-status").textContent = n === 0 ? t("noResults")
        : t(state.nextCursor ? "resultCountMore" : "resultCount", { n });
    }
  }

  // ---------------------------------------------------------------- incidents

  const INCIDENT_ROLES = ["auditor", "supervisor", "admin"];

  async function loadIncidents({ append = false } = {}) {
    if (!state.me || !INCIDENT_ROLES.includes(state.me.role)) return;
    const generation = ++state.incidentGeneration;
    show($("incidents"), true);
    const query = new URLSearchParams();
    const coverage = $("i-coverage").value;
    const officer = $("i-officer").value.trim();
    if (coverage) query.set("coverage", coverage);
    if (officer) query.set("officer", officer);
    query.set("limit", String(PAGE_SIZE));
    if (append && state.incidentCursor) query.set("cursor", state.incidentCursor);
    $("incidents-more").disabled = true;
    try {
      const page = await authed(`/incidents?${query}`);
      if (generation !== state.incidentGeneration) return;
      state.incidents = append ? state.incidents.concat(page.items || []) : (page.items || []);
      state.incidentCursor = page.next_cursor || null;
      state.incidentCounts = page.counts || {};
      renderIncidents();
    } catch (error) {
      if (generation !== state.incidentGeneration || !state.token) return;
      $("incidents-status").textContent = describeError(error);
    } finally {
      $("incidents-more").disabled = false;
    }
  }

  function renderIncidents() {
    const body = $("incidents-body");
    body.replaceChildren();
    for (const item of state.incidents) {
      const row = document.createElement("tr");
      row.dataset.incident = item.incident_id;
      const recordings = el("td", "");
      for (const id of item.recordings || []) {
        const open = el("button", String(id).slice(0, 12), "link open");
        open.type = "button";
        open.title = t("open", { id });
        open.addEventListener("click", () => openRecording(id));
        recordings.append(open, " ");
      }
      row.append(
        el("td", item.incident_id ?? ""),
        el("td", item.start ?? ""),
        el("td", item.end ?? ""),
        el("td", listText(item.officers)),
        el("td", item.type ?? ""),
        el("td", item.place ?? ""),
        el("td", t(item.coverage), `coverage-${item.coverage}`),
        el("td", `${Math.round((item.fraction || 0) * 1000) / 10}%`),
        recordings,
      );
      body.append(row);
    }
    show($("incidents-more"), Boolean(state.incidentCursor));
    const counts = state.incidentCounts || {};
    $("incidents-status").textContent = state.incidents.length === 0 ? t("noIncidents")
      : t("incidentCount", { n: state.incidents.length, missing: counts.missing ?? 0,
        partial: counts.partial ?? 0, pending: counts.pending ?? 0, covered: counts.covered ?? 0 });
  }

  // ---------------------------------------------------------------- one recording

  async function openRecording(id) {
    const generation = ++state.detailGeneration;
    stopPlayer();
    state.detail = null;
    state.custody = null;
    state.lastGrant = null;
    show($("detail"), true);
    $("detail-short-id").textContent = String(id).slice(0, 12);
    $("detail-status").textContent = t("loading");
    $("custody-status").textContent = "";
    renderDetail();
    renderCustody();
    renderGrant();
    renderResults();
    const encoded = encodeURIComponent(id);
    const [detail, custody] = await Promise.allSettled([
      authed(`/recordings/${encoded}`),
      authed(`/recordings/${encoded}/custody`),
    ]);
    if (generation !== state.detailGeneration) return;
    if (detail.status === "fulfilled") {
      state.detail = detail.value;
      $("detail-status").textContent = "";
    } else {
      $("detail-status").textContent = describeError(detail.reason);
    }
    if (custody.status === "fulfilled") {
      state.custody = custody.value;
      $("custody-status").textContent = "";
    } else {
      state.custody = null;
      $("custody-status").textContent = describeError(custody.reason);
    }
    renderDetail();
    renderCustody();
    renderResults();
    $("detail").scrollIntoView({ block: "start" });
  }

  async function refreshCustody(id) {
    const generation = state.detailGeneration;
    try {
      const custody = await authed(`/recordings/${encodeURIComponent(id)}/custody`);
      if (generation !== state.detailGeneration) return;
      state.custody = custody;
      renderCustody();
    } catch (error) {
      if (generation === state.detailGeneration && state.token) {
        $("custody-status").textContent = describeError(error);
      }
    }
  }

  function closeDetail() {
    state.detailGeneration += 1;
    state.detail = null;
    state.custody = null;
    state.lastGrant = null;
    stopPlayer();
    renderDetail();
    renderCustody();
    renderGrant();
    $("detail-status").textContent = "";
    $("custody-status").textContent = "";
    $("detail-short-id").textContent = "";
    show($("detail"), false);
    renderResults();
  }

  /** One line for an object of unknown shape (a hold, a note, a flag reason). */
  function describeObject(value) {
    if (value == null) return "";
    if (typeof value !== "object") return String(value);
    return Object.entries(value)
      .filter(([, v]) => v !== null && v !== undefined && v !== "")
      .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`)
      .join(" · ");
  }

  /** Flags with their reasons; flag_reasons may be a {flag: reason} map or a list. */
  function flagLines(detail) {
    const flags = Array.isArray(detail.flags) ? detail.flags : [];
    const reasons = detail.flag_reasons;
    const lines = [];
    if (reasons && !Array.isArray(reasons) && typeof reasons === "object") {
      const seen = new Set();
      for (const flag of flags) {
        seen.add(flag);
        lines.push(reasons[flag] ? `${flag}: ${describeObject(reasons[flag])}` : String(flag));
      }
      for (const [flag, reason] of Object.entries(reasons)) {
        if (!seen.has(flag)) lines.push(`${flag}: ${describeObject(reason)}`);
      }
    } else if (Array.isArray(reasons) && reasons.length) {
      for (const reason of reasons) lines.push(describeObject(reason));
    } else {
      for (const flag of flags) lines.push(String(flag));
    }
    return lines;
  }

  function holdLine(hold) {
    if (!hold || typeof hold !== "object" || !hold.hold_id) return describeObject(hold);
    const parts = [String(hold.hold_id)];
    if (hold.case_id) parts.push(String(hold.case_id));
    if (hold.reason) parts.push(String(hold.reason));
    if (hold.placed_by || hold.placed_at) {
      parts.push(`${hold.placed_by ?? ""} ${hold.placed_at ?? ""}`.trim());
    }
    return parts.join(" · ");
  }

  function noteLine(note) {
    if (!note || typeof note !== "object" || typeof note.text !== "string") {
      return describeObject(note);
    }
    const who = `${note.at ?? ""} ${note.by ?? ""}`.trim();
    return who ? `${who}: ${note.text}` : note.text;
  }

  function contentLines(content) {
    if (!content || typeof content !== "object") return [];
    if (Array.isArray(content)) return content.map(describeObject);
    return Object.entries(content).map(([kind, info]) => {
      if (info && typeof info === "object") {
        const parts = [kind];
        if (typeof info.size_bytes === "number") parts.push(humanSize(info.size_bytes));
        if (info.sha256) parts.push(`SHA-256 ${info.sha256}`);
        return parts.join(" · ");
      }
      return `${kind}: ${info}`;
    });
  }

  function renderDetail() {
    const list = $("detail-summary");
    list.replaceChildren();
    const detail = state.detail;
    const play = $("play");
    const download = $("download");
    if (!detail) {
      play.disabled = true;
      download.disabled = true;
      show($("no-proxy"), false);
      return;
    }
    $("detail-short-id").textContent = detail.short_id || String(detail.id).slice(0, 12);
    const add = (labelKey, value, className) => {
      const values = Array.isArray(value) ? value : [value];
      list.append(el("dt", t(labelKey)));
      if (values.length === 0 || (values.length === 1 && (values[0] === "" || values[0] == null))) {
        list.append(el("dd", t("none"), "none"));
        return;
      }
      for (const line of values) list.append(el("dd", line, className));
    };
    const sizeBytes = detail.size_bytes;
    const size = typeof sizeBytes === "number"
      ? `${sizeBytes.toLocaleString()} ${t("bytes")} (${humanSize(sizeBytes)})` : "";
    const duration = typeof detail.duration_s === "number"
      ? `${detail.duration_s} ${t("seconds")}` : "";
    add("fullId", detail.id, "mono");
    add("recordedStart", detail.recorded_start ?? t("unknown"));
    add("recordedEnd", detail.recorded_end ?? t("unknown"));
    add("duration", duration);
    add("officer", detail.officer_id ?? "");
    add("device", detail.device_id ?? "");
    add("station", detail.station ?? "");
    add("size", size);
    add("extension", detail.extension ?? "");
    add("timeSource", detail.time_source ?? "");
    add("archivedAt", detail.archived_at ?? "");
    add("deadline", detail.archive_deadline ?? "");
    add("compliance", complianceText(detail.compliance),
      detail.compliance === "late" ? "compliance-late" : "");
    add("flags", flagLines(detail), "flagged");
    add("cases", Array.isArray(detail.cases) ? detail.cases : []);
    add("holds", Array.isArray(detail.holds) ? detail.holds.map(holdLine) : [], "held");
    add("notes", Array.isArray(detail.notes) ? detail.notes.map(noteLine) : []);
    add("retainUntil", detail.retain_until ?? "");
    add("content", contentLines(detail.content), "mono");
    // has_proxy is in every summary; `content` (which kinds exist) is the fallback.
    const hasProxy = typeof detail.has_proxy === "boolean" ? detail.has_proxy
      : Boolean(detail.content && typeof detail.content === "object" && detail.content.proxy);
    play.disabled = !hasProxy;
    download.disabled = false;
    show($("no-proxy"), !hasProxy);
  }

  function renderCustody() {
    const body = $("custody-body");
    body.replaceChildren();
    const badge = $("custody-verified");
    const custody = state.custody;
    if (!custody) {
      badge.textContent = "";
      badge.className = "badge";
      return;
    }
    const events = Array.isArray(custody.events) ? custody.events : [];
    badge.textContent = custody.verified ? `✓ ${t("custodyOk")}` : `✗ ${t("custodyBad")}`;
    badge.className = custody.verified ? "badge ok" : "badge bad";
    for (const event of events) {
      const row = document.createElement("tr");
      row.className = event.verified ? "verified" : "unverified";
      const mine = state.lastGrant && state.lastGrant.audit;
      if (mine && mine.writer === event.writer && mine.seq === event.seq) {
        row.classList.add("mine");
      }
      row.dataset.writer = String(event.writer);
      row.dataset.seq = String(event.seq);
      const check = document.createElement("td");
      check.className = "check";
      const mark = el("span", event.verified ? "✓" : "✗", event.verified ? "ok" : "bad");
      mark.title = event.verified ? t("entryVerified") : t("entryNotVerified");
      check.append(mark);
      if (!event.verified || event.problem) {
        check.append(" ", el("span", event.problem || t("entryNotVerified"), "problem"));
      }
      const detailsCell = document.createElement("td");
      if (event.details && typeof event.details === "object" && Object.keys(event.details).length) {
        const fold = document.createElement("details");
        fold.append(el("summary", t("show")), el("pre", JSON.stringify(event.details, null, 2)));
        detailsCell.append(fold);
      } else if (event.details != null && typeof event.details !== "object") {
        detailsCell.textContent = String(event.details);
      }
      if (event.entry_hash) detailsCell.title = `entry_hash ${event.entry_hash}`;
      row.append(
        el("td", event.time ?? ""),
        el("td", `${event.writer}#${event.seq}`, "mono"),
        el("td", event.event ?? ""),
        el("td", event.actor ?? ""),
        check,
        detailsCell,
      );
      body.append(row);
    }
    $("custody-status").textContent = events.length ? t("custodyCount", { n: events.length })
      : t("custodyEmpty");
  }

  // ---------------------------------------------------------------- reason dialog and grants

  /** Ask for the reason in an in-page dialog. Resolves to the reason, or null when cancelled. */
  function askReason(promptText) {
    const dialog = $("reason-dialog");
    const form = $("reason-form");
    const input = $("reason-input");
    const errorNode = $("reason-error");
    $("reason-what").textContent = promptText;
    setMessage(errorNode, "");
    return new Promise((resolve) => {
      const finish = (reason) => {
        form.removeEventListener("submit", onSubmit);
        $("reason-cancel").removeEventListener("click", onCancel);
        dialog.removeEventListener("cancel", onEscape);
        if (dialog.open) dialog.close();
        resolve(reason);
      };
      const onSubmit = (event) => {
        event.preventDefault();
        const reason = input.value.trim();
        const length = codePointLength(reason);
        if (length < REASON_MIN || length > REASON_MAX) {
          setMessage(errorNode, t("reasonLength"));
          input.focus();
          return;
        }
        finish(reason);
      };
      const onCancel = () => finish(null);
      const onEscape = (event) => {
        event.preventDefault();
        finish(null);
      };
      form.addEventListener("submit", onSubmit);
      $("reason-cancel").addEventListener("click", onCancel);
      dialog.addEventListener("cancel", onEscape);
      dialog.showModal();
      input.focus();
    });
  }

  /** A grant URL as a same-origin absolute URL, or an error if the server pointed elsewhere. */
  function sameOriginUrl(url) {
    const resolved = new URL(url, window.location.origin);
    if (resolved.origin !== window.location.origin) {
      throw new ApiError(-1, `grant URL is not on this server: ${resolved.origin}`);
    }
    return resolved;
  }

  async function requestGrant(kind) {
    const detail = state.detail;
    if (!detail) return null;
    const id = detail.id;
    const reason = await askReason(t(kind === "proxy" ? "reasonForPlay" : "reasonForDownload",
      { id: detail.short_id || id }));
    if (reason === null || !state.detail || state.detail.id !== id) return null;
    const playerError = $("player-error");
    setMessage(playerError, "");
    setMessage($("audit-ref"), t("granting"));
    try {
      const grant = await authed(`/recordings/${encodeURIComponent(id)}/grants`, {
        method: "POST", body: { kind, reason },
      });
      if (!state.detail || state.detail.id !== id) return null;
      state.lastGrant = { kind, audit: grant.audit, expires_at: grant.expires_at };
      renderGrant();
      refreshCustody(id); // the auditor sees their own access appear in the timeline
      return grant;
    } catch (error) {
      setMessage($("audit-ref"), "");
      setMessage(playerError, error instanceof ApiError && error.status === -1
        ? error.message : describeError(error));
      return null;
    }
  }

  function auditRefText(audit) {
    if (!audit) return "?";
    return `${audit.writer}#${audit.seq}`;
  }

  function renderGrant() {
    const node = $("audit-ref");
    const grant = state.lastGrant;
    if (!grant) {
      setMessage(node, "");
      return;
    }
    node.dataset.audit = auditRefText(grant.audit);
    setMessage(node, grant.kind === "proxy"
      ? t("auditRef", { ref: auditRefText(grant.audit), expires: grant.expires_at ?? "" })
      : t("downloadStarted", { ref: auditRefText(grant.audit) }));
  }

  /** A recorded grant of ``kind`` and its same-origin URL, or null (the reason was not given,
   *  the grant was refused, or the URL points elsewhere: each shown to the user). */
  async function grantedUrl(kind) {
    const grant = await requestGrant(kind);
    if (!grant) return null;
    try {
      return sameOriginUrl(grant.url);
    } catch (error) {
      setMessage($("player-error"), error.message);
      return null;
    }
  }

  async function playProxy() {
    const url = await grantedUrl("proxy");
    if (!url) return;
    const video = $("player");
    show(video, true);
    video.src = url.href;
    video.play().catch(() => {
      // autoplay refused: the controls are there for the user to press play
    });
  }

  async function downloadOriginal() {
    const url = await grantedUrl("original");
    if (!url) return;
    url.searchParams.set("download", "1");
    // An attachment response does not replace the page, so the console stays as it is.
    window.location.assign(url.href);
  }

  function stopPlayer() {
    const video = $("player");
    video.pause();
    video.removeAttribute("src");
    video.load();
    show(video, false);
    setMessage($("player-error"), "");
  }

  function onVideoError() {
    const video = $("player");
    if (!video.getAttribute("src")) return; // emptied on purpose
    const code = video.error ? video.error.code : "?";
    setMessage($("player-error"), t("videoError", { code }));
  }

  // ---------------------------------------------------------------- wiring

  function init() {
    state.lang = initialLanguage();
    applyLanguage();

    $("lang").addEventListener("change", (event) => setLanguage(event.target.value));
    $("signin-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("token").value.trim();
      if (token) signIn(token);
    });
    $("sign-out").addEventListener("click", () => signOut());
    $("search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      let params;
      try {
        params = queryFromForm();
      } catch (error) {
        $("search-status").textContent = String(error.message || error);
        return;
      }
      runSearch(params);
    });
    $("more").addEventListener("click", () => {
      if (state.nextCursor && state.query) runSearch(state.query, { append: true });
    });
    $("incidents-form").addEventListener("submit", (event) => {
      event.preventDefault();
      loadIncidents();
    });
    $("incidents-more").addEventListener("click", () => {
      if (state.incidentCursor) loadIncidents({ append: true });
    });
    $("detail-close").addEventListener("click", closeDetail);
    $("play").addEventListener("click", playProxy);
    $("download").addEventListener("click", downloadOriginal);
    $("player").addEventListener("error", onVideoError);

    // A reload within the tab keeps the session: the token is in sessionStorage.
    let saved = null;
    try {
      saved = sessionStorage.getItem(TOKEN_KEY);
    } catch {
      saved = null;
    }
    if (saved) {
      signIn(saved);
    } else {
      $("token").focus();
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
