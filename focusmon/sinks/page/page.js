// focusmon's live page: polls streams.json, refreshes each card's frame when a newer one
// is kept, and draws the curve from history.json. No build step, nothing from the internet.
"use strict";

const params = new URLSearchParams(location.search);
const single = params.get("stream");  // one stream, full screen, refreshed faster
const every = single === null ? 1000 : 250;  // ms between polls
const curveEvery = single === null ? 5000 : 1000;
const best = new Map();  // stream -> the best score seen since the page opened
const lastCurve = new Map();
const cards = document.getElementById("cards");
const template = document.getElementById("card");
if (single !== null) document.body.classList.add("single");

function path(name) {
  return "streams/" + encodeURIComponent(name) + "/";
}

function card(stream) {
  for (const node of cards.children) {
    if (node.dataset.stream === stream.name) return node;
  }
  const node = template.content.firstElementChild.cloneNode(true);
  node.dataset.stream = stream.name;
  node.querySelector(".name").textContent = stream.name;
  node.querySelector(".focus").href = "?stream=" + encodeURIComponent(stream.name);
  node.querySelector(".reset").addEventListener("click", () => best.delete(stream.name));
  cards.appendChild(node);
  return node;
}

function showTiles(node, tiles) {
  const grid = node.querySelector(".tiles");
  if (!tiles || !tiles.length) { grid.replaceChildren(); return; }
  const rows = tiles.length, cols = tiles[0].length;
  grid.style.gridTemplateRows = `repeat(${rows}, 1fr)`;
  grid.style.gridTemplateColumns = `repeat(${cols}, 1fr)`;
  if (grid.children.length !== rows * cols) {
    grid.replaceChildren(...Array.from({ length: rows * cols }, () => document.createElement("div")));
  }
  tiles.flat().forEach((ratio, k) => {
    grid.children[k].classList.toggle("lost", ratio < 0.5);
    grid.children[k].title = `${Math.round(100 * ratio)} % of its baseline`;
  });
}

function show(stream) {
  const node = card(stream);
  const state = node.querySelector(".state");
  state.textContent = stream.state.replace("_", " ");
  state.dataset.state = stream.state;
  const score = stream.score;
  if (score !== null) {
    // The figure to turn the lens by: sharpness against the best since the page opened.
    const top = Math.max(best.get(stream.name) || 0, score);
    best.set(stream.name, top);
    const share = top > 0 ? score / top : 0;
    node.querySelector(".figure").textContent = `${Math.round(100 * share)} %`;
    node.querySelector(".hold").textContent = `best ${top.toPrecision(3)}`;
    // The meter: sharpness now, and a mark held at the best, on a scale with room above
    // both the best and the baseline (turn the lens: the bar follows, the mark stays).
    const scale = 1.15 * Math.max(top, stream.baseline || 0, 1e-12);
    node.querySelector(".bar").style.width = `${Math.min(100, 100 * score / scale)}%`;
    node.querySelector(".mark").style.left = `${Math.min(100, 100 * top / scale)}%`;
  }
  const baseline = node.querySelector(".baseline");
  if (stream.baseline === null) baseline.textContent = "learning its baseline";
  else {
    const now = score === null ? "–" : `${Math.round(100 * score / stream.baseline)} %`;
    baseline.textContent = `baseline ${stream.baseline.toPrecision(3)}, now ${now} of it`;
  }
  const frame = node.querySelector(".frame");
  if (stream.frame !== null && frame.dataset.time !== String(stream.frame)) {
    frame.dataset.time = String(stream.frame);
    frame.src = path(stream.name) + "frame.jpg?t=" + encodeURIComponent(stream.frame);
  }
  showTiles(node, stream.tiles);
}

async function curve(node, name) {
  const now = Date.now();
  if (now - (lastCurve.get(name) || 0) < curveEvery) return;
  lastCurve.set(name, now);
  const reply = await fetch(path(name) + "history.json?seconds=120", { cache: "no-store" });
  if (!reply.ok) return;
  const history = await reply.json();
  const canvas = node.querySelector(".spark");
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  const n = history.score.length;
  if (n < 2) return;
  const t0 = history.time[0], span = Math.max(history.time[n - 1] - t0, 1e-9);
  const top = Math.max(...history.score, 1e-12);
  g.strokeStyle = "#4c8";
  g.beginPath();
  history.score.forEach((v, k) => {
    const x = (history.time[k] - t0) / span * (canvas.width - 1);
    const y = canvas.height - 1 - v / top * (canvas.height - 2);
    if (k === 0) g.moveTo(x, y); else g.lineTo(x, y);
  });
  g.stroke();
}

async function poll() {
  const status = document.getElementById("status");
  try {
    const reply = await fetch("streams.json", { cache: "no-store" });
    if (!reply.ok) throw new Error(`HTTP ${reply.status}`);
    const { streams } = await reply.json();
    const shown = single === null ? streams : streams.filter((s) => s.name === single);
    if (single !== null && shown.length === 0) status.textContent = `no stream is called ${single}`;
    else status.textContent = `${shown.length} stream${shown.length === 1 ? "" : "s"}`;
    for (const stream of shown) {
      show(stream);
      curve(card(stream), stream.name).catch(() => {});
    }
  } catch (error) {
    status.textContent = `not reachable (${error.message}), retrying`;
  }
  setTimeout(poll, every);
}

poll();
