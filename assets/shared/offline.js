// Keyward — air-gapped activation, shared by the portal's license_file block and the admin
// panel's "Offline activation" dialog: paste (or load from its .req file) the activation
// request an app without network shows, send it, and save the machine file the server answers.

import { field, formError, h, onSubmit, toast } from './ui.js';

/** Saves a machine file answer ({certificate, fileName}) as a download. */
export function saveMachineFile(data) {
  const blob = new Blob([data.certificate], { type: 'application/octet-stream' });
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: data.fileName || 'machine.lic', hidden: true });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/**
 * The form: a textarea for the request, a file picker that fills it from a .req file, and a
 * submit button. `send(text)` posts it and resolves with the machine file answer; the file is
 * then downloaded and `done(data)` told. `disabled` renders it inert (the editor's preview).
 */
export function offlineActivationForm({ send, done, disabled = false, test = 'offline' }) {
  const text = field({
    label: 'Activation request',
    name: 'request',
    type: 'textarea',
    rows: 6,
    spellcheck: 'false',
    autocomplete: 'off',
    class: 'mono',
    placeholder: '-----BEGIN ACTIVATION REQUEST-----\n…\n-----END ACTIVATION REQUEST-----',
    hint: 'Paste the text the app shows, or load its .req file.',
    test: `${test}-request`,
    disabled,
  });
  const area = text.querySelector('textarea');
  const picker = h('input', {
    type: 'file',
    accept: '.req,.txt,text/plain',
    class: 'sr-only',
    'data-test': `${test}-file`,
    disabled,
  });
  picker.addEventListener('change', async () => {
    const file = picker.files?.[0];
    if (!file) return;
    if (file.size > 4096) {
      toast('That file is too large to be an activation request.', 'error');
      return;
    }
    area.value = (await file.text()).trim();
  });
  const result = h('div', { 'data-test': `${test}-result` });
  const form = h(
    'form',
    { novalidate: true, 'data-test': `${test}-form` },
    text,
    formError(`${test}-error`),
    h(
      'div',
      { class: 'btn-row' },
      h(
        'button',
        { type: 'submit', class: 'btn btn-primary', 'data-test': `${test}-submit`, disabled },
        'Activate and download',
      ),
      h(
        'button',
        {
          type: 'button',
          class: 'btn',
          'data-test': `${test}-load`,
          disabled,
          onclick: () => picker.click(),
        },
        'Load .req file',
      ),
      picker,
    ),
    result,
  );
  onSubmit(
    form,
    async (fd) => {
      const request = String(fd.get('request') || '').trim();
      if (!request) throw new Error('request: paste the activation request first');
      const data = await send(request);
      saveMachineFile(data);
      result.replaceChildren(
        h(
          'div',
          { class: 'alert alert-ok', role: 'status', 'data-test': `${test}-done` },
          `${data.newActivation ? 'Machine activated' : 'Machine already activated'}: `,
          h('span', { class: 'mono' }, data.fingerprint),
          `. ${data.fileName} was downloaded; load it in the app.`,
        ),
      );
      if (done) done(data);
    },
    { request: 'request', activation: 'request' },
  );
  return form;
}
