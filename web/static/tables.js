// Search and sort for long lists, on any table that `table()` (app.js)
// renders into a container marked `data-table-tools="<what it lists>"`:
// each column head becomes a button that sorts by it (again: the other way),
// and once the list is longer than a screen a search field above it hides
// the rows that do not contain what is typed. At phone width, where rows
// are cards and the heads are hidden, a "Sort by" select above the table
// does what the heads do. The choice outlives the page's own refreshes of
// the table.

/** Rows beyond which a list no longer fits a screen and gets a search field. */
const LONG = 10;

const chosen = new WeakMap();

/** A cell's sort key: its `data-sort` (a raw number or time) if set, else its text. */
const keyOf = (row, column) => {
  const cell = row.cells[column];
  return cell ? (cell.dataset.sort ?? cell.textContent.trim()) : '';
};

/** Numbers as numbers, words as words ("run 9" before "run 10"); empty last either way. */
function compare(a, b) {
  if (a === '' || b === '') return (a === '') - (b === '');
  const [x, y] = [Number(a), Number(b)];
  if (Number.isFinite(x) && Number.isFinite(y)) return x - y;
  return a.localeCompare(b, undefined, { numeric: true, sensitivity: 'base' });
}

function searchField(container, state) {
  if (state.field) return state.field;
  const id = `${container.id}-search`;
  const input = document.createElement('input');
  Object.assign(input, { type: 'search', id, autocomplete: 'off' });
  input.setAttribute('aria-describedby', `${id}-count`);
  const label = document.createElement('label');
  label.htmlFor = id;
  label.textContent = `Search ${container.dataset.tableTools}`;
  const count = document.createElement('span');
  count.id = `${id}-count`;
  count.className = 'hint';
  count.setAttribute('aria-live', 'polite');
  const box = document.createElement('div');
  box.className = 'table-search';
  box.append(label, input, count);
  container.before(box);
  input.addEventListener('input', () => {
    state.query = input.value.trim().toLowerCase();
    arrange(container, state);
  });
  state.field = { box, count };
  return state.field;
}

/** The select naming the sort (column and order), for phone width where the heads are hidden. */
function sortField(container, state) {
  if (state.sortSelect) return state.sortSelect;
  const id = `${container.id}-sort`;
  const select = document.createElement('select');
  select.id = id;
  const label = document.createElement('label');
  label.htmlFor = id;
  label.textContent = `Sort ${container.dataset.tableTools} by`;
  const box = document.createElement('div');
  box.className = 'table-sort';
  box.append(label, select);
  container.before(box);
  select.addEventListener('change', () => {
    const [column, order] = select.value.split(':');
    state.column = Number(column);
    state.descending = order === 'descending';
    arrange(container, state);
  });
  state.sortSelect = select;
  return select;
}

/** Offers each sortable column (a head with a sort button) both ways. */
function sortChoices(container, state, heads) {
  const select = sortField(container, state);
  select.closest('.table-sort').hidden = !heads.length;
  const choices = [['', 'As listed']];
  for (const [column, label] of heads) {
    choices.push([`${column}:ascending`, `${label}, ascending`], [`${column}:descending`, `${label}, descending`]);
  }
  select.replaceChildren(...choices.map(([value, text]) => Object.assign(document.createElement('option'), { value, text })));
  // "As listed" only until a sort is chosen: the order before it is gone then.
  select.options[0].disabled = true;
}

/** Puts the rows in the chosen order and hides those the search leaves out. */
function arrange(container, state) {
  const { box, count } = searchField(container, state);
  if (state.sortSelect) {
    const order = state.descending ? 'descending' : 'ascending';
    state.sortSelect.value = state.column === null ? '' : `${state.column}:${order}`;
  }
  const table = container.querySelector('table');
  const rows = table ? [...table.tBodies[0].rows] : [];
  box.hidden = rows.length <= LONG && !state.query;
  if (!table) return;
  if (state.column !== null) {
    const sign = state.descending ? -1 : 1;
    const sorted = rows
      .map((row, at) => ({ row, at, key: keyOf(row, state.column) }))
      .sort((a, b) => sign * compare(a.key, b.key) || a.at - b.at);
    table.tBodies[0].append(...sorted.map((s) => s.row));
  }
  let shown = 0;
  for (const row of rows) {
    row.hidden = Boolean(state.query) && !row.textContent.toLowerCase().includes(state.query);
    shown += row.hidden ? 0 : 1;
  }
  count.textContent = state.query ? `${shown} of ${rows.length} shown` : '';
  [...table.tHead.rows[0].cells].forEach((th, column) => {
    if (!th.querySelector('button.sort')) return;
    const order = state.descending ? 'descending' : 'ascending';
    th.setAttribute('aria-sort', state.column === column ? order : 'none');
  });
}

/** Called by `table()` after each render of a container marked `data-table-tools`. */
export function tableTools(container) {
  const state = chosen.get(container) ?? { column: null, descending: false, query: '', field: null, sortSelect: null };
  chosen.set(container, state);
  const table = container.querySelector('table');
  const heads = [];
  for (const [column, th] of [...(table?.tHead.rows[0].cells ?? [])].entries()) {
    const label = th.textContent.trim();
    if (!label || th.hasAttribute('data-unsorted')) continue; // a column of buttons
    heads.push([column, label]);
    const button = document.createElement('button');
    Object.assign(button, { type: 'button', className: 'sort', textContent: label });
    button.setAttribute('aria-label', `Sort ${container.dataset.tableTools} by ${label}`);
    button.addEventListener('click', () => {
      state.descending = state.column === column ? !state.descending : false;
      state.column = column;
      arrange(container, state);
    });
    th.replaceChildren(button);
  }
  sortChoices(container, state, heads);
  arrange(container, state);
}
