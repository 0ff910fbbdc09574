// One webhook endpoint's deliveries (#/webhooks/ID): status, attempts, the last answer, the
// next attempt, and redelivery; a test event can be sent from here too.

import { api } from '../../shared/api.js';
import { empty, h, loading, mount, timeEl, toast } from '../../shared/ui.js';
import { failInto, pageHead, pager } from '../state.js';

const path = (id) => `/api/webhooks/endpoints/${encodeURIComponent(id)}`;

export async function renderDeliveries(root, id) {
  const head = h('div', {}, loading('Loading endpoint…'));
  const list = h('div', { 'data-test': 'webhook-deliveries' });
  mount(root, head, list);
  let page = 1;
  let endpoint;
  try {
    endpoint = await api.get(path(id));
  } catch (err) {
    failInto(head, err);
    return;
  }
  const testBtn = endpoint.enabled
    ? h(
        'button',
        {
          type: 'button',
          class: 'btn',
          'data-test': 'webhook-test',
          onclick: async () => {
            await api.post(`${path(id)}/test`, {});
            toast('Test event queued');
            load();
          },
        },
        'Send test event',
      )
    : null;
  const refresh = h('button', { type: 'button', class: 'btn', onclick: () => load() }, 'Refresh');
  mount(
    head,
    pageHead(
      endpoint.description || 'Webhook endpoint',
      endpoint.url,
      [refresh, testBtn],
      h('a', { href: '#/webhooks' }, '← Webhooks'),
    ),
    endpoint.disabledForFailures
      ? h(
          'div',
          { class: 'alert alert-error', 'data-test': 'webhook-failing' },
          `Disabled by the server: ${endpoint.disabledReason || 'deliveries kept failing'}. Fix the receiver, then enable the endpoint again.`,
        )
      : null,
  );

  async function load() {
    mount(list, loading('Loading deliveries…'));
    try {
      const data = await api.get(`${path(id)}/deliveries`, { query: { page, limit: 50 } });
      paint(data.deliveries || [], data.pagination);
    } catch (err) {
      failInto(list, err);
    }
  }

  function paint(deliveries, pagination) {
    if (deliveries.length === 0) {
      mount(
        list,
        h(
          'div',
          { class: 'card' },
          empty(
            'No deliveries yet',
            'Events this endpoint subscribes to show here as they happen.',
            null,
            'deliveries-empty',
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
          { class: 'table cards-table', 'data-test': 'deliveries-table' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['Event', 'Status', 'Attempts', 'Last answer', 'Next attempt', 'Created', ''].map(
                (x) => h('th', {}, x ? x : h('span', { class: 'sr-only' }, 'Actions')),
              ),
            ),
          ),
          h(
            'tbody',
            {},
            deliveries.map((d) =>
              h(
                'tr',
                { 'data-test': 'delivery-row', 'data-id': d.id },
                h(
                  'td',
                  { 'data-label': 'Event' },
                  h('strong', {}, d.eventType),
                  h('div', { class: 'mono small muted' }, d.eventId),
                ),
                h('td', { 'data-label': 'Status' }, deliveryBadge(d.status)),
                h('td', { 'data-label': 'Attempts' }, String(d.attempts)),
                h(
                  'td',
                  { 'data-label': 'Last answer', class: 'small' },
                  d.lastStatusCode
                    ? h('span', { class: 'mono' }, `HTTP ${d.lastStatusCode} `)
                    : null,
                  d.lastError ? h('div', { class: 'text-danger' }, d.lastError) : null,
                  d.lastResponse
                    ? h('div', { class: 'mono muted' }, d.lastResponse.slice(0, 160))
                    : null,
                  !d.lastStatusCode && !d.lastError ? h('span', { class: 'muted' }, '—') : null,
                ),
                h(
                  'td',
                  { 'data-label': 'Next attempt' },
                  d.status === 'PENDING' && d.nextAttemptAt
                    ? timeEl(d.nextAttemptAt, true)
                    : h('span', { class: 'muted' }, '—'),
                ),
                h('td', { 'data-label': 'Created' }, timeEl(d.createdAt, true)),
                h(
                  'td',
                  { class: 'actions' },
                  h(
                    'button',
                    {
                      type: 'button',
                      class: 'btn btn-sm',
                      'data-test': 'delivery-redeliver',
                      disabled: !endpoint.enabled,
                      onclick: async () => {
                        await api.post(
                          `/api/webhooks/deliveries/${encodeURIComponent(d.id)}/redeliver`,
                          {},
                        );
                        toast('Redelivery queued');
                        load();
                      },
                    },
                    'Redeliver',
                  ),
                ),
              ),
            ),
          ),
        ),
      ),
      pager(pagination, (n) => {
        page = n;
        load();
      }),
    );
  }
  load();
}

function deliveryBadge(status) {
  const kind =
    { PENDING: 'badge-warn', SUCCEEDED: 'badge-ok', FAILED: 'badge-danger' }[status] || '';
  return h(
    'span',
    { class: `badge ${kind}`, 'data-test': 'delivery-status', 'data-status': status },
    status.charAt(0) + status.slice(1).toLowerCase(),
  );
}
