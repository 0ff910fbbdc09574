// Keyward admin — shared state of the panel (the operator, a cached project list) and routing
// helpers. Kept apart from app.js so views can import it without import cycles.

import { ApiError, api } from '../shared/api.js';
import { errorBox, h } from '../shared/ui.js';

export const state = {
  me: null, // {user, apiKey, tenantId}
  projects: null, // cached list for filters and selects
  onUnauthorized: () => {},
};

export const isAdmin = () => !!(state.me?.user && state.me.user.role === 'ADMIN');

/** Parses "#/keys/abc?status=ACTIVE" → {parts: ['keys','abc'], query: URLSearchParams}. */
export function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, qs] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { parts, query: new URLSearchParams(qs || '') };
}

export function hrefFor(path, query) {
  const params = new URLSearchParams();
  if (query)
    for (const [k, v] of Object.entries(query))
      if (v !== undefined && v !== null && v !== '') params.set(k, String(v));
  const qs = params.toString();
  return `#${path}${qs ? `?${qs}` : ''}`;
}

export function navigate(path, query, { replace = false } = {}) {
  const href = hrefFor(path, query);
  if (replace) history.replaceState(null, '', href);
  else if (location.hash !== href) location.hash = href;
  if (replace) window.dispatchEvent(new HashChangeEvent('hashchange'));
}

/** Every project within reach (up to 500, newest first), cached until invalidated. */
export async function loadProjects(force = false) {
  if (state.projects && !force) return state.projects;
  const data = await api.get('/api/projects', { query: { limit: 500 } });
  state.projects = data.projects || [];
  return state.projects;
}
export function invalidateProjects() {
  state.projects = null;
}

export function projectName(id) {
  if (!id) return '—';
  const p = (state.projects || []).find((x) => x.id === id);
  return p ? p.name : id;
}

/** Shows an error in `container` (or hands a 401 to the login screen). */
export function failInto(container, err, test = 'error') {
  if (err instanceof ApiError && err.status === 401) {
    state.onUnauthorized();
    return;
  }
  if (err && err.name === 'AbortError') return;
  container.replaceChildren(errorBox(err, test));
}

/** True when the error was a lost session (and the login screen is being shown). */
export function handledAuth(err) {
  if (err instanceof ApiError && err.status === 401) {
    state.onUnauthorized();
    return true;
  }
  return false;
}

export function pageHead(title, sub, actions, crumbs) {
  return h(
    'div',
    { class: 'page-head' },
    h(
      'div',
      {},
      crumbs ? h('div', { class: 'breadcrumb' }, crumbs) : null,
      h('h1', { 'data-test': 'page-title' }, title),
      sub ? h('p', { class: 'sub' }, sub) : null,
    ),
    actions ? h('div', { class: 'btn-row' }, actions) : null,
  );
}

/** Renders a pager under a list. onPage(n) is called with the new page number. */
export function pager(pagination, onPage, test = 'pager') {
  if (!pagination) return null;
  const { page, totalPages, total, limit, totalCapped } = pagination;
  // A capped count means "at least": the server stopped counting past the page asked for.
  const more = totalCapped ? '+' : '';
  const from = total === 0 ? 0 : (page - 1) * limit + 1;
  const to = Math.min(total, page * limit);
  const prev = h(
    'button',
    {
      type: 'button',
      class: 'btn btn-sm',
      disabled: page <= 1,
      'data-test': `${test}-prev`,
      onclick: () => onPage(page - 1),
    },
    '← Previous',
  );
  const next = h(
    'button',
    {
      type: 'button',
      class: 'btn btn-sm',
      disabled: !totalCapped && page >= totalPages,
      'data-test': `${test}-next`,
      onclick: () => onPage(page + 1),
    },
    'Next →',
  );
  return h(
    'div',
    { class: 'pager', 'data-test': test },
    h(
      'span',
      { 'data-test': `${test}-info` },
      total === 0
        ? 'No results'
        : `${from.toLocaleString()}–${to.toLocaleString()} of ${Number(total).toLocaleString()}${more}`,
    ),
    h(
      'div',
      { class: 'btn-row' },
      prev,
      h('span', {}, `Page ${page} of ${Math.max(1, totalPages).toLocaleString()}${more}`),
      next,
    ),
  );
}

/** Entitlement codes typed as text: split on commas or spaces, upper-cased, empties dropped. */
export function parseCodes(text) {
  return String(text || '')
    .split(/[\s,]+/)
    .map((c) => c.trim().toUpperCase())
    .filter((c) => c !== '');
}

/** The entitlement codes of a cached project (empty when unknown). */
export function projectCodes(id) {
  const p = (state.projects || []).find((x) => x.id === id);
  return p?.entitlements || [];
}

/** Entitlement codes as badges, or a muted dash for none. */
export function entitlementBadges(codes, test = 'entitlements') {
  if (!codes || codes.length === 0) {
    return h('span', { class: 'muted', 'data-test': test }, 'none');
  }
  return h(
    'span',
    { 'data-test': test },
    codes.map((c) => [h('span', { class: 'badge mono', 'data-code': c }, c), ' ']),
  );
}
