// One customer (#/customers/EMAIL): every key of the address with its machines, its payments
// and the e-mails sent to it. Reached from a key's customer e-mail and from the outbox.

import { api } from '../../shared/api.js';
import { empty, h, loading, mount, statusBadge, timeEl, titleCase } from '../../shared/ui.js';
import { failInto, loadProjects, pageHead, projectName } from '../state.js';
import { showMessage } from './mail.js';

export async function render(root, { parts }) {
  const email = decodeURIComponent(parts[0] || '');
  mount(root, loading('Loading the customer…'));
  await loadProjects().catch(() => null);
  let data;
  try {
    data = (await api.get(`/api/customers/${encodeURIComponent(email)}`)).data;
  } catch (err) {
    if (err.status === 404 || err.status === 400) {
      mount(
        root,
        h(
          'div',
          { class: 'card' },
          empty(
            'No such customer',
            `No key and no message has the address ${email}.`,
            h('a', { class: 'btn', href: '#/keys' }, 'All keys'),
            'customer-not-found',
          ),
        ),
      );
      return;
    }
    failInto(root, err);
    return;
  }
  const table = (test, cols, rows, cells) =>
    rows.length === 0
      ? h('p', { class: 'muted', 'data-test': `${test}-empty` }, 'None.')
      : h(
          'div',
          { class: 'table-wrap cards' },
          h(
            'table',
            { class: 'table cards-table', 'data-test': test },
            h(
              'thead',
              {},
              h(
                'tr',
                {},
                cols.map((c) => h('th', {}, c)),
              ),
            ),
            h(
              'tbody',
              {},
              rows.map((r) =>
                h(
                  'tr',
                  {},
                  cells(r).map((c, i) => h('td', { 'data-label': cols[i] }, c)),
                ),
              ),
            ),
          ),
        );
  mount(
    root,
    pageHead(
      data.name ? `${data.name}` : data.email,
      data.name ? data.email : 'Customer',
      null,
      h('a', { href: '#/keys' }, 'License keys'),
    ),
    h(
      'section',
      { class: 'card', 'data-test': 'customer-keys' },
      h('h2', {}, `Keys (${data.keyTotal})`),
      table(
        'customer-keys-table',
        ['Key', 'Project', 'Status', 'Expires', 'Order', 'Machines'],
        data.keys,
        (k) => [
          h(
            'a',
            { class: 'mono small', href: `#/keys/${encodeURIComponent(k.key.id)}` },
            k.key.key,
          ),
          projectName(k.key.projectId),
          statusBadge(k.key.status),
          k.key.expiresAt ? timeEl(k.key.expiresAt) : h('span', { class: 'muted' }, '—'),
          k.key.orderId || h('span', { class: 'muted' }, '—'),
          k.machines.length === 0
            ? h('span', { class: 'muted' }, 'none')
            : h(
                'div',
                {},
                k.machines.map((m) =>
                  h(
                    'div',
                    { class: 'mono small' },
                    m.hwid,
                    m.machineName ? ` (${m.machineName})` : '',
                  ),
                ),
              ),
        ],
      ),
    ),
    h(
      'section',
      { class: 'card', 'data-test': 'customer-payments' },
      h('h2', {}, 'Payments'),
      table('customer-payments-table', ['When', 'Provider', 'Event', 'Key'], data.payments, (p) => [
        timeEl(p.at),
        titleCase(p.provider),
        p.kind,
        p.keyId ? h('a', { href: `#/keys/${encodeURIComponent(p.keyId)}` }, 'key') : '—',
      ]),
    ),
    h(
      'section',
      { class: 'card', 'data-test': 'customer-messages' },
      h('h2', {}, 'E-mails'),
      table('customer-messages-table', ['Queued', 'Message', 'Status', ''], data.messages, (m) => [
        timeEl(m.createdAt, true),
        m.subject,
        statusBadge(m.status),
        h('button', { type: 'button', class: 'btn btn-sm', onclick: () => showMessage(m) }, 'View'),
      ]),
    ),
  );
}
