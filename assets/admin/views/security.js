// Account security (/api/auth/2fa/*): turn two-factor login on (secret, otpauth URI and QR
// code, confirmed by a first code), see the recovery codes once, get new ones, turn it off;
// for ADMINs, whether the workspace requires it (/api/workspace/2fa).

import { api } from '../../shared/api.js';
import {
  checkbox,
  copyButton,
  field,
  formError,
  h,
  loading,
  mount,
  onSubmit,
  toast,
} from '../../shared/ui.js';
import { failInto, isAdmin, pageHead, state } from '../state.js';

export async function render(root) {
  const body = h('div', { 'data-test': 'security' }, loading('Loading…'));
  mount(
    root,
    pageHead(
      'Account security',
      `Two-factor login for ${state.me?.user?.email || 'your account'}: a code from an authenticator app after the password.`,
    ),
    body,
  );

  async function load() {
    try {
      const [status, policy] = await Promise.all([
        api.get('/api/auth/2fa'),
        isAdmin() && !state.me?.twoFactorEnrolmentRequired
          ? api.get('/api/workspace/2fa')
          : Promise.resolve(null),
      ]);
      paint(status, policy);
    } catch (err) {
      failInto(body, err);
    }
  }

  function paint(status, policy) {
    mount(
      body,
      status.requiredByWorkspace && !status.enabled
        ? h(
            'div',
            { class: 'alert alert-warn', 'data-test': 'security-required' },
            'Your workspace requires two-factor login. Turn it on to use the rest of the panel.',
          )
        : null,
      status.enabled ? enabledCard(status) : enrolCard(),
      policy ? policyCard(policy) : null,
    );
  }

  function enrolCard() {
    const start = h(
      'button',
      { type: 'button', class: 'btn btn-primary', 'data-test': 'totp-start' },
      'Turn on two-factor login',
    );
    const card = h(
      'section',
      { class: 'card', 'data-test': 'totp-off' },
      h(
        'div',
        { class: 'card-head' },
        h('h2', {}, 'Two-factor login'),
        h('span', { class: 'badge' }, 'Off'),
      ),
      h(
        'p',
        { class: 'muted' },
        'After your password, Keyward will ask for the 6-digit code of an authenticator app (such as Aegis, Google Authenticator or 1Password).',
      ),
      start,
    );
    start.addEventListener('click', async () => {
      start.disabled = true;
      try {
        showEnrolment(card, await api.post('/api/auth/2fa/enroll'));
      } catch (err) {
        start.disabled = false;
        toast(err.message, 'error');
      }
    });
    return card;
  }

  function showEnrolment(card, enrolment) {
    const qr = h('img', {
      class: 'totp-qr',
      alt: 'QR code of the two-factor secret',
      width: '200',
      height: '200',
      src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(enrolment.qrSvg)}`,
      'data-test': 'totp-qr',
    });
    const form = h(
      'form',
      { novalidate: true, 'data-test': 'totp-confirm-form' },
      field({
        label: 'Code from the app',
        name: 'code',
        inputmode: 'numeric',
        autocomplete: 'one-time-code',
        maxlength: 7,
        required: true,
        test: 'totp-code',
        hint: 'The 6 digits the app shows now for Keyward.',
      }),
      formError('totp-confirm-error'),
      h(
        'button',
        { type: 'submit', class: 'btn btn-primary', 'data-test': 'totp-confirm' },
        'Turn on',
      ),
    );
    mount(
      card,
      h('div', { class: 'card-head' }, h('h2', {}, 'Set up your authenticator app')),
      h(
        'div',
        { class: 'totp-enrol' },
        qr,
        h(
          'div',
          {},
          h('p', {}, '1. Scan the QR code with the app, or type the secret in:'),
          h(
            'div',
            { class: 'secret-row' },
            h('div', { class: 'secret-value', 'data-test': 'totp-secret' }, enrolment.secret),
            copyButton(enrolment.secret, { label: 'Copy', test: 'totp-secret-copy' }),
          ),
          h(
            'details',
            { class: 'small muted' },
            h('summary', {}, 'The otpauth:// link'),
            h('div', { class: 'mono small', 'data-test': 'totp-uri' }, enrolment.otpauthUri),
          ),
          h('p', {}, '2. Enter the code it shows to turn two-factor login on.'),
          form,
        ),
      ),
    );
    onSubmit(form, async (fd) => {
      const data = await api.post('/api/auth/2fa/confirm', {
        code: String(fd.get('code') || '').trim(),
      });
      if (state.me) state.me.twoFactorEnrolmentRequired = false;
      showCodes(card, data.recoveryCodes, 'Two-factor login is on');
    });
    form.querySelector('input').focus();
  }

  function showCodes(card, codes, title) {
    const text = codes.join('\n');
    const done = h(
      'button',
      { type: 'button', class: 'btn btn-primary', 'data-test': 'recovery-done' },
      'I have saved them',
    );
    done.addEventListener('click', () => load());
    mount(
      card,
      h('div', { class: 'card-head' }, h('h2', {}, title)),
      h(
        'div',
        { class: 'alert alert-warn', 'data-test': 'recovery-once' },
        'Save these recovery codes now: each signs you in once without the app, and they are not shown again.',
      ),
      h(
        'ul',
        { class: 'recovery-codes', 'data-test': 'recovery-codes' },
        codes.map((c) => h('li', { class: 'mono' }, c)),
      ),
      h(
        'div',
        { class: 'btn-row' },
        copyButton(text, { label: 'Copy the codes', test: 'recovery-copy' }),
        done,
      ),
    );
    done.focus();
  }

  /** A code-or-password form, for turning off and for new recovery codes. */
  function proofForm(test, label, danger, onProof) {
    const form = h(
      'form',
      { novalidate: true, 'data-test': test },
      field({
        label: 'Code from the app, or your password',
        name: 'proof',
        type: 'password',
        autocomplete: 'current-password',
        required: true,
        test: `${test}-proof`,
      }),
      formError(`${test}-error`),
      h('button', { type: 'submit', class: danger ? 'btn btn-outline-danger' : 'btn' }, label),
    );
    onSubmit(
      form,
      async (fd) => {
        const proof = String(fd.get('proof') || '');
        const digits = proof.replace(/\s/g, '');
        await onProof(/^\d{6}$/.test(digits) ? { code: digits } : { password: proof });
      },
      { code: 'proof', password: 'proof' },
    );
    return form;
  }

  function enabledCard(status) {
    const card = h('section', { class: 'card', 'data-test': 'totp-on' });
    mount(
      card,
      h(
        'div',
        { class: 'card-head' },
        h('h2', {}, 'Two-factor login'),
        h('span', { class: 'badge badge-ok' }, 'On'),
      ),
      h(
        'p',
        { 'data-test': 'recovery-left' },
        `${status.recoveryCodesLeft} of 10 recovery codes left.`,
      ),
      h(
        'div',
        { class: 'grid grid-2' },
        h(
          'div',
          {},
          h('h3', {}, 'New recovery codes'),
          h('p', { class: 'muted small' }, 'The old codes stop working.'),
          proofForm('recovery-new', 'Make new codes', false, async (proof) => {
            const data = await api.post('/api/auth/2fa/recovery-codes', proof);
            showCodes(card, data.recoveryCodes, 'New recovery codes');
          }),
        ),
        h(
          'div',
          {},
          h('h3', {}, 'Turn off'),
          h('p', { class: 'muted small' }, 'Your password alone will sign you in.'),
          proofForm('totp-disable', 'Turn off two-factor login', true, async (proof) => {
            await api.post('/api/auth/2fa/disable', proof);
            toast('Two-factor login is off');
            load();
          }),
        ),
      ),
    );
    return card;
  }

  function policyCard(policy) {
    const box = checkbox({
      label: 'Require two-factor login in this workspace',
      name: 'required',
      checked: policy.required,
      hint: 'Operators without it can only set it up until they do.',
      test: 'policy-required',
    });
    const form = h(
      'form',
      { class: 'card', novalidate: true, 'data-test': 'policy-form' },
      h('div', { class: 'card-head' }, h('h2', {}, 'Workspace')),
      box,
      formError('policy-error'),
      h('button', { type: 'submit', class: 'btn', 'data-test': 'policy-save' }, 'Save'),
    );
    onSubmit(form, async (fd) => {
      const data = await api.put('/api/workspace/2fa', { required: fd.get('required') === 'on' });
      toast(
        data.required
          ? 'Two-factor login is required in this workspace'
          : 'Two-factor login is optional in this workspace',
      );
    });
    return form;
  }

  await load();
}
