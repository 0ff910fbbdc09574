// One license key: #/keys/ID. Details, machines (HWID), sessions, payments, recent logs; actions ban,
// suspend, reactivate, revoke (DELETE), reset HWID, max sessions, note and entitlements (PATCH).

import { api } from '../../shared/api.js';
import {
  checkbox,
  confirmDialog,
  copyButton,
  field,
  fmtDateTime,
  formError,
  h,
  loading,
  mount,
  onSubmit,
  statusBadge,
  timeEl,
  titleCase,
  toast,
} from '../../shared/ui.js';
import {
  entitlementBadges,
  failInto,
  hrefFor,
  loadProjects,
  pageHead,
  projectCodes,
  projectName,
} from '../state.js';
import { offlineDialog } from './keys.js';

// The shown key's payment timeline: the key's edits repaint without reading it again.
let keyPayments = [];

export async function render(root, { parts }) {
  const id = parts[0];
  mount(root, loading('Loading the key…'));
  await loadProjects().catch(() => null);
  let detail;
  try {
    detail = await api.get(`/api/keys/${encodeURIComponent(id)}`);
  } catch (err) {
    if (err.status === 404) {
      mount(
        root,
        h(
          'div',
          { class: 'card' },
          h(
            'div',
            { class: 'empty', 'data-test': 'key-not-found' },
            h('div', { class: 'empty-title' }, 'Key not found'),
            'It may belong to a deleted project.',
            h('div', {}, h('a', { class: 'btn', href: '#/keys' }, 'All keys')),
          ),
        ),
      );
      return;
    }
    failInto(root, err);
    return;
  }
  // The payment timeline is a second read; a key without payments shows an empty section.
  keyPayments = await api
    .get(`/api/keys/${encodeURIComponent(id)}/payments`)
    .then((d) => d.payments || [])
    .catch(() => []);
  paint(root, detail);
}

function paint(root, detail) {
  const k = detail.key;
  document.title = `${k.key} · Keyward`;
  const actionError = h('div', {
    class: 'alert alert-error',
    role: 'alert',
    'data-test': 'key-action-error',
  });
  const update = async (body, message) => {
    const data = await api.patch(`/api/keys/${encodeURIComponent(k.id)}`, body);
    toast(message);
    paint(root, data);
  };
  const act = (btn, fn) =>
    btn.addEventListener('click', async () => {
      actionError.textContent = '';
      try {
        await fn();
      } catch (err) {
        actionError.textContent = err.message;
      }
    });

  const final = k.status === 'REVOKED';
  const buttons = [];
  if (!final && k.status !== 'ACTIVE' && k.status !== 'EXPIRED') {
    const b = h(
      'button',
      { type: 'button', class: 'btn', 'data-test': 'key-reactivate' },
      'Reactivate',
    );
    act(b, () => update({ status: 'ACTIVE' }, 'Key reactivated'));
    buttons.push(b);
  }
  if (!final && k.status !== 'SUSPENDED') {
    const b = h('button', { type: 'button', class: 'btn', 'data-test': 'key-suspend' }, 'Suspend');
    act(b, () =>
      confirmDialog({
        title: 'Suspend this key?',
        message: 'Validation is refused until you reactivate it.',
        confirmLabel: 'Suspend',
        test: 'key-suspend-dialog',
        onConfirm: () => update({ status: 'SUSPENDED' }, 'Key suspended'),
      }),
    );
    buttons.push(b);
  }
  if (!final && k.status !== 'BANNED') {
    const b = h(
      'button',
      { type: 'button', class: 'btn btn-outline-danger', 'data-test': 'key-ban' },
      'Ban',
    );
    act(b, () =>
      confirmDialog({
        title: 'Ban this key?',
        message: 'The key holder is refused with a "banned" answer. You can lift a ban later.',
        confirmLabel: 'Ban key',
        danger: true,
        test: 'key-ban-dialog',
        onConfirm: () => update({ status: 'BANNED' }, 'Key banned'),
      }),
    );
    buttons.push(b);
  }
  if (!final) {
    const b = h(
      'button',
      { type: 'button', class: 'btn btn-danger', 'data-test': 'key-revoke' },
      'Revoke',
    );
    act(b, () =>
      confirmDialog({
        title: 'Revoke this key?',
        message: 'Revoking is final: the key can never be used or reactivated again.',
        confirmLabel: 'Revoke key',
        danger: true,
        test: 'key-revoke-dialog',
        onConfirm: async () => {
          const data = await api.del(`/api/keys/${encodeURIComponent(k.id)}`);
          toast('Key revoked');
          paint(root, data);
        },
      }),
    );
    buttons.push(b);
  }
  const resetBtn = h(
    'button',
    {
      type: 'button',
      class: 'btn',
      'data-test': 'key-reset-hwid',
      disabled: detail.activations.length === 0 && !k.hwid,
    },
    'Reset HWID',
  );
  act(resetBtn, () =>
    confirmDialog({
      title: 'Reset the HWID binding?',
      message:
        'Every bound machine is released; the key binds to the next machine that validates it.',
      confirmLabel: 'Reset HWID',
      test: 'key-reset-dialog',
      onConfirm: () => update({ resetHwid: true }, 'HWID binding reset'),
    }),
  );

  const offlineBtn = h(
    'button',
    { type: 'button', class: 'btn', 'data-test': 'key-offline', disabled: final },
    'Offline activation',
  );
  offlineBtn.addEventListener('click', () =>
    offlineDialog(
      async () => paint(root, await api.get(`/api/keys/${encodeURIComponent(k.id)}`)),
      `Paste the activation request an app without internet shows for this key (${k.key}): the machine is activated with the key\u2019s usual seat rules, and its license file downloads for you to pass on.`,
    ),
  );

  // The project's codes, and any the key carries that the cached list does not know yet.
  const codes = [...new Set([...projectCodes(k.projectId), ...(k.entitlements || [])])];
  const limitsForm = h(
    'form',
    { novalidate: true, 'data-test': 'key-limits-form' },
    h(
      'div',
      { class: 'form-grid' },
      field({
        label: 'Max sessions',
        name: 'maxSessions',
        type: 'number',
        min: 1,
        max: 100,
        value: k.maxSessions,
        test: 'key-max-sessions',
      }),
      field({ label: 'Note', name: 'note', value: k.note || '', maxlength: 500, test: 'key-note' }),
    ),
    h(
      'fieldset',
      { 'data-test': 'key-entitlements-edit' },
      h('legend', { class: 'small' }, 'Entitlements'),
      codes.length === 0
        ? h(
            'p',
            { class: 'muted small' },
            'This project declares no entitlements (add them in its settings).',
          )
        : codes.map((c) =>
            checkbox({
              label: c,
              name: `ent:${c}`,
              checked: (k.entitlements || []).includes(c),
              test: `key-entitlement-${c}`,
            }),
          ),
    ),
    formError('key-limits-error'),
    h(
      'button',
      { type: 'submit', class: 'btn btn-primary', 'data-test': 'key-limits-save' },
      'Save',
    ),
  );
  onSubmit(
    limitsForm,
    async (fd) => {
      const body = { maxSessions: Number(fd.get('maxSessions')) };
      const note = String(fd.get('note') || '').trim();
      body.note = note === '' ? null : note;
      if (codes.length > 0) body.entitlements = codes.filter((c) => fd.get(`ent:${c}`) === 'on');
      await update(body, 'Key updated');
    },
    { sessions: 'maxSessions' },
  );

  mount(
    root,
    pageHead(
      h('span', { class: 'mono', 'data-test': 'key-value' }, k.key),
      h(
        'span',
        {},
        statusBadge(k.status, 'key-status'),
        ' ',
        k.plan ? titleCase(k.plan) : 'No plan',
        ' · ',
        h('a', { href: `#/projects/${encodeURIComponent(k.projectId)}` }, projectName(k.projectId)),
      ),
      [copyButton(k.key, { test: 'key-copy', cls: 'btn', label: 'Copy key' })],
      h('a', { href: hrefFor('/keys', { projectId: k.projectId }) }, '← License keys'),
    ),
    h(
      'div',
      { class: 'grid grid-2' },
      h(
        'section',
        { class: 'card', 'data-test': 'key-info' },
        h('h2', {}, 'Details'),
        h(
          'dl',
          { class: 'props' },
          h('dt', {}, 'Status'),
          h('dd', {}, statusBadge(k.status)),
          h('dt', {}, 'Plan'),
          h(
            'dd',
            {},
            k.plan ? `${titleCase(k.plan)}${k.customDays ? ` (${k.customDays} days)` : ''}` : '—',
          ),
          h('dt', {}, 'Expires'),
          h(
            'dd',
            { 'data-test': 'key-expires' },
            k.expiresAt
              ? fmtDateTime(k.expiresAt)
              : k.plan === 'LIFETIME'
                ? 'Never'
                : 'Starts at first activation',
          ),
          h('dt', {}, 'Machines'),
          h(
            'dd',
            {},
            `${k.activations} of ${k.maxActivations}${k.hwidLocked ? ' (HWID locked)' : ''}`,
          ),
          h('dt', {}, 'Max sessions'),
          h('dd', { 'data-test': 'key-max-sessions-value' }, String(k.maxSessions)),
          h('dt', {}, 'HWID'),
          h(
            'dd',
            { class: 'mono small', 'data-test': 'key-hwid' },
            k.hwid || h('span', { class: 'muted' }, 'not bound'),
          ),
          h('dt', {}, 'Customer'),
          h(
            'dd',
            { 'data-test': 'key-customer' },
            k.customerEmail
              ? h(
                  'a',
                  {
                    href: `#/customers/${encodeURIComponent(k.customerEmail)}`,
                    'data-test': 'key-customer-link',
                  },
                  k.customerName ? `${k.customerName} <${k.customerEmail}>` : k.customerEmail,
                )
              : h('span', { class: 'muted' }, '—'),
            k.orderId ? h('div', { class: 'muted small' }, `Order ${k.orderId}`) : null,
          ),
          h('dt', {}, 'Note'),
          h('dd', {}, k.note || h('span', { class: 'muted' }, '—')),
          h('dt', {}, 'Entitlements'),
          h('dd', {}, entitlementBadges(k.entitlements, 'key-entitlements')),
          h('dt', {}, 'Created'),
          h('dd', {}, fmtDateTime(k.createdAt)),
        ),
      ),
      h(
        'section',
        { class: 'card', 'data-test': 'key-actions' },
        h('h2', {}, 'Actions'),
        final
          ? h('p', { class: 'alert alert-warn' }, 'This key is revoked. Revocation is final.')
          : null,
        h('div', { class: 'btn-row' }, buttons, resetBtn, offlineBtn, emailKeyButton(k)),
        actionError,
        h('hr'),
        limitsForm,
      ),
    ),
    section(
      'Machines (HWID)',
      'key-activations',
      detail.activations,
      ['HWID', 'Machine', 'IP', 'Activated', 'Last seen'],
      (a) => [
        h('span', { class: 'mono small' }, a.hwid),
        a.machineName || '—',
        a.ip || '—',
        timeEl(a.activatedAt),
        timeEl(a.lastSeenAt, true),
      ],
      'No machine is bound to this key yet.',
    ),
    section(
      'Sessions',
      'key-sessions',
      detail.sessions,
      ['Session', 'HWID', 'IP', 'Started', 'Last seen', 'State'],
      (s) => [
        h('span', { class: 'mono small' }, s.id.slice(0, 8)),
        h('span', { class: 'mono small' }, s.hwid),
        s.ip || '—',
        timeEl(s.startedAt),
        timeEl(s.lastSeenAt, true),
        h('span', { class: `badge ${s.live ? 'badge-ok' : ''}` }, s.live ? 'Live' : 'Ended'),
      ],
      'No sessions yet.',
    ),
    section(
      'Payments',
      'key-payments',
      keyPayments,
      ['Received', 'Provider', 'Event', 'Effect', 'Outcome'],
      (p) => [
        timeEl(p.receivedAt),
        p.provider ? titleCase(p.provider) : '—',
        h(
          'span',
          { title: p.eventId },
          h('span', { class: 'mono small' }, p.eventType),
          p.customerEmail ? h('div', { class: 'muted small' }, p.customerEmail) : null,
        ),
        titleCase(p.effect),
        h('span', { title: p.message }, titleCase(p.outcome)),
      ],
      'No payment has made or changed this key.',
    ),
    section(
      'Recent activity',
      'key-logs',
      detail.logs,
      ['When', 'Action', 'Actor', 'IP', 'Detail'],
      (l) => [
        timeEl(l.at),
        h('span', { class: 'mono small' }, l.action),
        h('span', { title: l.actor }, actorLabel(l.actor)),
        l.ip || '—',
        detailText(l.detail),
      ],
      'No activity recorded yet.',
      h(
        'a',
        { href: hrefFor('/logs', { keyId: k.id }), class: 'btn btn-sm' },
        'All logs of this key',
      ),
    ),
  );
}

export const shortId = (v) => (v.length > 14 ? `${v.slice(0, 8)}…${v.slice(-4)}` : v);

/** "operator:op_abc…" → "operator op_abc1…h36"; "client" as it is. */
export function actorLabel(actor) {
  if (!actor) return '—';
  const i = actor.indexOf(':');
  if (i < 0) return actor;
  return `${actor.slice(0, i)} ${shortId(actor.slice(i + 1))}`;
}

export function detailText(detail) {
  if (detail === null || detail === undefined) return h('span', { class: 'muted' }, '—');
  if (typeof detail !== 'object') return String(detail);
  const parts = Object.entries(detail).map(
    ([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`,
  );
  return h('span', { class: 'small mono detail' }, parts.join(' · '));
}

function section(title, test, rows, headers, cells, emptyText, extra) {
  return h(
    'section',
    { class: 'card', 'data-test': test },
    h('div', { class: 'card-head' }, h('h2', {}, title), extra || null),
    rows.length === 0
      ? h('p', { class: 'muted', 'data-test': `${test}-empty` }, emptyText)
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
  );
}

/** "E-mail the key to the customer": queues the license-delivered message (see the outbox). */
function emailKeyButton(k) {
  if (!k.customerEmail || k.status === 'REVOKED') return null;
  const btn = h(
    'button',
    { type: 'button', class: 'btn', 'data-test': 'key-email' },
    'E-mail the key to the customer',
  );
  btn.addEventListener('click', () =>
    confirmDialog({
      title: 'E-mail the key?',
      message: `The key, its expiry and the portal link go to ${k.customerEmail}.`,
      confirmLabel: 'Send',
      test: 'key-email-dialog',
      onConfirm: async () => {
        await api.post(`/api/keys/${encodeURIComponent(k.id)}/send`);
        toast('Queued: see E-mail → Outbox');
      },
    }),
  );
  return btn;
}
