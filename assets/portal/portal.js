// Keyward user portal of one project: /p/<slug> (dashboard or sign in), /p/<slug>/register,
// /p/<slug>/forgot (password-reset link), /p/<slug>/keys ("send me my keys"), and
// /p/<slug>?reset=TOKEN (choose a new password with a reset link).
// The session is the HttpOnly `portal_token` cookie set by the API; the page keeps no secret.

import { ApiError, api } from '../shared/api.js';
import { saveMachineFile } from '../shared/offline.js';
import { accessLevel, accessNotice, renderDashboard } from '../shared/portal-blocks.js';
import { field, formError, h, mount, onSubmit, toast } from '../shared/ui.js';
import { accountEmailForm, emailPage, helpLinks, resetPage } from './recovery.js';

const root = document.getElementById('portal');
const segs = location.pathname.split('/').filter(Boolean); // ['p', slug, ...rest]
const slug = decodeURIComponent(segs[1] || '');
const base = `/p/${encodeURIComponent(slug)}`;

let info = null; // {project, portal}
let me = null;

function go(path, replace = false) {
  const url = base + path;
  if (location.pathname !== url) history[replace ? 'replaceState' : 'pushState'](null, '', url);
  route();
}
window.addEventListener('popstate', () => route());

function brandTitle() {
  return info.portal?.title || info.project.name;
}

function topbar(user) {
  return h(
    'header',
    { class: 'portal-top' },
    h(
      'div',
      { class: 'inner' },
      h(
        'a',
        {
          class: 'brand',
          href: base,
          'data-test': 'portal-brand',
          onclick: (e) => {
            e.preventDefault();
            go('');
          },
        },
        h(
          'span',
          { class: 'brand-mark', 'aria-hidden': 'true' },
          (info.project.name || '?').trim().charAt(0).toUpperCase(),
        ),
        info.project.name,
      ),
      user
        ? h(
            'div',
            { class: 'btn-row' },
            h('span', { class: 'muted small', 'data-test': 'portal-username' }, user.username),
            h(
              'button',
              {
                type: 'button',
                class: 'btn btn-sm',
                'data-test': 'portal-logout',
                onclick: logout,
              },
              'Sign out',
            ),
          )
        : null,
    ),
  );
}

function notFound(title, text) {
  document.title = 'Not found';
  mount(
    root,
    h(
      'main',
      { class: 'auth-wrap' },
      h(
        'div',
        { class: 'auth-card center-note', 'data-test': 'portal-not-found' },
        h('h1', {}, title),
        h('p', { class: 'muted' }, text),
      ),
    ),
  );
}

async function boot() {
  if (!slug) {
    notFound('Portal not found', 'This address does not lead to a portal.');
    return;
  }
  try {
    info = await api.get('/api/portal/info', { query: { slug } });
  } catch (err) {
    if (err.status === 404)
      notFound(
        'Portal not found',
        'There is no portal at this address. Check the link you were given.',
      );
    else
      mount(
        root,
        h(
          'main',
          { class: 'auth-wrap' },
          h(
            'div',
            { class: 'auth-card', 'data-test': 'portal-error' },
            h('h1', {}, 'Something went wrong'),
            h('p', { class: 'muted' }, err.message),
            h(
              'button',
              { type: 'button', class: 'btn btn-primary', onclick: () => location.reload() },
              'Try again',
            ),
          ),
        ),
      );
    return;
  }
  await loadMe();
  route();
}

async function loadMe() {
  try {
    me = await api.get('/api/portal/me');
    // A portal session of another project does not count here.
    const pid = me?.user?.projectId;
    if (pid && pid !== info.project.id) me = null;
  } catch (err) {
    if (
      !(err instanceof ApiError) ||
      (err.status !== 401 && err.status !== 403 && err.status !== 404)
    )
      throw err;
    me = null;
  }
}

function route() {
  const rest = location.pathname.slice(base.length).replace(/\/+$/, '');
  const reset = new URLSearchParams(location.search).get('reset');
  if (reset) {
    resetPage(pageCtx(), reset);
    return;
  }
  if (!me && (rest === '/forgot' || rest === '/keys')) {
    emailPage(pageCtx(), rest === '/keys' ? 'keys' : 'forgot');
    return;
  }
  if (me) {
    if (rest) history.replaceState(null, '', base);
    dashboard();
    return;
  }
  if (rest === '/register') authPage('register');
  else {
    if (rest) history.replaceState(null, '', base);
    authPage('login');
  }
}

/* ---------- Sign in / register ---------- */
function authPage(mode) {
  const reg = mode === 'register';
  document.title = `${reg ? 'Create an account' : 'Sign in'} · ${brandTitle()}`;
  const form = h(
    'form',
    { novalidate: true, 'data-test': reg ? 'portal-register-form' : 'portal-login-form' },
    field({
      label: 'Username',
      name: 'username',
      autocomplete: 'username',
      required: true,
      maxlength: 64,
      test: reg ? 'register-username' : 'login-username',
    }),
    field({
      label: 'Password',
      name: 'password',
      type: 'password',
      autocomplete: reg ? 'new-password' : 'current-password',
      required: true,
      test: reg ? 'register-password' : 'login-password',
      hint: reg ? 'At least 8 characters.' : undefined,
    }),
    reg
      ? field({
          label: 'E-mail (optional)',
          name: 'email',
          type: 'email',
          autocomplete: 'email',
          maxlength: 254,
          hint: 'Lets you reset a forgotten password.',
          test: 'register-email',
        })
      : null,
    reg
      ? field({
          label: 'Repeat the password',
          name: 'password2',
          type: 'password',
          autocomplete: 'new-password',
          required: true,
          test: 'register-password2',
        })
      : null,
    formError(reg ? 'register-error' : 'login-error'),
    h(
      'button',
      {
        type: 'submit',
        class: 'btn btn-primary btn-block',
        'data-test': reg ? 'register-submit' : 'login-submit',
      },
      reg ? 'Create account' : 'Sign in',
    ),
  );
  const switcher = h(
    'p',
    { class: 'auth-switch' },
    reg ? 'Already have an account? ' : 'New here? ',
    h(
      'a',
      {
        href: reg ? base : `${base}/register`,
        'data-test': reg ? 'goto-login' : 'goto-register',
        onclick: (e) => {
          e.preventDefault();
          go(reg ? '' : '/register');
        },
      },
      reg ? 'Sign in' : 'Create an account',
    ),
  );
  mount(
    root,
    topbar(null),
    h(
      'main',
      { class: 'auth-wrap' },
      h(
        'div',
        { class: 'auth-card' },
        h('h1', {}, reg ? 'Create your account' : `Sign in to ${brandTitle()}`),
        h(
          'p',
          { class: 'lead' },
          reg
            ? 'No license key needed yet: you can add one after signing up.'
            : info.portal?.welcome ||
                info.project.description ||
                'Manage your license and download the loader.',
        ),
        form,
        switcher,
        reg ? null : helpLinks(pageCtx()),
      ),
    ),
  );
  onSubmit(
    form,
    async (fd) => {
      const username = String(fd.get('username') || '').trim();
      const password = String(fd.get('password') || '');
      if (reg && password !== fd.get('password2')) throw new Error('The passwords do not match.');
      const body = { username, password, projectId: info.project.id };
      const email = String(fd.get('email') || '').trim();
      if (reg && email) body.email = email;
      try {
        await api.post(`/api/portal/${reg ? 'register' : 'login'}`, body);
      } catch (err) {
        if (!reg && err.status === 401) {
          form.querySelector('[data-form-error]').textContent = err.message;
          return;
        }
        throw err;
      }
      await loadMe();
      if (!me)
        throw new Error('Signed in, but the session could not be opened. Are cookies blocked?');
      go('', true);
    },
    { 'do not match': 'password2', user: 'username' },
  );
  form.querySelector('input').focus();
}

/** What the e-mail pages (recovery.js) need of this page. */
function pageCtx() {
  return {
    root,
    base,
    info,
    me: () => me,
    go,
    topbar,
    brandTitle,
    signedOut: () => {
      me = null;
      route();
    },
  };
}

async function logout() {
  try {
    await api.post('/api/portal/logout');
  } catch {
    /* already gone */
  }
  me = null;
  toast('You have signed out.');
  go('', true);
}

/* ---------- Dashboard ---------- */
function activateForm(level) {
  const inactive = level === 'inactive';
  const form = h(
    'form',
    { novalidate: true, 'data-test': 'portal-activate-form' },
    field({
      label: 'License key',
      name: 'key',
      autocomplete: 'off',
      spellcheck: 'false',
      required: true,
      placeholder: 'XXXX-XXXX-XXXX-XXXX',
      test: 'activate-key',
    }),
    formError('activate-error'),
    h(
      'button',
      { type: 'submit', class: 'btn btn-primary', 'data-test': 'activate-submit' },
      'Activate key',
    ),
  );
  onSubmit(
    form,
    async (fd) => {
      const key = String(fd.get('key') || '').trim();
      if (!key) throw new Error('key: enter your license key');
      const res = await api.post('/api/portal/activate', { key });
      toast(res?.message || 'Key activated');
      await loadMe();
      dashboard(
        res?.needsHwidBinding
          ? 'Key activated! Now download the loader and start it to bind your machine.'
          : res?.message || 'Key activated.',
      );
    },
    { license: 'key' },
  );
  return h(
    'section',
    { class: 'pblock', 'data-test': 'block-activate' },
    h('h3', {}, inactive ? 'Activate another key' : 'Activate a license key'),
    h(
      'p',
      { class: 'muted' },
      inactive
        ? 'Your current key is not active. Enter a new key to restore access.'
        : 'Enter the license key you received to unlock your dashboard.',
    ),
    form,
  );
}

/** The license_file block's calls: the bound machine's file, and air-gapped activation. */
const licenseFile = {
  download: async () => {
    const data = await api.post('/api/portal/license-file', {});
    saveMachineFile(data);
    return data;
  },
  activate: (request) => api.post('/api/portal/license-file/activate', { request }),
};

function dashboard(notice) {
  document.title = brandTitle();
  const level = accessLevel(me);
  const blocks = Array.isArray(me.blocks)
    ? me.blocks
    : info.portal && Array.isArray(info.portal.blocks)
      ? info.portal.blocks
      : undefined;
  const status = accessNotice(me);
  mount(
    root,
    topbar(me.user),
    h(
      'main',
      { class: 'portal-main', 'data-test': 'portal-dashboard', 'data-access': level },
      h(
        'div',
        { class: 'portal-hero' },
        h('h1', {}, brandTitle()),
        info.portal?.welcome
          ? h('p', { 'data-test': 'portal-welcome' }, info.portal.welcome)
          : null,
      ),
      notice
        ? h(
            'div',
            { class: 'alert alert-ok', role: 'status', 'data-test': 'portal-notice' },
            notice,
          )
        : null,
      status && !notice
        ? h(
            'div',
            { class: `alert alert-${status[0]}`, 'data-test': 'portal-access-note' },
            status[1],
          )
        : null,
      renderDashboard(blocks, me, {
        activateForm,
        licenseFile,
        // A new machine changes the key's binding: show it.
        onLicenseFile: (data) => {
          if (data.newActivation)
            loadMe().then(() =>
              dashboard(`Machine ${data.fingerprint} activated: load ${data.fileName} in the app.`),
            );
        },
      }),
      accountEmailForm(pageCtx()),
    ),
  );
}

boot().catch((err) => {
  mount(
    root,
    h(
      'main',
      { class: 'auth-wrap' },
      h(
        'div',
        { class: 'auth-card', 'data-test': 'portal-error' },
        h('h1', {}, 'Something went wrong'),
        h('p', { class: 'muted' }, err.message || String(err)),
        h(
          'button',
          { type: 'button', class: 'btn btn-primary', onclick: () => location.reload() },
          'Try again',
        ),
      ),
    ),
  );
});
