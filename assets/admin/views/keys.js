// License keys: server-side paginated, filtered list (GET /api/keys), the "generate keys" dialog,
// and #/keys/ID → the key page (key-detail.js).

import { api } from '../../shared/api.js';
import { offlineActivationForm } from '../../shared/offline.js';
import {
  clearErrors,
  copyButton,
  empty,
  field,
  fmtDate,
  formError,
  h,
  loading,
  mount,
  onSubmit,
  openDialog,
  showError,
  statusBadge,
  titleCase,
  toast,
} from '../../shared/ui.js';
import {
  failInto,
  handledAuth,
  hrefFor,
  loadProjects,
  pageHead,
  pager,
  parseCodes,
  projectName,
} from '../state.js';

export const STATUSES = ['ACTIVE', 'EXPIRED', 'SUSPENDED', 'BANNED', 'REVOKED'];
export const PLANS = ['DAILY', 'WEEKLY', 'MONTHLY', 'LIFETIME', 'CUSTOM'];

export async function render(root, ctx) {
  if (ctx.parts.length > 0) return (await import('./key-detail.js')).render(root, ctx);

  const q = ctx.query;
  const filters = {
    search: q.get('search') || '',
    projectId: q.get('projectId') || '',
    status: q.get('status') || '',
    plan: q.get('plan') || '',
    page: Math.max(1, Number(q.get('page')) || 1),
    limit: [25, 50, 100].includes(Number(q.get('limit'))) ? Number(q.get('limit')) : 50,
  };

  const searchField = field({
    label: 'Search',
    name: 'search',
    type: 'search',
    value: filters.search,
    placeholder: 'Key or HWID prefix, or note',
    test: 'keys-search',
    autocomplete: 'off',
    cls: 'search',
  });
  const projectField = field({
    label: 'Project',
    name: 'projectId',
    type: 'select',
    options: [['', 'All projects']],
    value: filters.projectId,
    test: 'keys-filter-project',
  });
  const statusField = field({
    label: 'Status',
    name: 'status',
    type: 'select',
    options: [['', 'Any status'], ...STATUSES.map((s) => [s, titleCase(s)])],
    value: filters.status,
    test: 'keys-filter-status',
  });
  const planField = field({
    label: 'Plan',
    name: 'plan',
    type: 'select',
    options: [['', 'Any plan'], ...PLANS.map((s) => [s, titleCase(s)])],
    value: filters.plan,
    test: 'keys-filter-plan',
  });
  const limitField = field({
    label: 'Per page',
    name: 'limit',
    type: 'select',
    options: [25, 50, 100],
    value: filters.limit,
    test: 'keys-filter-limit',
  });
  const toolbar = h(
    'form',
    {
      class: 'toolbar',
      role: 'search',
      'data-test': 'keys-filters',
      onsubmit: (e) => e.preventDefault(),
    },
    searchField,
    projectField,
    statusField,
    planField,
    limitField,
  );
  const results = h('div', { 'data-test': 'keys-results', 'aria-live': 'polite' });
  const offlineBtn = h(
    'button',
    { type: 'button', class: 'btn', 'data-test': 'keys-offline' },
    'Offline activation',
  );
  offlineBtn.addEventListener('click', () => offlineDialog(() => load()));
  const genBtn = h(
    'button',
    { type: 'button', class: 'btn btn-primary', 'data-test': 'keys-generate' },
    '+ Generate keys',
  );

  mount(
    root,
    pageHead('License keys', 'Search, filter and manage every key.', [offlineBtn, genBtn]),
    toolbar,
    results,
  );

  const projectSelect = projectField.querySelector('select');
  loadProjects()
    .then((projects) => {
      for (const p of projects)
        projectSelect.appendChild(
          h('option', { value: p.id, selected: p.id === filters.projectId }, p.name),
        );
    })
    .catch((err) => handledAuth(err));

  let controller = null;
  async function load() {
    const s = filters.search.trim();
    if (s.length === 1) {
      showError(toolbar, new Error('search needs at least 2 characters'), { search: 'search' });
      return;
    }
    clearErrors(toolbar);
    history.replaceState(
      null,
      '',
      hrefFor('/keys', {
        ...filters,
        search: s,
        page: filters.page > 1 ? filters.page : '',
        limit: filters.limit !== 50 ? filters.limit : '',
      }),
    );
    if (controller) controller.abort();
    controller = new AbortController();
    if (!results.firstChild || results.querySelector('.empty, .alert'))
      mount(results, loading('Loading keys…'));
    else results.setAttribute('aria-busy', 'true');
    try {
      const data = await api.get('/api/keys', {
        query: { ...filters, search: s },
        signal: controller.signal,
      });
      await loadProjects().catch(() => null);
      results.removeAttribute('aria-busy');
      renderResults(data);
    } catch (err) {
      if (err.name === 'AbortError') return;
      results.removeAttribute('aria-busy');
      if (err.status === 400 && /search/i.test(err.message)) {
        showError(toolbar, err);
        mount(results);
        return;
      }
      failInto(results, err, 'keys-error');
    }
  }

  function renderResults(data) {
    const keys = data.keys || [];
    if (keys.length === 0) {
      const filtered = filters.search || filters.projectId || filters.status || filters.plan;
      mount(
        results,
        h(
          'div',
          { class: 'card' },
          filtered
            ? empty(
                'No keys match',
                'Try other filters or clear the search.',
                h(
                  'a',
                  { class: 'btn', href: '#/keys', 'data-test': 'keys-clear-filters' },
                  'Clear filters',
                ),
                'keys-empty',
              )
            : empty(
                'No license keys yet',
                'Generate keys for one of your projects to get started.',
                h(
                  'button',
                  {
                    type: 'button',
                    class: 'btn btn-primary',
                    onclick: () => generateDialog(filters.projectId, load),
                  },
                  'Generate keys',
                ),
                'keys-empty',
              ),
        ),
      );
      return;
    }
    mount(
      results,
      h(
        'div',
        { class: 'table-wrap cards' },
        h(
          'table',
          { class: 'table cards-table', 'data-test': 'keys-table' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              h('th', {}, 'Key'),
              h('th', {}, 'Status'),
              h('th', {}, 'Plan'),
              h('th', {}, 'Project'),
              h('th', {}, 'HWID'),
              h('th', {}, 'Expires'),
              h('th', {}, 'Note'),
              h('th', {}, h('span', { class: 'sr-only' }, 'Actions')),
            ),
          ),
          h(
            'tbody',
            {},
            keys.map((k) =>
              h(
                'tr',
                { 'data-test': 'key-row', 'data-id': k.id, 'data-status': k.status },
                h(
                  'td',
                  { 'data-label': 'Key', class: 'key-cell' },
                  h(
                    'a',
                    { href: `#/keys/${encodeURIComponent(k.id)}`, 'data-test': 'key-link' },
                    k.key,
                  ),
                ),
                h('td', { 'data-label': 'Status' }, statusBadge(k.status)),
                h(
                  'td',
                  { 'data-label': 'Plan' },
                  k.plan
                    ? titleCase(k.plan) +
                        (k.plan === 'CUSTOM' && k.customDays ? ` (${k.customDays} d)` : '')
                    : '—',
                ),
                h('td', { 'data-label': 'Project' }, projectName(k.projectId)),
                h(
                  'td',
                  { 'data-label': 'HWID', class: 'mono small' },
                  k.hwid ? shortHwid(k.hwid) : h('span', { class: 'muted' }, 'not bound'),
                ),
                h(
                  'td',
                  { 'data-label': 'Expires', class: 'nowrap' },
                  k.expiresAt
                    ? fmtDate(k.expiresAt)
                    : h(
                        'span',
                        { class: 'muted' },
                        k.plan === 'LIFETIME' ? 'never' : 'on first use',
                      ),
                ),
                h(
                  'td',
                  { 'data-label': 'Note' },
                  k.note
                    ? h('span', { class: 'small' }, k.note)
                    : h('span', { class: 'muted' }, '—'),
                ),
                h(
                  'td',
                  { class: 'actions' },
                  copyButton(k.key, { test: 'key-copy', label: 'Copy' }),
                  ' ',
                  h(
                    'a',
                    {
                      class: 'btn btn-sm',
                      href: `#/keys/${encodeURIComponent(k.id)}`,
                      'data-test': 'key-open',
                    },
                    'Manage',
                  ),
                ),
              ),
            ),
          ),
        ),
      ),
      pager(
        data.pagination,
        (n) => {
          filters.page = n;
          load();
          results.scrollIntoView({ block: 'start' });
        },
        'keys-pager',
      ),
    );
  }

  let timer = null;
  searchField.querySelector('input').addEventListener('input', (e) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      filters.search = e.target.value;
      filters.page = 1;
      load();
    }, 300);
  });
  for (const [f, key] of [
    [projectField, 'projectId'],
    [statusField, 'status'],
    [planField, 'plan'],
    [limitField, 'limit'],
  ]) {
    f.querySelector('select').addEventListener('change', (e) => {
      filters[key] = key === 'limit' ? Number(e.target.value) : e.target.value;
      filters.page = 1;
      load();
    });
  }
  genBtn.addEventListener('click', () => generateDialog(filters.projectId, load));
  load();
  if (q.get('generate') === '1') generateDialog(filters.projectId, load);

  return () => {
    clearTimeout(timer);
    if (controller) controller.abort();
  };
}

export function shortHwid(hwid) {
  return hwid.length > 16 ? `${hwid.slice(0, 8)}…${hwid.slice(-4)}` : hwid;
}

/**
 * The "Offline activation" dialog: an air-gapped machine's activation request in, its machine
 * file out (downloaded). `onDone(data)` runs after a machine was activated.
 */
export function offlineDialog(onDone, hint) {
  const close = h('button', { type: 'button', class: 'btn' }, 'Close');
  const form = offlineActivationForm({
    send: (request) => api.post('/api/keys/activate-offline', { request }),
    done: (data) => {
      toast(`${data.fileName} downloaded`);
      if (onDone) onDone(data);
    },
    test: 'offline',
  });
  const d = openDialog({
    title: 'Offline activation',
    body: [
      h(
        'p',
        { class: 'muted' },
        hint ||
          'For a computer without internet: its app shows an activation request naming the key and the machine. ' +
            'The machine is activated with the key\u2019s usual seat rules, and its license file downloads for you to pass on.',
      ),
      form,
    ],
    foot: [close],
    wide: true,
    test: 'offline-dialog',
  });
  close.addEventListener('click', d.close);
  return d;
}

export async function generateDialog(defaultProjectId, onDone) {
  const projects = await loadProjects().catch(() => []);
  const customField = field({
    label: 'Days',
    name: 'customDays',
    type: 'number',
    min: 1,
    max: 3650,
    value: 90,
    hint: '1–3650 days.',
    test: 'generate-custom-days',
  });
  customField.hidden = true;
  const form = h(
    'form',
    { novalidate: true, id: 'generate-form', 'data-test': 'generate-form' },
    h(
      'div',
      { class: 'form-grid' },
      field({
        label: 'Project',
        name: 'projectId',
        type: 'select',
        value: defaultProjectId || projects[0]?.id || '',
        options: projects.length ? projects.map((p) => [p.id, p.name]) : [['', 'Default project']],
        test: 'generate-project',
      }),
      field({
        label: 'Plan',
        name: 'plan',
        type: 'select',
        options: PLANS.map((p) => [
          p,
          `${titleCase(p)}${{ DAILY: ' (1 day)', WEEKLY: ' (7 days)', MONTHLY: ' (30 days)', LIFETIME: ' (never expires)', CUSTOM: '' }[p]}`,
        ]),
        value: 'MONTHLY',
        test: 'generate-plan',
      }),
      customField,
      field({
        label: 'How many keys',
        name: 'count',
        type: 'number',
        min: 1,
        max: 50,
        value: 1,
        required: true,
        hint: '1 to 50 at once.',
        test: 'generate-count',
      }),
      field({
        label: 'Max sessions',
        name: 'maxSessions',
        type: 'number',
        min: 1,
        max: 100,
        value: 1,
        hint: 'Concurrent sessions per key.',
        test: 'generate-max-sessions',
      }),
      field({
        label: 'Note (optional)',
        name: 'note',
        maxlength: 500,
        cls: 'span-all',
        placeholder: 'e.g. VIP client, order #1234',
        test: 'generate-note',
      }),
      field({
        label: 'Entitlements (optional)',
        name: 'entitlements',
        maxlength: 4200,
        cls: 'span-all',
        placeholder: 'PRO_EXPORT, CLOUD_SYNC',
        hint: 'Codes every generated key carries; each must be one of the project\u2019s.',
        test: 'generate-entitlements',
      }),
    ),
    h(
      'p',
      { class: 'muted small' },
      'A plan\u2019s clock starts at the key\u2019s first activation.',
    ),
    formError('generate-error'),
  );
  const planSelect = form.querySelector('[name=plan]');
  planSelect.addEventListener('change', () => {
    customField.hidden = planSelect.value !== 'CUSTOM';
  });
  const submit = h(
    'button',
    {
      type: 'submit',
      class: 'btn btn-primary',
      form: 'generate-form',
      'data-test': 'generate-submit',
    },
    'Generate',
  );
  const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
  const d = openDialog({
    title: 'Generate license keys',
    body: form,
    foot: [cancel, submit],
    test: 'generate-dialog',
  });
  cancel.addEventListener('click', d.close);
  onSubmit(
    form,
    async (fd) => {
      const body = {
        plan: fd.get('plan'),
        count: Number(fd.get('count')),
        maxSessions: Number(fd.get('maxSessions') || 1),
      };
      if (fd.get('projectId')) body.projectId = fd.get('projectId');
      if (body.plan === 'CUSTOM') body.customDays = Number(fd.get('customDays'));
      const note = String(fd.get('note') || '').trim();
      if (note) body.note = note;
      const codes = parseCodes(fd.get('entitlements'));
      if (codes.length > 0) body.entitlements = codes;
      if (!Number.isInteger(body.count) || body.count < 1 || body.count > 50)
        throw new Error('count must be between 1 and 50');
      const data = await api.post('/api/keys', body);
      const keys = (data.keys || []).map((k) => k.key);
      toast(`${keys.length} key${keys.length === 1 ? '' : 's'} generated`);
      if (onDone) onDone();
      // Show the result in the same dialog.
      mount(
        d.body,
        h(
          'div',
          { class: 'alert alert-ok', 'data-test': 'generate-done' },
          `${keys.length} ${titleCase(body.plan)} key${keys.length === 1 ? '' : 's'} generated${body.projectId ? ` for ${projectName(body.projectId)}` : ''}.`,
        ),
        h(
          'ul',
          { class: 'key-list', 'data-test': 'generated-keys' },
          keys.map((k) => h('li', { 'data-test': 'generated-key' }, k)),
        ),
      );
      const copyAll = copyButton(keys.join('\n'), {
        label: `Copy all (${keys.length})`,
        test: 'generate-copy-all',
        cls: 'btn btn-primary',
      });
      const done = h(
        'button',
        { type: 'button', class: 'btn', 'data-test': 'generate-close' },
        'Done',
      );
      done.addEventListener('click', d.close);
      mount(d.foot, done, copyAll);
      copyAll.focus();
    },
    { customdays: 'customDays', days: 'customDays', sessions: 'maxSessions', project: 'projectId' },
  );
}
