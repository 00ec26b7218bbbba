// Logs: search Loki with LogQL over a time range, browse labels, see when
// lines matched, read them with the matching terms marked, follow live.
import {
  api, el, say, clearMessage, when, boxInstant,
} from './app.js';

const $ = (id) => document.getElementById(id);
const form = $('query-form');
const NS_PER_MS = 1000000n;
const MAX_TAIL_LINES = 1000;
let tail = null;

/** The form's time range as Unix nanoseconds (strings: they exceed JS numbers). */
function range() {
  const choice = form.elements.range.value;
  let end = Date.now();
  let start = end - Number(choice) * 1000;
  if (choice === 'custom') {
    // Typed as the box's wall-clock time, as every time on the page is shown.
    start = boxInstant(form.elements.from.value);
    end = form.elements.to.value ? boxInstant(form.elements.to.value) : Date.now();
    if (Number.isNaN(start) || Number.isNaN(end)) {
      const problem = 'Give the start (and end) of the range as a date and time.';
      say(problem, { error: true });
      throw new Error(problem);
    }
  }
  return { start: (BigInt(Math.round(start)) * NS_PER_MS).toString(), end: (BigInt(Math.round(end)) * NS_PER_MS).toString() };
}

const qs = (params) => new URLSearchParams(params).toString();
const query = () => form.elements.query.value.trim();

function timeOf(ns) {
  const date = new Date(Number(BigInt(ns) / NS_PER_MS));
  return el('time', { datetime: date.toISOString() }, when(date));
}

function lineNode(line) {
  const labels = Object.entries(line.labels).map(([k, v]) => `${k}="${v}"`).join(', ');
  const text = el('p', { class: 'text' }, line.parts.map((p) => (p.mark ? el('mark', {}, p.text) : p.text)));
  return el('div', { class: 'log-line' }, timeOf(line.ts), el('span', { class: 'labels' }, `{${labels}}`), text);
}

function drawHistogram(histogram) {
  const box = $('histogram');
  const counts = histogram.buckets.map((b) => b.count);
  const max = Math.max(1, ...counts);
  const total = counts.reduce((a, b) => a + b, 0);
  const width = Math.max(1, histogram.buckets.length);
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} 100`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `${total} matching lines in ${histogram.buckets.length} steps of ${histogram.step_seconds} s; most in one step: ${Math.max(0, ...counts)}`);
  histogram.buckets.forEach((b, i) => {
    const h = (b.count / max) * 100;
    const rect = document.createElementNS('http://www.w3.org/2000/svg', 'rect');
    for (const [k, v] of Object.entries({ x: i + 0.1, y: 100 - h, width: 0.8, height: h })) rect.setAttribute(k, v);
    const title = document.createElementNS('http://www.w3.org/2000/svg', 'title');
    title.textContent = `${when(b.t * 1000)}: ${b.count}`;
    rect.append(title);
    svg.append(rect);
  });
  const first = histogram.buckets[0];
  const last = histogram.buckets[histogram.buckets.length - 1];
  box.replaceChildren(svg, el('div', { class: 'axis' },
    el('span', {}, first ? when(first.t * 1000) : ''),
    el('span', {}, `${total} lines, ${histogram.step_seconds} s per bar`),
    el('span', {}, last ? when(last.t * 1000) : '')));
}

async function search() {
  const q = query();
  if (!q) return;
  const r = range();
  const [result, histogram] = await Promise.all([
    api('GET', `/api/logs/search?${qs({ query: q, ...r, limit: form.elements.limit.value || 500 })}`),
    api('GET', `/api/logs/histogram?${qs({ query: q, ...r })}`),
  ]);
  clearMessage();
  $('results').replaceChildren(...(result.lines.length
    ? result.lines.map(lineNode)
    : [el('p', { class: 'empty' }, 'No line matches in this time range.')]));
  $('results-count').textContent = `${result.lines.length}${result.truncated ? '+' : ''}`;
  const explore = $('explore');
  explore.href = result.explore;
  explore.hidden = false;
  drawHistogram(histogram);
  loadLabels();
}

/** Adds name="value" to the query's stream selector (or starts one). */
function addMatcher(name, value) {
  const matcher = `${name}="${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  const q = query();
  const box = form.elements.query;
  if (q.startsWith('{') && q.includes('}')) {
    const close = q.indexOf('}');
    const inner = q.slice(1, close).trim();
    box.value = `{${inner ? `${inner}, ` : ''}${matcher}}${q.slice(close + 1)}`;
  } else {
    box.value = `{${matcher}}`;
  }
  box.focus();
}

async function showValues(name, button) {
  for (const b of $('labels').querySelectorAll('button')) b.setAttribute('aria-pressed', String(b === button));
  const { values } = await api('GET', `/api/logs/labels/${encodeURIComponent(name)}/values?${qs(range())}`);
  $('label-values').replaceChildren(...values.map((v) => el('button', {
    type: 'button', class: 'secondary', onclick: () => addMatcher(name, v), 'aria-label': `Add ${name}="${v}" to the query`,
  }, `${name}="${v}"`)));
}

async function loadLabels() {
  const { labels } = await api('GET', `/api/logs/labels?${qs(range())}`);
  $('labels').replaceChildren(...(labels.length
    ? labels.map((name) => {
      const button = el('button', { type: 'button', class: 'secondary', 'aria-pressed': 'false' }, name);
      button.addEventListener('click', () => showValues(name, button));
      return button;
    })
    : [el('p', { class: 'empty' }, 'No streams in this time range.')]));
}

function stopTail(state = 'not following') {
  if (tail) tail.close();
  tail = null;
  $('tail-state').textContent = state;
  $('tail-toggle').setAttribute('aria-pressed', 'false');
  $('tail-toggle').textContent = 'Follow live';
}

async function startTail() {
  const q = query();
  if (!q) return;
  // An EventSource cannot show why it failed: a one-line search first shows Loki's message.
  await api('GET', `/api/logs/search?${qs({ query: q, limit: 1 })}`);
  stopTail();
  const box = $('tail');
  box.replaceChildren();
  $('tail-section').hidden = false;
  $('tail-state').textContent = 'connecting';
  $('tail-toggle').setAttribute('aria-pressed', 'true');
  $('tail-toggle').textContent = 'Stop following';
  tail = new EventSource(`/api/logs/tail?${qs({ query: q })}`);
  tail.onopen = () => { $('tail-state').textContent = 'following'; };
  tail.onmessage = (event) => {
    const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
    box.append(lineNode(JSON.parse(event.data)));
    while (box.childNodes.length > MAX_TAIL_LINES) box.firstChild.remove();
    if (atBottom) box.scrollTop = box.scrollHeight;
  };
  tail.addEventListener('error', (event) => {
    if (event.data) {
      say(JSON.parse(event.data).error, { error: true });
      stopTail('stopped');
    } else if (tail && tail.readyState === EventSource.CLOSED) {
      stopTail('stopped');
    } else {
      $('tail-state').textContent = 'reconnecting';
    }
  });
}

form.elements.range.addEventListener('change', () => {
  const custom = form.elements.range.value === 'custom';
  $('custom-from').hidden = !custom;
  $('custom-to').hidden = !custom;
});
form.addEventListener('submit', (event) => {
  event.preventDefault();
  search().catch(() => {});
});
$('tail-toggle').addEventListener('click', () => (tail ? stopTail() : startTail().catch(() => {})));
loadLabels().catch(() => {});
