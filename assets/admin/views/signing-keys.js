// A project's signing keys (credentials tab): the list (kid, created, current/retired, endorsed
// by), "Rotate key" (a new current key endorsed by the previous one) and "Retire" for keys that
// no longer sign.

import { api } from '../../shared/api.js';
import { confirmDialog, copyButton, empty, h, mount, timeEl, toast } from '../../shared/ui.js';
import { failInto } from '../state.js';

// `onRotate` runs after a rotation: the project's public key changed.
export async function render(root, project, onRotate) {
  const list = h('div', { 'data-test': 'signing-keys-list' });
  const rotate = h(
    'button',
    { type: 'button', class: 'btn btn-outline-danger', 'data-test': 'signing-key-rotate' },
    'Rotate key…',
  );
  const base = `/api/projects/${encodeURIComponent(project.id)}/signing-keys`;
  mount(
    root,
    h(
      'section',
      { class: 'card', 'data-test': 'signing-keys' },
      h(
        'div',
        { class: 'card-head' },
        h(
          'div',
          {},
          h('h2', {}, 'Signing keys'),
          h(
            'p',
            { class: 'muted small' },
            'The current key signs answers, license files and new releases. Older keys still verify what they signed until you retire them.',
          ),
        ),
        rotate,
      ),
      list,
    ),
  );

  rotate.addEventListener('click', () =>
    confirmDialog({
      title: 'Rotate the signing key?',
      message: h(
        'div',
        {},
        h(
          'p',
          {},
          'A new Ed25519 key becomes current at once: every answer, license file and release from now on is signed by it. The current key endorses the new one (signs its public key).',
        ),
        h(
          'p',
          {},
          'Apps that pinned an earlier key must follow the endorsement rule: accept a new key only when a key they already trust endorses it (GET /api/v1/updates/public-key lists every key with its endorsement). Apps that only know one fixed key will reject the new signatures.',
        ),
      ),
      confirmLabel: 'Rotate key',
      danger: true,
      test: 'signing-key-rotate-dialog',
      onConfirm: async () => {
        const data = await api.post(base);
        toast(`New signing key ${data.key.kid} is current`);
        await onRotate();
      },
    }),
  );

  async function load() {
    try {
      const data = await api.get(base);
      paint(data.keys || []);
    } catch (err) {
      failInto(list, err, 'signing-keys-error');
    }
  }

  function paint(keys) {
    if (keys.length === 0) {
      mount(
        list,
        empty('No signing keys', 'This project has no key yet.', null, 'signing-keys-empty'),
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
          { class: 'table cards-table', 'data-test': 'signing-keys-table' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['Key ID', 'Created', 'State', 'Endorsed by', ''].map((x) =>
                h('th', {}, x || h('span', { class: 'sr-only' }, 'Actions')),
              ),
            ),
          ),
          h(
            'tbody',
            {},
            keys.map((k) => row(k)),
          ),
        ),
      ),
    );
  }

  function state(k) {
    if (k.current) {
      return h('span', { class: 'badge badge-ok', 'data-test': 'signing-key-state' }, 'Current');
    }
    if (k.retired) {
      return h(
        'span',
        { class: 'badge badge-danger', 'data-test': 'signing-key-state', title: k.retiredAt },
        'Retired',
      );
    }
    return h('span', { class: 'badge badge-info', 'data-test': 'signing-key-state' }, 'Verifies');
  }

  function row(k) {
    const actions = [copyButton(k.publicKey, { label: 'Copy key', test: 'signing-key-copy' })];
    if (!k.current && !k.retired) {
      const retire = h(
        'button',
        {
          type: 'button',
          class: 'btn btn-sm btn-outline-danger',
          'data-test': 'signing-key-retire',
        },
        'Retire',
      );
      retire.addEventListener('click', () =>
        confirmDialog({
          title: `Retire key ${k.kid}?`,
          message:
            'The key stays listed as retired, so apps drop it: license files and releases it signed no longer verify for them. Retiring is final.',
          confirmLabel: 'Retire',
          danger: true,
          test: 'signing-key-retire-dialog',
          onConfirm: async () => {
            await api.post(`${base}/${encodeURIComponent(k.kid)}/retire`);
            toast(`Key ${k.kid} retired`);
            load();
          },
        }),
      );
      actions.push(retire);
    }
    return h(
      'tr',
      {
        'data-test': 'signing-key-row',
        'data-kid': k.kid,
        'data-current': String(k.current),
        'data-retired': String(k.retired),
      },
      h('td', { 'data-label': 'Key ID' }, h('span', { class: 'mono', title: k.publicKey }, k.kid)),
      h('td', { 'data-label': 'Created' }, timeEl(k.createdAt, true)),
      h('td', { 'data-label': 'State' }, state(k)),
      h(
        'td',
        { 'data-label': 'Endorsed by' },
        k.endorsement
          ? h('span', { class: 'mono small' }, k.endorsement.kid)
          : h('span', { class: 'muted' }, 'first key'),
      ),
      h('td', { class: 'actions' }, h('div', { class: 'btn-row end' }, actions)),
    );
  }

  load();
}
