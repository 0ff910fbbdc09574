// Abuse detection (/api/abuse/*): flags with their evidence (resolve, dismiss, reopen), IP
// blocks (lift), and a project's policy (thresholds, automatic actions, webhook).

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
  titleCase,
  toast,
} from '../../shared/ui.js';
import {
  failInto,
  handledAuth,
  hrefFor,
  loadProjects,
  pageHead,
  pager,
  projectName,
  state,
} from '../state.js';

const KINDS = [
  'KEY_GUESSING',
  'KEY_SHARING',
  'ACTIVATION_CHURN',
  'HWID_RESET_ABUSE',
  'SESSION_SHARING',
  'SEAT_PRESSURE',
  'FLOOD',
];
const STATES = ['OPEN', 'RESOLVED', 'DISMISSED'];
const KIND_TEXT = {
  KEY_GUESSING: 'Key guessing',
  KEY_SHARING: 'Key sharing',
  ACTIVATION_CHURN: 'Activation churn',
  HWID_RESET_ABUSE: 'HWID resets',
  SESSION_SHARING: 'Session sharing',
  SEAT_PRESSURE: 'Seat pressure',
  FLOOD: 'Scripted flood',
};
const THRESHOLDS = [
  ['keyGuessingPerIp', 'Unknown keys from one IP'],
  ['keyGuessingPerNetwork', 'Unknown keys from one network (/24, /64)'],
  ['sharingIps', 'Distinct IPs per license'],
  ['sharingHwids', 'Distinct HWIDs per license'],
  ['sharingMachineNames', 'Distinct machine names per license'],
  ['activationChurn', 'Deactivations per license'],
  ['hwidResets', 'HWID resets per license'],
  ['sessionIps', 'IPs refreshing one session'],
  ['seatPressure', 'Refusals past the seat limits'],
  ['rateLimitHits', 'Rate-limit refusals per IP / API key'],
];
const stateKind = { OPEN: 'danger', RESOLVED: 'ok', DISMISSED: '' };

export async function render(root, { parts, query }) {
  const tab = parts[0] === 'blocks' || parts[0] === 'policy' ? parts[0] : 'flags';
  const tabs = h(
    'nav',
    { class: 'tabs', 'aria-label': 'Abuse sections', 'data-test': 'abuse-tabs' },
    [
      ['flags', 'Flags'],
      ['blocks', 'IP blocks'],
      ['policy', 'Policy'],
    ].map(([name, label]) =>
      h(
        'a',
        {
          href: `#/abuse${name === 'flags' ? '' : `/${name}`}`,
          'aria-current': name === tab ? 'page' : null,
          'data-test': `abuse-tab-${name}`,
        },
        label,
      ),
    ),
  );
  const body = h('div', {});
  mount(
    root,
    pageHead(
      'Abuse detection',
      'Shared keys, key guessing and floods found in your traffic, with the evidence.',
    ),
    tabs,
    body,
  );
  await loadProjects().catch(handledAuth);
  if (tab === 'blocks') return renderBlocks(body, query);
  if (tab === 'policy') return renderPolicy(body, query);
  return renderFlags(body, query);
}

/* ---------- Flags ---------- */

function renderFlags(root, query) {
  const filters = {
    projectId: query.get('projectId') || '',
    kind: query.get('kind') || '',
    state: query.has('state') ? query.get('state') : 'OPEN',
    page: Math.max(1, Number(query.get('page')) || 1),
  };
  const projectOptions = [['', 'All projects'], ...loadedProjects().map((p) => [p.id, p.name])];
  const form = h(
    'form',
    { class: 'toolbar', role: 'search', 'data-test': 'abuse-filters' },
    field({
      label: 'Project',
      name: 'projectId',
      type: 'select',
      options: projectOptions,
      value: filters.projectId,
      test: 'abuse-filter-project',
    }),
    field({
      label: 'Kind',
      name: 'kind',
      type: 'select',
      options: [['', 'Any kind'], ...KINDS.map((k) => [k, KIND_TEXT[k]])],
      value: filters.kind,
      test: 'abuse-filter-kind',
    }),
    field({
      label: 'State',
      name: 'state',
      type: 'select',
      options: [['', 'Any state'], ...STATES.map((s) => [s, titleCase(s)])],
      value: filters.state,
      test: 'abuse-filter-state',
    }),
  );
  const results = h('div', { 'data-test': 'abuse-results' });
  mount(root, form, results);

  let controller = null;
  async function load() {
    history.replaceState(
      null,
      '',
      hrefFor('/abuse', {
        ...filters,
        state: filters.state === 'OPEN' ? '' : filters.state || 'any',
        page: filters.page > 1 ? filters.page : '',
      }),
    );
    if (controller) controller.abort();
    controller = new AbortController();
    mount(results, loading('Loading flags…'));
    try {
      const q = { ...filters, state: filters.state === 'any' ? '' : filters.state, limit: 50 };
      const data = await api.get('/api/abuse/flags', { query: q, signal: controller.signal });
      const flags = data.flags || [];
      if (q.state === 'OPEN' && !q.projectId && !q.kind && data.pagination) {
        window.dispatchEvent(new CustomEvent('kw:abuse-count', { detail: data.pagination.total }));
      }
      if (flags.length === 0) {
        mount(
          results,
          h(
            'div',
            { class: 'card' },
            empty(
              filters.state === 'OPEN' ? 'Nothing suspicious' : 'No flags',
              filters.state === 'OPEN'
                ? 'No open flags: no shared or attacked keys were found.'
                : 'Nothing matches these filters.',
              null,
              'abuse-empty',
            ),
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
            { class: 'table cards-table', 'data-test': 'abuse-table' },
            h(
              'thead',
              {},
              h(
                'tr',
                {},
                ['Last seen', 'Kind', 'Subject', 'Project', 'Times', 'State', ''].map((x) =>
                  h('th', {}, x || h('span', { class: 'sr-only' }, 'Actions')),
                ),
              ),
            ),
            h(
              'tbody',
              {},
              flags.map((f) =>
                h(
                  'tr',
                  { 'data-test': 'abuse-row', 'data-id': f.id },
                  h(
                    'td',
                    { 'data-label': 'Last seen', class: 'nowrap' },
                    timeEl(f.updatedAt, true),
                  ),
                  h('td', { 'data-label': 'Kind' }, KIND_TEXT[f.kind] || titleCase(f.kind)),
                  h('td', { 'data-label': 'Subject' }, subjectText(f)),
                  h(
                    'td',
                    { 'data-label': 'Project' },
                    f.projectId ? projectName(f.projectId) : h('span', { class: 'muted' }, '—'),
                  ),
                  h('td', { 'data-label': 'Times' }, String(f.occurrences)),
                  h(
                    'td',
                    { 'data-label': 'State' },
                    h(
                      'span',
                      {
                        class: `badge ${stateKind[f.state] ? `badge-${stateKind[f.state]}` : ''}`,
                        'data-test': 'abuse-state',
                      },
                      titleCase(f.state),
                    ),
                  ),
                  h(
                    'td',
                    { class: 'actions' },
                    h(
                      'button',
                      {
                        type: 'button',
                        class: 'btn btn-sm',
                        'data-test': 'abuse-view',
                        onclick: () => flagDialog(f.id, load),
                      },
                      'Evidence',
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
            filters.page = n;
            load();
          },
          'abuse-pager',
        ),
      );
    } catch (err) {
      if (err.name === 'AbortError') return;
      failInto(results, err, 'abuse-error');
    }
  }
  form.addEventListener('change', () => {
    const fd = new FormData(form);
    filters.projectId = fd.get('projectId') || '';
    filters.kind = fd.get('kind') || '';
    filters.state = fd.get('state') || 'any';
    filters.page = 1;
    load();
  });
  load();
  return () => {
    if (controller) controller.abort();
  };
}

function loadedProjects() {
  // render() awaited loadProjects(), so the cache is filled.
  return state.projects || [];
}

function subjectText(f) {
  if (f.subjectType === 'LICENSE' && f.keyId) {
    return h(
      'a',
      { href: `#/keys/${encodeURIComponent(f.keyId)}`, class: 'mono small' },
      `key ${f.keyId}`,
    );
  }
  const kind =
    { IP: 'IP', NETWORK: 'Network', API_KEY: 'API key', LICENSE: 'License' }[f.subjectType] ||
    titleCase(f.subjectType);
  return h('span', { class: 'mono small' }, `${kind} ${f.subject}`);
}

async function flagDialog(id, onChange) {
  let flag;
  try {
    flag = await api.get(`/api/abuse/flags/${encodeURIComponent(id)}`);
  } catch (err) {
    toast(err.message, 'error');
    return;
  }
  const ev = flag.evidence || {};
  const list = (title, items) =>
    items?.length
      ? h(
          'div',
          { class: 'evidence-list' },
          h('h3', { class: 'h-card' }, title),
          h(
            'ul',
            {
              class: 'chips',
              'data-test': `abuse-evidence-${title.toLowerCase().replace(/\W+/g, '-')}`,
            },
            items.map((x) => h('li', { class: 'chip mono small' }, String(x))),
          ),
        )
      : null;
  const facts = h(
    'dl',
    { class: 'props', 'data-test': 'abuse-evidence' },
    h('dt', {}, 'Kind'),
    h('dd', {}, KIND_TEXT[flag.kind] || flag.kind),
    h('dt', {}, 'Subject'),
    h('dd', {}, subjectText(flag)),
    h('dt', {}, 'Signal'),
    h('dd', {}, ev.signal ? String(ev.signal) : '—'),
    h('dt', {}, 'Count'),
    h(
      'dd',
      {},
      ev.count !== undefined
        ? `${ev.count} (threshold ${ev.threshold} in ${ev.windowSecs} s)`
        : '—',
    ),
    h('dt', {}, 'First seen'),
    h('dd', {}, flag.createdAt ? timeEl(flag.createdAt) : '—'),
    h('dt', {}, 'Last seen'),
    h('dd', {}, flag.updatedAt ? timeEl(flag.updatedAt) : '—'),
    h('dt', {}, 'Times'),
    h('dd', {}, String(flag.occurrences)),
    h('dt', {}, 'Actions taken'),
    h(
      'dd',
      {},
      flag.actions?.length
        ? flag.actions
            .map((a) => (typeof a === 'string' ? a : a.kind || a.type || JSON.stringify(a)))
            .join(', ')
        : 'none (flag only)',
    ),
    h('dt', {}, 'State'),
    h(
      'dd',
      {},
      titleCase(flag.state),
      flag.resolvedBy ? h('span', { class: 'muted small' }, ` by ${flag.resolvedBy}`) : null,
    ),
  );
  const raw = h(
    'details',
    {},
    h('summary', {}, 'All evidence (JSON)'),
    h('pre', { class: 'evidence-json small' }, JSON.stringify(ev, null, 2)),
    copyButton(() => JSON.stringify(flag, null, 2), { label: 'Copy as JSON', test: 'abuse-copy' }),
  );
  const setState = (state, label, done, cls, test) =>
    h(
      'button',
      {
        type: 'button',
        class: `btn ${cls}`,
        'data-test': test,
        onclick: async (e) => {
          e.currentTarget.disabled = true;
          try {
            await api.patch(`/api/abuse/flags/${encodeURIComponent(flag.id)}`, { state });
            toast(`Flag ${done}`);
            dlg.close();
            onChange();
          } catch (err) {
            e.currentTarget.disabled = false;
            errorSlot.textContent = err.message;
          }
        },
      },
      label,
    );
  const errorSlot = formError('abuse-flag-error');
  const foot =
    flag.state === 'OPEN'
      ? [
          setState(
            'DISMISSED',
            'Dismiss (false positive)',
            'dismissed',
            'btn-ghost',
            'abuse-dismiss',
          ),
          setState('RESOLVED', 'Mark resolved', 'resolved', 'btn-primary', 'abuse-resolve'),
        ]
      : [setState('OPEN', 'Reopen', 'reopened', 'btn', 'abuse-reopen')];
  const dlg = openDialog({
    title: `${KIND_TEXT[flag.kind] || flag.kind}`,
    wide: true,
    test: 'abuse-dialog',
    body: [
      facts,
      list('Addresses', ev.ips),
      list('HWIDs', ev.hwids),
      list('Machine names', ev.machineNames),
      h(
        'p',
        { class: 'muted small' },
        'Dismiss a false positive: its automatic actions (a suspended license, a blocked address) are undone. Resolve keeps them.',
      ),
      raw,
      errorSlot,
    ],
    foot,
  });
}

/* ---------- Blocks ---------- */

function renderBlocks(root) {
  const results = h('div', { 'data-test': 'blocks-results' });
  const onlyActive = checkbox({
    label: 'Only blocks in force',
    name: 'active',
    checked: true,
    test: 'blocks-active',
  });
  mount(root, h('div', { class: 'toolbar' }, onlyActive), results);
  let page = 1;
  async function load() {
    mount(results, loading('Loading blocks…'));
    try {
      const active = onlyActive.querySelector('input').checked;
      const data = await api.get('/api/abuse/blocks', {
        query: { active: active ? 'true' : '', page, limit: 50 },
      });
      const blocks = data.blocks || [];
      if (blocks.length === 0) {
        mount(
          results,
          h(
            'div',
            { class: 'card' },
            empty(
              'No blocked addresses',
              'Addresses are blocked only when a project policy asks for it.',
              null,
              'blocks-empty',
            ),
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
            { class: 'table cards-table', 'data-test': 'blocks-table' },
            h(
              'thead',
              {},
              h(
                'tr',
                {},
                ['Address', 'Reason', 'Project', 'Blocked', 'Until', 'State', ''].map((x) =>
                  h('th', {}, x || h('span', { class: 'sr-only' }, 'Actions')),
                ),
              ),
            ),
            h(
              'tbody',
              {},
              blocks.map((b) => {
                const lift = b.active
                  ? h(
                      'button',
                      { type: 'button', class: 'btn btn-sm', 'data-test': 'block-lift' },
                      'Lift',
                    )
                  : null;
                if (lift)
                  lift.addEventListener('click', () =>
                    confirmDialog({
                      title: `Lift the block on ${b.target}?`,
                      message: 'The address is served again at once.',
                      confirmLabel: 'Lift the block',
                      test: 'block-lift-dialog',
                      onConfirm: async () => {
                        await api.del(`/api/abuse/blocks/${encodeURIComponent(b.id)}`);
                        toast('Block lifted');
                        load();
                      },
                    }),
                  );
                return h(
                  'tr',
                  { 'data-test': 'block-row' },
                  h('td', { 'data-label': 'Address', class: 'mono small' }, b.target),
                  h('td', { 'data-label': 'Reason' }, b.reason || '—'),
                  h(
                    'td',
                    { 'data-label': 'Project' },
                    b.projectId ? projectName(b.projectId) : '—',
                  ),
                  h('td', { 'data-label': 'Blocked' }, timeEl(b.createdAt, true)),
                  h('td', { 'data-label': 'Until' }, timeEl(b.expiresAt)),
                  h(
                    'td',
                    { 'data-label': 'State' },
                    b.active
                      ? h('span', { class: 'badge badge-danger' }, 'Blocked')
                      : h('span', { class: 'badge' }, b.liftedAt ? 'Lifted' : 'Expired'),
                  ),
                  h('td', { class: 'actions' }, lift),
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
          'blocks-pager',
        ),
      );
    } catch (err) {
      failInto(results, err, 'blocks-error');
    }
  }
  onlyActive.addEventListener('change', () => {
    page = 1;
    load();
  });
  load();
}

/* ---------- Policy ---------- */

async function renderPolicy(root, query) {
  const projects = loadedProjects();
  if (projects.length === 0) {
    mount(
      root,
      h(
        'div',
        { class: 'card' },
        empty(
          'No projects yet',
          'A policy belongs to a project.',
          h('a', { class: 'btn btn-primary', href: '#/projects' }, 'Create a project'),
          'policy-empty',
        ),
      ),
    );
    return;
  }
  const projectId = query.get('projectId') || projects[0].id;
  const picker = field({
    label: 'Project',
    name: 'projectId',
    type: 'select',
    options: projects.map((p) => [p.id, p.name]),
    value: projectId,
    test: 'policy-project',
  });
  const holder = h('div', {}, loading('Loading the policy…'));
  mount(root, h('div', { class: 'toolbar' }, picker), holder);
  picker.querySelector('select').addEventListener('change', (e) => {
    location.hash = hrefFor('/abuse/policy', { projectId: e.target.value });
  });
  let policy;
  try {
    policy = await api.get(`/api/projects/${encodeURIComponent(projectId)}/abuse-policy`);
  } catch (err) {
    failInto(holder, err, 'policy-error');
    return;
  }
  const p = policy.policy || policy;
  const form = h(
    'form',
    { class: 'card', novalidate: true, 'data-test': 'policy-form' },
    h('h2', { class: 'h-card' }, 'Detection'),
    checkbox({
      label: 'Detect abuse for this project',
      name: 'enabled',
      checked: p.enabled !== false,
      test: 'policy-enabled',
    }),
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'table', 'data-test': 'policy-thresholds' },
        h(
          'thead',
          {},
          h('tr', {}, h('th', {}, 'Signal'), h('th', {}, 'Count'), h('th', {}, 'Window (seconds)')),
        ),
        h(
          'tbody',
          {},
          THRESHOLDS.map(([key, label]) => {
            const t = p[key] || {};
            return h(
              'tr',
              {},
              h('td', {}, label),
              h(
                'td',
                {},
                h('input', {
                  type: 'number',
                  min: 1,
                  name: `${key}.count`,
                  value: t.count ?? '',
                  'aria-label': `${label}: count`,
                  class: 'input-narrow',
                  'data-test': `policy-${key}-count`,
                }),
              ),
              h(
                'td',
                {},
                h('input', {
                  type: 'number',
                  min: 1,
                  name: `${key}.windowSecs`,
                  value: t.windowSecs ?? '',
                  'aria-label': `${label}: window in seconds`,
                  class: 'input-narrow',
                  'data-test': `policy-${key}-window`,
                }),
              ),
            );
          }),
        ),
      ),
    ),
    h('h2', { class: 'h-card' }, 'Automatic actions'),
    h(
      'p',
      { class: 'muted small' },
      'By default Keyward only flags. Every automatic action is audited and can be undone.',
    ),
    checkbox({
      label: 'Suspend a license flagged for sharing, churn, resets or seat pressure',
      name: 'suspendLicense',
      checked: !!p.suspendLicense,
      test: 'policy-suspend',
    }),
    checkbox({
      label: 'Block an address flagged for key guessing or floods',
      name: 'blockIp',
      checked: !!p.blockIp,
      test: 'policy-block',
    }),
    field({
      label: 'Block for (seconds)',
      name: 'blockSecs',
      type: 'number',
      min: 60,
      value: p.blockSecs ?? 3600,
      hint: '60 to 2,592,000 (30 days).',
      test: 'policy-block-secs',
    }),
    h('h2', { class: 'h-card' }, 'Webhook'),
    field({
      label: 'Webhook URL',
      name: 'webhookUrl',
      type: 'url',
      value: p.webhookUrl || '',
      placeholder: 'https://hooks.example.com/keyward',
      hint: 'Each new flag is POSTed here as an abuse.flag.created event, signed the Standard Webhooks way, and retried like every event webhook. Leave empty for none.',
      test: 'policy-webhook',
    }),
    checkbox({
      label: p.webhookSecretSet ? 'Rotate the webhook secret' : 'Create the webhook secret',
      name: 'rotateWebhookSecret',
      checked: false,
      test: 'policy-rotate',
    }),
    formError('policy-error'),
    h(
      'div',
      { class: 'btn-row' },
      h(
        'button',
        { type: 'submit', class: 'btn btn-primary', 'data-test': 'policy-save' },
        'Save the policy',
      ),
    ),
  );
  const secretSlot = h('div', { 'data-test': 'policy-secret' });
  mount(holder, form, secretSlot);
  onSubmit(form, async (fd) => {
    const body = {
      enabled: fd.get('enabled') === 'on',
      suspendLicense: fd.get('suspendLicense') === 'on',
      blockIp: fd.get('blockIp') === 'on',
      blockSecs: Number(fd.get('blockSecs')),
      webhookUrl: String(fd.get('webhookUrl') || '').trim() || null,
    };
    if (fd.get('rotateWebhookSecret') === 'on') body.rotateWebhookSecret = true;
    for (const [key] of THRESHOLDS) {
      const count = Number(fd.get(`${key}.count`));
      const windowSecs = Number(fd.get(`${key}.windowSecs`));
      if (count || windowSecs)
        body[key] = { ...(count ? { count } : {}), ...(windowSecs ? { windowSecs } : {}) };
    }
    const saved = await api.patch(
      `/api/projects/${encodeURIComponent(projectId)}/abuse-policy`,
      body,
    );
    const out = saved.policy || saved;
    toast('Policy saved');
    if (out.webhookSecret) {
      mount(
        secretSlot,
        h(
          'div',
          { class: 'alert alert-info' },
          h(
            'p',
            {},
            'The webhook secret, shown only now: store it where your receiver verifies signatures.',
          ),
          h('code', { class: 'mono' }, out.webhookSecret),
          ' ',
          copyButton(() => out.webhookSecret, { label: 'Copy', test: 'policy-secret-copy' }),
        ),
      );
    }
  });
}
