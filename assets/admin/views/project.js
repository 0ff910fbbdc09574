// One project: #/projects/ID[/settings|credentials|releases|portal]. Settings (PATCH), client
// credentials (secret, encryption key, public key; regenerate; signing keys), releases, the portal dashboard
// editor, and deletion (the user types the project's slug, which DELETE checks as ?confirm=).

import { api } from '../../shared/api.js';
import {
  checkbox,
  confirmDialog,
  copyButton,
  field,
  fmtDateTime,
  fmtDuration,
  fmtNumber,
  formError,
  h,
  loading,
  mount,
  onSubmit,
  statusBadge,
  toast,
} from '../../shared/ui.js';
import { failInto, hrefFor, invalidateProjects, pageHead, parseCodes } from '../state.js';

const TABS = [
  ['settings', 'Settings'],
  ['credentials', 'Credentials'],
  ['releases', 'Releases'],
  ['portal', 'User portal'],
  ['mail', 'E-mail templates'],
];

export async function render(root, { parts }) {
  const id = parts[0];
  const tab = TABS.some(([t]) => t === parts[1]) ? parts[1] : 'settings';
  mount(root, loading('Loading the project…'));
  let project;
  try {
    project = (await api.get(`/api/projects/${encodeURIComponent(id)}`)).project;
  } catch (err) {
    if (err.status === 404) {
      mount(
        root,
        h(
          'div',
          { class: 'card' },
          h(
            'div',
            { class: 'empty', 'data-test': 'project-not-found' },
            h('div', { class: 'empty-title' }, 'Project not found'),
            'It may have been deleted.',
            h('div', {}, h('a', { class: 'btn', href: '#/projects' }, 'All projects')),
          ),
        ),
      );
      return undefined;
    }
    failInto(root, err);
    return undefined;
  }
  document.title = `${project.name} · Keyward`;
  const base = `#/projects/${encodeURIComponent(project.id)}`;
  const title = h('span', { 'data-test': 'project-title' }, project.name);
  const content = h('div', { 'data-test': `project-tab-${tab}` });
  mount(
    root,
    pageHead(
      title,
      h(
        'span',
        {},
        statusBadge(project.status),
        ' ',
        h('span', { class: 'mono small' }, `/p/${project.slug}`),
        ' · ',
        `${fmtNumber(project.keyCount)} keys`,
      ),
      [
        h(
          'a',
          {
            class: 'btn',
            href: hrefFor('/keys', { projectId: project.id }),
            'data-test': 'project-keys',
          },
          'View keys',
        ),
        h(
          'a',
          {
            class: 'btn',
            href: `/p/${encodeURIComponent(project.slug)}`,
            target: '_blank',
            rel: 'noopener',
            'data-test': 'project-portal-link',
          },
          'Open portal ↗',
        ),
      ],
      h('a', { href: '#/projects' }, '← Projects'),
    ),
    h(
      'nav',
      { class: 'tabs', 'aria-label': 'Project sections', 'data-test': 'project-tabs' },
      TABS.map(([t, label]) =>
        h(
          'a',
          {
            href: `${base}/${t}`,
            'aria-current': t === tab ? 'page' : null,
            'data-test': `tab-${t}`,
          },
          label,
        ),
      ),
    ),
    content,
  );

  const onChange = (p) => {
    project = p;
    title.textContent = p.name;
    invalidateProjects();
  };
  switch (tab) {
    case 'credentials':
      renderCredentials(content, project, onChange);
      break;
    case 'releases': {
      // The releases, then the project's update feeds (issue 15) below them.
      const releases = h('div');
      const feeds = h('div');
      mount(content, releases, feeds);
      (await import('./feeds.js')).render(feeds, project);
      return (await import('./releases.js')).render(releases, project);
    }
    case 'portal':
      return (await import('./portal-editor.js')).render(content, project, onChange);
    case 'mail':
      return (await import('./mail-templates.js')).render(content, project);
    default:
      renderSettings(content, project, onChange);
  }
  return undefined;
}

/* ---------- Settings ---------- */
function renderSettings(root, project, onChange) {
  const num = (v) => (v === null || v === undefined ? '' : String(v));
  const form = h(
    'form',
    { novalidate: true, 'data-test': 'project-settings-form' },
    h(
      'fieldset',
      {},
      h('legend', {}, 'General'),
      h(
        'div',
        { class: 'form-grid' },
        field({
          label: 'Name',
          name: 'name',
          value: project.name,
          required: true,
          maxlength: 255,
          test: 'settings-name',
        }),
        field({
          label: 'Status',
          name: 'status',
          type: 'select',
          options: [
            ['ACTIVE', 'Active'],
            ['DEPRECATED', 'Deprecated'],
            ['DISCONTINUED', 'Discontinued'],
          ],
          value: project.status,
          test: 'settings-status',
        }),
        field({
          label: 'Description',
          name: 'description',
          type: 'textarea',
          value: project.description || '',
          maxlength: 1000,
          rows: 2,
          cls: 'span-all',
          test: 'settings-description',
        }),
      ),
    ),
    h(
      'fieldset',
      {},
      h('legend', {}, 'Keys and validation'),
      h(
        'div',
        { class: 'form-grid' },
        field({
          label: 'Key format',
          name: 'keyFormat',
          value: project.keyFormat,
          maxlength: 100,
          hint: 'X = random symbol, e.g. XXXX-XXXX-XXXX-XXXX.',
          test: 'settings-key-format',
        }),
        field({
          label: 'Machines per key (new keys)',
          name: 'defaultMaxActivations',
          type: 'number',
          min: 1,
          max: 1000,
          value: num(project.defaultMaxActivations),
          hint: '1 = HWID locked.',
          test: 'settings-max-activations',
        }),
        field({
          label: 'Session TTL (seconds)',
          name: 'sessionTtlSeconds',
          type: 'number',
          min: 0,
          value: num(project.sessionTtlSeconds),
          hint: `A session lives this long without a refresh (now ${fmtDuration(project.sessionTtlSeconds)}).`,
          test: 'settings-session-ttl',
        }),
        field({
          label: 'When every session of a key is in use',
          name: 'sessionLimit',
          type: 'select',
          options: [
            ['END_OLDEST', 'End the oldest session (the newcomer runs)'],
            ['REFUSE_NEW', 'Refuse the newcomer (MAX_SESSIONS)'],
          ],
          value: project.sessionLimit || 'END_OLDEST',
          hint: 'End the oldest: an app that crashed and restarted is never locked out; the ended instance is told SESSION_ENDED.',
          test: 'settings-session-limit',
        }),
        field({
          label: 'HWID reset cooldown (seconds)',
          name: 'hwidResetCooldownSeconds',
          type: 'number',
          min: 0,
          value: num(project.hwidResetCooldownSeconds),
          hint: `Minimum time between self-service HWID resets (now ${fmtDuration(project.hwidResetCooldownSeconds)}).`,
          test: 'settings-hwid-cooldown',
        }),
        field({
          label: 'Heartbeat interval (seconds)',
          name: 'heartbeatIntervalSeconds',
          type: 'number',
          min: 1,
          max: 2592000,
          value: num(project.heartbeatIntervalSeconds),
          hint: 'Empty: no heartbeat policy.',
          test: 'settings-heartbeat-interval',
        }),
        field({
          label: 'Heartbeat grace (seconds)',
          name: 'heartbeatGraceSeconds',
          type: 'number',
          min: 0,
          max: 2592000,
          value: num(project.heartbeatGraceSeconds),
          test: 'settings-heartbeat-grace',
        }),
        field({
          label: 'Server variable',
          name: 'serverVar',
          type: 'textarea',
          value: project.serverVar || '',
          maxlength: 4096,
          rows: 3,
          cls: 'span-all',
          hint: 'Returned to your app by a successful validation.',
          test: 'settings-server-var',
        }),
        field({
          label: 'Entitlements',
          name: 'entitlements',
          value: (project.entitlements || []).join(', '),
          maxlength: 4200,
          cls: 'span-all',
          placeholder: 'PRO_EXPORT, CLOUD_SYNC',
          hint: 'Feature codes keys of this project may carry (A-Z, 0-9, _), comma-separated. A code some key still carries cannot be removed.',
          test: 'settings-entitlements',
        }),
      ),
      checkbox({
        label: 'Require encrypted validation',
        name: 'requireEncryption',
        checked: project.requireEncryption,
        hint: 'Plain validation requests are refused; clients must use the AES-256-GCM envelope.',
        test: 'settings-require-encryption',
      }),
      checkbox({
        label: 'Keep dead machines',
        name: 'keepDeadMachines',
        checked: project.keepDeadMachines,
        hint: 'Do not free the seat of a machine whose heartbeats stopped.',
        test: 'settings-keep-dead',
      }),
    ),
    formError('settings-error'),
    h(
      'div',
      { class: 'btn-row' },
      h(
        'button',
        { type: 'submit', class: 'btn btn-primary', 'data-test': 'settings-save' },
        'Save changes',
      ),
    ),
  );

  onSubmit(
    form,
    async (fd) => {
      const intOrNull = (k) => {
        const v = String(fd.get(k) || '').trim();
        return v === '' ? null : Number(v);
      };
      const body = {
        name: String(fd.get('name') || '').trim(),
        description: String(fd.get('description') || '').trim() || null,
        status: fd.get('status'),
        keyFormat: String(fd.get('keyFormat') || '').trim(),
        serverVar: String(fd.get('serverVar') || '') === '' ? null : String(fd.get('serverVar')),
        requireEncryption: fd.get('requireEncryption') === 'on',
        sessionLimit: fd.get('sessionLimit'),
        keepDeadMachines: fd.get('keepDeadMachines') === 'on',
        heartbeatIntervalSeconds: intOrNull('heartbeatIntervalSeconds'),
        entitlements: parseCodes(fd.get('entitlements')),
      };
      for (const k of [
        'defaultMaxActivations',
        'sessionTtlSeconds',
        'hwidResetCooldownSeconds',
        'heartbeatGraceSeconds',
      ]) {
        const v = intOrNull(k);
        if (v !== null) body[k] = v;
      }
      const data = await api.patch(`/api/projects/${encodeURIComponent(project.id)}`, body);
      onChange(data.project);
      toast('Settings saved');
    },
    {
      session: 'sessionTtlSeconds',
      cooldown: 'hwidResetCooldownSeconds',
      'heartbeat grace': 'heartbeatGraceSeconds',
      heartbeat: 'heartbeatIntervalSeconds',
      'key format': 'keyFormat',
      'server variable': 'serverVar',
    },
  );

  const del = h(
    'button',
    { type: 'button', class: 'btn btn-danger', 'data-test': 'project-delete' },
    'Delete this project',
  );
  del.addEventListener('click', () =>
    confirmDialog({
      title: `Delete “${project.name}”?`,
      message: h(
        'div',
        {},
        h(
          'p',
          {},
          'This deletes the project, its ',
          h('strong', {}, `${fmtNumber(project.keyCount)} license keys`),
          ' and their activations. Apps using its secret stop working. The audit trail is kept.',
        ),
        h('p', {}, 'This cannot be undone.'),
      ),
      typeToConfirm: project.slug,
      typeLabel: h(
        'span',
        {},
        'Type the project\u2019s portal name ',
        h('strong', { class: 'mono' }, project.slug),
        ' to confirm',
      ),
      confirmLabel: 'Delete project',
      danger: true,
      test: 'project-delete-dialog',
      onConfirm: async (typed) => {
        const res = await api.del(`/api/projects/${encodeURIComponent(project.id)}`, {
          query: { confirm: typed },
        });
        invalidateProjects();
        toast(`Project deleted (${fmtNumber(res.deletedKeys)} keys removed)`);
        location.hash = '#/projects';
      },
    }),
  );

  mount(
    root,
    h('section', { class: 'card' }, form),
    h(
      'section',
      { class: 'card', 'data-test': 'danger-zone' },
      h('h2', {}, 'Danger zone'),
      h('p', { class: 'muted' }, 'Deleting a project removes all of its keys at once.'),
      del,
    ),
  );
}

/* ---------- Credentials ---------- */
function secretBlock({ label, value, help, test, hiddenByDefault = true }) {
  const out = h('div', { class: 'secret-value', 'data-test': `${test}-value` });
  let shown = !hiddenByDefault;
  const paint = () => {
    out.textContent = shown ? value : '•'.repeat(Math.min(40, value.length));
  };
  paint();
  const toggle = hiddenByDefault
    ? h(
        'button',
        {
          type: 'button',
          class: 'btn btn-sm',
          'data-test': `${test}-reveal`,
          'aria-pressed': 'false',
        },
        'Show',
      )
    : null;
  if (toggle)
    toggle.addEventListener('click', () => {
      shown = !shown;
      toggle.textContent = shown ? 'Hide' : 'Show';
      toggle.setAttribute('aria-pressed', String(shown));
      paint();
    });
  return h(
    'div',
    { class: 'field', 'data-test': test },
    h('div', { class: 'field-label' }, label),
    h(
      'div',
      { class: 'secret-row' },
      out,
      toggle,
      copyButton(() => value, { test: `${test}-copy` }),
    ),
    help ? h('div', { class: 'hint' }, help) : null,
  );
}

function renderCredentials(root, project, onChange) {
  const err = h('div', {
    class: 'alert alert-error',
    role: 'alert',
    'data-test': 'regenerate-error',
  });
  const regen = h(
    'button',
    { type: 'button', class: 'btn btn-outline-danger', 'data-test': 'secret-regenerate' },
    'Regenerate secret…',
  );
  regen.addEventListener('click', () =>
    confirmDialog({
      title: 'Regenerate the client secret?',
      message:
        'Apps that still send the old kv_ secret stop matching keys at once. Update your app right after this.',
      confirmLabel: 'Regenerate',
      danger: true,
      test: 'regenerate-dialog',
      onConfirm: async () => {
        const data = await api.patch(`/api/projects/${encodeURIComponent(project.id)}`, {
          regenerateSecret: true,
        });
        onChange(data.project);
        toast('A new secret was generated');
        renderCredentials(root, data.project, onChange);
      },
    }),
  );
  // After a rotation the project's public key is the new key's: read it again.
  const keys = h('div');
  import('./signing-keys.js').then((m) =>
    m.render(keys, project, async () => {
      const data = await api.get(`/api/projects/${encodeURIComponent(project.id)}`);
      onChange(data.project);
      renderCredentials(root, data.project, onChange);
    }),
  );
  mount(
    root,
    h(
      'section',
      { class: 'card', 'data-test': 'credentials' },
      h('h2', {}, 'Client credentials'),
      h(
        'p',
        { class: 'muted' },
        'Your app sends the secret with validate, heartbeat and Telegram requests, so only this project\u2019s keys match. Keep it out of public repositories.',
      ),
      secretBlock({ label: 'Client secret', value: project.secret || '', test: 'project-secret' }),
      h('div', { class: 'btn-row' }, regen),
      err,
      h('hr'),
      secretBlock({
        label: 'Payload encryption key (AES-256-GCM, base64)',
        value: project.encryptionKey || '',
        test: 'project-encryption-key',
        help: 'Encrypts the request/answer envelope of /api/validate.',
      }),
      secretBlock({
        label: 'Signing public key (Ed25519, base64)',
        value: project.publicKey || '',
        hiddenByDefault: false,
        test: 'project-public-key',
        help: 'Not secret: the current key (see Signing keys below). Your app verifies signed answers and release bundles with it.',
      }),
    ),
    keys,
    h(
      'section',
      { class: 'card' },
      h('h2', {}, 'Identifiers'),
      h(
        'dl',
        { class: 'props' },
        h('dt', {}, 'Project ID'),
        h('dd', { class: 'mono', 'data-test': 'project-id' }, project.id),
        h('dt', {}, 'Portal'),
        h(
          'dd',
          {},
          h(
            'a',
            {
              href: `/p/${encodeURIComponent(project.slug)}`,
              target: '_blank',
              rel: 'noopener',
              class: 'mono',
            },
            `${location.origin}/p/${project.slug}`,
          ),
        ),
        h('dt', {}, 'Created'),
        h('dd', {}, fmtDateTime(project.createdAt)),
        h('dt', {}, 'Updated'),
        h('dd', {}, fmtDateTime(project.updatedAt)),
      ),
    ),
  );
}
