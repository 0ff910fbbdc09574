// Projects: the list, the "new project" dialog; #/projects/ID/... goes to the project page.

import { api } from '../../shared/api.js';
import {
  checkbox,
  empty,
  field,
  fmtDate,
  fmtNumber,
  formError,
  h,
  loading,
  mount,
  onSubmit,
  openDialog,
  statusBadge,
  toast,
} from '../../shared/ui.js';
import { failInto, hrefFor, invalidateProjects, pageHead, pager, parseCodes } from '../state.js';

export async function render(root, ctx) {
  if (ctx.parts.length > 0) {
    const mod = await import('./project.js');
    return mod.render(root, ctx);
  }
  const page = Math.max(1, Number(ctx.query.get('page')) || 1);
  const list = h('div', { 'data-test': 'projects-list' }, loading('Loading projects…'));
  const newBtn = h(
    'button',
    { type: 'button', class: 'btn btn-primary', 'data-test': 'project-new' },
    '+ New project',
  );
  newBtn.addEventListener('click', () => createProjectDialog());
  mount(
    root,
    pageHead(
      'Projects',
      'Each project has its own keys, client secret, releases and user portal.',
      newBtn,
    ),
    list,
  );
  if (ctx.query.get('new') === '1') createProjectDialog();

  try {
    const data = await api.get('/api/projects', { query: { page, limit: 50 } });
    const projects = data.projects || [];
    if (projects.length === 0) {
      const b = h(
        'button',
        {
          type: 'button',
          class: 'btn btn-primary',
          'data-test': 'project-new-empty',
          onclick: () => createProjectDialog(),
        },
        'Create your first project',
      );
      mount(
        list,
        h(
          'div',
          { class: 'card' },
          empty(
            'No projects yet',
            'A project groups the license keys of one product and gives your app its kv_ secret.',
            b,
            'projects-empty',
          ),
        ),
      );
      return;
    }
    mount(
      list,
      h(
        'div',
        { class: 'table-wrap cards' },
        h(
          'table',
          { class: 'table cards-table', 'data-test': 'projects-table' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              h('th', {}, 'Name'),
              h('th', {}, 'Portal'),
              h('th', {}, 'Status'),
              h('th', {}, 'Keys'),
              h('th', {}, 'Created'),
              h('th', {}, h('span', { class: 'sr-only' }, 'Actions')),
            ),
          ),
          h(
            'tbody',
            {},
            projects.map((p) =>
              h(
                'tr',
                { 'data-test': 'project-row', 'data-id': p.id },
                h(
                  'td',
                  { 'data-label': 'Name' },
                  h(
                    'div',
                    {},
                    h(
                      'a',
                      {
                        href: `#/projects/${encodeURIComponent(p.id)}`,
                        'data-test': 'project-link',
                      },
                      h('strong', {}, p.name),
                    ),
                    p.description ? h('div', { class: 'muted small' }, p.description) : null,
                  ),
                ),
                h(
                  'td',
                  { 'data-label': 'Portal' },
                  h(
                    'a',
                    {
                      href: `/p/${encodeURIComponent(p.slug)}`,
                      target: '_blank',
                      rel: 'noopener',
                      class: 'mono small',
                    },
                    `/p/${p.slug}`,
                  ),
                ),
                h('td', { 'data-label': 'Status' }, statusBadge(p.status)),
                h(
                  'td',
                  { 'data-label': 'Keys' },
                  h('a', { href: hrefFor('/keys', { projectId: p.id }) }, fmtNumber(p.keyCount)),
                ),
                h('td', { 'data-label': 'Created' }, fmtDate(p.createdAt)),
                h(
                  'td',
                  { class: 'actions' },
                  h(
                    'a',
                    {
                      class: 'btn btn-sm',
                      href: `#/projects/${encodeURIComponent(p.id)}`,
                      'data-test': 'project-open',
                    },
                    'Open',
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
          location.hash = hrefFor('/projects', { page: n });
        },
        'projects-pager',
      ),
    );
  } catch (err) {
    failInto(list, err);
  }
}

export function createProjectDialog() {
  const form = h(
    'form',
    { novalidate: true, 'data-test': 'project-create-form', id: 'project-create-form' },
    field({
      label: 'Name',
      name: 'name',
      required: true,
      maxlength: 255,
      test: 'project-name',
      placeholder: 'My Game',
    }),
    field({
      label: 'Description',
      name: 'description',
      type: 'textarea',
      maxlength: 1000,
      test: 'project-description',
      rows: 2,
    }),
    h(
      'details',
      {},
      h('summary', { class: 'small' }, 'More options'),
      h(
        'div',
        { class: 'form-grid' },
        field({
          label: 'Portal address (slug)',
          name: 'slug',
          maxlength: 64,
          hint: 'Users reach the portal at /p/<slug>. Made from the name when empty.',
          test: 'project-slug',
          placeholder: 'my-game',
        }),
        field({
          label: 'Key format',
          name: 'keyFormat',
          maxlength: 100,
          hint: 'X = random symbol.',
          placeholder: 'XXXX-XXXX-XXXX-XXXX',
          test: 'project-key-format',
        }),
        field({
          label: 'Machines per key',
          name: 'defaultMaxActivations',
          type: 'number',
          min: 1,
          max: 1000,
          value: 1,
          hint: '1 = HWID locked.',
          test: 'project-max-activations',
        }),
        field({
          label: 'Product type',
          name: 'type',
          type: 'select',
          options: ['DESKTOP', 'WEB', 'MOBILE', 'PLUGIN', 'API'],
          value: 'DESKTOP',
          test: 'project-type',
        }),
        field({
          label: 'Entitlements',
          name: 'entitlements',
          maxlength: 4200,
          cls: 'span-all',
          placeholder: 'PRO_EXPORT, CLOUD_SYNC',
          hint: 'Feature codes keys may carry, comma-separated (A-Z, 0-9, _).',
          test: 'project-entitlements',
        }),
      ),
      checkbox({
        label: 'Require encrypted validation',
        name: 'requireEncryption',
        hint: 'Clients must use the AES-256-GCM envelope.',
        test: 'project-require-encryption',
      }),
    ),
    formError('project-create-error'),
  );
  const submit = h(
    'button',
    {
      type: 'submit',
      class: 'btn btn-primary',
      form: 'project-create-form',
      'data-test': 'project-create-submit',
    },
    'Create project',
  );
  const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
  const d = openDialog({
    title: 'New project',
    body: form,
    foot: [cancel, submit],
    test: 'project-create-dialog',
  });
  cancel.addEventListener('click', d.close);
  onSubmit(form, async (fd) => {
    const body = { name: String(fd.get('name') || '').trim() };
    const desc = String(fd.get('description') || '').trim();
    if (desc) body.description = desc;
    const slug = String(fd.get('slug') || '').trim();
    if (slug) body.slug = slug;
    const kf = String(fd.get('keyFormat') || '').trim();
    if (kf) body.keyFormat = kf;
    const ma = String(fd.get('defaultMaxActivations') || '').trim();
    if (ma) body.defaultMaxActivations = Number(ma);
    body.type = fd.get('type');
    body.requireEncryption = fd.get('requireEncryption') === 'on';
    const codes = parseCodes(fd.get('entitlements'));
    if (codes.length > 0) body.entitlements = codes;
    const data = await api.post('/api/projects', body);
    invalidateProjects();
    d.close();
    toast(`Project “${data.project.name}” created`);
    location.hash = `#/projects/${encodeURIComponent(data.project.id)}/credentials`;
  });
}
