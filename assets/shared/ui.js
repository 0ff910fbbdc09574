// Keyward — small DOM helpers shared by the admin panel and the portal: element builder,
// dialogs (native <dialog>, focus return, Escape closes), toasts, copy to clipboard,
// formatting, loading/empty states and API-error placement next to the field that caused it.

/** h('button', {class: 'btn', 'data-test': 'x', onclick: fn}, 'Label', child, [more]) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'value') el.value = v;
      else if (
        k === 'checked' ||
        k === 'selected' ||
        k === 'disabled' ||
        k === 'hidden' ||
        k === 'multiple' ||
        k === 'required'
      ) {
        el[k] = !!v;
        if (k === 'required' || k === 'disabled' || k === 'hidden') el.toggleAttribute(k, !!v);
      } else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** SVG element builder (charts, icons). */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  if (attrs)
    for (const [k, v] of Object.entries(attrs))
      if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}
export function mount(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

export function loading(text = 'Loading…', test = 'loading') {
  return h(
    'div',
    { class: 'loading', role: 'status', 'data-test': test },
    h('span', { class: 'spinner', 'aria-hidden': 'true' }),
    text,
  );
}

export function empty(title, text, action, test = 'empty') {
  return h(
    'div',
    { class: 'empty', 'data-test': test },
    h('div', { class: 'empty-title' }, title),
    text ? h('div', {}, text) : null,
    action || null,
  );
}

export function errorBox(err, test = 'error') {
  return h(
    'div',
    { class: 'alert alert-error', role: 'alert', 'data-test': test },
    err?.message ? err.message : String(err),
  );
}

/* ---------- Toasts ---------- */
let toastHost;
export function toast(message, kind = 'info') {
  if (!toastHost) {
    toastHost = h('div', {
      class: 'toasts',
      role: 'status',
      'aria-live': 'polite',
      'data-test': 'toasts',
    });
    document.body.appendChild(toastHost);
  }
  const t = h(
    'div',
    { class: `toast ${kind === 'error' ? 'error' : ''}`, 'data-test': 'toast' },
    message,
  );
  toastHost.appendChild(t);
  setTimeout(() => t.remove(), kind === 'error' ? 6000 : 3200);
}

/* ---------- Clipboard ---------- */
export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    /* fall back below */
  }
  const ta = h('textarea', { class: 'sr-only', readonly: true });
  ta.value = text;
  document.body.appendChild(ta);
  ta.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  ta.remove();
  return ok;
}

/** A button that copies `getText()` and says so. */
export function copyButton(getText, { label = 'Copy', test = 'copy', cls = 'btn btn-sm' } = {}) {
  const btn = h('button', { type: 'button', class: cls, 'data-test': test });
  btn.textContent = label;
  btn.addEventListener('click', async () => {
    const text = typeof getText === 'function' ? getText() : getText;
    const ok = await copyText(text);
    btn.textContent = ok ? 'Copied ✓' : 'Copy failed';
    toast(
      ok ? 'Copied to the clipboard' : 'Could not copy: select the text and copy it by hand',
      ok ? 'info' : 'error',
    );
    setTimeout(() => {
      btn.textContent = label;
    }, 1600);
  });
  return btn;
}

/* ---------- Dialogs ---------- */
/**
 * openDialog({title, body, foot, wide, test, onClose}) → {dialog, close, body, foot}
 * Native modal <dialog>: focus is trapped by the browser, Escape closes, and focus returns to
 * the element that opened it.
 */
export function openDialog({ title, body, foot, wide = false, test = 'dialog', onClose } = {}) {
  const opener = document.activeElement;
  const titleId = `dlg-${Math.random().toString(36).slice(2, 9)}`;
  const closeBtn = h(
    'button',
    {
      type: 'button',
      class: 'btn btn-ghost btn-icon',
      'aria-label': 'Close',
      'data-test': 'dialog-close',
    },
    '✕',
  );
  const bodyEl = h('div', { class: 'modal-body' }, body);
  const footEl = foot ? h('div', { class: 'modal-foot' }, foot) : null;
  const dialog = h(
    'dialog',
    { class: `modal${wide ? ' wide' : ''}`, 'aria-labelledby': titleId, 'data-test': test },
    h('div', { class: 'modal-head' }, h('h2', { id: titleId }, title), closeBtn),
    bodyEl,
    footEl,
  );
  const close = () => {
    if (dialog.open) dialog.close();
  };
  closeBtn.addEventListener('click', close);
  dialog.addEventListener('close', () => {
    dialog.remove();
    if (opener && typeof opener.focus === 'function' && document.contains(opener)) opener.focus();
    if (onClose) onClose();
  });
  // A click on the backdrop (outside the box) closes too.
  dialog.addEventListener('mousedown', (e) => {
    if (e.target !== dialog) return;
    const r = dialog.getBoundingClientRect();
    if (e.clientX < r.left || e.clientX > r.right || e.clientY < r.top || e.clientY > r.bottom)
      close();
  });
  document.body.appendChild(dialog);
  dialog.showModal();
  const first =
    dialog.querySelector('[autofocus]') ||
    bodyEl.querySelector('input:not([type=hidden]):not([disabled]), select, textarea');
  if (first) first.focus();
  return { dialog, close, body: bodyEl, foot: footEl };
}

/**
 * A confirmation dialog. With `typeToConfirm`, the user must type that exact text first.
 * `onConfirm` may be async; its ApiError is shown inside the dialog.
 */
export function confirmDialog({
  title,
  message,
  confirmLabel = 'Confirm',
  danger = false,
  typeToConfirm,
  typeLabel,
  onConfirm,
  test = 'confirm-dialog',
}) {
  const err = h('div', { class: 'alert alert-error', role: 'alert', 'data-test': 'confirm-error' });
  let input = null;
  const parts = [typeof message === 'string' ? h('p', {}, message) : message];
  if (typeToConfirm) {
    const id = `confirm-${Math.random().toString(36).slice(2, 8)}`;
    input = h('input', {
      type: 'text',
      id,
      autocomplete: 'off',
      spellcheck: 'false',
      'data-test': 'confirm-input',
    });
    parts.push(
      h(
        'div',
        { class: 'field' },
        h(
          'label',
          { for: id },
          typeLabel || ['Type ', h('strong', {}, typeToConfirm), ' to confirm'],
        ),
        input,
      ),
    );
  }
  parts.push(err);
  const cancel = h(
    'button',
    { type: 'button', class: 'btn', 'data-test': 'confirm-cancel' },
    'Cancel',
  );
  const ok = h(
    'button',
    {
      type: 'submit',
      class: `btn ${danger ? 'btn-danger' : 'btn-primary'}`,
      'data-test': 'confirm-ok',
      disabled: !!typeToConfirm,
    },
    confirmLabel,
  );
  const form = h('form', { novalidate: true }, parts);
  const d = openDialog({ title, body: form, foot: [cancel, ok], test });
  form.id = `f-${Math.random().toString(36).slice(2, 8)}`;
  ok.setAttribute('form', form.id);
  cancel.addEventListener('click', d.close);
  if (input)
    input.addEventListener('input', () => {
      ok.disabled = input.value.trim() !== typeToConfirm;
    });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (ok.disabled) return;
    err.textContent = '';
    setBusy(ok, true);
    try {
      await onConfirm(input ? input.value.trim() : undefined);
      d.close();
    } catch (ex) {
      err.textContent = ex.message || String(ex);
    } finally {
      setBusy(ok, false);
    }
  });
  if (!input) ok.focus();
  return d;
}

export function setBusy(btn, busy) {
  if (!btn) return;
  btn.classList.toggle('is-busy', busy);
  btn.disabled = busy;
  btn.setAttribute('aria-busy', busy ? 'true' : 'false');
}

/* ---------- Forms ---------- */
let fieldSeq = 0;
/**
 * field({label, name, type, value, hint, options, test, ...inputAttrs}) → a labelled control
 * with its own error slot ([data-error-for=name]).
 */
export function field({
  label,
  name,
  type = 'text',
  value,
  hint,
  options,
  test,
  cls = '',
  ...rest
}) {
  const id = `f-${name}-${++fieldSeq}`;
  const errId = `${id}-err`;
  const hintId = hint ? `${id}-hint` : undefined;
  const described = [hintId, errId].filter(Boolean).join(' ');
  let control;
  if (type === 'select') {
    control = h(
      'select',
      { id, name, 'aria-describedby': described, 'data-test': test, ...rest },
      (options || []).map((o) => {
        const [v, t] = Array.isArray(o) ? o : [o, o];
        return h('option', { value: v, selected: String(value ?? '') === String(v) }, t);
      }),
    );
  } else if (type === 'textarea') {
    control = h('textarea', {
      id,
      name,
      'aria-describedby': described,
      'data-test': test,
      ...rest,
    });
    if (value !== undefined && value !== null) control.value = value;
  } else {
    control = h('input', {
      id,
      name,
      type,
      'aria-describedby': described,
      'data-test': test,
      ...rest,
    });
    if (value !== undefined && value !== null) control.value = value;
  }
  return h(
    'div',
    { class: `field ${cls}` },
    h('label', { for: id }, label),
    control,
    hint ? h('div', { class: 'hint', id: hintId }, hint) : null,
    h('div', {
      class: 'field-error',
      id: errId,
      'data-error-for': name,
      'data-test': `error-${name}`,
      'aria-live': 'polite',
    }),
  );
}

export function checkbox({ label, name, checked, hint, test }) {
  const id = `f-${name}-${++fieldSeq}`;
  return h(
    'label',
    { class: 'check', for: id },
    h('input', { type: 'checkbox', id, name, checked: !!checked, 'data-test': test }),
    h('span', {}, label, hint ? h('small', {}, hint) : null),
  );
}

/** The general error slot of a form (for errors no field claims). */
export function formError(test = 'form-error') {
  return h('div', {
    class: 'alert alert-error',
    role: 'alert',
    'data-form-error': '',
    'data-test': test,
  });
}

export function clearErrors(root) {
  root.querySelectorAll('[data-error-for]').forEach((e) => {
    e.textContent = '';
  });
  root.querySelectorAll('[aria-invalid="true"]').forEach((e) => {
    e.removeAttribute('aria-invalid');
  });
  root.querySelectorAll('[data-form-error]').forEach((e) => {
    e.textContent = '';
  });
}

const camelToWords = (n) => n.replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase();

/**
 * Puts an API error next to the field it names ("name must be…", "field `email` is required",
 * "customDays …"); otherwise into the form's general slot. Returns the field name or null.
 */
export function showError(root, err, aliases = {}) {
  clearErrors(root);
  const msg = err?.message || String(err);
  const slots = [...root.querySelectorAll('[data-error-for]')];
  const names = slots.map((s) => s.getAttribute('data-error-for'));
  let target = null;
  const tick = msg.match(/`([A-Za-z_][\w.]*)`/);
  const lower = msg.toLowerCase();
  const candidates = [];
  if (tick) candidates.push(tick[1]);
  const firstWord = msg.match(/^(?:Invalid request:\s*)?([A-Za-z_][\w]*)/);
  if (firstWord) candidates.push(firstWord[1]);
  for (const c of candidates) {
    const key = aliases[c] || c;
    if (names.includes(key)) {
      target = key;
      break;
    }
  }
  if (!target) {
    for (const n of names) {
      const words = camelToWords(n);
      if (new RegExp(`(^|[^a-z])(${n.toLowerCase()}|${words})([^a-z]|$)`).test(lower)) {
        target = n;
        break;
      }
    }
    if (!target)
      for (const [alias, n] of Object.entries(aliases)) {
        if (names.includes(n) && lower.includes(alias.toLowerCase())) {
          target = n;
          break;
        }
      }
  }
  if (target) {
    const slot = root.querySelector(`[data-error-for="${target}"]`);
    slot.textContent = msg;
    const control = root.querySelector(`[name="${target}"]`);
    if (control) {
      control.setAttribute('aria-invalid', 'true');
      control.focus();
    }
    return target;
  }
  const general = root.querySelector('[data-form-error]');
  if (general) general.textContent = msg;
  else toast(msg, 'error');
  return null;
}

/** Wires a form: prevents default, clears errors, marks the submit button busy, shows errors. */
export function onSubmit(form, handler, aliases) {
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const btn =
      form.querySelector('button[type=submit]') ||
      (form.id && document.querySelector(`button[form="${form.id}"]`));
    clearErrors(form);
    setBusy(btn, true);
    try {
      await handler(new FormData(form), form);
    } catch (err) {
      if (err && err.name === 'AbortError') return;
      showError(form, err, aliases);
    } finally {
      setBusy(btn, false);
    }
  });
}

/* ---------- Formatting ---------- */
const nf = new Intl.NumberFormat();
export const fmtNumber = (n) => (n === null || n === undefined ? '—' : nf.format(n));

export function fmtDate(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '—';
  return d.toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
}

export function fmtDateTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '—';
  return d.toLocaleString(undefined, {
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
  });
}

export function fmtRelative(iso) {
  if (!iso) return '—';
  const t = new Date(iso).getTime();
  if (Number.isNaN(t)) return '—';
  const diff = (t - Date.now()) / 1000;
  const abs = Math.abs(diff);
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
  if (abs < 60) return rtf.format(Math.round(diff), 'second');
  if (abs < 3600) return rtf.format(Math.round(diff / 60), 'minute');
  if (abs < 86400) return rtf.format(Math.round(diff / 3600), 'hour');
  if (abs < 86400 * 45) return rtf.format(Math.round(diff / 86400), 'day');
  return fmtDate(iso);
}

/** A <time> element showing a relative time with the exact time as its title. */
export function timeEl(iso, relative = false) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  return h(
    'time',
    { datetime: iso, title: fmtDateTime(iso) },
    relative ? fmtRelative(iso) : fmtDateTime(iso),
  );
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 10 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

export function fmtDuration(sec) {
  if (sec === null || sec === undefined) return '—';
  if (sec === 0) return 'none';
  const parts = [];
  const d = Math.floor(sec / 86400);
  sec %= 86400;
  const hh = Math.floor(sec / 3600);
  sec %= 3600;
  const m = Math.floor(sec / 60);
  const ss = sec % 60;
  if (d) parts.push(`${d} d`);
  if (hh) parts.push(`${hh} h`);
  if (m) parts.push(`${m} min`);
  if (ss) parts.push(`${ss} s`);
  return parts.join(' ');
}

const STATUS_KIND = {
  ACTIVE: 'ok',
  PUBLISHED: 'ok',
  VALID: 'ok',
  EXPIRED: 'warn',
  SUSPENDED: 'warn',
  DRAFT: 'info',
  DEPRECATED: 'warn',
  BANNED: 'danger',
  REVOKED: 'danger',
  YANKED: 'danger',
  DISCONTINUED: 'danger',
  DISABLED: 'danger',
  SENT: 'ok',
  PENDING: 'info',
  FAILED: 'danger',
};
export function statusBadge(status, test = 'status') {
  const kind = STATUS_KIND[status] || '';
  const label = status ? status.charAt(0) + status.slice(1).toLowerCase() : '—';
  return h(
    'span',
    {
      class: `badge ${kind ? `badge-${kind}` : ''}`,
      'data-test': test,
      'data-status': status || '',
    },
    label,
  );
}

export const titleCase = (s) =>
  s ? s.charAt(0) + s.slice(1).toLowerCase().replace(/_/g, ' ') : '';
