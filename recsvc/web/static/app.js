/* recsvc web page: search the recordings, play one, watch the calls being
   recorded. Plain ES2020, no libraries. Text from the server only ever goes
   into the page through textContent / attributes, never as HTML. */
(() => {
  "use strict";

  const PAGE_SIZE = 50;
  const LIVE_MS = 2000;    // refresh of the live panel
  const HEALTH_MS = 15000; // refresh of the health dot
  // The form's inputs, named like the query parameters of /api/recordings.
  const FIELDS = ["number", "name", "device", "direction", "since", "until", "min_duration", "stop_reason", "order"];
  // How each order reads in the count line (the API's names).
  const ORDER_WORDS = {newest: "newest first", oldest: "oldest first", longest: "longest first", shortest: "shortest first"};
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
    const params = new URLSearchParams();
    for (const name of FIELDS) {
      let value = (query.get(name) || "").trim();
      if (DAY_FIELDS.includes(name) && isDay(value)) value = dayStart(value, name === "until" ? 1 : 0);
      if (value) params.set(name, value);
    }
    const page = parseInt(query.get("page"), 10);
    if (page > 1) params.set("page", String(page));
    return params;
  }

  /** Put a search in the page's URL (a new history entry, or ``replace``
      the current one), then run it. */
  function navigate(params, replace = false) {
    const query = params.toString();
    const url = query ? `/?${query}` : "/";
    if (url !== location.pathname + location.search) {
      if (replace) history.replaceState(null, "", url);
      else history.pushState(null, "", url);
    }
    return runSearch(params);
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
    query.set("page_size", String(PAGE_SIZE));
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
      renderResults(rows, page, Number(data.page_size) || PAGE_SIZE,
                    data.total, data.total_exact === true, data.order, Boolean(data.next));
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
      ? `Recordings ${first}–${first + rows.length - 1}${count}, ${ORDER_WORDS[order] || ORDER_WORDS.newest} · page ${page}`
      : (page > 1 ? `Nothing more on page ${page}.` : "");
    $("prev").disabled = page <= 1;
    $("next").disabled = !more;
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

    const direction = el("td");
    direction.append(directionBadge(row.direction));

    tr.append(
      date, direction,
      partyCell(row.local_number, row.local_name),
      partyCell(row.remote_number, row.remote_name),
      el("td", "mono", row.device || "—"),
      el("td", "mono right", formatDuration(row.duration_s)),
      el("td", "reason", row.stop_reason || ""),
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
      download.hidden = false;
    } else {
      audio.removeAttribute("src");
      download.hidden = true;
    }
    renderDetails(row);
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

  window.addEventListener("popstate", () => {
    const params = searchOf(new URLSearchParams(location.search));
    fillForm(params);
    runSearch(params);
  });

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      clearTimeout(liveTimer);
    } else {
      refreshLive();
      checkHealth();
    }
  });

  // ----------------------------------------------------------------- start

  showZone();
  const initial = searchOf(new URLSearchParams(location.search));
  fillForm(initial);
  runSearch(initial);
  refreshLive();
  setInterval(tickLive, 1000);
  checkHealth();
  setInterval(checkHealth, HEALTH_MS);
})();
