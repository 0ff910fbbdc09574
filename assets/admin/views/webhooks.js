// Event webhooks (/api/webhooks/*): endpoints (create, edit, rotate the secret — shown once —,
// send a test event, delete); #/webhooks/ID shows one endpoint's deliveries
// (webhook-deliveries.js).

import { api } from '../../shared/api.js';
import {
  checkbox,
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
  toast,
} from '../../shared/ui.js';
import { failInto, loadProjects, pageHead, projectName } from '../state.js';
import { renderDeliveries } from './webhook-deliveries.js';

const EVENT_HINT =
  'Comma-separated: * (everything), a prefix such as license.* or machine.*, or types: ' +
  'license.created, license.renewed, license.revoked, license.suspended, license.reinstated, ' +
  'license.expired, machine.activated, machine.deactivated, machine.culled, ' +
  'release.published, release.yanked, abuse.flag.created, payment.*';

const path = (id) => `/api/webhooks/endpoints/${encodeURIComponent(id)}`;

export async function render(root, { parts }) {
  if (parts[0]) return renderDeliveries(root, parts[0]);
  const list = h('div', { 'data-test': 'webhooks-list' }, loading('Loading endpoints…'));
  const newBtn = h(
    'button',
    { type: 'button', class: 'btn btn-primary', 'data-test': 'webhook-new' },
    '+ New endpoint',
  );
  mount(
    root,
    pageHead(
      'Webhooks',
      'Signed event deliveries (Standard Webhooks) to your systems: licenses, machines, releases, abuse flags.',
      newBtn,
    ),
    list,
  );

  async function load() {
    try {
      const [data] = await Promise.all([
        api.get('/api/webhooks/endpoints', { query: { limit: 500 } }),
        loadProjects().catch(() => null),
      ]);
      paint(data.endpoints || []);
    } catch (err) {
      failInto(list, err);
    }
  }

  function paint(endpoints) {
    if (endpoints.length === 0) {
      mount(
        list,
        h(
          'div',
          { class: 'card' },
          empty(
            'No webhook endpoints yet',
            'Add an HTTPS URL of yours; Keyward POSTs each event to it, signed with its secret.',
            h(
              'button',
              { type: 'button', class: 'btn btn-primary', onclick: () => editDialog(null, load) },
              'Add an endpoint',
            ),
            'webhooks-empty',
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
          { class: 'table cards-table', 'data-test': 'webhooks-table' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['Endpoint', 'Project', 'Events', 'State', 'Created', ''].map((x) =>
                h('th', {}, x ? x : h('span', { class: 'sr-only' }, 'Actions')),
              ),
            ),
          ),
          h(
            'tbody',
            {},
            endpoints.map((e) => row(e, load)),
          ),
        ),
      ),
    );
  }

  newBtn.addEventListener('click', () => editDialog(null, load));
  load();
}

function stateBadge(e) {
  if (e.enabled)
    return h('span', { class: 'badge badge-ok', 'data-test': 'webhook-state' }, 'Enabled');
  if (e.disabledForFailures)
    return h(
      'span',
      {
        class: 'badge badge-danger',
        'data-test': 'webhook-state',
        title: e.disabledReason || '',
      },
      'Disabled: failing',
    );
  return h('span', { class: 'badge', 'data-test': 'webhook-state' }, 'Disabled');
}

function row(e, reload) {
  const btn = (label, test, onclick, cls = 'btn btn-sm') =>
    h('button', { type: 'button', class: cls, 'data-test': test, onclick }, label);
  return h(
    'tr',
    { 'data-test': 'webhook-row', 'data-id': e.id },
    h(
      'td',
      { 'data-label': 'Endpoint' },
      h('a', { href: `#/webhooks/${encodeURIComponent(e.id)}`, class: 'mono small' }, e.url),
      e.description ? h('div', { class: 'muted small' }, e.description) : null,
      h(
        'a',
        {
          href: `#/webhooks/${encodeURIComponent(e.id)}`,
          class: 'small',
          'data-test': 'webhook-deliveries',
        },
        'Deliveries →',
      ),
      e.disabledForFailures && e.disabledReason
        ? h(
            'div',
            { class: 'small text-danger', 'data-test': 'webhook-disabled-reason' },
            e.disabledReason,
          )
        : null,
    ),
    h(
      'td',
      { 'data-label': 'Project' },
      e.projectId ? projectName(e.projectId) : h('span', { class: 'muted' }, 'All'),
    ),
    h(
      'td',
      { 'data-label': 'Events', class: 'mono small' },
      e.eventTypes.map((t) => h('div', {}, t)),
    ),
    h('td', { 'data-label': 'State' }, stateBadge(e)),
    h('td', { 'data-label': 'Created' }, timeEl(e.createdAt, true)),
    h(
      'td',
      { class: 'actions' },
      ...spaced(
        btn('Edit', 'webhook-edit', () => editDialog(e, reload)),
        e.enabled
          ? btn('Test', 'webhook-test', async () => {
              await api.post(`${path(e.id)}/test`, {});
              toast('Test event queued');
            })
          : null,
        btn(
          'Delete',
          'webhook-delete',
          () =>
            confirmDialog({
              title: 'Delete this endpoint?',
              message: `${e.url} stops receiving events; its pending deliveries are dropped.`,
              confirmLabel: 'Delete',
              danger: true,
              test: 'webhook-delete-dialog',
              onConfirm: async () => {
                await api.del(path(e.id));
                toast('Endpoint deleted');
                reload();
              },
            }),
          'btn btn-sm btn-outline-danger',
        ),
      ),
    ),
  );
}

/** Buttons side by side in a table cell (which keeps them on one line). */
const spaced = (...items) => items.filter(Boolean).flatMap((x, i) => (i ? [' ', x] : [x]));

const typesOf = (text) =>
  String(text || '')
    .split(/[\s,]+/)
    .map((t) => t.trim())
    .filter(Boolean);

async function editDialog(existing, onDone) {
  const projects = await loadProjects().catch(() => []);
  const form = h(
    'form',
    { novalidate: true, id: 'webhook-form', 'data-test': 'webhook-form' },
    field({
      label: 'URL',
      name: 'url',
      type: 'url',
      required: true,
      maxlength: 2048,
      value: existing?.url,
      placeholder: 'https://example.com/keyward-events',
      test: 'webhook-url',
    }),
    field({
      label: 'Description',
      name: 'description',
      maxlength: 500,
      value: existing?.description,
      test: 'webhook-description',
    }),
    existing
      ? null
      : field({
          label: 'Project',
          name: 'projectId',
          type: 'select',
          options: [['', 'All projects of the workspace'], ...projects.map((p) => [p.id, p.name])],
          test: 'webhook-project',
        }),
    field({
      label: 'Events',
      name: 'eventTypes',
      value: existing ? existing.eventTypes.join(', ') : '*',
      hint: EVENT_HINT,
      test: 'webhook-events',
    }),
    checkbox({
      label: 'Enabled',
      name: 'enabled',
      checked: existing ? existing.enabled : true,
      hint: existing?.disabledForFailures ? 'Enabling clears the “failing” flag.' : undefined,
      test: 'webhook-enabled',
    }),
    existing
      ? checkbox({
          label: 'Rotate the secret',
          name: 'rotateSecret',
          hint: 'A new secret is shown once; the old one stops signing at once.',
          test: 'webhook-rotate',
        })
      : null,
    formError('webhook-error'),
  );
  const submit = h(
    'button',
    { type: 'submit', class: 'btn btn-primary', form: 'webhook-form', 'data-test': 'webhook-save' },
    existing ? 'Save' : 'Create endpoint',
  );
  const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
  const d = openDialog({
    title: existing ? 'Edit endpoint' : 'New webhook endpoint',
    body: form,
    foot: [cancel, submit],
    test: 'webhook-dialog',
  });
  cancel.addEventListener('click', d.close);
  onSubmit(form, async (fd) => {
    const body = {
      url: String(fd.get('url') || '').trim(),
      eventTypes: typesOf(fd.get('eventTypes')),
      enabled: fd.get('enabled') === 'on',
    };
    const description = String(fd.get('description') || '').trim();
    let data;
    if (existing) {
      body.description = description || null;
      if (fd.get('rotateSecret') === 'on') body.rotateSecret = true;
      data = await api.patch(path(existing.id), body);
    } else {
      if (description) body.description = description;
      if (fd.get('projectId')) body.projectId = fd.get('projectId');
      data = await api.post('/api/webhooks/endpoints', body);
    }
    onDone();
    if (!data.secret) {
      toast('Endpoint saved');
      d.close();
      return;
    }
    mount(
      d.body,
      h(
        'div',
        { class: 'alert alert-warn', 'data-test': 'webhook-secret-once' },
        'Copy this signing secret now. It is shown only once. Verify deliveries with any Standard Webhooks library.',
      ),
      h(
        'div',
        { class: 'field' },
        h('div', { class: 'field-label' }, data.url),
        h(
          'div',
          { class: 'secret-row' },
          h('div', { class: 'secret-value', 'data-test': 'webhook-secret' }, data.secret),
        ),
      ),
    );
    const copy = copyButton(data.secret, {
      label: 'Copy secret',
      test: 'webhook-secret-copy',
      cls: 'btn btn-primary',
    });
    const done = h('button', { type: 'button', class: 'btn', 'data-test': 'webhook-done' }, 'Done');
    done.addEventListener('click', d.close);
    mount(d.foot, done, copy);
    copy.focus();
  });
}
