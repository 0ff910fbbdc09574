// Dashboard: the figures of GET /api/stats and a chart of validations and activations per day.

import { api } from '../../shared/api.js';
import { field, fmtNumber, h, loading, mount, s, titleCase } from '../../shared/ui.js';
import { failInto, hrefFor, loadProjects, pageHead } from '../state.js';

export async function render(root, { query }) {
  const projectId = query.get('projectId') || '';
  const body = h('div', { 'data-test': 'dashboard-body' }, loading('Loading statistics…'));
  const filter = field({
    label: 'Project',
    name: 'projectId',
    type: 'select',
    options: [['', 'All projects']],
    value: projectId,
    test: 'dashboard-project',
  });
  mount(
    root,
    pageHead(
      'Dashboard',
      'Activity of your license keys over the last 30 days.',
      h(
        'a',
        { class: 'btn btn-primary', href: '#/keys?generate=1', 'data-test': 'dashboard-generate' },
        '+ Generate keys',
      ),
    ),
    h('div', { class: 'toolbar' }, filter),
    body,
  );
  const select = filter.querySelector('select');
  loadProjects()
    .then((projects) => {
      for (const p of projects)
        select.appendChild(h('option', { value: p.id, selected: p.id === projectId }, p.name));
    })
    .catch(() => {});
  select.addEventListener('change', () => {
    location.hash = hrefFor('/dashboard', { projectId: select.value });
  });

  try {
    const st = await api.get('/api/stats', { query: { projectId } });
    if (!projectId)
      window.dispatchEvent(new CustomEvent('kw:abuse-count', { detail: st.openAbuseFlags || 0 }));
    mount(body, ...renderStats(st));
  } catch (err) {
    failInto(body, err);
  }
}

const count = (list, name) => (list || []).find((x) => x.name === name)?.count || 0;

function renderStats(st) {
  const daily = st.daily || [];
  const sumV = daily.reduce((a, d) => a + d.validations, 0);
  const sumA = daily.reduce((a, d) => a + d.activations, 0);
  const failures = (st.failuresByReason || []).reduce((a, d) => a + d.count, 0);
  const stat = (label, value, sub, test) =>
    h(
      'div',
      { class: 'stat', 'data-test': `stat-${test}` },
      h('div', { class: 'label' }, label),
      h('div', { class: 'value', 'data-test': `stat-${test}-value` }, fmtNumber(value)),
      sub ? h('div', { class: 'sub' }, sub) : null,
    );
  const stats = h(
    'div',
    { class: 'stats', 'data-test': 'stats' },
    stat(
      'Total keys',
      st.totalKeys,
      `${fmtNumber(st.projects)} project${st.projects === 1 ? '' : 's'}`,
      'total-keys',
    ),
    stat('Active keys', count(st.keysByStatus, 'ACTIVE'), null, 'active-keys'),
    stat('Validations', sumV, 'last 30 days', 'validations'),
    stat('Activations', sumA, 'last 30 days', 'activations'),
    stat('Refused', failures, 'last 30 days', 'failures'),
  );
  const chartCard = h(
    'section',
    { class: 'card', 'data-test': 'daily-chart' },
    h(
      'div',
      { class: 'card-head' },
      h('h2', {}, 'Validations and activations per day'),
      h(
        'div',
        { class: 'legend' },
        h('span', {}, 'Validations'),
        h('span', { class: 's2' }, 'Activations'),
      ),
    ),
    sumV + sumA === 0
      ? h(
          'div',
          { class: 'empty', 'data-test': 'chart-empty' },
          h('div', { class: 'empty-title' }, 'No activity yet'),
          'Validations and activations of your keys will appear here.',
        )
      : chart(daily),
    dailyTable(daily),
  );
  // Open abuse flags: a badge that leads to the evidence (only when there is something to see).
  const abuse = st.openAbuseFlags
    ? h(
        'a',
        { class: 'alert alert-error abuse-alert', href: '#/abuse', 'data-test': 'abuse-badge' },
        h(
          'strong',
          {},
          `${fmtNumber(st.openAbuseFlags)} open abuse flag${st.openAbuseFlags === 1 ? '' : 's'}`,
        ),
        ' — shared or attacked keys were found. Review the evidence →',
      )
    : null;
  return [
    abuse,
    stats,
    chartCard,
    h(
      'div',
      { class: 'grid grid-2' },
      barCard('Keys by status', st.keysByStatus, 'keys-by-status', (n) => titleCase(n)),
      barCard('Keys by plan', st.keysByPlan, 'keys-by-plan', (n) =>
        n === 'NONE' ? 'No plan' : titleCase(n),
      ),
      barCard(
        'Refused requests by reason (30 days)',
        st.failuresByReason,
        'failures-by-reason',
        (n) => n,
      ),
    ),
  ];
}

function barCard(title, list, test, label) {
  const items = (list || []).filter((x) => x.count > 0).sort((a, b) => b.count - a.count);
  const max = Math.max(1, ...items.map((x) => x.count));
  return h(
    'section',
    { class: 'card', 'data-test': test },
    h('h2', {}, title),
    items.length === 0
      ? h('p', { class: 'muted' }, 'Nothing to show yet.')
      : h(
          'ul',
          { class: 'bar-list' },
          items.map((x) => {
            const bar = h('span');
            bar.style.width = `${(x.count / max) * 100}%`;
            return h(
              'li',
              {},
              h('span', {}, label(x.name)),
              h('span', { class: 'bar' }, bar),
              h('span', { class: 'num' }, fmtNumber(x.count)),
            );
          }),
        ),
  );
}

/** Grouped bar chart, drawn as SVG; scales to its container through its viewBox. */
function chart(allDays) {
  // On a phone the last 14 days, drawn larger, stay readable.
  const narrow = window.matchMedia('(max-width: 600px)').matches;
  const daily = narrow ? allDays.slice(-14) : allDays;
  const W = narrow ? 360 : 760;
  const H = narrow ? 220 : 240;
  const padL = 40;
  const padR = 8;
  const padT = 10;
  const padB = 26;
  const max = Math.max(1, ...daily.map((d) => Math.max(d.validations, d.activations)));
  const nice = niceMax(max);
  const innerW = W - padL - padR;
  const innerH = H - padT - padB;
  const step = innerW / Math.max(1, daily.length);
  const bw = Math.max(2, step * 0.36);
  const y = (v) => padT + innerH - (v / nice) * innerH;
  const grid = [];
  for (let i = 0; i <= 4; i++) {
    const v = (nice / 4) * i;
    grid.push(s('line', { class: 'grid-line', x1: padL, x2: W - padR, y1: y(v), y2: y(v) }));
    grid.push(
      s(
        'text',
        { class: 'axis-label', x: padL - 6, y: y(v) + 4, 'text-anchor': 'end' },
        compact(v),
      ),
    );
  }
  const bars = [];
  const labels = [];
  daily.forEach((d, i) => {
    const x0 = padL + i * step + (step - bw * 2) / 2;
    const day = new Date(d.day);
    const dayLabel = day.toLocaleDateString(undefined, {
      month: 'short',
      day: 'numeric',
      timeZone: 'UTC',
    });
    bars.push(
      s(
        'rect',
        {
          class: 'series-1',
          x: x0,
          y: y(d.validations),
          width: bw,
          height: Math.max(0, innerH + padT - y(d.validations)),
          rx: 1.5,
        },
        s('title', {}, `${dayLabel}: ${d.validations} validations`),
      ),
    );
    bars.push(
      s(
        'rect',
        {
          class: 'series-2',
          x: x0 + bw,
          y: y(d.activations),
          width: bw,
          height: Math.max(0, innerH + padT - y(d.activations)),
          rx: 1.5,
        },
        s('title', {}, `${dayLabel}: ${d.activations} activations`),
      ),
    );
    if (i % (narrow ? 4 : 5) === 0 || i === daily.length - 1) {
      labels.push(
        s(
          'text',
          { class: 'axis-label', x: padL + i * step + step / 2, y: H - 6, 'text-anchor': 'middle' },
          dayLabel,
        ),
      );
    }
  });
  return s(
    'svg',
    {
      class: 'chart',
      viewBox: `0 0 ${W} ${H}`,
      role: 'img',
      'aria-label':
        'Bar chart of validations and activations per day; the table below has the figures',
      'data-test': 'chart-svg',
    },
    grid,
    bars,
    labels,
  );
}

function dailyTable(daily) {
  const details = h(
    'details',
    { class: 'small', 'data-test': 'daily-table' },
    h('summary', {}, 'Show the figures as a table'),
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'table' },
        h(
          'thead',
          {},
          h('tr', {}, h('th', {}, 'Day'), h('th', {}, 'Validations'), h('th', {}, 'Activations')),
        ),
        h(
          'tbody',
          {},
          daily
            .slice()
            .reverse()
            .map((d) =>
              h(
                'tr',
                {},
                h('td', {}, new Date(d.day).toLocaleDateString(undefined, { timeZone: 'UTC' })),
                h('td', {}, fmtNumber(d.validations)),
                h('td', {}, fmtNumber(d.activations)),
              ),
            ),
        ),
      ),
    ),
  );
  return details;
}

/** The top of the axis: four grid steps of a whole, round size (1, 2, 5, 10, 25, 50 …). */
function niceMax(v) {
  const raw = Math.max(1, v / 4);
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) {
    const stepSize = m * p;
    if (stepSize >= raw && Number.isInteger(stepSize)) return stepSize * 4;
  }
  return Math.ceil(raw) * 4;
}
function compact(v) {
  if (v >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  return String(Math.round(v));
}
