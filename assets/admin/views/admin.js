// Admin overview (ADMIN only, GET /api/admin): a page each of operators, projects and keys.

import { api } from '../../shared/api.js';
import { fmtDate, fmtNumber, h, loading, mount, statusBadge, titleCase } from '../../shared/ui.js';
import { failInto, pageHead, pager } from '../state.js';

export async function render(root) {
  const body = h('div', { 'data-test': 'admin-overview' }, loading('Loading the overview…'));
  mount(
    root,
    pageHead('Admin overview', 'Every workspace on this server: operators, projects and keys.'),
    body,
  );
  // Each list pages on its own (the server bounds all three).
  let page = 1;
  let usersPage = 1;
  let projectsPage = 1;

  async function load() {
    try {
      const data = await api.get('/api/admin', {
        query: { page, usersPage, projectsPage, limit: 25 },
      });
      const users = data.users || [];
      const projects = data.projects || [];
      const keys = data.keys || [];
      const pname = (id) => projects.find((p) => p.id === id)?.name || id;
      mount(
        body,
        h(
          'div',
          { class: 'stats' },
          stat(
            'Operators',
            data.usersPagination ? data.usersPagination.total : users.length,
            'admin-stat-users',
          ),
          stat(
            'Projects',
            data.projectsPagination ? data.projectsPagination.total : projects.length,
            'admin-stat-projects',
          ),
          stat('Keys', data.pagination ? data.pagination.total : keys.length, 'admin-stat-keys'),
        ),
        table(
          'Operators',
          'admin-users',
          users,
          ['Email', 'Role', 'State', 'Workspace', 'Created'],
          (u) => [
            h('strong', {}, u.email),
            u.role === 'ADMIN' ? 'Admin' : 'User',
            u.disabled
              ? h('span', { class: 'badge badge-danger' }, 'Disabled')
              : h('span', { class: 'badge badge-ok' }, 'Active'),
            h('span', { class: 'mono small' }, u.tenantId),
            fmtDate(u.createdAt),
          ],
          pager(
            data.usersPagination,
            (n) => {
              usersPage = n;
              load();
            },
            'admin-users-pager',
          ),
        ),
        table(
          'Projects',
          'admin-projects',
          projects,
          ['Name', 'Slug', 'Workspace', 'Keys', 'Status'],
          (p) => [
            h('a', { href: `#/projects/${encodeURIComponent(p.id)}` }, p.name),
            h('span', { class: 'mono small' }, p.slug),
            h('span', { class: 'mono small' }, p.tenantId),
            fmtNumber(p.keyCount),
            statusBadge(p.status),
          ],
          pager(
            data.projectsPagination,
            (n) => {
              projectsPage = n;
              load();
            },
            'admin-projects-pager',
          ),
        ),
        table(
          'Keys',
          'admin-keys',
          keys,
          ['Key', 'Status', 'Plan', 'Project', 'Created'],
          (k) => [
            h('a', { class: 'mono small', href: `#/keys/${encodeURIComponent(k.id)}` }, k.key),
            statusBadge(k.status),
            k.plan ? titleCase(k.plan) : '—',
            pname(k.projectId),
            fmtDate(k.createdAt),
          ],
          pager(
            data.pagination,
            (n) => {
              page = n;
              load();
            },
            'admin-keys-pager',
          ),
        ),
      );
    } catch (err) {
      failInto(body, err);
    }
  }
  load();
}

function stat(label, value, test) {
  return h(
    'div',
    { class: 'stat', 'data-test': test },
    h('div', { class: 'label' }, label),
    h('div', { class: 'value' }, fmtNumber(value)),
  );
}

function table(title, test, rows, headers, cells, foot) {
  return h(
    'section',
    { class: 'card', 'data-test': test },
    h('h2', {}, title),
    rows.length === 0
      ? h('p', { class: 'muted' }, 'None yet.')
      : h(
          'div',
          { class: 'table-wrap cards' },
          h(
            'table',
            { class: 'table cards-table' },
            h(
              'thead',
              {},
              h(
                'tr',
                {},
                headers.map((x) => h('th', {}, x)),
              ),
            ),
            h(
              'tbody',
              {},
              rows.map((r) =>
                h(
                  'tr',
                  { 'data-test': `${test}-row` },
                  cells(r).map((c, i) => h('td', { 'data-label': headers[i] }, c)),
                ),
              ),
            ),
          ),
        ),
    foot || null,
  );
}
