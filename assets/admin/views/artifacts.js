// A release's files per platform (upload with progress, list with hashes and signatures, delete
// from a draft), its staged rollout, and the project's update settings: the minimum version and
// the minisign public key a Tauri app pins.

import { api, upload } from '../../shared/api.js';
import {
  clearErrors,
  confirmDialog,
  copyButton,
  field,
  fmtBytes,
  formError,
  h,
  loading,
  mount,
  onSubmit,
  openDialog,
  setBusy,
  showError,
  toast,
} from '../../shared/ui.js';
import { failInto } from '../state.js';

const PLATFORMS = ['windows', 'darwin', 'linux'];
const ARCHES = ['x86_64', 'aarch64', 'i686', 'armv7', 'universal'];
const FILETYPES = [
  'msi',
  'nsis',
  'exe',
  'dmg',
  'app.tar.gz',
  'AppImage',
  'deb',
  'rpm',
  'nupkg',
  'zip',
];

/** A short hash or signature with a copy button for the whole value. */
function copyable(value, test) {
  const shown = value.length > 20 ? `${value.slice(0, 16)}…` : value;
  return h(
    'span',
    { class: 'nowrap' },
    h('span', { class: 'mono small', title: value }, shown),
    ' ',
    copyButton(value, { test }),
  );
}

/** The artifacts of release `r`, with an upload form while it is not yanked. */
export function artifactsDialog(r, onChange) {
  const list = h('div', { 'data-test': 'artifacts-list' }, loading('Loading files…'));
  const path = `/api/releases/${encodeURIComponent(r.id)}/artifacts`;
  let changed = false;

  async function load() {
    try {
      const data = await api.get(path);
      paint(data.artifacts || []);
    } catch (err) {
      failInto(list, err, 'artifacts-error');
    }
  }

  function paint(artifacts) {
    if (artifacts.length === 0) {
      mount(
        list,
        h(
          'p',
          { class: 'muted', 'data-test': 'artifacts-empty' },
          r.bundleFilename
            ? 'No per-platform files: clients download the release bundle.'
            : 'No files yet. Upload one per platform and architecture before publishing.',
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
          { class: 'table cards-table', 'data-test': 'artifacts-table' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['Platform', 'File', 'SHA-256', 'SHA-512', 'Ed25519', 'minisign', ''].map((x) =>
                h('th', {}, x || h('span', { class: 'sr-only' }, 'Actions')),
              ),
            ),
          ),
          h(
            'tbody',
            {},
            artifacts.map((a) => row(a)),
          ),
        ),
      ),
    );
  }

  function row(a) {
    const del =
      r.status === 'DRAFT'
        ? h(
            'button',
            {
              type: 'button',
              class: 'btn btn-sm btn-outline-danger',
              'data-test': 'artifact-delete',
              onclick: () =>
                confirmDialog({
                  title: `Delete ${a.filename}?`,
                  message: `The ${a.platform}/${a.arch} ${a.filetype} file is removed from this draft.`,
                  confirmLabel: 'Delete',
                  danger: true,
                  test: 'artifact-delete-dialog',
                  onConfirm: async () => {
                    await api.del(`${path}/${encodeURIComponent(a.id)}`);
                    toast('File deleted');
                    changed = true;
                    load();
                  },
                }),
            },
            'Delete',
          )
        : null;
    return h(
      'tr',
      { 'data-test': 'artifact-row', 'data-platform': a.platform, 'data-arch': a.arch },
      h(
        'td',
        { 'data-label': 'Platform' },
        h('strong', {}, a.platform),
        ' ',
        h('span', { class: 'badge plain' }, a.arch),
        ' ',
        h('span', { class: 'badge plain' }, a.filetype),
        a.minimumSystemVersion
          ? h('span', { class: 'small muted' }, ` · OS ${a.minimumSystemVersion}+`)
          : null,
      ),
      h('td', { 'data-label': 'File', class: 'small' }, `${a.filename} · ${fmtBytes(a.size)}`),
      h('td', { 'data-label': 'SHA-256' }, copyable(a.sha256, 'artifact-sha256')),
      h('td', { 'data-label': 'SHA-512' }, copyable(a.sha512, 'artifact-sha512')),
      h('td', { 'data-label': 'Ed25519' }, copyable(a.signature, 'artifact-signature')),
      h(
        'td',
        { 'data-label': 'minisign' },
        h(
          'span',
          { class: 'nowrap' },
          h('span', { class: 'small muted' }, `key ${a.signatureKid}`),
          ' ',
          copyButton(a.minisignSignature, { label: 'Copy .sig', test: 'artifact-minisign' }),
        ),
      ),
      h('td', { class: 'actions' }, del),
    );
  }

  const bar = h('span');
  const progress = h(
    'div',
    { class: 'field', hidden: true, 'data-test': 'artifact-progress' },
    h('div', { class: 'field-label', id: 'artifact-upload-label' }, 'Uploading…'),
    h(
      'div',
      {
        class: 'progress',
        role: 'progressbar',
        'aria-labelledby': 'artifact-upload-label',
        'aria-valuemin': '0',
        'aria-valuemax': '100',
        'aria-valuenow': '0',
      },
      bar,
    ),
  );
  const form =
    r.status === 'YANKED'
      ? null
      : h(
          'form',
          { novalidate: true, id: 'artifact-form', 'data-test': 'artifact-form' },
          h('h3', { class: 'small muted' }, 'Add a file'),
          h(
            'div',
            { class: 'form-grid' },
            field({
              label: 'Platform',
              name: 'platform',
              type: 'select',
              options: PLATFORMS,
              test: 'artifact-platform',
            }),
            field({
              label: 'Architecture',
              name: 'arch',
              type: 'select',
              options: ARCHES,
              test: 'artifact-arch',
            }),
            field({
              label: 'File type',
              name: 'filetype',
              type: 'select',
              options: FILETYPES,
              test: 'artifact-filetype',
            }),
            field({
              label: 'Minimum OS version',
              name: 'minimumSystemVersion',
              placeholder: 'e.g. 10.15',
              hint: 'Optional. Sparkle skips the file on older systems.',
              test: 'artifact-minimum-os',
            }),
          ),
          field({
            label: 'File',
            name: 'file',
            type: 'file',
            required: true,
            test: 'artifact-file',
          }),
          progress,
          formError('artifact-error'),
          h(
            'div',
            { class: 'btn-row end' },
            h(
              'button',
              { type: 'submit', class: 'btn btn-primary', 'data-test': 'artifact-upload' },
              'Upload file',
            ),
          ),
        );
  if (form) {
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearErrors(form);
      const fd = new FormData(form);
      if (!String(fd.get('minimumSystemVersion') || '').trim()) fd.delete('minimumSystemVersion');
      const file = fd.get('file');
      if (!(file instanceof File) || file.size === 0) {
        showError(form, new Error('file: choose the file to upload'));
        return;
      }
      const submit = form.querySelector('button[type=submit]');
      setBusy(submit, true);
      progress.hidden = false;
      try {
        await upload(path, fd, (f) => {
          const pct = Math.round(f * 100);
          bar.style.width = `${pct}%`;
          progress.querySelector('[role=progressbar]').setAttribute('aria-valuenow', String(pct));
        });
        toast(`${fd.get('platform')}/${fd.get('arch')} file uploaded`);
        form.reset();
        changed = true;
        load();
      } catch (err) {
        showError(form, err);
      } finally {
        progress.hidden = true;
        setBusy(submit, false);
      }
    });
  }
  const d = openDialog({
    title: `Files of ${r.version}`,
    wide: true,
    test: 'artifacts-dialog',
    body: h('div', {}, list, form),
    foot: [
      h(
        'button',
        { type: 'button', class: 'btn', 'data-test': 'artifacts-close', onclick: () => d.close() },
        'Close',
      ),
    ],
    onClose: () => {
      if (changed) onChange();
    },
  });
  load();
}

/** Changes the share of licenses offered release `r`. */
export function rolloutDialog(r, onChange) {
  const form = h(
    'form',
    { novalidate: true, id: 'rollout-form', 'data-test': 'rollout-form' },
    field({
      label: 'Rollout percentage',
      name: 'rolloutPercentage',
      type: 'number',
      min: '0',
      max: '100',
      value: r.rolloutPercentage,
      hint: 'Licenses offered this release, 0–100. Raising it keeps everyone who already got it.',
      test: 'rollout-percentage',
    }),
    formError('rollout-error'),
  );
  const d = openDialog({
    title: `Rollout of ${r.version}`,
    test: 'rollout-dialog',
    body: form,
    foot: [
      h('button', { type: 'button', class: 'btn', onclick: () => d.close() }, 'Cancel'),
      h(
        'button',
        {
          type: 'submit',
          class: 'btn btn-primary',
          form: 'rollout-form',
          'data-test': 'rollout-save',
        },
        'Save',
      ),
    ],
  });
  onSubmit(form, async (fd) => {
    const text = String(fd.get('rolloutPercentage') || '').trim();
    const value = Number(text);
    if (text === '' || !Number.isInteger(value) || value < 0 || value > 100) {
      throw new Error('rolloutPercentage must be a whole number from 0 to 100');
    }
    await api.patch(`/api/releases/${encodeURIComponent(r.id)}`, { rolloutPercentage: value });
    toast(`${r.version} offered to ${value} % of licenses`);
    d.close();
    onChange();
  });
}

/** The project's minimum version and minisign public key (as `tauri.conf.json` takes it). */
export async function renderUpdateSettings(root, project) {
  const path = `/api/projects/${encodeURIComponent(project.id)}/update-settings`;
  const body = h('div', { 'data-test': 'update-settings' }, loading('Loading update settings…'));
  mount(
    root,
    h(
      'section',
      { class: 'card' },
      h(
        'div',
        { class: 'card-head' },
        h(
          'div',
          {},
          h('h2', {}, 'Updater settings'),
          h(
            'p',
            { class: 'muted small' },
            'The key desktop updaters verify files with, and the oldest version you still support.',
          ),
        ),
      ),
      body,
    ),
  );
  let data;
  try {
    data = await api.get(path);
  } catch (err) {
    failInto(body, err, 'update-settings-error');
    return;
  }
  const key = data.minisign;
  const form = h(
    'form',
    { novalidate: true, 'data-test': 'minimum-version-form', class: 'inline-form' },
    field({
      label: 'Minimum version',
      name: 'minimumVersion',
      value: data.minimumVersion || '',
      placeholder: '1.2.0',
      hint: 'Clients below it are told their update is critical. Empty: none.',
      test: 'minimum-version',
      autocomplete: 'off',
    }),
    formError('minimum-version-error'),
    h(
      'div',
      { class: 'btn-row' },
      h('button', { type: 'submit', class: 'btn', 'data-test': 'minimum-version-save' }, 'Save'),
    ),
  );
  onSubmit(form, async (fd) => {
    const text = String(fd.get('minimumVersion') || '').trim();
    const saved = await api.patch(path, { minimumVersion: text || null });
    toast(saved.minimumVersion ? `Minimum version ${saved.minimumVersion}` : 'No minimum version');
  });
  mount(
    body,
    h(
      'dl',
      { class: 'props' },
      h('dt', {}, 'Tauri public key'),
      h(
        'dd',
        { 'data-test': 'tauri-pubkey' },
        copyable(key.tauriPubkey, 'tauri-pubkey-copy'),
        h(
          'div',
          { class: 'muted small' },
          'Paste into tauri.conf.json as plugins.updater.pubkey. It follows the project signing key: after a rotation, ship the new one.',
        ),
      ),
      h('dt', {}, 'minisign key'),
      h(
        'dd',
        { 'data-test': 'minisign-pubkey' },
        copyable(key.publicKey, 'minisign-pubkey-copy'),
        h(
          'div',
          { class: 'muted small' },
          `Key id ${key.keyId} (signing key ${key.kid}); minisign -Vm FILE -P KEY`,
        ),
      ),
    ),
    form,
  );
}
