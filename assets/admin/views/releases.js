// Releases of one project: list, upload a new draft (multipart, with a progress bar) or create
// one whose files come per platform, publish, yank, delete drafts.

import { api, upload } from '../../shared/api.js';
import {
  checkbox,
  clearErrors,
  confirmDialog,
  copyButton,
  empty,
  field,
  fmtBytes,
  formError,
  h,
  loading,
  mount,
  openDialog,
  setBusy,
  showError,
  statusBadge,
  timeEl,
  toast,
} from '../../shared/ui.js';
import { failInto } from '../state.js';
import { artifactsDialog, renderUpdateSettings, rolloutDialog } from './artifacts.js';

const CHANNELS = ['stable', 'rc', 'beta', 'alpha', 'nightly'];

export async function render(root, project) {
  const list = h('div', { 'data-test': 'releases-list' }, loading('Loading releases…'));
  const settings = h('div');
  const newBtn = h(
    'button',
    { type: 'button', class: 'btn btn-primary', 'data-test': 'release-new' },
    '+ New release',
  );
  mount(
    root,
    settings,
    h(
      'section',
      { class: 'card' },
      h(
        'div',
        { class: 'card-head' },
        h(
          'div',
          {},
          h('h2', {}, 'Releases'),
          h(
            'p',
            { class: 'muted small' },
            'Signed bundles and per-platform files your apps download. Upload as a draft, then publish.',
          ),
        ),
        newBtn,
      ),
      list,
    ),
  );
  const projectPath = `/api/projects/${encodeURIComponent(project.id)}`;
  const base = `${projectPath}/releases`;

  async function load() {
    try {
      const data = await api.get(base);
      paint(data.releases || []);
    } catch (err) {
      failInto(list, err, 'releases-error');
    }
  }

  function paint(releases) {
    if (releases.length === 0) {
      mount(
        list,
        empty(
          'No releases yet',
          'Upload your first bundle, or create a draft and add a file per platform. It stays a draft until you publish it.',
          h(
            'button',
            {
              type: 'button',
              class: 'btn btn-primary',
              onclick: () => uploadDialog(projectPath, load),
            },
            'New release',
          ),
          'releases-empty',
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
          { class: 'table cards-table', 'data-test': 'releases-table' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['Version', 'Channel', 'Status', 'Bundle', 'Created', 'Published', ''].map((x) =>
                h('th', {}, x || h('span', { class: 'sr-only' }, 'Actions')),
              ),
            ),
          ),
          h(
            'tbody',
            {},
            releases.map((r) => row(r)),
          ),
        ),
      ),
    );
  }

  function row(r) {
    const actions = [];
    const act = (label, cls, test, fn) => {
      const b = h(
        'button',
        { type: 'button', class: `btn btn-sm ${cls}`, 'data-test': test },
        label,
      );
      b.addEventListener('click', fn);
      actions.push(b);
    };
    if (r.status === 'DRAFT') {
      act('Publish', 'btn-primary', 'release-publish', () =>
        confirmDialog({
          title: `Publish ${r.version}?`,
          message: `Clients on the ${r.channel} channel (and less stable ones) will be offered this version${r.isCritical ? ' as a critical update' : ''}.`,
          confirmLabel: 'Publish',
          test: 'release-publish-dialog',
          onConfirm: async () => {
            await api.post(`/api/releases/${encodeURIComponent(r.id)}/publish`);
            toast(`${r.version} published`);
            load();
          },
        }),
      );
      act('Delete', 'btn-outline-danger', 'release-delete', () =>
        confirmDialog({
          title: `Delete draft ${r.version}?`,
          message: 'The draft and its bundle are removed.',
          confirmLabel: 'Delete',
          danger: true,
          test: 'release-delete-dialog',
          onConfirm: async () => {
            await api.del(`/api/releases/${encodeURIComponent(r.id)}`);
            toast('Draft deleted');
            load();
          },
        }),
      );
    } else if (r.status === 'PUBLISHED') {
      act('Yank', 'btn-outline-danger', 'release-yank', () =>
        confirmDialog({
          title: `Yank ${r.version}?`,
          message: 'Clients are no longer offered this version. Use it for a broken release.',
          confirmLabel: 'Yank release',
          danger: true,
          test: 'release-yank-dialog',
          onConfirm: async () => {
            await api.post(`/api/releases/${encodeURIComponent(r.id)}/yank`);
            toast(`${r.version} yanked`);
            load();
          },
        }),
      );
    }
    const info = h(
      'button',
      { type: 'button', class: 'btn btn-sm btn-ghost', 'data-test': 'release-details' },
      'Details',
    );
    info.addEventListener('click', () => detailsDialog(r));
    if (r.status !== 'YANKED') {
      act('Rollout', 'btn-ghost', 'release-rollout', () => rolloutDialog(r, load));
    }
    const files = h(
      'button',
      { type: 'button', class: 'btn btn-sm btn-ghost', 'data-test': 'release-files' },
      `Files (${(r.artifacts || []).length})`,
    );
    files.addEventListener('click', () => artifactsDialog(r, load));
    actions.unshift(info, files);
    return h(
      'tr',
      { 'data-test': 'release-row', 'data-id': r.id, 'data-status': r.status },
      h(
        'td',
        { 'data-label': 'Version' },
        h('strong', { class: 'mono' }, r.version),
        r.isCritical
          ? [
              ' ',
              h(
                'span',
                {
                  class: 'badge badge-danger plain',
                  title: 'Critical update',
                  'data-test': 'release-critical-badge',
                },
                'critical',
              ),
            ]
          : null,
        r.requiresMigration
          ? [
              ' ',
              h(
                'span',
                { class: 'badge badge-warn plain', title: 'Requires migration' },
                'migration',
              ),
            ]
          : null,
      ),
      h('td', { 'data-label': 'Channel' }, h('span', { class: 'badge plain' }, r.channel)),
      h(
        'td',
        { 'data-label': 'Status' },
        statusBadge(r.status, 'release-status'),
        r.rolloutPercentage < 100
          ? [
              ' ',
              h(
                'span',
                {
                  class: 'badge badge-warn plain',
                  title: 'Share of licenses offered this release',
                  'data-test': 'release-rollout-badge',
                },
                `${r.rolloutPercentage} %`,
              ),
            ]
          : null,
      ),
      h(
        'td',
        { 'data-label': 'Bundle', class: 'small' },
        r.bundleFilename
          ? `${r.bundleFilename} · ${fmtBytes(r.bundleSize)}`
          : `${(r.artifacts || []).length} per-platform file(s)`,
      ),
      h('td', { 'data-label': 'Created' }, timeEl(r.createdAt, true)),
      h(
        'td',
        { 'data-label': 'Published' },
        r.publishedAt ? timeEl(r.publishedAt, true) : h('span', { class: 'muted' }, '—'),
      ),
      h('td', { class: 'actions' }, h('div', { class: 'btn-row end' }, actions)),
    );
  }

  newBtn.addEventListener('click', () => uploadDialog(projectPath, load));
  renderUpdateSettings(settings, project);
  load();
}

function detailsDialog(r) {
  const rowOf = (label, value, test, copy) => [
    h('dt', {}, label),
    h(
      'dd',
      { 'data-test': test },
      value ? h('span', { class: copy ? 'mono small' : '' }, value) : '—',
      copy && value ? [' ', copyButton(value, { test: `${test}-copy` })] : null,
    ),
  ];
  const d = openDialog({
    title: `Release ${r.version}`,
    wide: true,
    test: 'release-details-dialog',
    body: h(
      'div',
      {},
      h(
        'dl',
        { class: 'props' },
        rowOf('Status', r.status, 'release-detail-status'),
        rowOf('Channel', r.channel, 'release-detail-channel'),
        rowOf(
          'Bundle',
          r.bundleFilename ? `${r.bundleFilename} (${fmtBytes(r.bundleSize)})` : '',
          'release-detail-bundle',
        ),
        rowOf('SHA-256', r.bundleSha256, 'release-detail-sha', true),
        rowOf('Signature', r.signature, 'release-detail-signature', true),
        [h('dt', {}, 'Created'), h('dd', {}, timeEl(r.createdAt))],
        [h('dt', {}, 'Published'), h('dd', {}, timeEl(r.publishedAt))],
        r.yankedAt ? [h('dt', {}, 'Yanked'), h('dd', {}, timeEl(r.yankedAt))] : null,
      ),
      h('h3', { class: 'small muted' }, 'Changelog'),
      r.changelog
        ? h('p', { class: 'pblock-text' }, r.changelog)
        : h('p', { class: 'muted' }, 'No changelog.'),
    ),
    foot: [h('button', { type: 'button', class: 'btn', onclick: () => d.close() }, 'Close')],
  });
}

function uploadDialog(projectPath, onDone) {
  const bar = h('span');
  const progress = h(
    'div',
    { class: 'field', hidden: true, 'data-test': 'release-progress' },
    h(
      'div',
      { class: 'field-label', id: 'upload-label' },
      'Uploading… ',
      h('span', { 'data-test': 'release-progress-text' }, '0 %'),
    ),
    h(
      'div',
      {
        class: 'progress',
        role: 'progressbar',
        'aria-labelledby': 'upload-label',
        'aria-valuemin': '0',
        'aria-valuemax': '100',
        'aria-valuenow': '0',
      },
      bar,
    ),
  );
  const bundleField = field({
    label: 'Bundle file',
    name: 'bundle',
    type: 'file',
    required: true,
    test: 'release-bundle',
  });
  const kind = field({
    label: 'Files',
    name: 'kind',
    type: 'select',
    options: [
      ['bundle', 'One bundle for every platform'],
      ['artifacts', 'Files per platform (installers, updater archives)'],
    ],
    value: 'bundle',
    hint: 'Files per platform are uploaded next, one per platform and architecture.',
    test: 'release-kind',
  });
  const form = h(
    'form',
    { novalidate: true, id: 'release-form', 'data-test': 'release-form' },
    kind,
    h(
      'div',
      { class: 'form-grid' },
      field({
        label: 'Version',
        name: 'version',
        required: true,
        placeholder: '1.4.0',
        hint: 'Semantic version, e.g. 1.4.0 or 2.0.0-rc.1.',
        test: 'release-version',
        autocomplete: 'off',
      }),
      field({
        label: 'Channel',
        name: 'channel',
        type: 'select',
        options: CHANNELS,
        value: 'stable',
        test: 'release-channel',
      }),
    ),
    field({
      label: 'Changelog',
      name: 'changelog',
      type: 'textarea',
      rows: 4,
      test: 'release-changelog',
      placeholder: 'What changed in this version?',
    }),
    bundleField,
    checkbox({
      label: 'Critical update',
      name: 'isCritical',
      hint: 'Clients should install it right away.',
      test: 'release-critical',
    }),
    checkbox({
      label: 'Requires migration',
      name: 'requiresMigration',
      hint: 'Users must migrate data when updating.',
      test: 'release-migration',
    }),
    progress,
    formError('release-error'),
  );
  const submit = h(
    'button',
    {
      type: 'submit',
      class: 'btn btn-primary',
      form: 'release-form',
      'data-test': 'release-upload',
    },
    'Upload draft',
  );
  const cancel = h(
    'button',
    { type: 'button', class: 'btn', 'data-test': 'release-cancel' },
    'Cancel',
  );
  const perPlatform = () => kind.querySelector('select').value === 'artifacts';
  kind.querySelector('select').addEventListener('change', () => {
    bundleField.hidden = perPlatform();
    submit.textContent = perPlatform() ? 'Create draft' : 'Upload draft';
  });
  let pending = null;
  const d = openDialog({
    title: 'New release',
    body: form,
    foot: [cancel, submit],
    test: 'release-dialog',
    onClose: () => {
      if (pending) pending.abort();
    },
  });
  cancel.addEventListener('click', () => {
    if (pending) pending.abort();
    d.close();
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const fd = new FormData(form);
    const file = fd.get('bundle');
    if (!String(fd.get('version') || '').trim()) {
      showError(form, new Error('version is required'));
      return;
    }
    if (perPlatform()) {
      await createDraft(fd);
      return;
    }
    if (!(file instanceof File) || file.size === 0) {
      showError(form, new Error('bundle: choose the file to upload'));
      return;
    }
    const body = new FormData();
    body.set('version', String(fd.get('version')).trim());
    body.set('channel', fd.get('channel'));
    body.set('changelog', String(fd.get('changelog') || ''));
    body.set('isCritical', fd.get('isCritical') === 'on' ? 'true' : 'false');
    body.set('requiresMigration', fd.get('requiresMigration') === 'on' ? 'true' : 'false');
    body.set('bundle', file, file.name);
    progress.hidden = false;
    setBusy(submit, true);
    const setPct = (f) => {
      const pct = Math.round(f * 100);
      bar.style.width = `${pct}%`;
      progress.querySelector('[role=progressbar]').setAttribute('aria-valuenow', String(pct));
      progress.querySelector('[data-test=release-progress-text]').textContent =
        pct >= 100 ? '100 % — verifying and signing…' : `${pct} %`;
    };
    setPct(0);
    try {
      pending = upload(`${projectPath}/releases`, body, setPct);
      const data = await pending;
      pending = null;
      toast(`Draft ${data.release ? data.release.version : ''} uploaded`);
      d.close();
      onDone();
    } catch (err) {
      pending = null;
      progress.hidden = true;
      if (err.code !== 'ABORTED') showError(form, err, { file: 'bundle', semver: 'version' });
    } finally {
      setBusy(submit, false);
    }
  });

  // A release without a bundle: its files are uploaded in the Files dialog, opened right away
  // so the vendor goes on with the first platform's file.
  async function createDraft(fd) {
    setBusy(submit, true);
    try {
      const data = await api.post(`${projectPath}/release-drafts`, {
        version: String(fd.get('version')).trim(),
        channel: fd.get('channel'),
        changelog: String(fd.get('changelog') || ''),
        isCritical: fd.get('isCritical') === 'on',
        requiresMigration: fd.get('requiresMigration') === 'on',
      });
      toast(`Draft ${data.release.version} created: add its files`);
      d.close();
      onDone();
      artifactsDialog(data.release, onDone);
    } catch (err) {
      showError(form, err, { semver: 'version' });
    } finally {
      setBusy(submit, false);
    }
  }
}
