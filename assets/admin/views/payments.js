// Selling (#/payments): payment endpoints for Stripe, Paddle and Lemon Squeezy — the URL to paste
// into the provider's dashboard, the signing secret (write-only), the mappings from the
// provider's price/product/variant ids to a project and license settings, and the events
// received with their outcome (flagged ones are those Keyward could not act on; "Apply again"
// retries one with the current mappings).

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
import {
  entitlementBadges,
  failInto,
  loadProjects,
  pageHead,
  pager,
  parseCodes,
  projectName,
} from '../state.js';

const PROVIDERS = [
  ['STRIPE', 'Stripe'],
  ['PADDLE', 'Paddle Billing'],
  ['LEMONSQUEEZY', 'Lemon Squeezy'],
];
const providerName = (p) => (PROVIDERS.find(([v]) => v === p) || [p, p])[1];
const SECRET_HINT = {
  STRIPE: 'The endpoint’s signing secret, whsec_… (Developers → Webhooks → your endpoint).',
  PADDLE: 'The notification destination’s secret key, pdl_ntfset_….',
  LEMONSQUEEZY: 'The signing secret you typed when creating the webhook (Settings → Webhooks).',
};
const REF_HINT = {
  STRIPE:
    'A price (price_…), product (prod_…) or payment link (plink_…). Checkout Sessions should carry metadata keyward_price = the price id.',
  PADDLE: 'A price (pri_…) or product (pro_…).',
  LEMONSQUEEZY: 'A variant id or product id (numbers).',
};
const OUTCOME_KIND = {
  APPLIED: 'ok',
  IGNORED: '',
  UNMAPPED: 'warn',
  LICENSE_NOT_FOUND: 'warn',
  FAILED: 'danger',
};

export async function render(root) {
  const list = h('div', { 'data-test': 'payments-list' }, loading('Loading payment endpoints…'));
  const newBtn = h(
    'button',
    { type: 'button', class: 'btn btn-primary', 'data-test': 'payment-endpoint-new' },
    '+ New endpoint',
  );
  mount(
    root,
    pageHead(
      'Payments',
      'Payments create licenses: each endpoint receives one provider’s webhooks and maps what was bought to a project.',
      newBtn,
    ),
    list,
  );
  newBtn.addEventListener('click', () => endpointDialog(null, load));

  async function load() {
    try {
      const [data] = await Promise.all([
        api.get('/api/payment-endpoints'),
        loadProjects().catch(() => null),
      ]);
      const endpoints = data.endpoints || [];
      if (endpoints.length === 0) {
        mount(
          list,
          h(
            'div',
            { class: 'card' },
            empty(
              'No payment endpoint yet',
              'Create one per provider account, paste its URL into the provider’s webhook settings, and map your prices to projects.',
              h(
                'button',
                {
                  type: 'button',
                  class: 'btn btn-primary',
                  onclick: () => endpointDialog(null, load),
                },
                'Create an endpoint',
              ),
              'payments-empty',
            ),
          ),
        );
        return;
      }
      mount(
        list,
        endpoints.map((e) => endpointCard(e, load)),
      );
    } catch (err) {
      failInto(list, err);
    }
  }
  load();
}

function endpointCard(e, reload) {
  const url = `${location.origin}${e.receivingPath}`;
  const mappings = h('div', { 'data-test': 'payment-mappings' }, loading('Loading mappings…'));
  const events = h('div', { 'data-test': 'payment-events' });
  const edit = h('button', { type: 'button', class: 'btn btn-sm' }, 'Rename / new secret…');
  edit.addEventListener('click', () => endpointDialog(e, reload));
  const del = h(
    'button',
    { type: 'button', class: 'btn btn-sm btn-outline-danger', 'data-test': 'payment-delete' },
    'Delete',
  );
  del.addEventListener('click', () =>
    confirmDialog({
      title: `Delete “${e.name}”?`,
      message:
        'The provider’s webhooks to this URL will be refused, and its mappings and received events go. The licenses it created stay.',
      confirmLabel: 'Delete',
      danger: true,
      test: 'payment-delete-dialog',
      onConfirm: async () => {
        await api.del(`/api/payment-endpoints/${encodeURIComponent(e.id)}`);
        toast('Payment endpoint deleted');
        reload();
      },
    }),
  );
  const addMapping = h(
    'button',
    { type: 'button', class: 'btn btn-sm btn-primary', 'data-test': 'payment-mapping-new' },
    '+ Map a price',
  );
  const flaggedOnly = h('input', { type: 'checkbox', 'data-test': 'payment-events-flagged' });

  async function loadMappings() {
    try {
      const data = await api.get(`/api/payment-endpoints/${encodeURIComponent(e.id)}`);
      paintMappings(data.mappings || []);
    } catch (err) {
      failInto(mappings, err);
    }
  }

  function paintMappings(rows) {
    if (rows.length === 0) {
      mount(
        mappings,
        h(
          'p',
          { class: 'muted', 'data-test': 'payment-mappings-empty' },
          'No mapping yet: purchases arrive, are kept and flagged “unmapped” until you map their price.',
        ),
      );
      return;
    }
    mount(
      mappings,
      table(
        'payment-mapping',
        ['Provider id', 'Project', 'License', 'Machines', 'Entitlements', ''],
        rows,
        (m) => {
          const remove = h('button', { type: 'button', class: 'btn btn-sm' }, 'Remove');
          remove.addEventListener('click', async () => {
            const data = await api.del(
              `/api/payment-endpoints/${encodeURIComponent(e.id)}/mappings/${encodeURIComponent(m.providerRef)}`,
            );
            toast('Mapping removed');
            paintMappings(data.mappings || []);
          });
          return [
            h('span', { class: 'mono small' }, m.providerRef),
            projectName(m.projectId),
            [
              titleCase(m.tier),
              m.licenseType ? ` · ${titleCase(m.licenseType)}` : '',
              m.plan ? ` · ${titleCase(m.plan)}` : '',
            ].join(''),
            m.maxActivations ? String(m.maxActivations) : h('span', { class: 'muted' }, 'default'),
            entitlementBadges(m.entitlements),
            remove,
          ];
        },
      ),
    );
  }

  let eventsPage = 1;

  // Applying again reads the stored event with today's mappings: for a purchase that means
  // licenses made and the customer e-mailed, hence the confirmation.
  function applyAgain(v) {
    confirmDialog({
      title: `Apply ${v.eventType} again?`,
      message:
        'Keyward reads the event again with this endpoint’s current mappings and does what receiving it would have: licenses are created or changed, the customer is e-mailed their key, and your webhooks hear of it.',
      confirmLabel: 'Apply again',
      test: 'payment-event-apply-dialog',
      onConfirm: async () => {
        const data = await api.post(
          `/api/payment-endpoints/${encodeURIComponent(e.id)}/events/${encodeURIComponent(v.eventId)}/apply`,
        );
        const after = data.event;
        if (after.flagged) {
          toast(`Still ${titleCase(after.outcome)}: ${after.message}`, 'error');
        } else {
          toast(`Event ${titleCase(after.outcome).toLowerCase()}: ${after.message}`);
        }
        loadEvents(eventsPage);
      },
    });
  }

  async function loadEvents(page = 1) {
    eventsPage = page;
    try {
      const data = await api.get(`/api/payment-endpoints/${encodeURIComponent(e.id)}/events`, {
        query: { page, limit: 20, flagged: flaggedOnly.checked ? 'true' : undefined },
      });
      const rows = data.events || [];
      if (rows.length === 0) {
        mount(
          events,
          h(
            'p',
            { class: 'muted', 'data-test': 'payment-events-empty' },
            flaggedOnly.checked
              ? 'Nothing flagged.'
              : 'No event received yet: send a test event from the provider’s dashboard.',
          ),
        );
        return;
      }
      mount(
        events,
        table(
          'payment-event',
          ['Received', 'Event', 'Effect', 'Outcome', 'Licenses', ''],
          rows,
          (v) => [
            timeEl(v.receivedAt, true),
            h(
              'span',
              {},
              h('span', { class: 'mono small' }, v.eventType),
              h('div', { class: 'muted small mono' }, v.eventId),
            ),
            titleCase(v.effect),
            h(
              'span',
              {},
              h(
                'span',
                {
                  class: `badge ${OUTCOME_KIND[v.outcome] ? `badge-${OUTCOME_KIND[v.outcome]}` : ''}`,
                  'data-test': 'payment-event-outcome',
                },
                titleCase(v.outcome),
              ),
              v.message ? h('div', { class: 'small muted' }, v.message) : null,
            ),
            v.licenseIds.length === 0
              ? h('span', { class: 'muted' }, '—')
              : v.licenseIds.map((id) => [
                  h('a', { class: 'mono small', href: `#/keys/${encodeURIComponent(id)}` }, id),
                  ' ',
                ]),
            v.flagged
              ? h(
                  'button',
                  {
                    type: 'button',
                    class: 'btn btn-sm',
                    'data-test': 'payment-event-apply',
                    onclick: () => applyAgain(v),
                  },
                  'Apply again',
                )
              : null,
          ],
        ),
        pager(data.pagination, loadEvents, 'payment-events-pager'),
      );
    } catch (err) {
      failInto(events, err);
    }
  }

  addMapping.addEventListener('click', () => mappingDialog(e, paintMappings));
  flaggedOnly.addEventListener('change', () => loadEvents(1));
  loadMappings();
  loadEvents();

  return h(
    'section',
    { class: 'card', 'data-test': 'payment-endpoint', 'data-id': e.id },
    h(
      'div',
      { class: 'card-head' },
      h(
        'div',
        {},
        h(
          'h2',
          {},
          e.name,
          ' ',
          h('span', { class: 'badge badge-accent plain' }, providerName(e.provider)),
        ),
        h(
          'p',
          { class: 'muted small' },
          `${e.events} event(s) received `,
          e.flagged > 0
            ? h(
                'span',
                { class: 'badge badge-warn', 'data-test': 'payment-flagged' },
                `${e.flagged} flagged`,
              )
            : null,
        ),
      ),
      h('div', { class: 'btn-row end' }, edit, del),
    ),
    h(
      'div',
      { class: 'field' },
      h('div', { class: 'field-label' }, 'Webhook URL — paste it into the provider’s dashboard'),
      h(
        'div',
        { class: 'secret-row' },
        h('div', { class: 'secret-value', 'data-test': 'payment-url' }, url),
        copyButton(url, { label: 'Copy URL', test: 'payment-url-copy' }),
      ),
    ),
    h('div', { class: 'card-head' }, h('h3', {}, 'Mappings'), addMapping),
    mappings,
    h('hr'),
    h(
      'div',
      { class: 'card-head' },
      h('h3', {}, 'Received events'),
      h('label', { class: 'small' }, flaggedOnly, ' Flagged only'),
    ),
    events,
  );
}

function table(test, headers, rows, cells) {
  return h(
    'div',
    { class: 'table-wrap cards' },
    h(
      'table',
      { class: 'table cards-table', 'data-test': `${test}s-table` },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          headers.map((x) => h('th', {}, x || h('span', { class: 'sr-only' }, 'Actions'))),
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
  );
}

/** Create (`e` null) or edit an endpoint. */
function endpointDialog(e, onDone) {
  const form = h(
    'form',
    { novalidate: true, id: 'payment-endpoint-form', 'data-test': 'payment-endpoint-form' },
    e
      ? null
      : field({
          label: 'Provider',
          name: 'provider',
          type: 'select',
          options: PROVIDERS,
          test: 'payment-provider',
        }),
    field({
      label: 'Name',
      name: 'name',
      required: !e,
      maxlength: 100,
      value: e ? e.name : '',
      placeholder: 'e.g. Stripe live',
      test: 'payment-name',
    }),
    field({
      label: e ? 'New signing secret (leave empty to keep it)' : 'Signing secret',
      name: 'secret',
      required: !e,
      autocomplete: 'off',
      spellcheck: 'false',
      hint: e ? SECRET_HINT[e.provider] : 'Paste the secret the provider shows for this webhook.',
      test: 'payment-secret',
    }),
    formError('payment-endpoint-error'),
  );
  const submit = h(
    'button',
    {
      type: 'submit',
      class: 'btn btn-primary',
      form: 'payment-endpoint-form',
      'data-test': 'payment-endpoint-save',
    },
    e ? 'Save' : 'Create endpoint',
  );
  const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
  const d = openDialog({
    title: e ? `Edit “${e.name}”` : 'New payment endpoint',
    body: form,
    foot: [cancel, submit],
    test: 'payment-endpoint-dialog',
  });
  cancel.addEventListener('click', d.close);
  onSubmit(form, async (fd) => {
    const name = String(fd.get('name') || '').trim();
    const secret = String(fd.get('secret') || '').trim();
    if (e) {
      const body = {};
      if (name && name !== e.name) body.name = name;
      if (secret) body.secret = secret;
      if (Object.keys(body).length > 0) {
        await api.patch(`/api/payment-endpoints/${encodeURIComponent(e.id)}`, body);
      }
      toast('Payment endpoint saved');
    } else {
      await api.post('/api/payment-endpoints', { provider: fd.get('provider'), name, secret });
      toast('Payment endpoint created: paste its URL into the provider’s dashboard');
    }
    d.close();
    onDone();
  });
}

async function mappingDialog(e, onDone) {
  const projects = await loadProjects().catch(() => []);
  const form = h(
    'form',
    { novalidate: true, id: 'payment-mapping-form', 'data-test': 'payment-mapping-form' },
    field({
      label: 'Provider id',
      name: 'providerRef',
      required: true,
      maxlength: 200,
      spellcheck: 'false',
      hint: REF_HINT[e.provider],
      test: 'payment-mapping-ref',
    }),
    field({
      label: 'Project',
      name: 'projectId',
      type: 'select',
      options: projects.map((p) => [p.id, p.name]),
      test: 'payment-mapping-project',
    }),
    h(
      'div',
      { class: 'grid grid-2' },
      field({
        label: 'Tier',
        name: 'tier',
        type: 'select',
        options: ['PERSONAL', 'PROFESSIONAL', 'BUSINESS', 'ENTERPRISE'].map((t) => [
          t,
          titleCase(t),
        ]),
        test: 'payment-mapping-tier',
      }),
      field({
        label: 'License type',
        name: 'licenseType',
        type: 'select',
        options: [
          ['', 'From the plan or project'],
          ...['PERPETUAL', 'SUBSCRIPTION', 'TRIAL', 'BETA'].map((t) => [t, titleCase(t)]),
        ],
        test: 'payment-mapping-type',
      }),
      field({
        label: 'Plan',
        name: 'plan',
        type: 'select',
        options: [
          ['', 'None: the provider’s period sets the expiry'],
          ...['DAILY', 'WEEKLY', 'MONTHLY', 'LIFETIME'].map((t) => [t, titleCase(t)]),
        ],
        test: 'payment-mapping-plan',
      }),
      field({
        label: 'Machines per license',
        name: 'maxActivations',
        type: 'number',
        min: 1,
        max: 1000,
        placeholder: 'project default',
        test: 'payment-mapping-activations',
      }),
    ),
    field({
      label: 'Entitlements',
      name: 'entitlements',
      placeholder: 'e.g. PRO, SYNC',
      hint: 'Codes of the project, separated by commas.',
      test: 'payment-mapping-entitlements',
    }),
    formError('payment-mapping-error'),
  );
  const submit = h(
    'button',
    {
      type: 'submit',
      class: 'btn btn-primary',
      form: 'payment-mapping-form',
      'data-test': 'payment-mapping-save',
    },
    'Save mapping',
  );
  const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
  const d = openDialog({
    title: `Map a ${providerName(e.provider)} id`,
    body: form,
    foot: [cancel, submit],
    test: 'payment-mapping-dialog',
  });
  cancel.addEventListener('click', d.close);
  onSubmit(form, async (fd) => {
    const body = {
      providerRef: String(fd.get('providerRef') || '').trim(),
      projectId: fd.get('projectId'),
      tier: fd.get('tier'),
      entitlements: parseCodes(fd.get('entitlements')),
    };
    if (fd.get('licenseType')) body.licenseType = fd.get('licenseType');
    if (fd.get('plan')) body.plan = fd.get('plan');
    if (fd.get('maxActivations')) body.maxActivations = Number(fd.get('maxActivations'));
    const data = await api.post(
      `/api/payment-endpoints/${encodeURIComponent(e.id)}/mappings`,
      body,
    );
    toast('Mapping saved');
    d.close();
    onDone(data.mappings || []);
  });
}
