// Operators (ADMIN only, /api/users): list, create (POST /api/auth/register), disable /
// re-enable, reset password, delete.

import { api } from '../../shared/api.js';
import {
  confirmDialog,
  empty,
  field,
  fmtDate,
  formError,
  h,
  loading,
  mount,
  onSubmit,
  openDialog,
  toast,
} from '../../shared/ui.js';
import { failInto, pageHead, pager, state } from '../state.js';

export async function render(root) {
  const list = h('div', { 'data-test': 'users-list' }, loading('Loading operators…'));
  const newBtn = h(
    'button',
    { type: 'button', class: 'btn btn-primary', 'data-test': 'user-new' },
    '+ New operator',
  );
  mount(root, pageHead('Operators', 'People who can sign in to this panel.', newBtn), list);
  let page = 1;

  async function load() {
    try {
      const data = await api.get('/api/users', { query: { page, limit: 50 } });
      paint(data);
    } catch (err) {
      failInto(list, err);
    }
  }

  function paint(data) {
    const users = data.users || [];
    if (users.length === 0) {
      mount(list, h('div', { class: 'card' }, empty('No operators', null, null, 'users-empty')));
      return;
    }
    const myId = state.me?.user?.id;
    mount(
      list,
      h(
        'div',
        { class: 'table-wrap cards' },
        h(
          'table',
          { class: 'table cards-table', 'data-test': 'users-table' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['Email', 'Role', 'State', 'Workspace', 'Created', ''].map((x) =>
                h('th', {}, x || h('span', { class: 'sr-only' }, 'Actions')),
              ),
            ),
          ),
          h(
            'tbody',
            {},
            users.map((u) => {
              const me = u.id === myId;
              const toggle = h(
                'button',
                {
                  type: 'button',
                  class: 'btn btn-sm',
                  'data-test': u.disabled ? 'user-enable' : 'user-disable',
                  disabled: me,
                },
                u.disabled ? 'Enable' : 'Disable',
              );
              toggle.addEventListener('click', () => {
                if (u.disabled) {
                  setDisabled(u, false);
                  return;
                }
                confirmDialog({
                  title: `Disable ${u.email}?`,
                  message:
                    'Their sessions stop working at once. You can enable the account again later.',
                  confirmLabel: 'Disable',
                  danger: true,
                  test: 'user-disable-dialog',
                  onConfirm: () => setDisabled(u, true),
                });
              });
              const pw = h(
                'button',
                { type: 'button', class: 'btn btn-sm', 'data-test': 'user-reset-password' },
                'Reset password',
              );
              pw.addEventListener('click', () => passwordDialog(u));
              const del = h(
                'button',
                {
                  type: 'button',
                  class: 'btn btn-sm btn-outline-danger',
                  'data-test': 'user-delete',
                  disabled: me,
                },
                'Delete',
              );
              del.addEventListener('click', () =>
                confirmDialog({
                  title: `Delete ${u.email}?`,
                  message: 'The account is removed. Its projects and keys stay in their workspace.',
                  confirmLabel: 'Delete',
                  danger: true,
                  test: 'user-delete-dialog',
                  onConfirm: async () => {
                    await api.del(`/api/users/${encodeURIComponent(u.id)}`);
                    toast('Operator deleted');
                    load();
                  },
                }),
              );
              return h(
                'tr',
                { 'data-test': 'user-row', 'data-id': u.id },
                h(
                  'td',
                  { 'data-label': 'Email' },
                  h('strong', {}, u.email),
                  me ? h('span', { class: 'muted small' }, ' (you)') : null,
                ),
                h(
                  'td',
                  { 'data-label': 'Role' },
                  h(
                    'span',
                    { class: `badge plain ${u.role === 'ADMIN' ? 'badge-accent' : ''}` },
                    u.role === 'ADMIN' ? 'Admin' : 'User',
                  ),
                ),
                h(
                  'td',
                  { 'data-label': 'State' },
                  u.disabled
                    ? h('span', { class: 'badge badge-danger' }, 'Disabled')
                    : h('span', { class: 'badge badge-ok' }, 'Active'),
                ),
                h('td', { 'data-label': 'Workspace', class: 'mono small' }, u.tenantId),
                h('td', { 'data-label': 'Created' }, fmtDate(u.createdAt)),
                h('td', { class: 'actions' }, h('div', { class: 'btn-row end' }, toggle, pw, del)),
              );
            }),
          ),
        ),
      ),
      pager(
        data.pagination,
        (n) => {
          page = n;
          load();
        },
        'users-pager',
      ),
    );
  }

  async function setDisabled(u, disabled) {
    await api.patch(`/api/users/${encodeURIComponent(u.id)}`, { disabled });
    toast(disabled ? 'Operator disabled' : 'Operator enabled');
    load();
  }

  function passwordDialog(u) {
    const form = h(
      'form',
      { novalidate: true, id: 'pw-form', 'data-test': 'user-password-form' },
      h(
        'p',
        { class: 'muted' },
        `Set a new password for ${u.email}. Tell them through a safe channel.`,
      ),
      field({
        label: 'New password',
        name: 'password',
        type: 'password',
        autocomplete: 'new-password',
        hint: '8 to 128 characters.',
        test: 'user-new-password',
      }),
      formError('user-password-error'),
    );
    const submit = h(
      'button',
      {
        type: 'submit',
        class: 'btn btn-primary',
        form: 'pw-form',
        'data-test': 'user-password-save',
      },
      'Set password',
    );
    const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
    const d = openDialog({
      title: 'Reset password',
      body: form,
      foot: [cancel, submit],
      test: 'user-password-dialog',
    });
    cancel.addEventListener('click', d.close);
    onSubmit(form, async (fd) => {
      await api.patch(`/api/users/${encodeURIComponent(u.id)}`, {
        password: String(fd.get('password') || ''),
      });
      d.close();
      toast('Password changed');
    });
  }

  newBtn.addEventListener('click', () => {
    const form = h(
      'form',
      { novalidate: true, id: 'user-form', 'data-test': 'user-form' },
      field({
        label: 'Email',
        name: 'email',
        type: 'email',
        autocomplete: 'off',
        required: true,
        test: 'user-email',
      }),
      field({
        label: 'Initial password',
        name: 'password',
        type: 'password',
        autocomplete: 'new-password',
        hint: '8 to 128 characters.',
        required: true,
        test: 'user-password',
      }),
      field({
        label: 'Role',
        name: 'role',
        type: 'select',
        options: [
          ['USER', 'User — own workspace'],
          ['ADMIN', 'Admin — sees every workspace'],
        ],
        value: 'USER',
        test: 'user-role',
      }),
      formError('user-error'),
    );
    const submit = h(
      'button',
      { type: 'submit', class: 'btn btn-primary', form: 'user-form', 'data-test': 'user-create' },
      'Create operator',
    );
    const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
    const d = openDialog({
      title: 'New operator',
      body: form,
      foot: [cancel, submit],
      test: 'user-dialog',
    });
    cancel.addEventListener('click', d.close);
    onSubmit(
      form,
      async (fd) => {
        await api.post('/api/auth/register', {
          email: String(fd.get('email') || '').trim(),
          password: String(fd.get('password') || ''),
          role: fd.get('role'),
        });
        d.close();
        toast('Operator created');
        load();
      },
      { 'e-mail': 'email' },
    );
  });

  load();
}
