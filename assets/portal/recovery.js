// The portal's e-mail pages: "Forgot your password?" (a reset link), "Lost your license key?"
// ("send me my keys"), the reset link's new-password page, and the account's e-mail address.
// `p` is the portal page's context: {root, base, info, me(), go, topbar, brandTitle, signedOut}.

import { api } from '../shared/api.js';
import { field, formError, h, mount, onSubmit, toast } from '../shared/ui.js';

export function helpLinks(p) {
  const link = (path, text, test) =>
    h(
      'a',
      {
        href: `${p.base}${path}`,
        'data-test': test,
        onclick: (e) => {
          e.preventDefault();
          p.go(path);
        },
      },
      text,
    );
  return h(
    'p',
    { class: 'auth-switch' },
    link('/forgot', 'Forgot your password?', 'goto-forgot'),
    ' · ',
    link('/keys', 'Lost your license key?', 'goto-send-keys'),
  );
}

export function emailPage(p, kind) {
  const keys = kind === 'keys';
  document.title = `${keys ? 'Send me my keys' : 'Forgot password'} · ${p.brandTitle()}`;
  const form = h(
    'form',
    { novalidate: true, 'data-test': keys ? 'portal-send-keys-form' : 'portal-forgot-form' },
    field({
      label: 'E-mail',
      name: 'email',
      type: 'email',
      autocomplete: 'email',
      required: true,
      maxlength: 254,
      test: 'portal-email',
    }),
    formError('portal-email-error'),
    h(
      'button',
      { type: 'submit', class: 'btn btn-primary btn-block', 'data-test': 'portal-email-submit' },
      keys ? 'Send me my keys' : 'Send a reset link',
    ),
  );
  const card = h(
    'div',
    { class: 'auth-card' },
    h('h1', {}, keys ? 'Send me my keys' : 'Forgot your password?'),
    h(
      'p',
      { class: 'lead' },
      keys
        ? 'Enter the address you bought with: every license key of it is e-mailed to it.'
        : 'Enter the e-mail of your account: a link to choose a new password is e-mailed to it.',
    ),
    form,
    h(
      'p',
      { class: 'auth-switch' },
      h(
        'a',
        {
          href: p.base,
          onclick: (e) => {
            e.preventDefault();
            p.go('');
          },
        },
        'Back to sign in',
      ),
    ),
  );
  mount(p.root, p.topbar(null), h('main', { class: 'auth-wrap' }, card));
  onSubmit(form, async (fd) => {
    const res = await api.post(keys ? '/api/portal/send-keys' : '/api/portal/password-reset', {
      projectId: p.info.project.id,
      email: String(fd.get('email') || '').trim(),
    });
    form.replaceWith(
      h(
        'div',
        { class: 'alert alert-ok', role: 'status', 'data-test': 'portal-email-sent' },
        res.data?.message || 'Sent.',
      ),
    );
  });
  form.querySelector('input').focus();
}

export function resetPage(p, token) {
  document.title = `New password · ${p.brandTitle()}`;
  const form = h(
    'form',
    { novalidate: true, 'data-test': 'portal-reset-form' },
    field({
      label: 'New password',
      name: 'password',
      type: 'password',
      autocomplete: 'new-password',
      required: true,
      hint: 'At least 8 characters.',
      test: 'reset-password',
    }),
    field({
      label: 'Repeat the password',
      name: 'password2',
      type: 'password',
      autocomplete: 'new-password',
      required: true,
      test: 'reset-password2',
    }),
    formError('reset-error'),
    h(
      'button',
      { type: 'submit', class: 'btn btn-primary btn-block', 'data-test': 'reset-submit' },
      'Set the new password',
    ),
  );
  mount(
    root,
    p.topbar(null),
    h(
      'main',
      { class: 'auth-wrap' },
      h('div', { class: 'auth-card' }, h('h1', {}, 'Choose a new password'), form),
    ),
  );
  onSubmit(
    form,
    async (fd) => {
      const password = String(fd.get('password') || '');
      if (password !== fd.get('password2')) throw new Error('The passwords do not match.');
      await api.post('/api/portal/password-reset/confirm', { token, password });
      history.replaceState(null, '', p.base);
      toast('Your password is changed: sign in with it.');
      p.signedOut();
    },
    { 'do not match': 'password2' },
  );
  form.querySelector('input').focus();
}

export function accountEmailForm(p) {
  const form = h(
    'form',
    { novalidate: true, class: 'card', 'data-test': 'portal-account-email' },
    h('h2', {}, 'Account e-mail'),
    field({
      label: 'E-mail for password resets',
      name: 'email',
      type: 'email',
      value: p.me().user.email || '',
      maxlength: 254,
      test: 'account-email',
    }),
    formError('account-email-error'),
    h('button', { type: 'submit', class: 'btn', 'data-test': 'account-email-save' }, 'Save'),
  );
  onSubmit(form, async (fd) => {
    const email = String(fd.get('email') || '').trim();
    const res = await api.put('/api/portal/email', { email: email || null });
    p.me().user.email = res.data.email;
    toast(email ? 'E-mail saved' : 'E-mail removed');
  });
  return form;
}
