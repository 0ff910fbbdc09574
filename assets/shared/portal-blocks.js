// Keyward — rendering of a project's portal dashboard blocks. The user portal renders the real
// dashboard with it, and the admin panel's Portal Dashboard Editor renders its live preview with
// the very same code, so what the vendor sees is what its users get.

import { offlineActivationForm } from './offline.js';
import {
  copyButton,
  fmtBytes,
  fmtDate,
  h,
  s,
  setBusy,
  statusBadge,
  titleCase,
  toast,
} from './ui.js';

export const BLOCK_TYPES = {
  key_info: { label: 'Key info', description: 'License status, plan, expiry, sessions' },
  copy_key: { label: 'Copy key', description: 'Button to copy the license key mask' },
  download_loader: { label: 'Download loader', description: 'Loader download with HWID gating' },
  hwid_status: { label: 'HWID status', description: 'HWID binding status indicator' },
  license_file: {
    label: 'License file',
    description: 'Offline license file download and air-gapped activation',
  },
  custom_button: { label: 'Custom button', description: 'External link (Discord, website…)' },
  custom_text: { label: 'Custom text', description: 'A paragraph of your own text' },
};

/** The server's default layout (a project whose portal was never saved). */
export const DEFAULT_BLOCKS = [
  { type: 'key_info' },
  { type: 'hwid_status' },
  { type: 'copy_key' },
  { type: 'download_loader' },
];

/** Only http(s) links leave the portal; anything else (javascript:, data:) is dropped. */
export function safeUrl(url) {
  if (typeof url !== 'string' || !url.trim()) return null;
  try {
    const u = new URL(url.trim());
    return u.protocol === 'https:' || u.protocol === 'http:' ? u.href : null;
  } catch {
    return null;
  }
}

/**
 * The loader link: the portal's own download (a same-origin path such as `/api/portal/loader`)
 * or an external http(s) URL set in the project.
 */
export function loaderHref(url) {
  if (typeof url === 'string' && /^\/(?![/\\])/.test(url.trim())) return url.trim();
  return safeUrl(url);
}

const LEVELS = ['none', 'key', 'full'];

/**
 * Keeps known block types and the fields each one uses, plus the access level a block
 * `requires` (HWID gating, set through the API) so that saving from the editor keeps it.
 */
export function normalizeBlocks(blocks) {
  if (!Array.isArray(blocks)) return [];
  const out = [];
  for (const b of blocks) {
    if (!b || typeof b !== 'object' || !BLOCK_TYPES[b.type]) continue;
    let o;
    if (b.type === 'custom_button')
      o = { type: b.type, label: String(b.label ?? ''), url: String(b.url ?? '') };
    else if (b.type === 'custom_text') o = { type: b.type, text: String(b.text ?? '') };
    else o = { type: b.type };
    if (LEVELS.includes(b.requires) && b.requires !== DEFAULT_REQUIRES[b.type])
      o.requires = b.requires;
    if (typeof b.requiresEntitlement === 'string' && b.requiresEntitlement !== '')
      o.requiresEntitlement = b.requiresEntitlement;
    out.push(o);
  }
  return out;
}

/** What a block needs unless `requires` says otherwise (as the server decides). */
export const DEFAULT_REQUIRES = {
  key_info: 'key',
  copy_key: 'key',
  download_loader: 'key',
  hwid_status: 'key',
  license_file: 'key',
  custom_button: 'none',
  custom_text: 'none',
};

/** The server's access level ('none' | 'key' | 'full') of a page level. */
const SERVER_LEVEL = { none: 'none', inactive: 'none', unbound: 'key', full: 'full' };

/** Whether a custom block is above the user's access (the API then withholds its link). */
function gated(b, level) {
  if (b.locked === true) return true;
  const needs = LEVELS.includes(b.requires) ? b.requires : DEFAULT_REQUIRES[b.type];
  return LEVELS.indexOf(SERVER_LEVEL[level]) < LEVELS.indexOf(needs);
}

/** The access level of a /api/portal/me answer: 'none' | 'inactive' | 'unbound' | 'full'. */
export function accessLevel(me) {
  const a = me?.access || {};
  if (!a.hasKey) return 'none';
  if (!a.keyActive) return 'inactive';
  if (a.fullAccess || a.hwidBound) return 'full';
  return 'unbound';
}

/** The note shown above the blocks for an access level: [kind, text] or null. */
export function accessNotice(me) {
  const level = accessLevel(me);
  if (level === 'none') return ['info', 'Activate a license key to get started.'];
  if (level === 'inactive') {
    const st = me.key?.status ? me.key.status.toLowerCase() : 'not active';
    return ['warn', `Your key is ${st}. Contact support or activate another key.`];
  }
  if (level === 'unbound')
    return ['info', 'Almost there: download the loader and start it to bind your machine.'];
  return null;
}

/** A sample /api/portal/me answer for the editor's preview at one access level. */
export function sampleMe(level, loaderUrl) {
  const hasKey = level !== 'none';
  const bound = level === 'full';
  return {
    user: { id: 'preview', username: 'player123' },
    key: hasKey
      ? {
          mask: 'A1B2-****-****-G7H8',
          plan: 'MONTHLY',
          status: level === 'inactive' ? 'EXPIRED' : 'ACTIVE',
          hwidLocked: bound,
          expiresAt: new Date(Date.now() + 24 * 864e5).toISOString(),
          maxSessions: 2,
          activeSessions: bound ? 1 : 0,
        }
      : null,
    access: {
      hasKey,
      keyActive: hasKey && level !== 'inactive',
      hwidBound: bound,
      fullAccess: bound,
      canDownloadLoader: hasKey && level !== 'inactive',
      loaderUrl: hasKey && level !== 'inactive' ? loaderUrl || '/api/portal/loader' : undefined,
    },
  };
}

function card(type, title, ...children) {
  return h(
    'section',
    { class: 'pblock', 'data-test': `block-${type}`, 'data-block': type },
    title ? h('h3', {}, title) : null,
    children,
  );
}

function locked(type, title, text) {
  return h(
    'section',
    {
      class: 'pblock locked',
      'data-test': `block-${type}`,
      'data-block': type,
      'data-locked': 'true',
    },
    title ? h('h3', {}, title) : null,
    h('div', { class: 'lock-note' }, lockIcon(), h('span', {}, text)),
  );
}

function lockIcon() {
  return s(
    'svg',
    {
      viewBox: '0 0 24 24',
      fill: 'none',
      stroke: 'currentColor',
      'stroke-width': '2',
      'stroke-linecap': 'round',
      'aria-hidden': 'true',
    },
    s('rect', { x: '5', y: '11', width: '14', height: '10', rx: '2' }),
    s('path', { d: 'M8 11V7a4 4 0 0 1 8 0v4' }),
  );
}

const BLOCK_TITLES = {
  key_info: 'License',
  copy_key: 'Your key',
  download_loader: 'Loader',
  hwid_status: 'Machine',
  license_file: 'License file',
};

const LOCK_BIND = 'Available once your machine is bound: download the loader and start it.';

function renderKeyInfo(me) {
  const k = me.key;
  if (!k) return locked('key_info', 'License', 'No license key on your account yet.');
  const sessions =
    k.maxSessions !== undefined && k.maxSessions !== null
      ? `${k.activeSessions ?? 0} / ${k.maxSessions}`
      : '—';
  return card(
    'key_info',
    'License',
    h(
      'dl',
      { class: 'props' },
      h('dt', {}, 'Status'),
      h('dd', {}, statusBadge(k.status, 'key-status')),
      h('dt', {}, 'Plan'),
      h('dd', { 'data-test': 'key-plan' }, k.plan ? titleCase(k.plan) : '—'),
      h('dt', {}, 'Expires'),
      h(
        'dd',
        { 'data-test': 'key-expires' },
        k.expiresAt
          ? fmtDate(k.expiresAt)
          : k.plan === 'LIFETIME'
            ? 'Never'
            : 'Starts at first activation',
      ),
      h('dt', {}, 'Sessions'),
      h('dd', { 'data-test': 'key-sessions' }, sessions),
      h('dt', {}, 'Key'),
      h('dd', { class: 'mono', 'data-test': 'key-mask' }, k.mask || '—'),
    ),
  );
}

function renderCopyKey(me, level, _ctx) {
  if (!me.key) return locked('copy_key', 'Your key', 'No license key on your account yet.');
  if (level === 'unbound') return locked('copy_key', 'Your key', LOCK_BIND);
  return card(
    'copy_key',
    'Your key',
    h(
      'div',
      { class: 'btn-row' },
      h('span', { class: 'key-mask', 'data-test': 'copy-key-mask' }, me.key.mask),
      copyButton(me.key.mask, { test: 'copy-key' }),
    ),
  );
}

function renderLoader(me, level, ctx) {
  const a = me.access || {};
  if (level === 'none')
    return locked('download_loader', 'Loader', 'Activate a license key to download the loader.');
  if (level === 'inactive')
    return locked(
      'download_loader',
      'Loader',
      'Your key is not active, so the loader is unavailable.',
    );
  const url = loaderHref(a.loaderUrl);
  const link = url
    ? h(
        'a',
        {
          class: 'btn btn-primary',
          href: url,
          rel: 'noopener noreferrer',
          'data-test': 'download-loader',
        },
        'Download the loader',
      )
    : h(
        'p',
        { class: 'muted', 'data-test': 'loader-unavailable' },
        'The loader is not available for download yet.',
      );
  if (ctx.preview && url) link.addEventListener('click', (e) => e.preventDefault());
  const offer = loaderOffer(a, link, ctx);
  if (level === 'unbound') {
    return card(
      'download_loader',
      'Loader',
      h(
        'ol',
        { class: 'steps' },
        h('li', { class: 'done' }, h('span', { class: 'n' }, '1'), 'License key activated'),
        h(
          'li',
          { class: 'current' },
          h('span', { class: 'n' }, '2'),
          'Download the loader and start it to bind your machine',
        ),
        h('li', {}, h('span', { class: 'n' }, '3'), 'Full access'),
      ),
      a.canDownloadLoader === false
        ? h('p', { class: 'muted' }, 'The loader is not available for download yet.')
        : offer,
    );
  }
  return card(
    'download_loader',
    'Loader',
    h('p', { class: 'muted' }, 'Your machine is bound. Download the latest loader any time.'),
    a.canDownloadLoader === false
      ? h('p', { class: 'muted' }, 'The loader is not available for download yet.')
      : offer,
  );
}

/**
 * The loader button, and the release's files per platform when it has some: a release without
 * a bundle of its own is downloaded file by file, so the button alone would not do.
 */
function loaderOffer(a, link, ctx) {
  const files = Array.isArray(a.loaderFiles) ? a.loaderFiles : [];
  if (files.length === 0) return link;
  const list = h(
    'ul',
    { class: 'loader-files', 'data-test': 'loader-files' },
    files.map((f) => {
      const href = loaderHref(f.url);
      const name = `${f.platform} · ${f.arch} · ${f.filetype}`;
      const download = href
        ? h(
            'a',
            {
              class: 'btn btn-sm',
              href,
              rel: 'noopener noreferrer',
              'data-test': 'loader-file-download',
            },
            name,
          )
        : h('strong', {}, name);
      if (ctx.preview && href) download.addEventListener('click', (e) => e.preventDefault());
      return h(
        'li',
        {
          'data-test': 'loader-file',
          'data-platform': f.platform,
          'data-arch': f.arch,
          'data-filetype': f.filetype,
        },
        download,
        h('span', { class: 'muted small' }, `${f.filename} · ${fmtBytes(f.size)}`),
      );
    }),
  );
  return [a.loaderBundle ? link : null, list];
}

function renderHwid(me, level) {
  if (level === 'none') return locked('hwid_status', 'Machine', 'Activate a license key first.');
  const bound = !!me.access?.hwidBound;
  return card(
    'hwid_status',
    'Machine',
    h(
      'div',
      {
        class: `status-dot ${bound ? 'ok' : 'warn'}`,
        'data-test': 'hwid-state',
        'data-bound': bound ? 'true' : 'false',
      },
      bound ? 'Machine bound' : 'No machine bound yet',
    ),
    h(
      'p',
      { class: 'muted small' },
      bound
        ? 'Your key is locked to this machine\u2019s hardware ID.'
        : 'Start the loader on your computer: it binds your key to that machine.',
    ),
  );
}

/**
 * Offline licensing: the bound machine's file, and a machine without network activated from
 * its activation request. ctx.licenseFile = {download(), activate(text)} calls the portal API;
 * without it (the editor's preview) the controls are inert.
 */
function renderLicenseFile(me, level, ctx) {
  const title = 'License file';
  if (level === 'none') return locked('license_file', title, 'Activate a license key first.');
  if (level === 'inactive')
    return locked('license_file', title, 'Your key is not active, so no license file is issued.');
  const api = ctx.licenseFile;
  const bound = !!me.access?.hwidBound;
  const download = h(
    'button',
    {
      type: 'button',
      class: 'btn',
      'data-test': 'license-file-download',
      disabled: !bound || !api,
    },
    'Download license file',
  );
  if (api)
    download.addEventListener('click', async () => {
      setBusy(download, true);
      try {
        const data = await api.download();
        toast(`${data.fileName} downloaded`);
      } catch (err) {
        toast(err?.message || String(err), 'error');
      } finally {
        setBusy(download, false);
        download.disabled = !bound;
      }
    });
  return card(
    'license_file',
    title,
    h(
      'p',
      { class: 'muted' },
      bound
        ? 'A signed license file for the machine your key is bound to, for use without a connection.'
        : 'No machine is bound yet: start the app once, or activate a machine offline below.',
    ),
    h('div', { class: 'btn-row' }, download),
    h('hr'),
    h('h4', {}, 'Activate a machine offline'),
    h(
      'p',
      { class: 'muted small' },
      'On a computer without internet, the app shows an activation request. Paste it here ' +
        '(or load its .req file): the machine is activated and its license file downloads. ' +
        'Copy that file to the computer and load it in the app.',
    ),
    offlineActivationForm({
      send: (text) => api.activate(text),
      done: ctx.onLicenseFile,
      disabled: !api,
      test: 'license-file',
    }),
  );
}

function gatedNote(b) {
  return b.requires === 'full' ? LOCK_BIND : 'Activate a license key to see this.';
}

function renderButton(b, ctx, level) {
  if (gated(b, level)) return locked('custom_button', null, gatedNote(b));
  const url = safeUrl(b.url);
  const label = b.label?.trim() ? b.label.trim() : 'Link';
  const el = url
    ? h(
        'a',
        {
          class: 'btn',
          href: url,
          target: '_blank',
          rel: 'noopener noreferrer',
          'data-test': 'custom-button',
        },
        label,
        h('span', { 'aria-hidden': 'true' }, ' ↗'),
      )
    : h(
        'span',
        { class: 'muted', 'data-test': 'custom-button-invalid' },
        `${label} (no valid link set)`,
      );
  if (ctx.preview && url) el.addEventListener('click', (e) => e.preventDefault());
  return card('custom_button', null, el);
}

function renderText(b, level) {
  if (gated(b, level)) return locked('custom_text', null, gatedNote(b));
  return card(
    'custom_text',
    null,
    h('p', { class: 'pblock-text', 'data-test': 'custom-text' }, b.text || ''),
  );
}

/**
 * Renders the dashboard into a fragment.
 * ctx: {preview: bool, activateForm: () => Element} — the portal passes its activation form;
 * the editor passes a disabled stand-in.
 */
export function renderDashboard(blocks, me, ctx = {}) {
  // No saved configuration → the default blocks; a saved empty list stays empty.
  const known = (Array.isArray(blocks) ? blocks : DEFAULT_BLOCKS).filter(
    (b) => b && typeof b === 'object' && BLOCK_TYPES[b.type],
  );
  // The API marks the blocks above the user's access `locked` (and withholds their links).
  const list = normalizeBlocks(known).map((b, i) =>
    known[i].locked === true ? { ...b, locked: true } : b,
  );
  const level = accessLevel(me);
  const wrap = h('div', { class: 'pblocks', 'data-test': 'portal-blocks', 'data-access': level });
  if (level === 'none' || level === 'inactive') {
    if (ctx.activateForm) wrap.appendChild(ctx.activateForm(level));
    if (level === 'none') return wrap;
  }
  for (const b of list) {
    let el = null;
    // Locked although the user's access reaches the block: the key lacks its entitlement.
    const byLevel =
      DEFAULT_REQUIRES[b.type] === 'key'
        ? b.requires === 'full' && level === 'unbound'
        : gated({ ...b, locked: false }, level);
    if (b.locked && b.requiresEntitlement && !byLevel) {
      wrap.appendChild(
        locked(
          b.type,
          BLOCK_TITLES[b.type] || null,
          `Your license does not include ${b.requiresEntitlement}.`,
        ),
      );
      continue;
    }
    // A key block the vendor gated to full access (`requires: "full"`) waits for the binding.
    if (
      (b.locked || b.requires === 'full') &&
      level === 'unbound' &&
      DEFAULT_REQUIRES[b.type] === 'key'
    ) {
      wrap.appendChild(locked(b.type, BLOCK_TITLES[b.type], LOCK_BIND));
      continue;
    }
    switch (b.type) {
      case 'key_info':
        el = renderKeyInfo(me);
        break;
      case 'copy_key':
        el = renderCopyKey(me, level, ctx);
        break;
      case 'download_loader':
        el = renderLoader(me, level, ctx);
        break;
      case 'hwid_status':
        el = renderHwid(me, level);
        break;
      case 'license_file':
        el = renderLicenseFile(me, level, ctx);
        break;
      case 'custom_button':
        el = renderButton(b, ctx, level);
        break;
      case 'custom_text':
        el = renderText(b, level);
        break;
      default:
        break;
    }
    if (el) wrap.appendChild(el);
  }
  return wrap;
}
