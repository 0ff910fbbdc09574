// API keys (/api/api-keys): list, create (the whole key is shown once), revoke.

import { api } from '../../shared/api.js';
import {
  confirmDialog,
  copyButton,
  empty,
  field,
  formError,
  h,
  loading,
  mount,
  onSubmit,
  openDialog,
  timeEl,
  titleCase,
  toast,
} from '../../shared/ui.js';
import { failInto, loadProjects, pageHead, projectName } from '../state.js';

const SCOPES = [
  ['VALIDATE_ONLY', 'Validate only — check licenses'],
  ['CREATE_LICENSE', 'Create licenses — plus create and list products'],
  ['READ_ONLY', 'Read only — plus read everything'],
  ['FULL_ADMIN', 'Full admin — everything, including the admin API'],
];

export async function render(root) {
  const list = h('div', { 'data-test': 'api-keys-list' }, loading('Loading API keys…'));
  const newBtn = h(
    'button',
    { type: 'button', class: 'btn btn-primary', 'data-test': 'api-key-new' },
    '+ New API key',
  );
  mount(
    root,
    pageHead(
      'API keys',
      'Server-to-server credentials for your shop, bots and scripts (sent as X-API-Key).',
      newBtn,
    ),
    list,
  );

  async function load() {
    try {
      const [data] = await Promise.all([
        api.get('/api/api-keys'),
        loadProjects().catch(() => null),
      ]);
      paint(data.apiKeys || []);
    } catch (err) {
      failInto(list, err);
    }
  }

  function paint(keys) {
    if (keys.length === 0) {
      mount(
        list,
        h(
          'div',
          { class: 'card' },
          empty(
            'No API keys yet',
            'Create a key for each system that calls Keyward, with the smallest scope it needs.',
            h(
              'button',
              { type: 'button', class: 'btn btn-primary', onclick: () => createDialog(load) },
              'Create an API key',
            ),
            'api-keys-empty',
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
          { class: 'table cards-table', 'data-test': 'api-keys-table' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['Name', 'Key', 'Scope', 'Project', 'Created', 'Last used', 'State', ''].map((x) =>
                h('th', {}, x ? x : h('span', { class: 'sr-only' }, 'Actions')),
              ),
            ),
          ),
          h(
            'tbody',
            {},
            keys.map((k) => {
              const revoked = !!k.revokedAt;
              const revoke = revoked
                ? null
                : h(
                    'button',
                    {
                      type: 'button',
                      class: 'btn btn-sm btn-outline-danger',
                      'data-test': 'api-key-revoke',
                    },
                    'Revoke',
                  );
              if (revoke)
                revoke.addEventListener('click', () =>
                  confirmDialog({
                    title: `Revoke “${k.name}”?`,
                    message: 'The key stops working at once. This cannot be undone.',
                    confirmLabel: 'Revoke',
                    danger: true,
                    test: 'api-key-revoke-dialog',
                    onConfirm: async () => {
                      await api.del(`/api/api-keys/${encodeURIComponent(k.id)}`);
                      toast('API key revoked');
                      load();
                    },
                  }),
                );
              return h(
                'tr',
                { 'data-test': 'api-key-row', 'data-id': k.id },
                h('td', { 'data-label': 'Name' }, h('strong', {}, k.name)),
                h('td', { 'data-label': 'Key', class: 'mono small' }, `${k.prefix}…`),
                h(
                  'td',
                  { 'data-label': 'Scope' },
                  h('span', { class: 'badge badge-accent plain' }, titleCase(k.scope)),
                ),
                h(
                  'td',
                  { 'data-label': 'Project' },
                  k.projectId ? projectName(k.projectId) : h('span', { class: 'muted' }, 'All'),
                ),
                h('td', { 'data-label': 'Created' }, timeEl(k.createdAt, true)),
                h(
                  'td',
                  { 'data-label': 'Last used' },
                  k.lastUsedAt
                    ? timeEl(k.lastUsedAt, true)
                    : h('span', { class: 'muted' }, 'never'),
                ),
                h(
                  'td',
                  { 'data-label': 'State' },
                  revoked
                    ? h('span', { class: 'badge badge-danger' }, 'Revoked')
                    : h('span', { class: 'badge badge-ok' }, 'Active'),
                ),
                h('td', { class: 'actions' }, revoke),
              );
            }),
          ),
        ),
      ),
    );
  }

  newBtn.addEventListener('click', () => createDialog(load));
  load();
}

async function createDialog(onDone) {
  const projects = await loadProjects().catch(() => []);
  const form = h(
    'form',
    { novalidate: true, id: 'api-key-form', 'data-test': 'api-key-form' },
    field({
      label: 'Name',
      name: 'name',
      required: true,
      maxlength: 100,
      placeholder: 'e.g. Shop webhook',
      test: 'api-key-name',
    }),
    field({
      label: 'Scope',
      name: 'scope',
      type: 'select',
      options: SCOPES,
      value: 'VALIDATE_ONLY',
      test: 'api-key-scope',
      hint: 'Each scope includes the ones above it.',
    }),
    field({
      label: 'Project',
      name: 'projectId',
      type: 'select',
      options: [['', 'All projects of the workspace'], ...projects.map((p) => [p.id, p.name])],
      test: 'api-key-project',
    }),
    formError('api-key-error'),
  );
  const submit = h(
    'button',
    {
      type: 'submit',
      class: 'btn btn-primary',
      form: 'api-key-form',
      'data-test': 'api-key-create',
    },
    'Create key',
  );
  const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
  const d = openDialog({
    title: 'New API key',
    body: form,
    foot: [cancel, submit],
    test: 'api-key-dialog',
  });
  cancel.addEventListener('click', d.close);
  onSubmit(form, async (fd) => {
    const body = { name: String(fd.get('name') || '').trim(), scope: fd.get('scope') };
    if (fd.get('projectId')) body.projectId = fd.get('projectId');
    const data = await api.post('/api/api-keys', body);
    onDone();
    mount(
      d.body,
      h(
        'div',
        { class: 'alert alert-warn', 'data-test': 'api-key-once' },
        'Copy this key now. It is shown only once and cannot be recovered.',
      ),
      h(
        'div',
        { class: 'field' },
        h('div', { class: 'field-label' }, data.apiKey.name),
        h(
          'div',
          { class: 'secret-row' },
          h('div', { class: 'secret-value', 'data-test': 'api-key-secret' }, data.key),
        ),
      ),
    );
    const copy = copyButton(data.key, {
      label: 'Copy key',
      test: 'api-key-copy',
      cls: 'btn btn-primary',
    });
    const done = h('button', { type: 'button', class: 'btn', 'data-test': 'api-key-done' }, 'Done');
    done.addEventListener('click', d.close);
    mount(d.foot, done, copy);
    copy.focus();
  });
}
