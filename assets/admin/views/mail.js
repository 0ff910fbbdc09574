// E-mail (#/mail): the workspace's SMTP settings with "Send a test e-mail", and the outbox
// (status, attempts, last error, retry by hand).

import { api } from '../../shared/api.js';
import {
  empty,
  field,
  formError,
  h,
  loading,
  mount,
  onSubmit,
  openDialog,
  statusBadge,
  timeEl,
  titleCase,
  toast,
} from '../../shared/ui.js';
import { failInto, pageHead, pager } from '../state.js';

const SECURITY = [
  ['starttls', 'STARTTLS (port 587)'],
  ['tls', 'Implicit TLS (port 465)'],
  ['none', 'None — a relay on a private address only'],
];

export async function render(root) {
  const settingsCard = h('section', { class: 'card', 'data-test': 'mail-settings' }, loading());
  const outboxCard = h('section', { class: 'card', 'data-test': 'mail-outbox' }, loading());
  mount(
    root,
    pageHead(
      'E-mail',
      'Keys, reminders and password resets go to your customers from this outbox, through your SMTP server.',
    ),
    settingsCard,
    outboxCard,
  );
  let filter = '';
  let page = 1;

  async function loadSettings() {
    try {
      const res = await api.get('/api/mail/settings');
      paintSettings(res.data);
    } catch (err) {
      failInto(settingsCard, err);
    }
  }

  function paintSettings(s) {
    const form = h('form', {
      class: 'form-grid',
      'data-test': 'mail-settings-form',
      novalidate: true,
    });
    const pw = s?.passwordSet
      ? 'A password is stored; leave empty to keep it.'
      : 'Leave empty when the server needs no login.';
    mount(
      form,
      field({
        label: 'SMTP host',
        name: 'host',
        value: s?.host,
        required: true,
        test: 'mail-host',
      }),
      field({
        label: 'Port',
        name: 'port',
        type: 'number',
        min: 1,
        max: 65535,
        value: s?.port ?? 587,
        test: 'mail-port',
      }),
      field({
        label: 'Security',
        name: 'security',
        type: 'select',
        options: SECURITY,
        value: s?.security ?? 'starttls',
        test: 'mail-security',
      }),
      field({ label: 'User name', name: 'username', value: s?.username, test: 'mail-username' }),
      field({
        label: 'Password',
        name: 'password',
        type: 'password',
        hint: pw,
        autocomplete: 'new-password',
        test: 'mail-password',
      }),
      field({
        label: 'From address',
        name: 'fromAddress',
        type: 'email',
        value: s?.fromAddress,
        required: true,
        test: 'mail-from',
      }),
      field({ label: 'From name', name: 'fromName', value: s?.fromName, test: 'mail-from-name' }),
      field({
        label: 'Public URL',
        name: 'publicUrl',
        value: s?.publicUrl,
        hint: 'Where links in messages point, e.g. https://licenses.example.com (default: the server’s --public-url).',
        test: 'mail-public-url',
      }),
      formError(),
      h(
        'div',
        { class: 'btn-row' },
        h('button', { type: 'submit', class: 'btn btn-primary', 'data-test': 'mail-save' }, 'Save'),
        s
          ? h(
              'button',
              {
                type: 'button',
                class: 'btn',
                'data-test': 'mail-test',
                onclick: () => testDialog(),
              },
              'Send a test e-mail',
            )
          : null,
      ),
    );
    onSubmit(form, async (fd) => {
      const text = (k) => {
        const v = String(fd.get(k) || '').trim();
        return v === '' ? null : v;
      };
      const body = {
        host: String(fd.get('host') || '').trim(),
        port: Number(fd.get('port')),
        security: fd.get('security'),
        username: text('username'),
        fromAddress: String(fd.get('fromAddress') || '').trim(),
        fromName: text('fromName'),
        publicUrl: text('publicUrl'),
      };
      const password = String(fd.get('password') || '');
      if (password) body.password = password;
      if (!body.username) body.password = null;
      const res = await api.put('/api/mail/settings', body);
      toast('SMTP settings saved');
      paintSettings(res.data);
    });
    mount(
      settingsCard,
      h('h2', {}, 'SMTP server'),
      s ? null : h('p', { class: 'muted' }, 'No SMTP server yet: messages wait in the outbox.'),
      form,
    );
  }

  function testDialog() {
    const form = h('form', { 'data-test': 'mail-test-form', novalidate: true });
    mount(
      form,
      field({ label: 'Send to', name: 'to', type: 'email', required: true, test: 'mail-test-to' }),
      formError(),
    );
    const send = h(
      'button',
      {
        type: 'submit',
        class: 'btn btn-primary',
        form: 'mail-test-form',
        'data-test': 'mail-test-send',
      },
      'Send',
    );
    form.id = 'mail-test-form';
    const dlg = openDialog({
      title: 'Send a test e-mail',
      body: form,
      foot: send,
      test: 'mail-test-dialog',
    });
    onSubmit(form, async (fd) => {
      await api.post('/api/mail/test', { to: String(fd.get('to') || '').trim() });
      dlg.close();
      toast('Test e-mail queued: watch the outbox below');
      setTimeout(loadOutbox, 1500);
    });
  }

  async function loadOutbox() {
    try {
      const query = { page, limit: 25 };
      if (filter) query.status = filter;
      const res = await api.get('/api/mail/outbox', { query });
      paintOutbox(res.data);
    } catch (err) {
      failInto(outboxCard, err);
    }
  }

  function paintOutbox(data) {
    const select = h(
      'select',
      { 'aria-label': 'Status', 'data-test': 'outbox-filter' },
      [
        ['', 'All'],
        ['PENDING', 'Pending'],
        ['SENT', 'Sent'],
        ['FAILED', 'Failed'],
      ].map(([v, t]) => h('option', { value: v, selected: v === filter }, t)),
    );
    select.addEventListener('change', () => {
      filter = select.value;
      page = 1;
      loadOutbox();
    });
    const refresh = h(
      'button',
      { type: 'button', class: 'btn btn-sm', onclick: loadOutbox },
      'Refresh',
    );
    const head = h(
      'div',
      { class: 'card-head' },
      h('h2', {}, 'Outbox'),
      h('div', { class: 'btn-row' }, select, refresh),
    );
    if (data.messages.length === 0) {
      mount(
        outboxCard,
        head,
        empty('No messages', 'Messages appear here as they are queued.', null, 'outbox-empty'),
      );
      return;
    }
    mount(
      outboxCard,
      head,
      h(
        'div',
        { class: 'table-wrap cards' },
        h(
          'table',
          { class: 'table cards-table', 'data-test': 'outbox-table' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['Queued', 'To', 'Message', 'Status', 'Attempts', 'Last error', ''].map((x) =>
                h('th', {}, x || h('span', { class: 'sr-only' }, 'Actions')),
              ),
            ),
          ),
          h('tbody', {}, data.messages.map(row)),
        ),
      ),
      pager(data.pagination, (n) => {
        page = n;
        loadOutbox();
      }),
    );
  }

  function row(m) {
    const retry =
      m.status === 'SENT'
        ? null
        : h(
            'button',
            {
              type: 'button',
              class: 'btn btn-sm',
              'data-test': 'outbox-retry',
              onclick: async () => {
                try {
                  await api.post(`/api/mail/outbox/${encodeURIComponent(m.id)}/retry`);
                  toast('Queued again');
                  loadOutbox();
                } catch (err) {
                  toast(err.message, 'error');
                }
              },
            },
            'Retry now',
          );
    const view = h(
      'button',
      { type: 'button', class: 'btn btn-sm', onclick: () => showMessage(m) },
      'View',
    );
    return h(
      'tr',
      { 'data-test': 'outbox-row', 'data-id': m.id },
      h('td', { 'data-label': 'Queued' }, timeEl(m.createdAt, true)),
      h(
        'td',
        { 'data-label': 'To' },
        h('a', { href: `#/customers/${encodeURIComponent(m.recipient)}` }, m.recipient),
      ),
      h(
        'td',
        { 'data-label': 'Message' },
        h('div', {}, m.subject),
        h('div', { class: 'muted small' }, titleCase(m.kind)),
      ),
      h('td', { 'data-label': 'Status' }, statusBadge(m.status, 'outbox-status')),
      h('td', { 'data-label': 'Attempts' }, String(m.attempts)),
      h(
        'td',
        { 'data-label': 'Last error', class: 'small' },
        m.lastError || h('span', { class: 'muted' }, '—'),
      ),
      h('td', {}, h('div', { class: 'btn-row' }, view, retry)),
    );
  }

  await Promise.all([loadSettings(), loadOutbox()]);
}

/** The message as it was (or will be) sent: subject, plain text and the HTML part. */
export function showMessage(m) {
  // The HTML part is shown as its source: the panel's CSP frames nothing, and a customer's
  // message must not run or load anything here.
  openDialog({
    title: m.subject,
    wide: true,
    test: 'outbox-message',
    body: h(
      'div',
      {},
      h('p', { class: 'muted small' }, `To ${m.recipient} · ${titleCase(m.status)}`),
      h('h3', {}, 'Plain text'),
      h('pre', { class: 'evidence-json small', 'data-test': 'outbox-message-text' }, m.text),
      h('h3', {}, 'HTML'),
      h('pre', { class: 'evidence-json small', 'data-test': 'outbox-message-html' }, m.html),
    ),
  });
}
