// Audit logs (GET /api/logs): filters project, key, action (exact or "prefix."), time range;
// server-side pagination.

import { api } from '../../shared/api.js';
import {
  clearErrors,
  empty,
  field,
  h,
  loading,
  mount,
  showError,
  timeEl,
} from '../../shared/ui.js';
import {
  failInto,
  handledAuth,
  hrefFor,
  loadProjects,
  pageHead,
  pager,
  projectName,
} from '../state.js';
import { actorLabel, detailText, shortId } from './key-detail.js';

const ACTIONS = [
  '',
  'key.',
  'key.validate',
  'license.',
  'license.create',
  'portal.',
  'operator.',
  'project.',
  'release.',
  'apikey.',
];

// datetime-local value (local time) ↔ RFC 3339.
const toLocalInput = (iso) => {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
};
const fromLocalInput = (v) => (v ? new Date(v).toISOString() : '');

export async function render(root, { query }) {
  const filters = {
    projectId: query.get('projectId') || '',
    keyId: query.get('keyId') || '',
    action: query.get('action') || '',
    from: query.get('from') || '',
    to: query.get('to') || '',
    page: Math.max(1, Number(query.get('page')) || 1),
    limit: 50,
  };
  const projectField = field({
    label: 'Project',
    name: 'projectId',
    type: 'select',
    options: [['', 'All projects']],
    value: filters.projectId,
    test: 'logs-filter-project',
  });
  const actionField = field({
    label: 'Action',
    name: 'action',
    value: filters.action,
    placeholder: 'e.g. key. or key.validate',
    list: 'log-actions',
    autocomplete: 'off',
    test: 'logs-filter-action',
  });
  const keyField = field({
    label: 'Key ID',
    name: 'keyId',
    value: filters.keyId,
    placeholder: 'lic_…',
    autocomplete: 'off',
    test: 'logs-filter-key',
  });
  const fromField = field({
    label: 'From',
    name: 'from',
    type: 'datetime-local',
    value: toLocalInput(filters.from),
    test: 'logs-filter-from',
  });
  const toField = field({
    label: 'Until',
    name: 'to',
    type: 'datetime-local',
    value: toLocalInput(filters.to),
    test: 'logs-filter-to',
  });
  const form = h(
    'form',
    { class: 'toolbar', role: 'search', 'data-test': 'logs-filters' },
    projectField,
    actionField,
    keyField,
    fromField,
    toField,
    h(
      'datalist',
      { id: 'log-actions' },
      ACTIONS.filter(Boolean).map((a) => h('option', { value: a })),
    ),
    h(
      'div',
      { class: 'btn-row' },
      h('button', { type: 'submit', class: 'btn btn-primary', 'data-test': 'logs-apply' }, 'Apply'),
      h('a', { class: 'btn btn-ghost', href: '#/logs', 'data-test': 'logs-reset' }, 'Reset'),
    ),
    h('div', {
      class: 'alert alert-error',
      'data-form-error': '',
      'data-test': 'logs-filter-error',
    }),
  );
  const results = h('div', { 'data-test': 'logs-results' });
  mount(root, pageHead('Audit logs', 'Every action, with its actor, IP and HWID.'), form, results);

  const projectSelect = projectField.querySelector('select');
  loadProjects()
    .then((ps) => {
      for (const p of ps)
        projectSelect.appendChild(
          h('option', { value: p.id, selected: p.id === filters.projectId }, p.name),
        );
    })
    .catch(handledAuth);

  let controller = null;
  async function load() {
    history.replaceState(
      null,
      '',
      hrefFor('/logs', { ...filters, limit: '', page: filters.page > 1 ? filters.page : '' }),
    );
    if (controller) controller.abort();
    controller = new AbortController();
    mount(results, loading('Loading logs…'));
    clearErrors(form);
    try {
      const data = await api.get('/api/logs', { query: filters, signal: controller.signal });
      const logs = data.logs || [];
      if (logs.length === 0) {
        mount(
          results,
          h(
            'div',
            { class: 'card' },
            empty('No log entries', 'Nothing matches these filters yet.', null, 'logs-empty'),
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
            { class: 'table cards-table', 'data-test': 'logs-table' },
            h(
              'thead',
              {},
              h(
                'tr',
                {},
                ['When', 'Action', 'Actor', 'Project', 'Key', 'IP', 'HWID', 'Detail'].map((x) =>
                  h('th', {}, x),
                ),
              ),
            ),
            h(
              'tbody',
              {},
              logs.map((l) =>
                h(
                  'tr',
                  { 'data-test': 'log-row' },
                  h('td', { 'data-label': 'When', class: 'nowrap' }, timeEl(l.at)),
                  h('td', { 'data-label': 'Action' }, h('span', { class: 'mono small' }, l.action)),
                  h(
                    'td',
                    { 'data-label': 'Actor', class: 'small nowrap', title: l.actor },
                    actorLabel(l.actor),
                  ),
                  h(
                    'td',
                    { 'data-label': 'Project' },
                    l.projectId ? projectName(l.projectId) : '—',
                  ),
                  h(
                    'td',
                    { 'data-label': 'Key' },
                    l.keyId
                      ? h(
                          'a',
                          {
                            href: `#/keys/${encodeURIComponent(l.keyId)}`,
                            class: 'mono small',
                            title: l.keyId,
                          },
                          shortId(l.keyId),
                        )
                      : '—',
                  ),
                  h('td', { 'data-label': 'IP', class: 'small nowrap' }, l.ip || '—'),
                  h(
                    'td',
                    { 'data-label': 'HWID', class: 'mono small', title: l.hwid || '' },
                    l.hwid ? shortId(l.hwid) : '—',
                  ),
                  h('td', { 'data-label': 'Detail' }, detailText(l.detail)),
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
          },
          'logs-pager',
        ),
      );
    } catch (err) {
      if (err.name === 'AbortError') return;
      if (err.status === 400) {
        mount(results);
        showError(form, err);
        return;
      }
      failInto(results, err, 'logs-error');
    }
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const fd = new FormData(form);
    filters.projectId = fd.get('projectId') || '';
    filters.action = String(fd.get('action') || '').trim();
    filters.keyId = String(fd.get('keyId') || '').trim();
    filters.from = fromLocalInput(fd.get('from'));
    filters.to = fromLocalInput(fd.get('to'));
    filters.page = 1;
    load();
  });
  projectSelect.addEventListener('change', () => form.requestSubmit());
  await loadProjects().catch(() => null);
  load();
  return () => {
    if (controller) controller.abort();
  };
}
