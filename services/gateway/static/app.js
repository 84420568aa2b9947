"use strict";
/* The HelloQuitteX page: talks to the JSON API (CSRF header on every change), uploads with
 * resume, and follows progress by Server-Sent Events. No framework, no build step. */
(() => {
  const S = JSON.parse(document.getElementById("strings").textContent);
  const $ = (id) => document.getElementById(id);
  const t = (key, values = {}) => (S[key] || key).replace(/\{(\w+)\}/g, (_, k) => (k in values ? values[k] : `{${k}}`));
  const CHUNK = 4 * 1024 * 1024;
  let me = null, events = null;

  function cookie(name) {
    const m = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return m ? decodeURIComponent(m[1]) : "";
  }

  async function api(method, path, body, extra = {}) {
    const headers = { "X-CSRF-Token": cookie("hqx_csrf"), ...(extra.headers || {}) };
    let payload = body;
    if (body !== undefined && !(body instanceof Blob)) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    const r = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
    if (!r.ok) {
      let err = { code: "http_" + r.status, message: r.statusText };
      try { err = (await r.json()).error || err; } catch (_) { /* not JSON */ }
      const e = new Error(err.message); e.code = err.code; e.status = r.status; throw e;
    }
    return r.status === 204 || r.status === 202 ? null : r.json();
  }

  function reasonText(code, fallback) {
    return S["reason_" + code] || fallback || code;
  }

  function alertError(e) {
    const box = $("alert");
    box.textContent = t("error_generic", { message: reasonText(e.code, e.message) });
    box.hidden = false;
  }

  function busy(button, on) { if (button) button.disabled = on; }

  // --- session ------------------------------------------------------------------------
  async function refresh() {
    const s = await api("GET", "/api/session");
    $("signed-out").hidden = s.authenticated;
    $("signed-in").hidden = !s.authenticated;
    $("personal").hidden = !s.authenticated;
    if (!s.authenticated) { if (events) events.close(); return; }
    me = await api("GET", "/api/me");
    $("x-status").textContent = me.x_proven ? t("x_proven", { username: me.x_username || "" }) : t("x_not_proven");
    if ($("x-prove")) $("x-prove").hidden = me.x_proven;
    for (const net of ["bluesky", "mastodon"]) {
      const ident = me.identities.find((i) => i.network === net);
      const box = $(net === "bluesky" ? "bsky-linked" : "masto-linked");
      box.hidden = !ident;
      box.querySelector("span").textContent = ident ? t("linked_as", { handle: ident.handle || ident.account }) : "";
      $(net === "bluesky" ? "bsky-form" : "masto-form").hidden = !!ident;
      $("auto-" + net).checked = !!me.auto_reconnect[net];
    }
    if (!events) listen();
    loadExtras();
  }

  async function loadExtras() {
    try {
      const share = await api("GET", "/api/me/share");
      $("share").value = share.message;
      const stats = await api("GET", "/api/me/stats");
      const list = $("stats");
      list.replaceChildren();
      for (const [net, s] of Object.entries(stats.networks || {})) {
        const li = document.createElement("li");
        li.textContent = t("stats_line", { network: t("network_" + net), matched: s.followings_matched ?? 0, followers: s.followers_on_network ?? 0 });
        list.append(li);
      }
    } catch (e) { /* extras are optional */ }
  }

  // --- progress (SSE) -------------------------------------------------------------------
  function listen() {
    events = new EventSource("/api/me/progress/stream");
    events.addEventListener("progress", (ev) => render(JSON.parse(ev.data)));
  }

  function render(p) {
    const stage = $("stage");
    stage.dataset.stage = p.stage;
    const g = p.graph || {};
    const reason = p.upload && p.upload.reason;
    stage.textContent = t("stage_" + p.stage, {
      following: g.following_count ?? 0, followers: g.follower_count ?? 0, reason: reasonText(reason, reason),
    });
    if (p.stage === "erased") { if (events) events.close(); return; }
    const list = $("networks");
    list.replaceChildren();
    for (const [net, n] of Object.entries(p.networks || {})) {
      if (!n.linked && !n.done && !n.pending && !n.skipped) continue;
      const li = document.createElement("li");
      li.dataset.network = net;
      li.dataset.done = n.done; li.dataset.pending = n.pending; li.dataset.skipped = n.skipped;
      const parts = [t("net_done", { done: n.done }), t("net_pending", { n: n.pending }), t("net_skipped", { n: n.skipped })];
      if (n.requested) parts.push(t("net_requested", { n: n.requested }));
      if (n.failed) parts.push(t("net_failed", { n: n.failed }));
      let text = `${t("network_" + net)}: ${parts.join(" · ")}`;
      if (n.wait && n.wait.reason === "rate_limit") {
        text += " — " + t("wait_rate_limit", { network: t("network_" + net), per_hour: Math.round(n.wait.per_hour), minutes: n.wait.minutes_left });
      } else if (n.wait) {
        text += " — " + t("wait_paused", { network: t("network_" + net) });
      }
      li.textContent = text;
      list.append(li);
      if (net === "mastodon" && (n.skipped_reasons || {}).follow_cap) $("csv").hidden = false;
    }
    if (p.stage === "done" || p.stage === "following") loadExtras();
  }

  // --- upload -----------------------------------------------------------------------------
  async function upload(ev) {
    ev.preventDefault();
    const file = $("archive").files[0];
    if (!file) return;
    const button = $("upload-button");
    busy(button, true);
    $("alert").hidden = true;
    try {
      let blob = file, slimmed = false;
      if ($("slim").checked) {
        const small = await HqxZip.slim(file);
        await checkOwner(file, small);
        blob = small.blob; slimmed = true;
      }
      const up = await api("POST", "/api/uploads", { size: blob.size, slimmed });
      await send(up.id, blob);
      $("upload-status").textContent = t("upload_done");
    } catch (e) {
      alertError(e);
    } finally {
      busy(button, false);
    }
  }

  async function checkOwner(file, small) {
    // The archive must be the signed-in person's when their X id is proven (ingest checks too).
    if (!me || !me.x_proven || !me.x_account_id) return;
    const account = small.entries.find((e) => /data\/account\.js$/.test(e.name));
    if (!account) return;
    const m = (await HqxZip.text(file, account)).match(/"accountId"\s*:\s*"(\d+)"/);
    if (m && m[1] !== me.x_account_id) { const e = new Error("owner_mismatch"); e.code = "owner_mismatch"; throw e; }
  }

  async function send(id, blob) {
    const bar = $("upload-progress");
    bar.hidden = false;
    let offset = 0, failures = 0;
    while (offset < blob.size) {
      bar.value = Math.floor((100 * offset) / blob.size);
      $("upload-status").textContent = t("upload_progress", { sent: mb(offset), total: mb(blob.size) });
      try {
        const r = await api("PATCH", `/api/uploads/${id}`, blob.slice(offset, offset + CHUNK), {
          headers: { "Upload-Offset": String(offset), "Content-Type": "application/offset+octet-stream" },
        });
        offset = r.offset; failures = 0;
      } catch (e) {
        if (e.status && e.status !== 409 && e.status < 500) throw e;
        if (++failures > 8) throw e;
        $("upload-status").textContent = t("upload_resume");
        await new Promise((ok) => setTimeout(ok, 500 * failures));
        offset = (await api("GET", `/api/uploads/${id}`)).offset;
      }
    }
    bar.value = 100;
  }

  const mb = (n) => (n / 1048576).toFixed(n < 10485760 ? 1 : 0) + " MB";

  // --- accounts, consent, erase -------------------------------------------------------------
  async function linkBluesky(ev) {
    ev.preventDefault();
    const f = ev.target, button = $("bsky-link");
    busy(button, true);
    try {
      await api("POST", "/api/accounts/bluesky", {
        identifier: f.identifier.value.trim(), app_password: f.app_password.value, pds_url: f.pds_url.value.trim() || null,
      });
      f.app_password.value = "";
      await refresh();
    } catch (e) { alertError(e); } finally { busy(button, false); }
  }

  async function linkMastodon(ev) {
    ev.preventDefault();
    try {
      const r = await api("POST", "/api/accounts/mastodon", { instance: ev.target.instance.value.trim() });
      window.location.assign(r.authorize_url);
    } catch (e) { alertError(e); }
  }

  async function unlink(ev) {
    const net = ev.target.dataset.unlink;
    if (!net) return;
    try { await api("DELETE", `/api/accounts/${net}`); await refresh(); } catch (e) { alertError(e); }
  }

  async function saveConsent(ev) {
    ev.preventDefault();
    const auto = {};
    for (const box of ev.target.querySelectorAll("input[data-network]")) auto[box.dataset.network] = box.checked;
    try { await api("PUT", "/api/me/consent", { auto_reconnect: auto }); $("consent-status").textContent = t("consent_saved"); }
    catch (e) { alertError(e); }
  }

  async function erase(ev) {
    ev.preventDefault();
    const word = $("erase-word").value.trim().toUpperCase();
    if (word !== "ERASE" && word !== "EFFACER") { $("erase-word").focus(); return; }
    try {
      await api("DELETE", "/api/me", { confirm: "ERASE" });
      if (events) events.close();
      $("personal").hidden = true; $("signin").hidden = true; $("erased").hidden = false;
    } catch (e) { alertError(e); }
  }

  function init() {
    const err = new URLSearchParams(location.search).get("error");
    if (err) alertError({ code: err, message: err });
    $("anon-signin").addEventListener("click", async () => { try { await api("POST", "/api/session"); await refresh(); } catch (e) { alertError(e); } });
    $("signout").addEventListener("click", async () => { await api("DELETE", "/api/session"); if (events) { events.close(); events = null; } await refresh(); });
    $("upload-form").addEventListener("submit", upload);
    $("bsky-form").addEventListener("submit", linkBluesky);
    $("masto-form").addEventListener("submit", linkMastodon);
    $("consent-form").addEventListener("submit", saveConsent);
    for (const b of document.querySelectorAll("[data-unlink]")) b.addEventListener("click", unlink);
    $("erase").addEventListener("click", () => { $("erase-form").hidden = false; $("erase-word").focus(); });
    $("erase-cancel").addEventListener("click", () => { $("erase-form").hidden = true; });
    $("erase-form").addEventListener("submit", erase);
    $("share-copy").addEventListener("click", () => navigator.clipboard && navigator.clipboard.writeText($("share").value));
    refresh().catch(alertError);
  }

  document.addEventListener("DOMContentLoaded", init);
})();
