// The dashboard: the job list, a job's page and the run form, over the same JSON API a script uses.
// Hash routes (#/, #/jobs/ID, #/new) so one static page serves all views. Routes this API may not
// have (cancel, per-attempt details, leaderboard history) are asked for and their absence shown.
(function () {
  "use strict";

  var KEY_STORAGE = "kaggle-solver.api-key";
  var PAGE_SIZE = 50;
  var POLL_MS = window.KAGGLE_SOLVER_POLL_MS || 3000;
  var RUNNING = { QUEUED: true, RUNNING: true };
  var view = document.getElementById("view");
  var notice = document.getElementById("notice");
  var timer = null;
  var generation = 0; // bumps on every navigation so a late reply never paints over another view

  // ---- API access -------------------------------------------------------------------------

  function apiKey() {
    try { return window.localStorage.getItem(KEY_STORAGE) || ""; } catch (e) { return ""; }
  }

  function askForKey(message) {
    var dialog = document.getElementById("key-dialog");
    if (dialog.open) return; // polls keep failing while it is open: never wipe what is being typed
    var input = document.getElementById("key-input");
    input.value = apiKey();
    dialog.querySelector("p").textContent = message ||
      "This API asks for a key (the x-api-key header). It is kept in this browser's storage only.";
    if (typeof dialog.showModal === "function") dialog.showModal();
  }

  document.getElementById("key-form").addEventListener("submit", function (event) {
    if (event.submitter && event.submitter.value === "save") {
      try { window.localStorage.setItem(KEY_STORAGE, document.getElementById("key-input").value.trim()); } catch (e) { /* private mode */ }
      route();
    }
  });
  document.getElementById("key-button").addEventListener("click", function () { askForKey(); });

  function ApiError(status, detail) {
    this.status = status;
    this.message = detail;
  }

  // Resolves to the parsed JSON; rejects with ApiError. 401 (this app) and 403 (API Gateway) ask for a key.
  function api(method, path, body) {
    var headers = { accept: "application/json" };
    var key = apiKey();
    if (key) headers["x-api-key"] = key;
    if (body !== undefined) headers["content-type"] = "application/json";
    return fetch(path, { method: method, headers: headers, body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (response) {
        return response.text().then(function (text) {
          var data = null;
          try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
          if (response.ok) return data;
          var detail = data && (data.detail || data.message);
          if (Array.isArray(detail)) detail = detail.map(function (d) { return (d.loc || []).slice(1).join(".") + ": " + d.msg; }).join("; ");
          if (response.status === 401 || response.status === 403) {
            askForKey("The API refused the request (" + response.status + "): enter its key.");
          }
          throw new ApiError(response.status, detail || response.status + " " + response.statusText);
        });
      }, function () {
        throw new ApiError(0, "the API did not answer (network error)");
      });
  }

  // ---- small helpers ----------------------------------------------------------------------

  function esc(text) {
    return String(text === null || text === undefined ? "" : text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function score(value) { return typeof value === "number" && isFinite(value) ? String(+value.toPrecision(6)) : "—"; }
  function money(value) { return typeof value === "number" ? "$" + value.toFixed(value < 1 ? 4 : 2) : "—"; }
  function seconds(value) {
    if (typeof value !== "number" || !isFinite(value)) return "—";
    if (value < 90) return value.toFixed(1) + " s";
    if (value < 5400) return (value / 60).toFixed(1) + " min";
    return (value / 3600).toFixed(1) + " h";
  }
  function when(iso) {
    if (!iso) return "—";
    var date = new Date(iso);
    return isNaN(date) ? iso : date.toLocaleString();
  }
  function duration(job) {
    var start = Date.parse(job.created_at);
    var end = RUNNING[job.status] ? Date.now() : Date.parse(job.updated_at);
    return isNaN(start) || isNaN(end) ? "—" : seconds(Math.max(0, (end - start) / 1000));
  }
  function badge(status) { return '<span class="status status-' + esc(status) + '">' + esc(status) + "</span>"; }
  function author(origin) { return origin === "template" ? "template" : origin ? "Claude (" + esc(String(origin).replace(/^llm-/, "")) + ")" : "—"; }
  function showNotice(text) {
    notice.textContent = text || "";
    notice.hidden = !text;
  }
  function poll(fn) {
    clearTimeout(timer);
    timer = setTimeout(fn, POLL_MS);
  }

  // ---- the job list -----------------------------------------------------------------------

  // cursors[i] is the cursor of page i (page 0 has none); kept across polls so a poll refreshes the page shown.
  var listState = { cursors: [null], page: 0, status: "" };

  function renderList() {
    var mine = generation;
    view.innerHTML =
      '<h1>Jobs</h1><div class="toolbar">' +
      '<label>Status <select id="status-filter"><option value="">all</option><option>QUEUED</option><option>RUNNING</option>' +
      "<option>SUCCEEDED</option><option>FAILED</option><option>CANCELLED</option></select></label>" +
      '<button type="button" id="prev-page">‹ Newer</button><span id="page-label" class="muted"></span>' +
      '<button type="button" id="next-page">Older ›</button><span id="list-updated" class="muted"></span></div>' +
      '<div class="scroll"><table id="jobs"><thead><tr><th>Competition</th><th>Status</th><th>Stage / attempt</th>' +
      '<th class="num">Best CV</th><th class="num">Time</th><th class="num">Cost</th><th class="wide">Started</th></tr></thead>' +
      '<tbody></tbody></table></div><p id="list-empty" class="muted" hidden>No jobs yet: <a href="#/new">start a run</a>.</p>';
    var filter = document.getElementById("status-filter");
    filter.value = listState.status;
    filter.addEventListener("change", function () {
      listState = { cursors: [null], page: 0, status: filter.value };
      load();
    });
    document.getElementById("prev-page").addEventListener("click", function () {
      if (listState.page > 0) { listState.page -= 1; load(); }
    });
    document.getElementById("next-page").addEventListener("click", function () {
      if (listState.cursors[listState.page + 1]) { listState.page += 1; load(); }
    });

    var latest = 0;

    function load() {
      // Paging while a poll is in flight: only the newest request may paint and keep the cursors.
      var request = ++latest;
      clearTimeout(timer);
      var params = "limit=" + PAGE_SIZE;
      var cursor = listState.cursors[listState.page];
      if (cursor) params += "&cursor=" + encodeURIComponent(cursor);
      if (listState.status) params += "&status=" + encodeURIComponent(listState.status);
      api("GET", "jobs?" + params).then(function (page) {
        if (mine !== generation || request !== latest) return;
        listState.cursors = listState.cursors.slice(0, listState.page + 1);
        if (page.next_cursor) listState.cursors.push(page.next_cursor);
        paint(page.jobs);
        showNotice("");
        poll(load);
      }, function (error) {
        if (mine !== generation || request !== latest) return;
        showNotice("Could not load the jobs: " + error.message);
        poll(load);
      });
    }

    function paint(jobs) {
      var rows = jobs.map(function (job) {
        var stage = RUNNING[job.status] ? esc(job.stage) + (job.attempt ? " · attempt " + job.attempt + "/" + job.max_attempts : "") : "";
        return '<tr class="job-row" data-job="' + esc(job.job_id) + '">' +
          '<td><a href="#/jobs/' + encodeURIComponent(job.job_id) + '">' + esc(job.competition) + "</a></td>" +
          "<td>" + badge(job.status) + "</td><td>" + stage + "</td>" +
          '<td class="num">' + score(job.cv_score) + '</td><td class="num">' + duration(job) + "</td>" +
          '<td class="num">' + money(job.cost_usd) + '</td><td class="wide">' + esc(when(job.created_at)) + "</td></tr>";
      });
      view.querySelector("#jobs tbody").innerHTML = rows.join("");
      document.getElementById("list-empty").hidden = jobs.length > 0 || listState.page > 0;
      document.getElementById("prev-page").disabled = listState.page === 0;
      document.getElementById("next-page").disabled = !listState.cursors[listState.page + 1];
      document.getElementById("page-label").textContent = "page " + (listState.page + 1);
      document.getElementById("list-updated").textContent = "updated " + new Date().toLocaleTimeString();
    }

    view.querySelector("#jobs tbody").addEventListener("click", function (event) {
      var row = event.target.closest("tr.job-row");
      if (row && event.target.tagName !== "A") location.hash = "#/jobs/" + encodeURIComponent(row.dataset.job);
    });
    load();
  }

  // ---- a job's page -----------------------------------------------------------------------

  // The product records no metric direction on a job: the job's best score tells it, since the
  // best is the maximum when higher is better and the minimum when lower is.
  function higherIsBetter(job) {
    if (typeof job.higher_is_better === "boolean") return job.higher_is_better;
    var scores = (job.attempts || []).filter(function (a) { return a.ok && typeof a.cv_score === "number"; })
      .map(function (a) { return a.cv_score; });
    if (typeof job.cv_score !== "number" || scores.length < 2) return true;
    var max = Math.max.apply(null, scores);
    var min = Math.min.apply(null, scores);
    return Math.abs(job.cv_score - max) <= Math.abs(job.cv_score - min);
  }

  // Rank thresholds of the Kaggle progression rules (gold, silver, bronze) for n teams.
  function medalRanks(n) {
    if (!n) return null;
    var gold = n < 100 ? Math.ceil(n * 0.1) : n < 250 ? 10 : 10 + Math.floor(n * 0.002);
    var silver = n < 250 ? Math.ceil(n * 0.2) : n < 1000 ? 50 : Math.ceil(n * 0.05);
    var bronze = n < 250 ? Math.ceil(n * 0.4) : n < 1000 ? 100 : Math.ceil(n * 0.1);
    return { gold: gold, silver: silver, bronze: bronze };
  }

  function card(label, value, id) {
    return '<div class="card"' + (id ? ' id="' + id + '"' : "") + '><div class="label">' + esc(label) + '</div><div class="value">' + value + "</div></div>";
  }

  function renderJob(jobId) {
    var mine = generation;
    // What the page learnt besides the status; kept here because each poll repaints the page.
    var extras = { logs: null, attemptRoute: null, history: undefined, open: {}, action: { text: "", error: false } };
    view.innerHTML = '<p class="muted">Loading job ' + esc(jobId) + "…</p>";

    function load() {
      api("GET", "status/" + encodeURIComponent(jobId)).then(function (job) {
        if (mine !== generation) return;
        paint(job);
        showNotice("");
        loadLogs(job);
        if (extras.history === undefined) loadHistory(job);
        if (RUNNING[job.status]) poll(load);
      }, function (error) {
        if (mine !== generation) return;
        if (error.status === 404) {
          view.innerHTML = '<h1>Job not found</h1><p class="error">' + esc(error.message) + '</p><p><a href="#/">Back to the jobs</a></p>';
          return;
        }
        showNotice("Could not load the job: " + error.message);
        poll(load);
      });
    }

    function loadLogs(job) {
      if (!job.attempts.length) return;
      api("GET", "logs/" + encodeURIComponent(jobId)).then(function (logs) {
        if (mine !== generation) return;
        extras.logs = logs.attempts;
        paintLogs();
      }, function () { /* log tails are optional: the attempts table stands without them */ });
    }

    function loadHistory(job) {
      extras.history = null;
      api("GET", "leaderboards/" + encodeURIComponent(job.competition)).then(function (board) {
        if (mine !== generation) return;
        extras.history = board;
        paintLeaderboard(job);
      }, function (error) {
        if (mine !== generation) return;
        extras.history = { unavailable: error.status === 404 || error.status === 405 ? "no leaderboard snapshot for this competition" : error.message };
        paintLeaderboard(job);
      });
    }

    var lastJob = null;

    function paint(job) {
      lastJob = job;
      var running = RUNNING[job.status];
      if (!running && !extras.action.error) extras.action.text = "";
      var llm = job.llm_usage || {};
      var tokens = llm.total_tokens || ((llm.input_tokens || 0) + (llm.output_tokens || 0));
      var download = job.submission_url
        ? '<a id="download" class="value" href="' + esc(job.submission_url) + '" download>submission.csv</a>'
        : '<span class="muted">' + (job.status === "FAILED" ? "none (the job failed)" : job.status === "CANCELLED" ? "none (the job was cancelled)" : "not yet") + "</span>";
      view.innerHTML =
        '<p><a href="#/">‹ Jobs</a></p><h1>' + esc(job.competition) + " " + badge(job.status) + "</h1>" +
        '<p class="muted wrap">' + esc(job.message) + "</p>" +
        '<div class="toolbar" id="actions">' +
        (running ? '<button type="button" class="danger" id="cancel">Cancel job</button>' : "") +
        '<span id="action-result"' + (extras.action.error ? ' class="error"' : "") + ">" + esc(extras.action.text) + "</span></div>" +
        '<div class="cards">' +
        card("Best CV score", score(job.cv_score), "best-score") +
        card("Stage", running ? esc(job.stage) + (job.attempt ? " · attempt " + job.attempt + "/" + job.max_attempts : "") : esc(job.stage)) +
        card("Time", duration(job) + ' <span class="muted">of ' + seconds(job.time_limit) + "</span>") +
        card("Cost", money(job.cost_usd) + '<div class="label">compute ' + money(job.compute_cost_usd) + " · " + seconds(job.compute_seconds) +
          (tokens ? " · " + tokens + " tokens" : "") + "</div>") +
        card("Submission", download) +
        card("Compute", esc(job.compute)) +
        "</div>" +
        '<h2>Scores over time</h2><div class="chart" id="chart">' +
        window.scoreChartSvg(job.attempts, { higherIsBetter: higherIsBetter(job), finalScore: job.cv_score, finalLabel: "best" }) + "</div>" +
        "<h2>Attempts</h2>" + attemptsTable(job) +
        '<h2>Leaderboard</h2><div id="leaderboard"></div>' +
        '<h2>Logs</h2><div id="logs"><p class="muted">' + (job.attempts.length ? "loading…" : "no attempt has run yet") + "</p></div>" +
        '<p class="muted">Started ' + esc(when(job.created_at)) + " · updated " + esc(when(job.updated_at)) + " · job " + esc(job.job_id) + "</p>";
      var cancel = document.getElementById("cancel");
      if (cancel) cancel.addEventListener("click", function () { cancelJob(job); });
      paintLeaderboard(job);
      paintLogs();
    }

    function attemptsTable(job) {
      if (!job.attempts.length) return '<p class="muted">No attempt has finished yet.</p>';
      var hasClaim = job.attempts.some(function (a) { return a.claimed_cv_score !== undefined && a.claimed_cv_score !== null; });
      var hasIsolation = job.attempts.some(function (a) { return a.isolation; });
      var rows = job.attempts.map(function (a) {
        var isolation = a.isolation && typeof a.isolation === "object" ? Object.keys(a.isolation).filter(function (k) { return a.isolation[k]; }).join(", ") : a.isolation;
        return "<tr><td>" + a.number + "</td><td>" + esc(a.program) + "</td><td>" + author(a.origin) + "</td>" +
          '<td class="num">' + (a.ok ? score(a.cv_score) : "—") + "</td>" +
          (hasClaim ? '<td class="num">' + score(a.claimed_cv_score) + "</td>" : "") +
          '<td class="num">' + seconds(a.seconds) + "</td>" +
          (hasIsolation ? "<td>" + esc(isolation || "—") + "</td>" : "") +
          '<td class="reason">' + (a.ok ? "ok" : '<span class="error">' + esc(a.reason || "failed") + "</span>") + "</td></tr>";
      });
      return '<div class="scroll"><table id="attempts"><thead><tr><th>#</th><th>Program</th><th>Written by</th><th class="num">CV (product)</th>' +
        (hasClaim ? '<th class="num">CV (program\'s claim)</th>' : "") + '<th class="num">Seconds</th>' +
        (hasIsolation ? "<th>Isolation</th>" : "") + "<th>Result</th></tr></thead><tbody>" + rows.join("") + "</tbody></table></div>";
    }

    function paintLeaderboard(job) {
      var box = document.getElementById("leaderboard");
      if (!box) return;
      var lb = job.leaderboard;
      var parts = [];
      if (lb && lb.rank) {
        var medals = lb.medal_thresholds || medalRanks(lb.n_teams);
        parts.push('<div class="cards">' +
          card("Would rank", esc(lb.rank) + " of " + esc(lb.n_teams), "rank") +
          card("Percentile", typeof lb.percentile === "number" ? lb.percentile.toFixed(1) + "%" : "—") +
          card("Medal", esc(lb.medal || "none") + (lb.above_median ? ' <span class="muted">above median</span>' : "")) +
          (medals ? card("Medal ranks", "gold ≤ " + esc(medals.gold) + " · silver ≤ " + esc(medals.silver) + " · bronze ≤ " + esc(medals.bronze)) : "") +
          "</div>");
        if (lb.fetched_at) parts.push('<p class="muted">Leaderboard fetched ' + esc(when(lb.fetched_at)) + "</p>");
      } else {
        parts.push('<p class="muted">No rank yet: it comes from the public leaderboard once the job has a CV score and a snapshot exists.</p>');
      }
      var board = extras.history;
      var history = board && (board.history || board.snapshots);
      if (history && history.length) {
        parts.push('<div class="scroll"><table id="rank-history"><thead><tr><th>Fetched</th><th class="num">Teams</th><th class="num">Rank</th></tr></thead><tbody>' +
          history.map(function (h) {
            return "<tr><td>" + esc(when(h.fetched_at)) + '</td><td class="num">' + esc(h.n_teams === undefined ? "—" : h.n_teams) +
              '</td><td class="num">' + esc(h.rank === undefined || h.rank === null ? "—" : h.rank) + "</td></tr>";
          }).join("") + "</tbody></table></div>");
      } else if (board && board.unavailable) {
        parts.push('<p class="muted">History: ' + esc(board.unavailable) + ".</p>");
      }
      box.innerHTML = parts.join("");
    }

    function paintLogs() {
      var box = document.getElementById("logs");
      if (!box || !extras.logs) return;
      if (!extras.logs.length) {
        box.innerHTML = '<p class="muted">No log yet.</p>';
        return;
      }
      box.innerHTML = extras.logs.map(function (log) {
        return '<details data-attempt="' + log.number + '"><summary>#' + log.number + " " + esc(log.program) + (log.ok ? "" : ' — <span class="error">' + esc(log.reason || "failed") + "</span>") +
          '</summary><pre class="log-tail">' + esc(log.log_tail || "(empty)") + '</pre><div class="attempt-extra"></div></details>';
      }).join("");
      // A poll repaints the page: log panes the reader opened stay open.
      Array.prototype.forEach.call(box.querySelectorAll("details"), function (details) {
        details.addEventListener("toggle", function () {
          extras.open[details.dataset.attempt] = details.open;
          if (details.open) loadAttempt(details);
        });
        if (extras.open[details.dataset.attempt]) details.open = true;
      });
    }

    // GET /jobs/{id}/attempts/{n}: the program's source; older APIs answer 404/405 and the page says so.
    function loadAttempt(details) {
      var extra = details.querySelector(".attempt-extra");
      if (extras.attemptRoute === false) return;
      api("GET", "jobs/" + encodeURIComponent(jobId) + "/attempts/" + details.dataset.attempt).then(function (attempt) {
        extras.attemptRoute = true;
        var program = attempt && (attempt.program_code || attempt.code || attempt.program_source);
        if (program) extra.innerHTML = "<p>Program</p><pre>" + esc(program) + "</pre>";
        if (attempt && attempt.submission_url) extra.innerHTML += '<p><a href="' + esc(attempt.submission_url) + '" download>this attempt\'s submission.csv</a></p>';
      }, function (error) {
        if (error.status === 405 || error.status === 404) {
          extras.attemptRoute = false;
          extra.innerHTML = '<p class="muted">This API does not serve attempt programs.</p>';
        }
      });
    }

    function cancelJob(job) {
      if (!window.confirm("Cancel the job on " + job.competition + "?")) return;
      document.getElementById("cancel").disabled = true;
      api("DELETE", "jobs/" + encodeURIComponent(jobId)).then(function () {
        extras.action = { text: "Cancelling…", error: false };
        load();
      }, function (error) {
        // 405, or the framework's bare 404 for a path it has no route for: an API without cancelling.
        var noRoute = error.status === 405 || (error.status === 404 && error.message === "Not Found");
        extras.action = {
          text: noRoute ? "This API cannot cancel jobs (DELETE /jobs/{id} answered " + error.status + ")." : "Could not cancel: " + error.message,
          error: true,
        };
        if (lastJob) paint(lastJob);
      });
    }

    load();
  }

  // ---- the run form -----------------------------------------------------------------------

  function renderForm() {
    view.innerHTML =
      '<h1>Start a run</h1><form class="run" id="run-form">' +
      '<label for="run-url">Competition URL</label><input id="run-url" name="url" required placeholder="https://www.kaggle.com/competitions/titanic">' +
      '<label for="run-time">Time limit (seconds)</label><input id="run-time" name="time_limit" type="number" min="10" placeholder="the deployment\'s default">' +
      '<label for="run-attempts">Attempts at most</label><input id="run-attempts" name="max_attempts" type="number" min="1" placeholder="the deployment\'s default">' +
      '<label for="run-compute">Compute</label><select id="run-compute" name="compute"><option>auto</option><option>cpu</option><option>gpu</option></select>' +
      '<label for="run-key">Idempotency key</label><input id="run-key" name="idempotency_key" maxlength="128">' +
      '<div class="hint">optional: the same key always names the same job, so a repeated submit starts nothing new</div>' +
      '<p><button class="primary" type="submit" id="run-submit">Start</button> <span id="run-result"></span></p></form>';
    var form = document.getElementById("run-form");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var body = { url: form.url.value.trim(), compute: form.compute.value };
      if (form.time_limit.value) body.time_limit = Number(form.time_limit.value);
      if (form.max_attempts.value) body.max_attempts = Number(form.max_attempts.value);
      if (form.idempotency_key.value.trim()) body.idempotency_key = form.idempotency_key.value.trim();
      var out = document.getElementById("run-result");
      document.getElementById("run-submit").disabled = true;
      out.textContent = "Starting…";
      out.className = "muted";
      api("POST", "run", body).then(function (started) {
        location.hash = "#/jobs/" + encodeURIComponent(started.job_id);
      }, function (error) {
        document.getElementById("run-submit").disabled = false;
        out.className = "error";
        out.textContent = error.message;
      });
    });
  }

  // ---- routing ----------------------------------------------------------------------------

  function route() {
    generation += 1;
    clearTimeout(timer);
    showNotice("");
    var hash = location.hash || "#/";
    var job = hash.match(/^#\/jobs\/([^/]+)$/);
    if (job) renderJob(decodeURIComponent(job[1]));
    else if (hash === "#/new") renderForm();
    else renderList();
  }

  window.addEventListener("hashchange", route);
  route();
})();
