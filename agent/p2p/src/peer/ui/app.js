"use strict";
// The peer's page: plain DOM, no framework. Every POST carries X-Requested-With (the server
// refuses POSTs without it, so another site cannot drive this page's API).

const $ = (sel) => document.querySelector(sel);

function size(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function cell(row, content) {
  const td = document.createElement("td");
  if (content instanceof Node) td.appendChild(content); else td.textContent = content;
  row.appendChild(td);
  return td;
}

async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (!r.ok) throw new Error(url + ": HTTP " + r.status);
  return r.json();
}

async function postJSON(url, body) {
  const r = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Requested-With": "hostrole-ui" },
    body: JSON.stringify(body),
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || ("HTTP " + r.status));
  return data;
}

async function loadStatus() {
  try {
    const s = await getJSON("/api/status");
    $("#status").textContent = `Peer ${s.peerId} in network ${s.network} (${s.mode}), reachable at ${s.address}`;
  } catch (e) { $("#status").textContent = "Cannot reach the agent: " + e.message; }
}

async function loadFiles() {
  const files = await getJSON("/api/files");
  const body = $("#files tbody");
  body.replaceChildren();
  for (const f of files) {
    const row = document.createElement("tr");
    row.dataset.name = f.name;
    row.dataset.hash = f.hash;
    cell(row, f.name);
    cell(row, size(f.size));
    const code = document.createElement("code");
    code.textContent = f.hash.slice(0, 16) + "…";
    code.title = f.hash;
    cell(row, code);
    cell(row, f.complete ? "yes" : "downloading");
    body.appendChild(row);
  }
}

async function loadPeers() {
  const peers = await getJSON("/api/peers");
  const body = $("#peers tbody");
  body.replaceChildren();
  const now = Date.now() / 1000;
  for (const p of peers) {
    const row = document.createElement("tr");
    cell(row, p.id);
    cell(row, p.address);
    cell(row, p.lastSeen ? Math.max(0, Math.round(now - p.lastSeen)) + " s ago" : "not yet");
    cell(row, String(p.fileCount));
    const printers = document.createElement("ul");
    printers.className = "printers";
    for (const printer of p.printers || []) {
      const item = document.createElement("li");
      item.append(printer.name + " ");
      const url = document.createElement("code");
      url.textContent = printer.url;
      item.appendChild(url);
      printers.appendChild(item);
    }
    cell(row, printers);
    body.appendChild(row);
  }
}

async function loadDownloads() {
  const list = await getJSON("/api/downloads");
  const body = $("#downloads tbody");
  body.replaceChildren();
  for (const d of list) {
    const row = document.createElement("tr");
    row.dataset.hash = d.hash;
    row.dataset.state = d.state;
    cell(row, d.savedAs || d.name);
    const bar = document.createElement("progress");
    bar.max = d.chunksTotal || 1;
    bar.value = d.chunksDone;
    bar.setAttribute("aria-label", `${d.name}: ${d.chunksDone} of ${d.chunksTotal} chunks`);
    const wrap = document.createElement("span");
    wrap.append(bar, ` ${size(d.bytesDone)} / ${size(d.size)}`);
    cell(row, wrap);
    const state = cell(row, d.state + (d.error ? ": " + d.error : ""));
    state.className = "state state-" + d.state;
    cell(row, Object.entries(d.sources).map(([p, n]) => `${p}: ${n}`).join(", ") || "—");
    body.appendChild(row);
  }
}

async function search(event) {
  event.preventDefault();
  const q = $("#search-q").value;
  $("#search-message").textContent = "Searching…";
  try {
    const hits = await getJSON("/api/search?q=" + encodeURIComponent(q));
    const table = $("#results");
    const body = table.querySelector("tbody");
    body.replaceChildren();
    for (const h of hits) {
      const row = document.createElement("tr");
      row.dataset.hash = h.hash;
      cell(row, h.name);
      cell(row, size(h.size));
      cell(row, h.peers.join(", "));
      const button = document.createElement("button");
      button.type = "button";
      button.className = "download-button";
      button.dataset.hash = h.hash;
      button.textContent = h.local ? "In my share" : "Download";
      button.disabled = h.local;
      button.setAttribute("aria-label", "Download " + h.name);
      button.addEventListener("click", () => startDownload(h.hash, button));
      cell(row, button);
      body.appendChild(row);
    }
    table.hidden = hits.length === 0;
    $("#search-message").textContent = hits.length ? `${hits.length} result(s)` : "Nothing found";
  } catch (e) { $("#search-message").textContent = "Search failed: " + e.message; }
}

async function startDownload(hash, button) {
  button.disabled = true;
  try {
    await postJSON("/api/downloads", { hash });
    $("#downloads-message").textContent = "Download started";
    loadDownloads();
  } catch (e) {
    $("#downloads-message").textContent = "Cannot download: " + e.message;
    button.disabled = false;
  }
}

async function upload(event) {
  event.preventDefault();
  const file = $("#upload-file").files[0];
  if (!file) return;
  $("#upload-status").textContent = "Uploading " + file.name + "…";
  try {
    const r = await fetch("/api/upload?name=" + encodeURIComponent(file.name), {
      method: "POST",
      headers: { "X-Requested-With": "hostrole-ui", "Content-Type": "application/octet-stream" },
      body: file,
    });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(data.error || ("HTTP " + r.status));
    $("#upload-status").textContent = "Shared as " + data.name;
    $("#upload-form").reset();
    loadFiles();
  } catch (e) { $("#upload-status").textContent = "Upload failed: " + e.message; }
}

// Limits: the form shows KiB/s, the API takes bytes per second; empty is unlimited (null).
function kib(bytes) { return bytes == null ? "" : String(Math.round(bytes / 1024)); }
function rate(text) { return text.trim() === "" ? null : Math.round(Number(text) * 1024); }
function describe(l) {
  const r = (v) => v == null ? "unlimited" : size(v) + "/s";
  return `upload ${r(l.uploadBytesPerSecond)}, download ${r(l.downloadBytesPerSecond)}, ` +
    `upload slots ${l.uploadSlots == null ? "default" : l.uploadSlots}`;
}

async function loadLimits() {
  const l = await getJSON("/api/limits");
  $("#limit-upload").value = kib(l.uploadBytesPerSecond);
  $("#limit-download").value = kib(l.downloadBytesPerSecond);
  $("#limit-slots").value = l.uploadSlots == null ? "" : String(l.uploadSlots);
  $("#limits-message").textContent = `In force: ${describe(l)}. Configured: ${describe(l.configured)}.`;
}

async function applyLimits(event) {
  event.preventDefault();
  const slots = $("#limit-slots").value.trim();
  try {
    const l = await postJSON("/api/limits", {
      uploadBytesPerSecond: rate($("#limit-upload").value),
      downloadBytesPerSecond: rate($("#limit-download").value),
      uploadSlots: slots === "" ? null : Number(slots),
    });
    $("#limits-message").textContent = `Applied: ${describe(l)}.`;
  } catch (e) { $("#limits-message").textContent = "Not applied: " + e.message; }
}

function every(ms, f) {
  const run = () => f().catch(() => {}).finally(() => setTimeout(run, ms));
  run();
}

$("#search-form").addEventListener("submit", search);
$("#upload-form").addEventListener("submit", upload);
$("#limits-form").addEventListener("submit", applyLimits);
loadLimits().catch(() => {});
loadStatus();
every(500, loadDownloads);
every(2000, loadFiles);
every(2000, loadPeers);
