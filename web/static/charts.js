// Charts drawn by the box from Prometheus, through obsbox's read-only
// `/api/metrics/query_range`, with uPlot (web/static/vendor, loaded by the
// page's template). Every element with `data-chart` gets one, redrawn every
// minute and whenever its width changes (phone width too):
//   data-chart      "line" (axes and legend) or "sparklines" (a small line per series)
//   data-title      what it shows ("CPU used")
//   data-query      PromQL; each series it gives is a line; `$range` is
//                   replaced with the chart's range ("10800s")
//   data-threshold  optional PromQL drawn as dashed lines (an RPO, an RTO)
//   data-threshold-name  what those lines are called ("RPO")
//   data-legend     the labels that name a series ("child", "disk,attribute")
//   data-unit       bytes, bytes/s, ratio, percent, seconds, celsius, or none
//   data-range      seconds back from now (default 10800, 3 h); or
//   data-start, data-end  a fixed range in Unix seconds (`showRange`)
// Times on the axis are the box's time zone's, like every time in the UI.
// A drawn figure keeps its uPlot instances in `figure.uplots` (none while
// empty or failed), so the browser tests read what was plotted, not pixels.
// A range picker above the page's first charts (1 h, 6 h, 24 h, 7 d, or a
// custom from–to typed in the box's zone) overrides every chart's range; the
// choice is kept per page in localStorage.
import { read, bytes, duration, when, boxZone, boxInstant, el, say, clearMessage } from './app.js';

const REFRESH_MS = 60_000;
const HEIGHT = { line: 200, sparklines: 36, expanded: 420 };
/** A line chart's height: taller while expanded. */
const lineHeight = (figure) => (figure.classList.contains('expanded') ? HEIGHT.expanded : HEIGHT.line);
// Two palettes chosen for contrast against the light and the dark panel.
const PALETTE = {
  light: ['#0b5394', '#b35c00', '#1a6b2f', '#8e2c8e', '#b00020', '#00707a', '#5b5b00', '#4a4f55'],
  dark: ['#8ab4f8', '#ffb454', '#7dd38f', '#e59be5', '#ff8a95', '#6fd6df', '#d6d66b', '#b4b9bf'],
};
const dark = matchMedia('(prefers-color-scheme: dark)');

/** Clock and date in the box's zone, ISO-like (`14:05`, `12-07`), whatever the browser's language. */
function zoned(options) {
  try {
    return new Intl.DateTimeFormat('sv-SE', { timeZone: boxZone, ...options });
  } catch {
    return new Intl.DateTimeFormat('sv-SE', { timeZone: 'UTC', ...options });
  }
}
const clock = zoned({ hour: '2-digit', minute: '2-digit' });
const clockSeconds = zoned({ hour: '2-digit', minute: '2-digit', second: '2-digit' });
const day = zoned({ year: 'numeric', month: '2-digit', day: '2-digit' });

/** The time axis' labels: the clock (with seconds when ticks are closer than a minute), the date under the first and at midnight. */
function timeTicks(u, ticks) {
  const format = ticks.length > 1 && ticks[1] - ticks[0] < 60 ? clockSeconds : clock;
  return ticks.map((t, i) => {
    const date = new Date(t * 1000);
    const time = format.format(date);
    return i === 0 || time.startsWith('00:00') ? `${time}\n${day.format(date)}` : time;
  });
}

/** A little room above and below the lines, and a flat line in the middle, not on an edge. */
function padded(u, min, max) {
  const pad = (max - min) * 0.1 || Math.abs(max) * 0.1 || 1;
  return [min - pad, max + pad];
}

/** Shares are drawn on their whole scale, 0 to 100 %, so a busy box looks busy. */
const WHOLE = { ratio: 1, percent: 100 };
function yRange(unit) {
  const whole = WHOLE[unit];
  return whole ? (u, min, max) => [Math.min(0, min), Math.max(whole, max)] : padded;
}

/** The axes' font, set on them and used to measure their labels. */
const AXIS_FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif';
const measure = document.createElement('canvas').getContext('2d');

/** The value axis' width: its longest label ("26 min 40 s") and the ticks' room. */
function axisSize(u, values) {
  measure.font = AXIS_FONT;
  const widest = Math.max(0, ...(values ?? []).map((v) => measure.measureText(v).width));
  return Math.max(48, Math.ceil(widest) + 24);
}

const number = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : String(Math.round(v * 100) / 100));
const UNITS = {
  bytes: (v) => bytes(v),
  'bytes/s': (v) => `${bytes(v)}/s`,
  ratio: (v) => `${number(v * 100)} %`,
  percent: (v) => `${number(v)} %`,
  seconds: (v) => (v < 1 ? `${number(v * 1000)} ms` : duration(v)),
  celsius: (v) => `${number(v)} °C`,
};

/** The formatter of a chart's unit; a value that is not there stays empty. */
function formatter(unit) {
  const format = UNITS[unit] ?? number;
  return (v) => (v === null || v === undefined || Number.isNaN(v) ? '' : format(v));
}

/** `3 h`, `7 d`: a range as the caption says it. */
function rangeText(seconds) {
  if (seconds % 86400 === 0) return `${seconds / 86400} d`;
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  return duration(seconds);
}

/** The ranges offered besides each chart's own, in seconds back from now. */
const PICKS = [[3600, 'Last 1 h'], [21600, 'Last 6 h'], [86400, 'Last 24 h'], [604800, 'Last 7 d']];
/** The longest range `/api/metrics/query_range` takes. */
const LONGEST = 31 * 86400;
const PICKED_KEY = `obsbox.chart-range:${location.pathname}`;

/** The page's kept choice: `{range}` (seconds back from now), `{start, end}` (Unix seconds) or null (each chart's own). */
function keptChoice() {
  try {
    const kept = JSON.parse(localStorage.getItem(PICKED_KEY));
    if (PICKS.some(([seconds]) => seconds === kept?.range)) return { range: kept.range };
    if (kept?.start < kept?.end && kept.end - kept.start <= LONGEST) return { start: kept.start, end: kept.end };
  } catch {
    // Nothing kept, or storage unavailable: each chart's own range.
  }
  return null;
}
let picked = keptChoice();

/** The time range a chart shows now: the page's choice, else its fixed one, else the last `data-range` seconds. */
function rangeOf(figure) {
  const now = Math.floor(Date.now() / 1000);
  if (picked?.range) return { start: now - picked.range, end: now, fixed: false };
  if (picked?.end) return { start: picked.start, end: picked.end, fixed: true };
  const { start, end, range } = figure.dataset;
  if (start && end) return { start: Number(start), end: Number(end), fixed: true };
  return { start: now - Number(range || 10800), end: now, fixed: false };
}

/**
 * Asks for `query` over `range`; the answer's series as `{name, points: Map(t → v)}`,
 * named by `prefix` and their `legend` labels, or `fallback` when those say nothing.
 */
async function seriesOf(query, range, legend, { prefix = '', fallback }) {
  const span = Math.max(1, Math.round(range.end - range.start));
  const params = new URLSearchParams({
    query: query.replaceAll('$range', `${span}s`),
    start: String(range.start),
    end: String(range.end),
  });
  const answer = await read(`/api/metrics/query_range?${params}`);
  return (answer.result || []).map((s) => {
    const labels = legend.map((name) => s.metric[name]).filter(Boolean);
    const name = [prefix, ...labels].filter(Boolean).join(' ') || fallback;
    return { name, points: new Map(s.values.map(([t, v]) => [Math.round(t), Number(v)])) };
  });
}

/** uPlot's data: one column of times, one of values per series (null where none). */
function columns(series) {
  const times = [...new Set(series.flatMap((s) => [...s.points.keys()]))].sort((a, b) => a - b);
  return [times, ...series.map((s) => times.map((t) => s.points.get(t) ?? null))];
}

function colours() {
  const css = getComputedStyle(document.documentElement);
  return {
    palette: PALETTE[dark.matches ? 'dark' : 'light'],
    text: css.getPropertyValue('--muted').trim() || '#4a4f55',
    grid: css.getPropertyValue('--line').trim() || '#c9ced4',
  };
}

/** Chart options shared by both kinds: the box's zone, the unit, the theme. */
function options(kind, width, series, dashed, format, range, unit) {
  const { palette, text, grid } = colours();
  const sparkline = kind === 'sparklines';
  const axis = { stroke: text, font: AXIS_FONT, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
  return {
    width,
    height: HEIGHT[kind] ?? HEIGHT.line,
    tzDate: (t) => uPlot.tzDate(new Date(t * 1e3), boxZone),
    legend: { show: !sparkline },
    cursor: { show: !sparkline, drag: { x: false, y: false } },
    // The whole range asked for, so "last 3 h" shows 3 h even where Prometheus has less.
    scales: { x: { time: true, range: () => [range.start, range.end] }, y: { range: sparkline ? padded : yRange(unit) } },
    axes: sparkline ? [{ show: false }, { show: false }] : [
      // At least a clock's width between two times, so they never run together at phone width.
      { ...axis, space: 64, values: timeTicks },
      { ...axis, size: axisSize, values: (u, ticks) => ticks.map(format) },
    ],
    series: [
      { value: (u, t) => (t === null ? '' : when(t * 1000)) },
      ...series.map((s, i) => ({
        label: s.name,
        stroke: palette[i % palette.length],
        width: sparkline ? 1.5 : 2,
        dash: i >= series.length - dashed ? [6, 4] : undefined,
        spanGaps: false,
        value: (u, v) => format(v),
      })),
    ],
  };
}

/** The last value of each series, for the figure's text alternative. */
function summary(series, format) {
  return series.map((s) => {
    const values = [...s.points.values()];
    return `${s.name}: ${format(values[values.length - 1])}`;
  }).join('; ');
}

const charts = new Map();

/** The button that widens a line chart to the whole row and makes it taller, and back. */
function expandButton(figure, title) {
  const button = el('button', { type: 'button', class: 'small secondary chart-expand', 'aria-expanded': 'false' }, 'Expand');
  button.setAttribute('aria-label', `Expand ${title}`);
  button.addEventListener('click', () => {
    const expanded = figure.classList.toggle('expanded');
    button.setAttribute('aria-expanded', String(expanded));
    button.textContent = expanded ? 'Shrink' : 'Expand';
    button.setAttribute('aria-label', `${expanded ? 'Shrink' : 'Expand'} ${title}`);
    charts.get(figure)?.resize?.();
  });
  return button;
}

/** Draws (or redraws) one figure from Prometheus' answer. */
async function draw(figure) {
  const kind = figure.dataset.chart;
  const format = formatter(figure.dataset.unit);
  const legend = (figure.dataset.legend || '').split(',').map((l) => l.trim()).filter(Boolean);
  const range = rangeOf(figure);
  const title = figure.dataset.title || 'Chart';
  const caption = figure.querySelector('figcaption') ?? figure.appendChild(el('figcaption'));
  caption.textContent = range.fixed
    ? `${title}, ${when(range.start * 1000)} to ${when(range.end * 1000)}`
    : `${title}, last ${rangeText(range.end - range.start)}`;
  if (kind === 'line' && !figure.querySelector('.chart-expand')) caption.after(expandButton(figure, title));
  const plot = figure.querySelector('.chart-plot') ?? figure.appendChild(el('div', { class: 'chart-plot', role: 'img' }));
  const note = figure.querySelector('.chart-note') ?? figure.appendChild(el('p', { class: 'chart-note empty' }));
  let series;
  let dashed = 0;
  try {
    series = await seriesOf(figure.dataset.query, range, legend, { fallback: title });
    if (figure.dataset.threshold && series.length) {
      const prefix = figure.dataset.thresholdName || 'limit';
      const lines = await seriesOf(figure.dataset.threshold, range, legend, { prefix, fallback: prefix });
      dashed = lines.length;
      series = series.concat(lines);
    }
  } catch (e) {
    charts.get(figure)?.plot?.destroy();
    plot.replaceChildren();
    figure.uplots = [];
    figure.dataset.state = 'error';
    note.textContent = `No chart: ${e.message}`;
    return;
  }
  charts.get(figure)?.plot?.destroy();
  plot.replaceChildren();
  figure.uplots = [];
  if (!series.length) {
    figure.dataset.state = 'empty';
    plot.removeAttribute('aria-label');
    note.textContent = 'No data in this range yet.';
    return;
  }
  note.textContent = '';
  figure.dataset.state = 'drawn';
  plot.setAttribute('aria-label', `${caption.textContent}. Latest: ${summary(series, format)}`);
  const width = Math.max(120, plot.clientWidth || figure.clientWidth);
  if (kind === 'sparklines') {
    const list = el('ul', { class: 'sparklines' });
    plot.append(list);
    const lines = series.map((s, i) => {
      const values = [...s.points.values()];
      const box = el('span', { class: 'sparkline' });
      list.append(el('li', {}, el('span', { class: 'sparkline-name' }, s.name), el('span', { class: 'sparkline-value' }, format(values[values.length - 1])), box));
      const one = options(kind, Math.max(80, box.clientWidth || width / 2), [s], 0, format, range, figure.dataset.unit);
      one.series[1].stroke = colours().palette[i % PALETTE.light.length];
      return new uPlot(one, columns([s]), box);
    });
    charts.set(figure, { plot: { destroy: () => lines.forEach((l) => l.destroy()) }, resize: () => lines.forEach((l) => l.setSize({ width: Math.max(80, l.root.parentElement.clientWidth), height: HEIGHT.sparklines })) });
    figure.uplots = lines;
    return;
  }
  const chart = new uPlot({ ...options(kind, width, series, dashed, format, range, figure.dataset.unit), height: lineHeight(figure) }, columns(series), plot);
  charts.set(figure, { plot: chart, resize: () => chart.setSize({ width: Math.max(120, plot.clientWidth), height: lineHeight(figure) }) });
  figure.uplots = [chart];
}

const resized = new ResizeObserver((entries) => {
  for (const entry of entries) charts.get(entry.target)?.resize?.();
});

/** Shows `figure` over a fixed range (Unix seconds), e.g. the last outage. */
export function showRange(figure, start, end) {
  figure.dataset.start = String(Math.floor(start));
  figure.dataset.end = String(Math.ceil(end));
  return draw(figure);
}

/** `2026-12-07T03:04:05`: a time as a `datetime-local` field shows it, in the box's zone. */
const wallClock = zoned({ year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });
const typed = (unix) => wallClock.format(new Date(unix * 1000)).replace(' ', 'T');

/** The range picker, put before the page's first chart grid; `redraw` draws every chart again. */
function rangePicker(first, redraw) {
  const choice = el('select', { id: 'chart-range' },
    el('option', { value: '' }, "Each chart's own range"),
    PICKS.map(([seconds, label]) => el('option', { value: String(seconds) }, label)),
    el('option', { value: 'custom' }, 'From–to'));
  const field = (id, label) => [
    el('label', { for: id }, `${label} (${boxZone})`),
    el('input', { id, type: 'datetime-local', step: '1', required: true }),
  ];
  const custom = el('div', { class: 'chart-range-custom' },
    el('div', { class: 'field' }, field('chart-from', 'From')),
    el('div', { class: 'field' }, field('chart-to', 'To')),
    el('button', { type: 'submit' }, 'Show this range'));
  const form = el('form', { class: 'chart-range', 'aria-label': 'Range of the charts' },
    el('div', { class: 'field' }, el('label', { for: 'chart-range' }, 'Charts show'), choice), custom);
  const [from, to] = [custom.querySelector('#chart-from'), custom.querySelector('#chart-to')];
  const choose = (next) => {
    picked = next;
    if (next) localStorage.setItem(PICKED_KEY, JSON.stringify(next));
    else localStorage.removeItem(PICKED_KEY);
    return redraw();
  };
  const showCustom = (on) => {
    custom.hidden = !on;
    if (!on) return;
    const range = rangeOf(first);
    from.value = typed(range.start);
    to.value = typed(range.end);
  };
  choice.value = picked?.range ? String(picked.range) : picked ? 'custom' : '';
  showCustom(choice.value === 'custom');
  choice.addEventListener('change', () => {
    showCustom(choice.value === 'custom');
    if (choice.value === 'custom') from.focus();
    else choose(choice.value ? { range: Number(choice.value) } : null);
  });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const [start, end] = [boxInstant(from.value), boxInstant(to.value)].map((ms) => Math.floor(ms / 1000));
    if (!(start < end)) {
      say('The charts need a From before their To.', { error: true });
      return;
    }
    if (end - start > LONGEST) {
      say('The charts show at most 31 days; choose a shorter range.', { error: true });
      return;
    }
    clearMessage();
    choose({ start, end });
  });
  const grid = first.closest('.chart-grid') ?? first;
  grid.before(form);
}

/** Draws every chart on the page now, then keeps them current. */
export function drawAll() {
  const figures = [...document.querySelectorAll('[data-chart]')];
  if (!figures.length) return Promise.resolve([]);
  for (const figure of figures) resized.observe(figure);
  rangePicker(figures[0], () => Promise.all(figures.map(draw)));
  const refresh = () => Promise.all(figures.filter((f) => !document.hidden && !rangeOf(f).fixed).map(draw));
  setInterval(refresh, REFRESH_MS);
  dark.addEventListener('change', () => figures.forEach(draw));
  return Promise.all(figures.map(draw));
}

drawAll();
