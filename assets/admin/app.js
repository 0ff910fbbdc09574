// Keyward admin panel — boot, first-run setup, login, the shell (sidebar + main) and the
// hash router (#/dashboard, #/projects/ID/settings, #/keys?status=ACTIVE …).

import { ApiError, api } from '../shared/api.js';
import { empty, field, formError, h, loading, mount, onSubmit, s, toast } from '../shared/ui.js';
import { isAdmin, navigate, parseHash, state } from './state.js';

const app = document.getElementById('app');

/* ---------- Icons (inline SVG built from paths; no external files) ---------- */
const ICONS = {
  dashboard: 'M3 13h8V3H3v10zm0 8h8v-6H3v6zm10 0h8V11h-8v10zm0-18v6h8V3h-8z',
  projects: 'M3 7a2 2 0 0 1 2-2h4l2 2h8a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V7z',
  keys: 'M14 10a4 4 0 1 0-3.9 4H12v2h2v2h3v-3l-3-3v-2z M8 10a1 1 0 1 0 2 0 1 1 0 0 0-2 0z',
  apikeys: 'M4 6h16v12H4z M7 10h4 M7 14h10',
  logs: 'M5 4h14v16H5z M8 8h8 M8 12h8 M8 16h5',
  users:
    'M9 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8zm-7 9a7 7 0 0 1 14 0 M17 11a3 3 0 1 0 0-6 M22 20a5 5 0 0 0-4-5',
  admin: 'M12 2l8 4v6c0 5-3.5 8.5-8 10-4.5-1.5-8-5-8-10V6l8-4z',
  abuse: 'M12 3l9 16H3L12 3z M12 10v4 M12 17h.01',
  payments: 'M3 6h18v12H3z M3 10h18 M7 15h4',
  webhooks:
    'M10 14a3.5 3.5 0 0 0 5 0l4-4a3.5 3.5 0 0 0-5-5l-.5.5 M14 10a3.5 3.5 0 0 0-5 0l-4 4a3.5 3.5 0 0 0 5 5l.5-.5',
  mail: 'M3 6h18v12H3z M3 7l9 6 9-6',
  menu: 'M4 6h16M4 12h16M4 18h16',
  lock: 'M6 11h12v10H6z M8 11V7a4 4 0 0 1 8 0v4',
};
function icon(name) {
  return s(
    'svg',
    {
      viewBox: '0 0 24 24',
      fill: 'none',
      stroke: 'currentColor',
      'stroke-width': '1.8',
      'stroke-linecap': 'round',
      'stroke-linejoin': 'round',
      'aria-hidden': 'true',
    },
    s('path', { d: ICONS[name] }),
  );
}

const brand = () =>
  h(
    'a',
    { class: 'brand', href: '#/dashboard' },
    h('span', { class: 'brand-mark', 'aria-hidden': 'true' }, 'K'),
    'Keyward',
  );

/* ---------- Views (loaded on demand) ---------- */
const ROUTES = [
  {
    name: 'dashboard',
    label: 'Dashboard',
    icon: 'dashboard',
    load: () => import('./views/dashboard.js'),
  },
  {
    name: 'projects',
    label: 'Projects',
    icon: 'projects',
    load: () => import('./views/projects.js'),
  },
  { name: 'keys', label: 'License keys', icon: 'keys', load: () => import('./views/keys.js') },
  {
    name: 'api-keys',
    label: 'API keys',
    icon: 'apikeys',
    load: () => import('./views/apikeys.js'),
  },
  { name: 'logs', label: 'Audit logs', icon: 'logs', load: () => import('./views/logs.js') },
  {
    name: 'payments',
    label: 'Payments',
    icon: 'payments',
    load: () => import('./views/payments.js'),
  },
  { name: 'abuse', label: 'Abuse', icon: 'abuse', load: () => import('./views/abuse.js') },
  { name: 'mail', label: 'E-mail', icon: 'mail', load: () => import('./views/mail.js') },
  {
    name: 'customers',
    label: 'Customer',
    hidden: true,
    load: () => import('./views/customer.js'),
  },
  {
    name: 'security',
    label: 'Account security',
    icon: 'lock',
    operator: true,
    load: () => import('./views/security.js'),
  },
  {
    name: 'webhooks',
    label: 'Webhooks',
    icon: 'webhooks',
    load: () => import('./views/webhooks.js'),
  },
  {
    name: 'users',
    label: 'Operators',
    icon: 'users',
    admin: true,
    load: () => import('./views/users.js'),
  },
  {
    name: 'admin',
    label: 'Admin overview',
    icon: 'admin',
    admin: true,
    load: () => import('./views/admin.js'),
  },
];

/* ---------- Boot ---------- */
async function boot() {
  state.onUnauthorized = () => {
    state.me = null;
    state.projects = null;
    showLogin('Your session has ended. Please sign in again.');
  };
  try {
    state.me = await api.get('/api/auth/me');
    if (state.me.twoFactorEnrolmentRequired) history.replaceState(null, '', '#/security');
    showShell();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      const token = takeSetupToken();
      if (await setupOpen().catch(() => false)) showSetup(token);
      else showLogin();
    } else {
      mount(
        app,
        h(
          'div',
          { class: 'auth-wrap' },
          h(
            'div',
            { class: 'auth-card', 'data-test': 'boot-error' },
            brand(),
            h('h1', {}, 'Cannot reach the server'),
            h('p', { class: 'lead' }, err.message),
            h(
              'button',
              { class: 'btn btn-primary', type: 'button', onclick: () => location.reload() },
              'Try again',
            ),
          ),
        ),
      );
    }
  }
}

/** Whether the first-run setup is still open (no operator exists yet): GET /api/auth/setup. */
async function setupOpen() {
  const data = await api.get('/api/auth/setup');
  return !!data?.setupRequired;
}

function authPage(...children) {
  document.title = 'Keyward';
  mount(
    app,
    h('main', { class: 'auth-wrap' }, h('div', { class: 'auth-card' }, brand(), children)),
  );
}

/**
 * The one-time setup token from the setup URL the server printed (`/setup?token=…`). Taken out
 * of the address bar at once, so it stays neither in the history nor on screen.
 */
function takeSetupToken() {
  const params = new URLSearchParams(location.search);
  const token = params.get('token');
  if (location.pathname === '/setup' || token) history.replaceState(null, '', `/${location.hash}`);
  return token ? token.trim() : '';
}

function showSetup(token) {
  const form = h(
    'form',
    { novalidate: true, 'data-test': 'setup-form' },
    token
      ? h('input', { type: 'hidden', name: 'setupToken', value: token })
      : field({
          label: 'Setup token',
          name: 'setupToken',
          autocomplete: 'off',
          spellcheck: 'false',
          required: true,
          hint: 'The token of the setup link the server printed at its start, or of a new one from `keyward admin setup-url`.',
          test: 'setup-token',
        }),
    field({
      label: 'Email',
      name: 'email',
      type: 'email',
      autocomplete: 'username',
      required: true,
      test: 'setup-email',
    }),
    field({
      label: 'Password',
      name: 'password',
      type: 'password',
      autocomplete: 'new-password',
      required: true,
      hint: '8 to 128 characters.',
      test: 'setup-password',
      minlength: 8,
    }),
    field({
      label: 'Repeat the password',
      name: 'password2',
      type: 'password',
      autocomplete: 'new-password',
      required: true,
      test: 'setup-password2',
    }),
    formError('setup-error'),
    h(
      'button',
      { type: 'submit', class: 'btn btn-primary btn-block', 'data-test': 'setup-submit' },
      'Create the administrator',
    ),
  );
  authPage(
    h('h1', {}, 'Welcome to Keyward'),
    h(
      'p',
      { class: 'lead', 'data-test': 'setup-lead' },
      token
        ? 'No operator exists yet. Create the first administrator account of this server; this setup link works once.'
        : 'No operator exists yet. Open the setup link the server printed when it started, or paste its token below.',
    ),
    form,
  );
  onSubmit(
    form,
    async (fd) => {
      const email = String(fd.get('email') || '').trim();
      const password = String(fd.get('password') || '');
      const setupToken = String(fd.get('setupToken') || '').trim();
      if (password !== fd.get('password2')) {
        throw Object.assign(new Error('The passwords do not match.'), { field: 'password2' });
      }
      try {
        await api.post('/api/auth/register', { email, password, setupToken });
      } catch (err) {
        if (err.status === 403) {
          showLogin('Setup is already complete. Please sign in.');
          return;
        }
        // A wrong or stale token from the link: show it above the button, where the hidden
        // field has no place of its own.
        if (token && String(err.code).startsWith('SETUP_TOKEN')) {
          form.querySelector('[data-form-error]').textContent = err.message;
          return;
        }
        throw err;
      }
      await login(email, password);
    },
    { password2: 'password2', 'do not match': 'password2', 'setup token': 'setupToken' },
  );
  form.querySelector('input:not([type=hidden])').focus();
}

function showLogin(notice) {
  const form = h(
    'form',
    { novalidate: true, 'data-test': 'login-form' },
    notice ? h('div', { class: 'alert alert-info', 'data-test': 'login-notice' }, notice) : null,
    field({
      label: 'Email',
      name: 'email',
      type: 'email',
      autocomplete: 'username',
      required: true,
      test: 'login-email',
    }),
    field({
      label: 'Password',
      name: 'password',
      type: 'password',
      autocomplete: 'current-password',
      required: true,
      test: 'login-password',
    }),
    formError('login-error'),
    h(
      'button',
      { type: 'submit', class: 'btn btn-primary btn-block', 'data-test': 'login-submit' },
      'Sign in',
    ),
  );
  authPage(
    h('h1', {}, 'Sign in'),
    h('p', { class: 'lead' }, 'Sign in to manage your projects and license keys.'),
    form,
  );
  onSubmit(form, async (fd) => {
    try {
      await login(String(fd.get('email') || '').trim(), String(fd.get('password') || ''));
    } catch (err) {
      // A wrong password names no field: show it above the button.
      if (err.status === 401) {
        form.querySelector('[data-form-error]').textContent = err.message;
        return;
      }
      throw err;
    }
  });
  form.querySelector('input').focus();
}

async function login(email, password) {
  const step = await api.post('/api/auth/login', { email, password });
  if (step?.twoFactorRequired) {
    showSecondFactor(step.challenge);
    return;
  }
  await enter();
}

async function enter() {
  state.me = await api.get('/api/auth/me');
  if (state.me.twoFactorEnrolmentRequired) history.replaceState(null, '', '#/security');
  else if (!location.hash || location.hash === '#' || location.hash === '#/')
    history.replaceState(null, '', '#/dashboard');
  showShell();
}

/** The second step of a two-factor sign-in: a code of the app, or a recovery code. */
function showSecondFactor(challenge, recovery = false) {
  const form = h(
    'form',
    { novalidate: true, 'data-test': 'second-factor-form' },
    recovery
      ? field({
          label: 'Recovery code',
          name: 'recoveryCode',
          autocomplete: 'off',
          spellcheck: 'false',
          required: true,
          hint: 'One of the codes you saved when you turned two-factor login on. Each works once.',
          test: 'login-recovery-code',
        })
      : field({
          label: 'Code from your authenticator app',
          name: 'code',
          inputmode: 'numeric',
          autocomplete: 'one-time-code',
          maxlength: 7,
          required: true,
          test: 'login-code',
        }),
    formError('second-factor-error'),
    h(
      'button',
      { type: 'submit', class: 'btn btn-primary btn-block', 'data-test': 'second-factor-submit' },
      'Verify',
    ),
  );
  const other = h(
    'button',
    { type: 'button', class: 'btn btn-ghost btn-block', 'data-test': 'second-factor-switch' },
    recovery ? 'Use the authenticator app instead' : 'Use a recovery code instead',
  );
  other.addEventListener('click', () => showSecondFactor(challenge, !recovery));
  const back = h(
    'button',
    { type: 'button', class: 'btn btn-ghost btn-block', 'data-test': 'second-factor-back' },
    'Back to the password',
  );
  back.addEventListener('click', () => showLogin());
  authPage(
    h('h1', {}, 'Two-factor login'),
    h(
      'p',
      { class: 'lead' },
      recovery
        ? 'Enter one of your recovery codes.'
        : 'Enter the 6-digit code your authenticator app shows for Keyward.',
    ),
    form,
    other,
    back,
  );
  onSubmit(form, async (fd) => {
    const body = recovery
      ? { challenge, recoveryCode: String(fd.get('recoveryCode') || '').trim() }
      : { challenge, code: String(fd.get('code') || '').trim() };
    try {
      await api.post('/api/auth/login/2fa', body);
    } catch (err) {
      if (err.status === 401 && /challenge/.test(err.message)) {
        showLogin(err.message);
        return;
      }
      // A wrong code names no field of its own: show it above the button.
      if (err.status === 401 || err.status === 429) {
        form.querySelector('[data-form-error]').textContent = err.message;
        return;
      }
      throw err;
    }
    await enter();
  });
  form.querySelector('input').focus();
}

async function logout() {
  try {
    await api.post('/api/auth/logout');
  } catch {
    /* the cookie may be gone already */
  }
  state.me = null;
  state.projects = null;
  showLogin('You have signed out.');
}

/* ---------- Shell ---------- */
let mainEl;
let navEl;
let sidebarEl;
let scrimEl;
let cleanup = null;
let routeSeq = 0;

function showShell() {
  const who = state.me.user
    ? state.me.user.email
    : state.me.apiKey
      ? `API key ${state.me.apiKey.id}`
      : 'operator';
  navEl = h(
    'nav',
    { class: 'nav', 'aria-label': 'Main', 'data-test': 'nav' },
    ROUTES.filter((r) => !r.admin && !r.hidden && (!r.operator || state.me.user)).map(navLink),
    isAdmin()
      ? [
          h('div', { class: 'nav-section' }, 'Administration'),
          ROUTES.filter((r) => r.admin).map(navLink),
        ]
      : null,
  );
  sidebarEl = h(
    'aside',
    { class: 'sidebar', id: 'sidebar', 'data-test': 'sidebar' },
    brand(),
    navEl,
    h(
      'div',
      { class: 'sidebar-foot' },
      h(
        'div',
        { class: 'who', 'data-test': 'current-user' },
        who,
        state.me.user
          ? h(
              'div',
              { class: 'muted small' },
              state.me.user.role === 'ADMIN' ? 'Administrator' : 'Operator',
            )
          : null,
      ),
      h(
        'button',
        {
          type: 'button',
          class: 'btn btn-ghost btn-block',
          'data-test': 'logout',
          onclick: logout,
        },
        'Sign out',
      ),
    ),
  );
  const menuBtn = h(
    'button',
    {
      type: 'button',
      class: 'btn btn-ghost btn-icon',
      'aria-label': 'Open the menu',
      'aria-controls': 'sidebar',
      'aria-expanded': 'false',
      'data-test': 'menu-toggle',
    },
    icon('menu'),
  );
  scrimEl = h('div', { class: 'scrim', hidden: true });
  const closeMenu = () => {
    sidebarEl.classList.remove('open');
    scrimEl.hidden = true;
    menuBtn.setAttribute('aria-expanded', 'false');
  };
  menuBtn.addEventListener('click', () => {
    const open = !sidebarEl.classList.contains('open');
    sidebarEl.classList.toggle('open', open);
    scrimEl.hidden = !open;
    menuBtn.setAttribute('aria-expanded', String(open));
    if (open) sidebarEl.querySelector('a').focus();
  });
  scrimEl.addEventListener('click', closeMenu);
  sidebarEl.addEventListener('click', (e) => {
    if (e.target.closest('a')) closeMenu();
  });
  sidebarEl.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && sidebarEl.classList.contains('open')) {
      closeMenu();
      menuBtn.focus();
    }
  });
  mainEl = h('main', { class: 'main', id: 'main', tabindex: '-1', 'data-test': 'main' });
  abuseCheckedAt = 0;
  refreshAbuseBadge();
  mount(
    app,
    h(
      'a',
      {
        class: 'skip-link',
        href: '#main',
        onclick: (e) => {
          e.preventDefault();
          mainEl.focus();
        },
      },
      'Skip to content',
    ),
    h('div', { class: 'topbar' }, brand(), menuBtn),
    h('div', { class: 'shell' }, sidebarEl, scrimEl, mainEl),
  );
  route();
}

/** The number of open abuse flags beside "Abuse" in the menu. Views that learn the count
 * (dashboard, abuse page) announce it with a `kw:abuse-count` event; otherwise it is read from
 * GET /api/stats at most once a minute while navigating. */
let abuseCheckedAt = 0;
function showAbuseCount(n) {
  const link = navEl?.querySelector('[data-route="abuse"]');
  if (!link) return;
  const old = link.querySelector('.nav-badge');
  if (old) old.remove();
  if (n)
    link.appendChild(
      h(
        'span',
        { class: 'nav-badge', 'data-test': 'nav-abuse-badge', 'aria-label': `${n} open` },
        String(n),
      ),
    );
}
window.addEventListener('kw:abuse-count', (e) => {
  abuseCheckedAt = Date.now();
  showAbuseCount(e.detail);
});
async function refreshAbuseBadge() {
  if (state.me?.twoFactorEnrolmentRequired) return;
  if (Date.now() - abuseCheckedAt < 60_000) return;
  abuseCheckedAt = Date.now();
  try {
    const st = await api.get('/api/stats');
    showAbuseCount(st.openAbuseFlags || 0);
  } catch {
    /* the badge is a hint; the pages report errors themselves */
  }
}

function navLink(r) {
  return h(
    'a',
    { href: `#/${r.name}`, 'data-route': r.name, 'data-test': `nav-${r.name}` },
    icon(r.icon),
    r.label,
  );
}

async function route() {
  if (!state.me || !mainEl) return;
  const { parts, query } = parseHash();
  // A workspace that requires two-factor login lets an operator without it only set it up.
  if (state.me.twoFactorEnrolmentRequired && parts[0] !== 'security') {
    history.replaceState(null, '', '#/security');
    parts.splice(0, parts.length, 'security');
  }
  const name = parts[0] || 'dashboard';
  const r = ROUTES.find((x) => x.name === name);
  navEl.querySelectorAll('a').forEach((a) => {
    if (a.dataset.route === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  });
  if (typeof cleanup === 'function') {
    try {
      cleanup();
    } catch {
      /* ignore */
    }
  }
  cleanup = null;
  const seq = ++routeSeq;
  if (!r || (r.admin && !isAdmin())) {
    document.title = 'Not found · Keyward';
    mount(
      mainEl,
      empty(
        'Page not found',
        'This page does not exist or needs more rights.',
        h('a', { class: 'btn', href: '#/dashboard' }, 'Go to the dashboard'),
        'not-found',
      ),
    );
    return;
  }
  document.title = `${r.label} · Keyward`;
  refreshAbuseBadge();
  mount(mainEl, loading());
  try {
    const mod = await r.load();
    if (seq !== routeSeq) return;
    const view = h('div', { 'data-test': `view-${r.name}` });
    mount(mainEl, view);
    cleanup = await mod.render(view, { parts: parts.slice(1), query, refresh: route });
  } catch (err) {
    if (seq !== routeSeq) return;
    if (err instanceof ApiError && err.status === 401) {
      state.onUnauthorized();
      return;
    }
    if (err instanceof ApiError && err.code === 'TWO_FACTOR_ENROLMENT_REQUIRED') {
      state.me.twoFactorEnrolmentRequired = true;
      navigate('/security');
      return;
    }
    mount(
      mainEl,
      h(
        'div',
        { class: 'alert alert-error', role: 'alert', 'data-test': 'error' },
        err.message || String(err),
      ),
    );
  }
}

window.addEventListener('hashchange', () => {
  route();
  if (
    mainEl &&
    document.activeElement &&
    document.activeElement !== document.body &&
    !mainEl.contains(document.activeElement)
  ) {
    // Keep focus sensible after navigating from the sidebar.
    mainEl.focus({ preventScroll: true });
  }
  window.scrollTo(0, 0);
});

export { navigate, toast };

boot();
