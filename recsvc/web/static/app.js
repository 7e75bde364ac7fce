/* recsvc web page: search the recordings, play one, watch the calls being
   recorded. Plain ES2020, no libraries. Text from the server only ever goes
   into the page through textContent / attributes, never as HTML. */
(() => {
  "use strict";

  const PAGE_SIZE = 50;     // the default; the form's "Per page" chooses another
  const LIVE_MS = 2000;    // refresh of the live panel
  const HEALTH_MS = 15000; // refresh of the health dot
  // The form's inputs, named like the query parameters of /api/recordings.
  const FIELDS = ["number", "name", "device", "direction", "since", "until", "min_duration",
                  "stop_reason", "note", "tag", "order", "page_size"];
  // How each order reads in the count line (the API's names).
  const ORDER_WORDS = {newest: "newest first", oldest: "oldest first", longest: "longest first",
                       shortest: "shortest first"};
  const COLUMN_WORDS = {direction: "direction", local: "local number", remote: "remote number",
                        device: "device", stop_reason: "stop reason"};
  // A column heading's orders: the first click's, then the other.
  const HEADING_ORDERS = {date: ["newest", "oldest"], duration: ["longest", "shortest"]};
  // The audit trail's actions (recsvc.access.audit.ACTIONS).
  const AUDIT_ACTIONS = ["search", "play", "download", "export", "note", "hold", "release",
                         "erase", "login", "login_failed", "logout", "user_add", "user_change",
                         "user_password", "user_remove", "refused"];
  const AUDIT_FIELDS = ["actor", "action", "target", "since", "until"];
  const AUDIT_PAGE = 100;
  const SKIP_SECONDS = 5;
  // The most of a call's decoded audio read to draw its waveform (16-bit
  // PCM: about 17 minutes at 8 kHz); a longer call shows its beginning.
  const WAVEFORM_BYTES = 16 * 1024 * 1024;
  // The From / To days: on the form a day in the shown zone, in the URL and
  // to the API the start of that day (of the day after To) with its offset.
  const DAY_FIELDS = ["since", "until"];
  const ZONE_KEY = "recsvc.timeZone"; // localStorage: "local" or "utc"
  const BROWSER_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  const MEDIA_ERRORS = {
    1: "playback aborted", 2: "network error", 3: "the audio cannot be decoded",
    4: "the audio cannot be loaded",
  };

  const $ = (id) => document.getElementById(id);
  const form = $("search");
  const results = $("results").tBodies[0];
  const audio = $("audio");
  const records = new WeakMap(); // result <tr> -> its recording row

  let current = new URLSearchParams(); // the search on screen (filters and page)
  // The cursor after each page of the search on screen seen so far (the
  // API's "next"), by page number: the page after it is asked for by it.
  let cursors = {search: null, after: new Map()};
  let searchSeq = 0;                   // only the newest search may render
  let selected = null;                 // {id, file} of the recording in the player
  let selectedRow = null;              // its row, for the player's time line
  let liveTimer = 0;
  let liveBusy = false;
  let liveOk = true;
  let zone = storedZone();             // the zone times are shown in: "local" or "utc"
  // Who is signed in (/api/me): what the page offers follows their rights.
  let me = {user: "-", role: "admin", rights: ["search", "play", "download", "export", "note",
            "hold", "erase", "users", "audit"], signed_in: false};
  let auditBefore = [];                // the audit pages seen: each one's "before"
  let waveform = null;                 // {peaks, seconds} of the selected call
  let waveformSeq = 0;

  // ---------------------------------------------------------------- helpers

  /** A new element, with a class and text if given. */
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  /** Seconds as m:ss (h:mm:ss from an hour on). */
  function formatDuration(seconds) {
    const total = Math.max(0, Math.floor(Number(seconds) || 0));
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const ss = String(total % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
  }

  // ------------------------------------------------------------ time zone

  /** The zone chosen before (localStorage), else the browser's. */
  function storedZone() {
    try {
      return localStorage.getItem(ZONE_KEY) === "utc" ? "utc" : "local";
    } catch {
      return "local"; // storage refused (privacy settings): the browser's zone
    }
  }

  /** The formats of the shown zone (Intl's timeZone: undefined is the browser's). */
  function formatsOf(shown) {
    const timeZone = shown === "utc" ? "UTC" : undefined;
    const day = {weekday: "short", year: "numeric", month: "short", day: "numeric", timeZone};
    const clock = {hour: "2-digit", minute: "2-digit", second: "2-digit", timeZone};
    return {
      date: new Intl.DateTimeFormat(undefined, {...day, ...clock, timeZoneName: "short"}),
      day: new Intl.DateTimeFormat(undefined, day),
      clock: new Intl.DateTimeFormat(undefined, clock),
    };
  }
  let formats = formatsOf(zone);

  const pad = (n, width = 2) => String(n).padStart(width, "0");

  /** A Date as ISO 8601 in the shown zone, with its offset ("…+14:00", "…Z"). */
  function isoInZone(date) {
    if (zone === "utc") return date.toISOString().replace(/\.\d{3}Z$/, "Z");
    const offset = -date.getTimezoneOffset();
    const hours = Math.floor(Math.abs(offset) / 60);
    return `${pad(date.getFullYear(), 4)}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
      `T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}` +
      `${offset < 0 ? "-" : "+"}${pad(hours)}:${pad(Math.abs(offset) % 60)}`;
  }

  /** The first moment of a day ("YYYY-MM-DD", plus ``later`` days) in the
      shown zone, as ISO 8601 with its offset; "" if it is not a day. */
  function dayStart(day, later = 0) {
    const parts = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day);
    if (!parts) return "";
    const [year, month, date] = [Number(parts[1]), Number(parts[2]) - 1, Number(parts[3]) + later];
    // (setFullYear: years below 100 are not taken for 19xx. Local: midnight,
    // or the day's first moment where a clock change skips midnight.)
    const start = new Date(0);
    if (zone === "utc") start.setUTCFullYear(year, month, date);
    else {
      start.setFullYear(year, month, date);
      start.setHours(0, 0, 0, 0);
    }
    return Number.isNaN(start.getTime()) ? "" : isoInZone(start);
  }

  /** The day ("YYYY-MM-DD") in the shown zone of an ISO time, less
      ``earlier`` ms; "" if it is not a time. */
  function dayOf(iso, earlier = 0) {
    const moment = new Date(new Date(iso).getTime() - earlier);
    if (Number.isNaN(moment.getTime())) return "";
    return isoInZone(moment).slice(0, 10);
  }

  const isDay = (text) => /^\d{4}-\d{2}-\d{2}$/.test(text);

  /** The zone's name on the page: the switch, and what the days mean. */
  function showZone() {
    $("zone").value = zone;
    $("zone-local").textContent = `${BROWSER_ZONE} (this browser)`;
    const name = zone === "utc" ? "UTC" : BROWSER_ZONE;
    document.body.dataset.zone = zone;
    for (const node of document.querySelectorAll(".zone-name")) node.textContent = name;
  }

  /** An ISO 8601 time in the shown zone by ``format``, or ``fallback``. */
  function formatWith(format, iso, fallback) {
    const date = new Date(iso);
    return iso && !Number.isNaN(date.getTime()) ? format.format(date) : fallback;
  }

  /** e.g. "Tue, Nov 24, 2026, 09:58:20 GMT+1". */
  const formatDate = (iso) => formatWith(formats.date, iso, iso || "—");
  /** The day ("Tue, Nov 24, 2026"). */
  const formatDay = (iso) => formatWith(formats.day, iso, iso || "—");
  /** The time of day. */
  const formatClock = (iso) => formatWith(formats.clock, iso, "");

  /** Packets lost as a percentage of those expected. */
  function lossPercent(received, lost) {
    const total = (Number(received) || 0) + (Number(lost) || 0);
    return total ? (100 * (Number(lost) || 0)) / total : null;
  }

  function formatBytes(bytes) {
    const n = Number(bytes);
    if (!Number.isFinite(n) || n < 0) return bytes;
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
  }

  /** A URL with one more query parameter. */
  function withParam(url, param) {
    return url + (url.includes("?") ? "&" : "?") + param;
  }

  /** A server-given URL if it is a plain path or http(s) URL, else "". */
  function safeUrl(url) {
    return typeof url === "string" && /^(\/|https?:)/i.test(url) ? url : "";
  }

  /** To the sign-in page, back here after it. */
  function signInAgain() {
    location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search +
                                                        location.hash));
  }

  const may = (right) => me.rights.includes(right);

  /** The session's CSRF token (its cookie), which every change carries. */
  function csrfToken() {
    const found = document.cookie.split("; ").find((part) => part.startsWith("recsvc_csrf="));
    return found ? decodeURIComponent(found.slice("recsvc_csrf=".length)) : "";
  }

  /** POST a JSON body; the answer's JSON, or an Error with the server's message. */
  async function postJson(url, body) {
    let response;
    try {
      response = await fetch(url, {method: "POST", cache: "no-store", body: JSON.stringify(body),
                                   headers: {"Content-Type": "application/json",
                                             Accept: "application/json",
                                             "X-CSRF-Token": csrfToken()}});
    } catch (error) {
      throw new Error(`cannot reach the server (${error.message})`);
    }
    const answer = await response.json().catch(() => null);
    if (response.status === 401 && csrfToken()) signInAgain();
    if (!response.ok) {
      throw new Error(answer && typeof answer.error === "string" ? answer.error
        : `the server answered ${response.status}`);
    }
    return answer;
  }

  /** GET a JSON answer; throws an Error with the server's message if it failed. */
  async function getJson(url) {
    let response;
    try {
      response = await fetch(url, {headers: {Accept: "application/json"}, cache: "no-store"});
    } catch (error) {
      throw new Error(`cannot reach the server (${error.message})`);
    }
    let body = null;
    try {
      body = await response.json();
    } catch { /* not JSON: reported below */ }
    if (response.status === 401 && document.cookie.includes("recsvc_csrf=")) {
      signInAgain();  // (the session ended: its sign-in page, not a browser's prompt)
    }
    if (!response.ok) {
      const message = body && typeof body.error === "string" ? body.error : "";
      throw new Error(message || `the server answered ${response.status} ${response.statusText}`.trim());
    }
    if (body === null || typeof body !== "object") throw new Error("the server's answer is not JSON");
    return body;
  }

  function showError(message) {
    const banner = $("error");
    banner.textContent = message;
    banner.hidden = false;
  }

  function hideError() {
    $("error").hidden = true;
    $("error").textContent = "";
  }

  /** A table cell with a phone number and, below it, the name. */
  function partyCell(number, name) {
    const cell = el("td", "party");
    cell.append(el("span", "num", number || "—"));
    if (name) cell.append(el("span", "pname", name));
    return cell;
  }

  /** An "in" / "out" badge (the arrow comes from the CSS). */
  function directionBadge(direction) {
    const known = direction === "in" || direction === "out";
    const badge = el("span", `dir dir-${known ? direction : "unknown"}`, direction || "?");
    badge.title = direction === "in" ? "incoming call" : direction === "out" ? "outgoing call" : "direction unknown";
    return badge;
  }

  // ------------------------------------------------------- form and history

  /** The search of the form: its non-empty fields (page 1), its days as
      the times they begin and end in the shown zone. */
  function formParams() {
    return searchOf(new URLSearchParams(new FormData(form)));
  }

  /** Fill the form from URLSearchParams (missing fields: empty), times as
      their days in the shown zone (until: the day of its last moment). */
  function fillForm(params) {
    for (const name of FIELDS) {
      let value = params.get(name) ?? "";
      if (DAY_FIELDS.includes(name) && value && !isDay(value)) {
        value = dayOf(value, name === "until" ? 1 : 0);
      }
      form.elements.namedItem(name).value = value;
    }
  }

  /** The known search parameters of a query string (page only when > 1);
      a day in since / until (YYYY-MM-DD) is a day in the shown zone, sent
      as the time it begins (since) or the next one begins (until). */
  function searchOf(query) {
    const params = fieldsOf(query, FIELDS, new URLSearchParams());
    const page = parseInt(query.get("page"), 10);
    if (page > 1) params.set("page", String(page));
    return params;
  }

  /** ``params`` with the non-empty ``names`` of a query string, a day in
      since / until as the time it begins (the next one begins, until). */
  function fieldsOf(query, names, params) {
    for (const name of names) {
      let value = (query.get(name) || "").trim();
      if (DAY_FIELDS.includes(name) && isDay(value)) value = dayStart(value, name === "until" ? 1 : 0);
      if (value) params.set(name, value);
    }
    return params;
  }

  /** Put a search in the page's URL (a new history entry, or ``replace``
      the current one), then run it. */
  function navigate(params, replace = false) {
    const url = pageUrl(params);
    if (url !== location.pathname + location.search) {
      if (replace) history.replaceState(null, "", url);
      else history.pushState(null, "", url);
    }
    return runSearch(params);
  }

  /** The page's URL of a search (and of the recording in the player, ``play``). */
  function pageUrl(params, play = null) {
    const query = new URLSearchParams(params);
    if (play) query.set("play", play);
    const text = query.toString();
    return text ? `/?${text}` : "/";
  }

  /** Show times in another zone ("local" or "utc"), remembered for next
      time. The From / To days on the form now mean days in that zone: the
      search runs again with them. */
  function setZone(shown) {
    zone = shown === "utc" ? "utc" : "local";
    try {
      localStorage.setItem(ZONE_KEY, zone);
    } catch { /* not remembered: still switched */ }
    formats = formatsOf(zone);
    showZone();
    if (selectedRow) showWhen(selectedRow);
    const days = DAY_FIELDS.some((name) => form.elements.namedItem(name).value);
    return navigate(days ? formParams() : current, true);
  }

  // ---------------------------------------------------------------- search

  /** The search of ``params`` but for its page: what its cursors belong to. */
  function searchKey(params) {
    const key = new URLSearchParams(params);
    key.delete("page");
    return key.toString();
  }

  /** Ask the server for one page of recordings and show them. Never rejects. */
  async function runSearch(params) {
    const seq = ++searchSeq;
    current = params;
    const page = parseInt(params.get("page"), 10) || 1;
    const query = new URLSearchParams(params);
    query.set("page_size", params.get("page_size") || String(PAGE_SIZE));
    // A page after one seen: read on from where that one ended (its
    // cursor), however deep; else by its number.
    const search = searchKey(params);
    if (cursors.search !== search) cursors = {search, after: new Map()};
    const after = cursors.after.get(page - 1);
    if (page > 1 && after) {
      query.set("after", after);
      query.delete("page");
    } else {
      query.set("page", String(page));
    }
    document.body.dataset.searchState = "loading";
    $("results").setAttribute("aria-busy", "true");
    try {
      const data = await getJson(`/api/recordings?${query}`);
      if (seq !== searchSeq) return; // a newer search is on its way
      const rows = Array.isArray(data.recordings) ? data.recordings : [];
      if (typeof data.next === "string") cursors.after.set(page, data.next);
      const pageSize = Number(data.page_size) || PAGE_SIZE;
      // (A column's order pages by number: more while the total goes on.)
      const more = Boolean(data.next) || (data.total_exact === true &&
                                          page * pageSize < Number(data.total));
      renderResults(rows, page, pageSize, data.total, data.total_exact === true, data.order, more);
      showSorted(data.order);
      showExport(params);
      hideError();
      document.body.dataset.searchState = "done";
    } catch (error) {
      if (seq !== searchSeq) return;
      results.replaceChildren();
      $("no-results").hidden = true;
      $("count").textContent = "Search failed.";
      $("prev").disabled = page <= 1;
      $("next").disabled = true;
      showError(error.message);
      document.body.dataset.searchState = "error";
    } finally {
      if (seq === searchSeq) $("results").removeAttribute("aria-busy");
    }
  }

  /** Show a page of rows; ``total`` is how many the search finds in all
      (an estimate unless ``exact``), ``more`` whether a page follows. */
  function renderResults(rows, page, pageSize, total, exact, order, more) {
    const fragment = document.createDocumentFragment();
    for (const row of rows) fragment.append(resultRow(row));
    results.replaceChildren(fragment);
    $("no-results").hidden = rows.length > 0;
    const first = (page - 1) * pageSize + 1;
    const count = Number.isFinite(total) ? ` of ${exact ? "" : "about "}${total.toLocaleString("en")}` : "";
    $("count").textContent = rows.length
      ? `Recordings ${first}–${first + rows.length - 1}${count}, ${orderWords(order)} · page ${page}`
      : (page > 1 ? `Nothing more on page ${page}.` : "");
    $("prev").disabled = page <= 1;
    $("next").disabled = !more;
  }

  /** How an order reads in the count line. */
  function orderWords(order) {
    if (ORDER_WORDS[order]) return ORDER_WORDS[order];
    const column = COLUMN_WORDS[String(order || "").replace(/^-/, "")];
    if (!column) return ORDER_WORDS.newest;
    return `by ${column}${String(order).startsWith("-") ? ", reversed" : ""}`;
  }

  /** The column headings say which one the rows are sorted by (aria-sort). */
  function showSorted(order) {
    const shown = order || "newest";
    for (const th of document.querySelectorAll("#results th[data-order]")) {
      const heading = th.dataset.order;
      const pair = HEADING_ORDERS[heading];
      let sorted = "none";
      if (pair) {
        if (shown === pair[0]) sorted = "descending";
        else if (shown === pair[1]) sorted = "ascending";
      } else if (shown === heading) sorted = "ascending";
      else if (shown === `-${heading}`) sorted = "descending";
      th.setAttribute("aria-sort", sorted);
    }
  }

  /** Sort by a column heading: its first order, or the other if it is on. */
  function sortBy(heading) {
    const shown = current.get("order") || "newest";
    const pair = HEADING_ORDERS[heading] || [heading, `-${heading}`];
    const order = shown === pair[0] ? pair[1] : pair[0];
    const params = new URLSearchParams(current);
    params.delete("page");
    if (order === "newest") params.delete("order");
    else params.set("order", order);
    fillForm(params);
    navigate(params);
  }

  /** The export link: the search on screen, every page of it, as CSV. */
  function showExport(params) {
    const link = $("export");
    link.hidden = !may("export");
    const query = new URLSearchParams(params);
    query.delete("page");
    query.delete("page_size");
    link.href = `/api/export${query.toString() ? `?${query}` : ""}`;
  }

  /** One row of the results table. */
  function resultRow(row) {
    const tr = el("tr");
    tr.tabIndex = 0;
    tr.dataset.id = row.id ?? "";
    tr.dataset.file = row.file ?? "";
    records.set(tr, row);

    const date = el("td", "date");
    date.title = row.started_at || "";
    const time = el("time", null, formatDay(row.started_at));
    const started = new Date(row.started_at);
    if (row.started_at && !Number.isNaN(started.getTime())) time.dateTime = isoInZone(started);
    date.append(time, el("span", "pname", formatClock(row.started_at)));
    if (Number(row.part) > 1) date.append(el("span", "part", `part ${row.part}`));

    const direction = el("td", "c-direction");
    direction.append(directionBadge(row.direction));

    tr.append(
      date, direction,
      partyCell(row.local_number, row.local_name),
      partyCell(row.remote_number, row.remote_name),
      el("td", "mono c-device", row.device || "—"),
      el("td", "mono right", formatDuration(row.duration_s)),
      el("td", "reason c-reason", row.stop_reason || ""),
    );
    if (selected && selected.id === row.id && selected.file === row.file) markSelected(tr);
    return tr;
  }

  function markSelected(tr) {
    for (const other of results.querySelectorAll("tr.selected")) {
      other.classList.remove("selected");
      other.removeAttribute("aria-current");
    }
    if (tr) {
      tr.classList.add("selected");
      tr.setAttribute("aria-current", "true");
    }
  }

  function goToPage(delta) {
    const params = new URLSearchParams(current);
    const page = Math.max(1, (parseInt(current.get("page"), 10) || 1) + delta);
    if (page > 1) params.set("page", String(page));
    else params.delete("page");
    navigate(params).then(() => {
      const top = $("results").getBoundingClientRect().top;
      if (top < 0) $("results").scrollIntoView({block: "start"});
    });
  }

  // ---------------------------------------------------------------- player

  /** Select a row of the results, as a click does. */
  function selectRow(tr) {
    const row = records.get(tr);
    if (!row) return;
    markSelected(tr);
    showPlayer(row);
    // (The view is linkable: the recording in the player is in the URL.)
    history.replaceState(null, "", pageUrl(current, row.id));
    if (window.matchMedia("(max-width: 1050px)").matches) {
      $("player").scrollIntoView({block: "nearest", behavior: "smooth"});
    }
  }

  function showPlayer(row) {
    selected = {id: row.id, file: row.file};
    selectedRow = row;
    const who = [row.remote_number, row.remote_name].filter(Boolean).join(" · ") || "an unknown party";
    const verb = row.direction === "in" ? "Call from" : row.direction === "out" ? "Call to" : "Call with";
    $("player-who").textContent = `${verb} ${who}`;
    showWhen(row);
    $("player-hint").hidden = true;
    $("player-body").hidden = false;

    const download = $("download");
    const url = safeUrl(row.audio_url);
    if (url) {
      audio.src = url;
      audio.play().catch(() => {}); // autoplay may be refused: the controls are there
      download.href = withParam(url, "format=original");
      download.setAttribute("download", row.file || "");
      download.hidden = !may("download");
    } else {
      audio.removeAttribute("src");
      download.hidden = true;
    }
    renderDetails(row);
    drawWaveform(url);
    showMarks(row.id);
  }

  // --------------------------------------------------- notes and the hold

  /** The notes and hold of the recording in the player, as the server has them. */
  async function showMarks(id) {
    $("notes").dataset.loaded = "";
    const list = $("notes-list");
    list.replaceChildren();
    $("notes-empty").hidden = false;
    $("held").hidden = true;
    $("note-form").hidden = !may("note");
    $("hold-form").hidden = true;
    try {
      const data = await getJson(`/api/recordings/${encodeURIComponent(id)}`);
      if (!selected || selected.id !== id) return;
      renderNotes(Array.isArray(data.notes) ? data.notes : []);
      renderHeld(data.held || null);
      $("notes").dataset.loaded = id;
    } catch (error) {
      showError(`the recording's notes cannot be read: ${error.message}`);
    }
  }

  function renderNotes(notes) {
    const list = $("notes-list");
    list.replaceChildren(...notes.map((note) => {
      const item = el("li", "note");
      const head = el("div", "note-head");
      head.append(el("span", "note-author", note.author || "-"),
                  el("time", "note-when", formatDate(note.written_at)));
      item.append(head);
      if (note.text) item.append(el("p", "note-text", note.text));
      if (Array.isArray(note.tags) && note.tags.length) {
        const tags = el("div", "tags");
        for (const tag of note.tags) {
          const link = el("a", "tag", tag);
          link.href = pageUrl(new URLSearchParams({tag}));
          tags.append(link);
        }
        item.append(tags);
      }
      return item;
    }));
    $("notes-empty").hidden = notes.length > 0;
  }

  function renderHeld(held) {
    const line = $("held");
    line.hidden = !held;
    line.textContent = held
      ? `On legal hold since ${formatDate(held.held_at)} by ${held.held_by}: ${held.reason}` : "";
    $("hold-form").hidden = !may("hold");
    $("hold-form").dataset.holding = held ? "release" : "hold";
    $("hold-label").textContent = held ? "Release the hold: reason" : "Legal hold: reason";
    $("hold").textContent = held ? "Release" : "Hold";
  }

  async function addNote(event) {
    event.preventDefault();
    if (!selected) return;
    const id = selected.id;
    const text = $("note-text").value;
    const tags = $("note-tags").value.split(/[\s,]+/).filter(Boolean);
    try {
      await postJson(`/api/recordings/${encodeURIComponent(id)}/notes`, {text, tags});
      $("note-text").value = "";
      $("note-tags").value = "";
      hideError();
      await showMarks(id);
    } catch (error) {
      showError(`the note was not added: ${error.message}`);
    }
  }

  async function holdOrRelease(event) {
    event.preventDefault();
    if (!selected) return;
    const id = selected.id;
    const action = $("hold-form").dataset.holding === "release" ? "release" : "hold";
    try {
      await postJson(`/api/recordings/${encodeURIComponent(id)}/${action}`,
                     {reason: $("hold-reason").value});
      $("hold-reason").value = "";
      hideError();
      await showMarks(id);
    } catch (error) {
      showError(`the recording was not ${action === "hold" ? "held" : "released"}: ${error.message}`);
    }
  }

  // -------------------------------------------------------------- waveform

  /** Draw the call's waveform from its decoded audio (16-bit PCM WAV). */
  async function drawWaveform(url) {
    const seq = ++waveformSeq;
    waveform = null;
    paintWaveform();
    if (!url) return;
    try {
      const response = await fetch(url, {headers: {Range: `bytes=0-${WAVEFORM_BYTES - 1}`},
                                         cache: "no-store"});
      if (!response.ok) return;
      const bytes = await response.arrayBuffer();
      if (seq !== waveformSeq) return;
      waveform = peaksOf(bytes);
      paintWaveform();
    } catch { /* no waveform: the player still plays */ }
  }

  /** The loudest sample of each of 1,000 stretches of a 16-bit PCM WAV's
      audio, and how many seconds it holds; null if it is not one. */
  function peaksOf(bytes) {
    const view = new DataView(bytes);
    if (bytes.byteLength < 12 || view.getUint32(0, false) !== 0x52494646) return null; // RIFF
    let offset = 12;
    let rate = 8000;
    while (offset + 8 <= bytes.byteLength) {
      const id = view.getUint32(offset, false);
      const size = view.getUint32(offset + 4, true);
      if (id === 0x666d7420 && offset + 16 <= bytes.byteLength) { // "fmt "
        rate = view.getUint32(offset + 12, true) || rate;
      } else if (id === 0x64617461) { // "data"
        const start = offset + 8;
        const count = Math.floor(Math.min(size, bytes.byteLength - start) / 2);
        const samples = new Int16Array(bytes.slice(start, start + count * 2));
        const columns = 1000;
        const peaks = new Float32Array(columns);
        const per = Math.max(1, Math.ceil(count / columns));
        for (let i = 0; i < count; i += 1) {
          const column = Math.floor(i / per);
          const level = Math.abs(samples[i]) / 32768;
          if (level > peaks[column]) peaks[column] = level;
        }
        return {peaks: peaks.subarray(0, Math.ceil(count / per)), seconds: count / rate};
      }
      offset += 8 + size + (size % 2);
    }
    return null;
  }

  /** Paint the waveform, what has been played in the accent colour. */
  function paintWaveform() {
    const canvas = $("waveform");
    const width = Math.max(1, Math.floor(canvas.clientWidth * (window.devicePixelRatio || 1)));
    const height = Math.max(1, Math.floor(canvas.clientHeight * (window.devicePixelRatio || 1)));
    if (canvas.width !== width) canvas.width = width;
    if (canvas.height !== height) canvas.height = height;
    const context = canvas.getContext("2d");
    context.clearRect(0, 0, width, height);
    canvas.dataset.drawn = waveform ? "yes" : "no";
    if (!waveform || !waveform.peaks.length) return;
    const style = getComputedStyle(canvas);
    const played = audio.duration > 0 ? audio.currentTime / waveform.seconds : 0;
    const middle = height / 2;
    for (let x = 0; x < width; x += 1) {
      const peak = waveform.peaks[Math.floor((x / width) * waveform.peaks.length)] || 0;
      const half = Math.max(0.5, peak * middle);
      context.fillStyle = x / width <= played ? style.getPropertyValue("--accent")
        : style.getPropertyValue("--muted");
      context.fillRect(x, middle - half, 1, half * 2);
    }
  }

  /** A click on the waveform plays from there. */
  function seekFromWaveform(event) {
    if (!waveform || !(audio.duration > 0)) return;
    const box = $("waveform").getBoundingClientRect();
    const share = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
    audio.currentTime = Math.min(audio.duration, share * waveform.seconds);
    paintWaveform();
  }

  /** The player's keys: play/pause, skip back and on, to the search. */
  function playerKeys(event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target instanceof HTMLElement &&
        (target.closest("input, textarea, select, [contenteditable]"))) return;
    if (event.key === "/") {
      event.preventDefault();
      form.elements.namedItem("number").focus();
      return;
    }
    if (!audio.getAttribute("src")) return;
    if (event.key === "k" || (event.key === " " && !(target instanceof HTMLElement &&
                                                      target.closest("button, a, tr")))) {
      event.preventDefault();
      if (audio.paused) audio.play().catch(() => {});
      else audio.pause();
    } else if (event.key === "j" || event.key === "l") {
      event.preventDefault();
      const step = event.key === "j" ? -SKIP_SECONDS : SKIP_SECONDS;
      const end = Number.isFinite(audio.duration) ? audio.duration : Infinity;
      audio.currentTime = Math.min(end, Math.max(0, audio.currentTime + step));
    }
  }

  /** The player's line under the title: when, how long, which part. */
  function showWhen(row) {
    const when = $("player-when");
    when.textContent = [formatDate(row.started_at), formatDuration(row.duration_s),
      Number(row.part) > 1 ? `part ${row.part}` : ""].filter(Boolean).join(" · ");
    when.title = row.started_at || "";
  }

  function renderDetails(row) {
    const loss = lossPercent(row.packets_received, row.packets_lost);
    const local = [row.local_number, row.local_name].filter(Boolean).join(" · ");
    const items = [
      ["ID", row.id, true],
      ["Node", row.node, true],
      ["Local", local],
      ["Device", row.device, true],
      ["Codec", row.codec],
      ["Packets received", row.packets_received, true],
      ["Packets lost", row.packets_lost == null ? null
        : `${row.packets_lost}${loss === null ? "" : ` (${loss.toFixed(1)} %)`}`, true],
      ["Jitter", row.jitter_ms == null ? null : `${Number(row.jitter_ms).toFixed(1)} ms`, true],
      ["Gaps filled", row.gaps && Number(row.gaps.count)
        ? `${row.gaps.count} (${Math.round(Number(row.gaps.filled_ms) || 0)} ms)` : null, true],
      ["Late, duplicate", row.packets_late || row.packets_duplicate
        ? `${row.packets_late || 0}, ${row.packets_duplicate || 0}` : null, true],
      ["DTMF", Array.isArray(row.dtmf) && row.dtmf.length
        ? row.dtmf.map((press) => `${press.digit} at ${formatDuration(press.offset_s)}`)
          .join(", ") : null, true],
      ["Stopped by", row.stopped_by],
      ["Stop reason", row.stop_reason],
      ["Status", row.status],
      ["File", row.file, true],
      ["Size", row.bytes == null ? null : formatBytes(row.bytes)],
    ];
    const list = $("details");
    list.replaceChildren();
    for (const [label, value, mono] of items) {
      if (value === undefined || value === null || value === "") continue;
      list.append(el("dt", null, label), el("dd", mono ? "mono" : null, value));
    }
  }

  /** The audio element only gives a code; the server's JSON may say why. */
  async function audioFailed() {
    const src = audio.getAttribute("src");
    if (!src || !audio.error) return;
    const code = audio.error.code;
    const base = `cannot play the recording (media error code ${code}: ${MEDIA_ERRORS[code] || "unknown"})`;
    showError(base);
    try {
      const response = await fetch(src, {headers: {Range: "bytes=0-0"}, cache: "no-store"});
      if (response.ok) return;
      const body = await response.json();
      if (body && typeof body.error === "string" && audio.getAttribute("src") === src) {
        showError(`${base}: ${body.error}`);
      }
    } catch { /* keep the message we have */ }
  }

  // ------------------------------------------------------------ live panel

  /** Fetch the calls being recorded, then again in LIVE_MS (not while hidden). */
  async function refreshLive() {
    clearTimeout(liveTimer);
    if (document.hidden || liveBusy) return;
    liveBusy = true;
    try {
      const data = await getJson("/api/active");
      renderLive(Array.isArray(data.active) ? data.active : []);
      setLiveOk(true);
    } catch {
      setLiveOk(false); // quietly: no error banner for the live view
    } finally {
      liveBusy = false;
      if (!document.hidden) liveTimer = setTimeout(refreshLive, LIVE_MS);
    }
  }

  function setLiveOk(ok) {
    liveOk = ok;
    $("live-status").hidden = ok;
    $("live-table").classList.toggle("stale", !ok);
  }

  function renderLive(active) {
    $("live-count").textContent = String(active.length);
    $("live").classList.toggle("recording", active.length > 0);
    const now = performance.now();
    $("live-table").tBodies[0].replaceChildren(...active.map((call) => liveRow(call, now)));
    $("live-table").hidden = active.length === 0;
    $("live-empty").hidden = active.length > 0;
  }

  function liveRow(call, now) {
    const tr = el("tr");
    tr.dataset.id = call.id ?? "";
    const remote = partyCell(call.remote_number, call.remote_name);
    remote.prepend(directionBadge(call.direction));
    const elapsed = el("td", "mono right elapsed", formatDuration(call.seconds));
    elapsed.dataset.seconds = String(Number(call.seconds) || 0);
    elapsed.dataset.at = String(now);
    const loss = lossPercent(call.packets_received, call.packets_lost);
    const packets = el("td", "mono right", String(call.packets_received ?? "—"));
    const lossLine = el("span", "pname", loss === null ? "" : `${loss.toFixed(1)} % lost`);
    if (loss !== null && loss >= 1) lossLine.classList.add("warn");
    packets.title = `${call.packets_lost ?? 0} packets lost`;
    packets.append(lossLine);
    const local = partyCell(call.local_number, call.local_name);
    const device = el("span", "pname mono", call.device || "—");
    if (call.codec) device.title = `codec ${call.codec}, RTP port ${call.rtp_port ?? "?"}`;
    local.append(device);
    tr.append(remote, local, elapsed, packets);
    return tr;
  }

  /** Advance the elapsed times between refreshes. */
  function tickLive() {
    if (document.hidden || !liveOk) return;
    const now = performance.now();
    for (const cell of document.querySelectorAll("#live-table td.elapsed")) {
      const seconds = Number(cell.dataset.seconds) + (now - Number(cell.dataset.at)) / 1000;
      cell.textContent = formatDuration(seconds);
    }
  }

  // ---------------------------------------------------------------- health

  async function checkHealth() {
    if (document.hidden) return;
    const health = $("health");
    let state = "unknown";
    let text = "server unreachable";
    try {
      const response = await fetch("/healthz", {cache: "no-store"});
      const body = await response.json().catch(() => ({}));
      const ok = response.ok && body.status === "ok";
      state = ok ? "ok" : "bad";
      text = ok ? "server ok" : `server: ${body.status || response.status}`;
    } catch { /* unreachable */ }
    health.dataset.state = state;
    health.title = text;
    $("health-text").textContent = text;
  }

  // ----------------------------------------------------------- audit view

  /** The audit trail's filters and page of a query string. */
  function auditParams(query) {
    const params = fieldsOf(query, AUDIT_FIELDS, new URLSearchParams({view: "audit"}));
    const before = parseInt(query.get("before"), 10);
    if (before > 0) params.set("before", String(before));
    return params;
  }

  /** Show the audit trail of ``params`` (its filters, and the page before ``before``). */
  async function runAudit(params) {
    const form = $("audit-search");
    for (const name of AUDIT_FIELDS) {
      let value = params.get(name) || "";
      if (DAY_FIELDS.includes(name) && value && !isDay(value)) {
        value = dayOf(value, name === "until" ? 1 : 0);
      }
      form.elements.namedItem(name).value = value;
    }
    const query = new URLSearchParams(params);
    query.delete("view");
    query.set("limit", String(AUDIT_PAGE));
    document.body.dataset.auditState = "loading";
    try {
      const data = await getJson(`/api/audit?${query}`);
      const rows = Array.isArray(data.rows) ? data.rows : [];
      $("audit-table").tBodies[0].replaceChildren(...rows.map(auditRow));
      const before = params.get("before");
      $("audit-count").textContent = rows.length
        ? `Entries ${rows[0].seq} to ${rows[rows.length - 1].seq}, newest first`
        : "No entries.";
      $("audit-older").disabled = !data.next;
      $("audit-older").dataset.before = data.next ? String(data.next) : "";
      $("audit-newest").disabled = !before;
      hideError();
      document.body.dataset.auditState = "done";
    } catch (error) {
      $("audit-table").tBodies[0].replaceChildren();
      $("audit-count").textContent = "The audit trail cannot be read.";
      showError(error.message);
      document.body.dataset.auditState = "error";
    }
  }

  function auditRow(entry) {
    const tr = el("tr");
    tr.dataset.seq = String(entry.seq);
    tr.dataset.action = entry.action || "";
    const when = el("td", "date", formatDate(entry.at));
    when.title = entry.at || "";
    const detail = entry.detail && Object.keys(entry.detail).length
      ? JSON.stringify(entry.detail) : "";
    tr.append(el("td", "mono right", entry.seq), when, el("td", null, entry.actor),
              el("td", "mono", entry.source), el("td", null, entry.action),
              el("td", "mono", entry.target || ""), el("td", "mono detail", detail));
    return tr;
  }

  function goAudit(params) {
    history.pushState(null, "", pageUrl(params));
    return runAudit(params);
  }

  /** Which view the URL asks for ("audit", "admin" or the recordings), as the user may. */
  function viewOf(query) {
    const asked = query.get("view");
    if (asked === "admin" && may("users")) return "admin";
    if (asked === "audit" && may("audit")) return "audit";
    if (!may("search")) return may("audit") ? "audit" : "admin";
    return "recordings";
  }

  /** Show the view the URL names, and run its search. */
  function showView() {
    const query = new URLSearchParams(location.search);
    const view = viewOf(query);
    $("audit-view").hidden = view !== "audit";
    $("admin-view").hidden = view !== "admin";
    $("recordings-view").hidden = view !== "recordings";
    $("view-recordings").hidden = !may("search");
    $("view-audit").hidden = !may("audit");
    $("view-admin").hidden = !may("users");
    $("view-recordings").toggleAttribute("aria-current", view === "recordings");
    $("view-audit").toggleAttribute("aria-current", view === "audit");
    $("view-admin").toggleAttribute("aria-current", view === "admin");
    if (view === "audit") return runAudit(auditParams(query));
    if (view === "admin") return showUsers();
    const params = searchOf(query);
    fillForm(params);
    return runSearch(params).then(() => openLinked(query.get("play")));
  }

  /** The recording a URL names (play=ID): its row if on the page, else its files. */
  async function openLinked(id) {
    if (!id || (selected && selected.id === id)) return;
    const tr = [...results.querySelectorAll("tr")].find((row) => row.dataset.id === id);
    if (tr) {
      markSelected(tr);
      showPlayer(records.get(tr));
      return;
    }
    try {
      const data = await getJson(`/api/recordings/${encodeURIComponent(id)}`);
      const files = Array.isArray(data.files) ? data.files : [];
      if (files.length) showPlayer(files[0]);
    } catch (error) {
      showError(error.message);
    }
  }

  // ----------------------------------------------------------- admin view

  /** The users, as the server has them. */
  async function showUsers() {
    document.body.dataset.usersState = "loading";
    try {
      const data = await getJson("/api/users");
      const users = Array.isArray(data.users) ? data.users : [];
      $("users-table").tBodies[0].replaceChildren(...users.map(userRow));
      document.body.dataset.usersState = "done";
    } catch (error) {
      showError(error.message);
      document.body.dataset.usersState = "error";
    }
  }

  function userRow(user) {
    const tr = el("tr");
    tr.dataset.name = user.name || "";
    const remove = el("button", null, "Remove");
    remove.type = "button";
    remove.addEventListener("click", () => removeUser(user.name));
    const edit = el("button", null, "Edit");
    edit.type = "button";
    edit.addEventListener("click", () => {
      $("u-name").value = user.name;
      $("u-role").value = user.role;
      $("u-scopes").value = (user.scopes || []).join(" ");
      $("u-password").value = "";
      $("u-password").focus();
    });
    const actions = el("td", "row-actions");
    actions.append(edit, remove);
    tr.append(el("td", "mono", user.name), el("td", null, user.role),
              el("td", "mono", (user.scopes || []).join(" ") || "—"),
              el("td", "date", formatDate(user.changed_at)),
              el("td", null, user.api_token ? "yes" : "—"), actions);
    return tr;
  }

  /** The user form's fields, as the API takes them ("" left out). */
  function userFields() {
    const scopes = $("u-scopes").value.split(/[\s,]+/).filter(Boolean);
    const fields = {role: $("u-role").value, scopes};
    if ($("u-password").value) fields.password = $("u-password").value;
    return fields;
  }

  async function adminDid(action, done) {
    try {
      await action();
      hideError();
      $("u-password").value = "";
      if (done) done();
      await showUsers();
    } catch (error) {
      showError(error.message);
    }
  }

  function addUser(event) {
    event.preventDefault();
    adminDid(() => postJson("/api/users", {name: $("u-name").value.trim(), ...userFields()}),
             () => $("user-form").reset());
  }

  function changeUser() {
    const name = $("u-name").value.trim();
    adminDid(() => postJson(`/api/users/${encodeURIComponent(name)}`, userFields()));
  }

  function removeUser(name) {
    if (!window.confirm(`Remove the user ${name}? Their sessions end.`)) return;
    adminDid(() => postJson(`/api/users/${encodeURIComponent(name)}/remove`, {}));
  }

  async function eraseNumber(event) {
    event.preventDefault();
    const number = $("e-number").value.trim();
    if (!window.confirm(`Erase every recording of ${number}? This cannot be undone.`)) return;
    try {
      const data = await postJson("/api/erase", {number, reason: $("e-reason").value});
      $("erase-said").replaceChildren(...(data.said || []).map((line) => el("li", null, line)));
      hideError();
    } catch (error) {
      showError(error.message);
    }
  }

  // ------------------------------------------------------ who is signed in

  async function whoAmI() {
    try {
      const data = await getJson("/api/me");
      if (Array.isArray(data.rights)) me = data;
    } catch { /* the open page's default: every right */ }
    const signedIn = me.user && me.user !== "-";
    $("who").hidden = !signedIn;
    $("who-name").textContent = signedIn ? `${me.user} · ${me.role}` : "";
    $("logout").hidden = !me.signed_in;
  }

  async function signOut() {
    try {
      await postJson("/logout", {});
    } catch { /* signed out or not: to the sign-in page */ }
    location.assign("/login");
  }

  // ---------------------------------------------------------------- events

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    navigate(formParams());
  });

  $("clear").addEventListener("click", () => {
    form.reset();
    navigate(new URLSearchParams());
    form.elements.namedItem("number").focus();
  });

  $("zone").addEventListener("change", (event) => setZone(event.target.value));
  $("prev").addEventListener("click", () => goToPage(-1));
  $("next").addEventListener("click", () => goToPage(1));
  $("error-close").addEventListener("click", hideError);

  results.addEventListener("click", (event) => {
    const tr = event.target.closest("tr");
    if (tr) selectRow(tr);
  });

  results.addEventListener("keydown", (event) => {
    const tr = event.target.closest("tr");
    if (!tr) return;
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      selectRow(tr);
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const next = event.key === "ArrowDown" ? tr.nextElementSibling : tr.previousElementSibling;
      if (next) next.focus();
    }
  });

  audio.addEventListener("error", audioFailed);
  audio.addEventListener("timeupdate", paintWaveform);
  audio.addEventListener("seeked", paintWaveform);
  $("waveform").addEventListener("click", seekFromWaveform);
  window.addEventListener("resize", paintWaveform);
  document.addEventListener("keydown", playerKeys);
  $("note-form").addEventListener("submit", addNote);
  $("hold-form").addEventListener("submit", holdOrRelease);
  $("logout").addEventListener("click", signOut);
  $("user-form").addEventListener("submit", addUser);
  $("u-change").addEventListener("click", changeUser);
  $("erase-form").addEventListener("submit", eraseNumber);
  for (const th of document.querySelectorAll("#results th[data-order]")) {
    th.querySelector("button").addEventListener("click", () => sortBy(th.dataset.order));
  }
  $("audit-search").addEventListener("submit", (event) => {
    event.preventDefault();
    goAudit(auditParams(new URLSearchParams(new FormData(event.target))));
  });
  $("audit-older").addEventListener("click", (event) => {
    const params = auditParams(new URLSearchParams(location.search));
    params.set("before", event.target.dataset.before);
    goAudit(params);
  });
  $("audit-newest").addEventListener("click", () => {
    const params = auditParams(new URLSearchParams(location.search));
    params.delete("before");
    goAudit(params);
  });
  for (const link of document.querySelectorAll(".view-link")) {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      history.pushState(null, "", link.getAttribute("href"));
      showView();
    });
  }

  window.addEventListener("popstate", showView);

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      clearTimeout(liveTimer);
    } else {
      if (may("search")) refreshLive();
      checkHealth();
    }
  });

  // ----------------------------------------------------------------- start

  showZone();
  for (const action of AUDIT_ACTIONS) {
    const option = el("option", null, action);
    option.value = action;
    $("a-action").append(option);
  }
  whoAmI().then(() => {
    showView();
    if (may("search")) {
      refreshLive();
      setInterval(tickLive, 1000);
    } else {
      $("live").hidden = true;
    }
  });
  checkHealth();
  setInterval(checkHealth, HEALTH_MS);
})();
