// Portal Dashboard Editor: title, welcome text, loader URL and the ordered blocks of a project's
// user portal. Blocks are added, ordered and removed by drag and drop (HTML5 DnD) or with
// buttons (keyboard); the preview is drawn by the portal's own renderer (shared/portal-blocks.js).
// Saving writes `portalSettings` through PATCH /api/projects/{id}.

import { api } from '../../shared/api.js';
import {
  accessNotice,
  BLOCK_TYPES,
  DEFAULT_BLOCKS,
  DEFAULT_REQUIRES,
  normalizeBlocks,
  renderDashboard,
  safeUrl,
  sampleMe,
} from '../../shared/portal-blocks.js';
import {
  checkbox,
  clearErrors,
  field,
  formError,
  h,
  mount,
  setBusy,
  showError,
  toast,
} from '../../shared/ui.js';

const MIME = 'application/x-keyward-block';

export function render(root, project, onChange) {
  const saved =
    project.portalSettings && typeof project.portalSettings === 'object'
      ? project.portalSettings
      : {};
  const model = {
    enabled: saved.enabled !== false,
    title: typeof saved.title === 'string' ? saved.title : project.name,
    welcome: typeof saved.welcome === 'string' ? saved.welcome : '',
    loaderUrl: typeof saved.loaderUrl === 'string' ? saved.loaderUrl : '',
    blocks: Array.isArray(saved.blocks)
      ? normalizeBlocks(saved.blocks)
      : DEFAULT_BLOCKS.map((b) => ({ ...b })),
  };
  let dirty = false;
  let previewLevel = 'unbound';

  /* ----- settings form ----- */
  const form = h(
    'form',
    { novalidate: true, 'data-test': 'portal-settings-form' },
    checkbox({
      label: 'Portal enabled',
      name: 'enabled',
      checked: model.enabled,
      hint: `End users sign up at /p/${project.slug}.`,
      test: 'portal-enabled',
    }),
    field({
      label: 'Title',
      name: 'title',
      value: model.title,
      maxlength: 120,
      test: 'portal-title',
    }),
    field({
      label: 'Welcome text',
      name: 'welcome',
      type: 'textarea',
      rows: 2,
      value: model.welcome,
      maxlength: 1000,
      test: 'portal-welcome',
    }),
    field({
      label: 'Loader download URL',
      name: 'loaderUrl',
      type: 'url',
      value: model.loaderUrl,
      placeholder: 'https://…',
      hint: 'Shown to users with an active key. Leave empty to serve the newest published stable release of this project (Releases tab).',
      test: 'portal-loader-url',
    }),
  );
  form.addEventListener('input', (e) => {
    const t = e.target;
    if (!t.name) return;
    model[t.name] = t.type === 'checkbox' ? t.checked : t.value;
    changed();
  });
  form.addEventListener('submit', (e) => e.preventDefault());

  /* ----- palette ----- */
  const palette = h(
    'div',
    {
      class: 'palette',
      role: 'list',
      'aria-label': 'Available blocks',
      'data-test': 'block-palette',
    },
    Object.entries(BLOCK_TYPES).map(([type, info]) => {
      const b = h(
        'button',
        {
          type: 'button',
          class: 'btn btn-sm palette-item',
          draggable: 'true',
          role: 'listitem',
          title: `${info.description} — drag into the list, or click to add`,
          'data-test': `palette-${type}`,
          'data-type': type,
        },
        `+ ${info.label}`,
      );
      b.addEventListener('click', () => addBlock(type, model.blocks.length, true));
      b.addEventListener('dragstart', (e) => {
        e.dataTransfer.setData(MIME, `new:${type}`);
        e.dataTransfer.setData('text/plain', info.label);
        e.dataTransfer.effectAllowed = 'copy';
      });
      return b;
    }),
  );

  /* ----- block list ----- */
  const listEl = h('ol', {
    class: 'block-list',
    'aria-label': 'Blocks of the dashboard, in order',
    'data-test': 'block-list',
  });
  const live = h('div', {
    class: 'sr-only',
    'aria-live': 'polite',
    'data-test': 'editor-announce',
  });
  const announce = (msg) => {
    live.textContent = msg;
  };

  function blockItem(b, i) {
    const info = BLOCK_TYPES[b.type];
    const btn = (label, test, aria, fn, disabled) => {
      const el = h(
        'button',
        {
          type: 'button',
          class: 'btn btn-sm btn-ghost',
          'aria-label': `${aria} ${info.label} (block ${i + 1})`,
          'data-test': test,
          disabled,
        },
        label,
      );
      el.addEventListener('click', fn);
      return el;
    };
    const fields = [];
    if (b.type === 'custom_button') {
      const label = field({
        label: 'Button label',
        name: `label-${i}`,
        value: b.label,
        maxlength: 60,
        placeholder: 'Discord',
        test: 'block-button-label',
      });
      const url = field({
        label: 'Link URL',
        name: `url-${i}`,
        type: 'url',
        value: b.url,
        placeholder: 'https://…',
        test: 'block-button-url',
      });
      label.querySelector('input').addEventListener('input', (e) => {
        b.label = e.target.value;
        changed();
      });
      url.querySelector('input').addEventListener('input', (e) => {
        b.url = e.target.value;
        const err = url.querySelector('.field-error');
        err.textContent =
          b.url && !safeUrl(b.url) ? 'Enter a full http:// or https:// address.' : '';
        changed();
      });
      fields.push(h('div', { class: 'form-grid' }, label, url));
    } else if (b.type === 'custom_text') {
      const text = field({
        label: 'Text',
        name: `text-${i}`,
        type: 'textarea',
        rows: 3,
        value: b.text,
        maxlength: 2000,
        test: 'block-text',
      });
      text.querySelector('textarea').addEventListener('input', (e) => {
        b.text = e.target.value;
        changed();
      });
      fields.push(text);
    }
    // HWID gating: who sees the block (the API withholds a locked block's link, and the
    // portal shows it locked).
    const levels =
      DEFAULT_REQUIRES[b.type] === 'none'
        ? [
            ['none', 'Every signed-in user'],
            ['key', 'Users with an active key'],
            ['full', 'Users whose machine is bound'],
          ]
        : [
            ['key', 'Users with an active key'],
            ['full', 'Users whose machine is bound'],
          ];
    const requires = field({
      label: 'Shown to',
      name: `requires-${i}`,
      type: 'select',
      options: levels,
      value: b.requires || DEFAULT_REQUIRES[b.type],
      test: 'block-requires',
      cls: 'field-compact',
    });
    requires.querySelector('select').addEventListener('change', (e) => {
      if (e.target.value === DEFAULT_REQUIRES[b.type]) delete b.requires;
      else b.requires = e.target.value;
      changed();
    });
    fields.push(requires);
    // Entitlement gating: only keys carrying the code unlock the block.
    const codes = project.entitlements || [];
    if (codes.length > 0 || b.requiresEntitlement) {
      const gate = field({
        label: 'Needs entitlement',
        name: `entitlement-${i}`,
        type: 'select',
        options: [
          ['', 'No entitlement'],
          ...[...new Set([...codes, ...(b.requiresEntitlement ? [b.requiresEntitlement] : [])])],
        ],
        value: b.requiresEntitlement || '',
        test: 'block-entitlement',
        cls: 'field-compact',
      });
      gate.querySelector('select').addEventListener('change', (e) => {
        if (e.target.value === '') delete b.requiresEntitlement;
        else b.requiresEntitlement = e.target.value;
        changed();
      });
      fields.push(gate);
    }
    const li = h(
      'li',
      {
        class: 'block-item',
        draggable: 'true',
        'data-index': String(i),
        'data-type': b.type,
        'data-test': 'block-item',
      },
      h(
        'div',
        { class: 'block-head' },
        h('span', { class: 'grip', 'aria-hidden': 'true', title: 'Drag to reorder' }, '⋮⋮'),
        h(
          'span',
          { class: 'block-title' },
          info.label,
          h('span', { class: 'desc' }, info.description),
        ),
        btn('↑', 'block-up', 'Move up', () => moveBlock(i, i - 1, 'block-up'), i === 0),
        btn(
          '↓',
          'block-down',
          'Move down',
          () => moveBlock(i, i + 1, 'block-down'),
          i === model.blocks.length - 1,
        ),
        btn('✕', 'block-remove', 'Remove', () => removeBlock(i)),
      ),
      fields.length ? h('div', { class: 'block-fields' }, fields) : null,
    );
    // Dragging starts only from the item itself, not from its text fields.
    li.addEventListener('dragstart', (e) => {
      if (e.target !== li) return;
      e.dataTransfer.setData(MIME, `move:${i}`);
      e.dataTransfer.setData('text/plain', info.label);
      e.dataTransfer.effectAllowed = 'move';
      li.classList.add('dragging');
    });
    li.addEventListener('dragend', () => {
      li.classList.remove('dragging');
      clearMarks();
    });
    li.querySelectorAll('input, textarea, select').forEach((inp) => {
      inp.addEventListener('focus', () => {
        li.draggable = false;
      });
      inp.addEventListener('blur', () => {
        li.draggable = true;
      });
    });
    return li;
  }

  function paintList(focus) {
    if (model.blocks.length === 0) {
      mount(
        listEl,
        h(
          'li',
          { class: 'empty', 'data-test': 'block-list-empty' },
          h('div', { class: 'empty-title' }, 'No blocks'),
          'Drag blocks here, or use the buttons above.',
        ),
      );
    } else {
      mount(listEl, model.blocks.map(blockItem));
    }
    if (focus) {
      const item = listEl.children[focus.index];
      let target = item?.querySelector(`[data-test="${focus.test}"]`);
      if (target?.disabled)
        target = item.querySelector(
          '[data-test=block-up]:not([disabled]), [data-test=block-down]:not([disabled])',
        );
      if (!target)
        target = item
          ? item.querySelector('button:not([disabled])')
          : palette.querySelector('button');
      if (target) target.focus();
    }
  }

  function addBlock(type, index, focusNew) {
    const b =
      type === 'custom_button'
        ? { type, label: '', url: '' }
        : type === 'custom_text'
          ? { type, text: '' }
          : { type };
    model.blocks.splice(index, 0, b);
    paintList(focusNew ? { index, test: 'block-remove' } : null);
    const item = listEl.children[index];
    if (focusNew && item) {
      const inp = item.querySelector('input, textarea');
      if (inp) inp.focus();
    }
    announce(`${BLOCK_TYPES[type].label} added at position ${index + 1}.`);
    changed();
  }
  function moveBlock(from, to, test) {
    if (to < 0 || to >= model.blocks.length || from === to) return;
    const [b] = model.blocks.splice(from, 1);
    model.blocks.splice(to, 0, b);
    paintList(test ? { index: to, test } : null);
    announce(`${BLOCK_TYPES[b.type].label} moved to position ${to + 1} of ${model.blocks.length}.`);
    changed();
  }
  function removeBlock(i) {
    const [b] = model.blocks.splice(i, 1);
    paintList({ index: Math.min(i, model.blocks.length - 1), test: 'block-remove' });
    announce(`${BLOCK_TYPES[b.type].label} removed.`);
    changed();
  }

  /* ----- drop handling ----- */
  function clearMarks() {
    listEl.classList.remove('drag-over');
    listEl.querySelectorAll('.drop-before, .drop-after').forEach((x) => {
      x.classList.remove('drop-before', 'drop-after');
    });
  }
  function dropIndex(e) {
    const items = [...listEl.querySelectorAll('.block-item')];
    for (let i = 0; i < items.length; i++) {
      const r = items[i].getBoundingClientRect();
      if (e.clientY < r.top + r.height / 2) return { index: i, el: items[i], before: true };
    }
    return { index: items.length, el: items[items.length - 1], before: false };
  }
  listEl.addEventListener('dragover', (e) => {
    if (!e.dataTransfer.types.includes(MIME)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = e.dataTransfer.effectAllowed === 'copy' ? 'copy' : 'move';
    clearMarks();
    listEl.classList.add('drag-over');
    const t = dropIndex(e);
    if (t.el) t.el.classList.add(t.before ? 'drop-before' : 'drop-after');
  });
  listEl.addEventListener('dragleave', (e) => {
    if (!listEl.contains(e.relatedTarget)) clearMarks();
  });
  listEl.addEventListener('drop', (e) => {
    trash.hidden = true;
    const data = e.dataTransfer.getData(MIME);
    if (!data) return;
    e.preventDefault();
    const { index } = dropIndex(e);
    clearMarks();
    const [kind, arg] = data.split(':');
    if (kind === 'new' && BLOCK_TYPES[arg]) addBlock(arg, index, false);
    else if (kind === 'move') {
      const from = Number(arg);
      moveBlock(from, index > from ? index - 1 : index, null);
    }
  });
  // Dropping a block outside the list removes it (HTML5 DnD: drag it away).
  const trash = h(
    'div',
    { class: 'alert alert-info small', 'data-test': 'block-trash', hidden: true },
    'Drop here to remove the block',
  );
  listEl.addEventListener('dragstart', () => {
    trash.hidden = false;
  });
  listEl.addEventListener('dragend', () => {
    trash.hidden = true;
  });
  trash.addEventListener('dragover', (e) => {
    if (e.dataTransfer.types.includes(MIME)) {
      e.preventDefault();
      e.dataTransfer.dropEffect = 'move';
    }
  });
  trash.addEventListener('drop', (e) => {
    const data = e.dataTransfer.getData(MIME);
    e.preventDefault();
    trash.hidden = true;
    if (data.startsWith('move:')) removeBlock(Number(data.slice(5)));
  });

  /* ----- preview ----- */
  // The preview is a picture of the portal: nothing in it can be focused or clicked.
  const previewBody = h('div', { 'data-test': 'portal-preview-body', inert: true });
  const levelField = field({
    label: 'Preview as',
    name: 'previewLevel',
    type: 'select',
    value: previewLevel,
    test: 'preview-level',
    options: [
      ['none', 'A user without a key'],
      ['unbound', 'Key active, machine not bound'],
      ['full', 'Full access (machine bound)'],
      ['inactive', 'Key expired or banned'],
    ],
  });
  levelField.querySelector('select').addEventListener('change', (e) => {
    previewLevel = e.target.value;
    paintPreview();
  });
  function paintPreview() {
    // Empty → the portal's own download of the newest stable release; a bad URL → none.
    const external = model.loaderUrl.trim();
    const me = sampleMe(previewLevel, external ? safeUrl(external) : '/api/portal/loader');
    if (external && !safeUrl(external)) {
      me.access.loaderUrl = undefined;
      me.access.canDownloadLoader = false;
    }
    const activate = () =>
      h(
        'section',
        { class: 'pblock', 'data-test': 'preview-activate' },
        h('h3', {}, 'Activate a license key'),
        h(
          'div',
          { class: 'btn-row' },
          h('input', {
            type: 'text',
            disabled: true,
            placeholder: 'XXXX-XXXX-XXXX-XXXX',
            'aria-label': 'License key (preview)',
          }),
          h('button', { type: 'button', class: 'btn btn-primary', disabled: true }, 'Activate'),
        ),
      );
    mount(
      previewBody,
      model.enabled
        ? null
        : h('div', { class: 'alert alert-warn' }, 'The portal is disabled: users cannot reach it.'),
      h(
        'div',
        { class: 'portal-hero' },
        h('h1', {}, model.title || project.name),
        model.welcome ? h('p', {}, model.welcome) : null,
      ),
      accessNote(me),
      renderDashboard(model.blocks, me, { preview: true, activateForm: activate }),
    );
  }

  const accessNote = (me) => {
    const note = accessNotice(me);
    return note
      ? h('div', { class: `alert alert-${note[0]}`, 'data-test': 'preview-access-note' }, note[1])
      : null;
  };

  /* ----- save ----- */
  const saveError = formError('portal-save-error');
  const dirtyNote = h(
    'span',
    { class: 'muted small', 'data-test': 'portal-dirty', hidden: true },
    'Unsaved changes',
  );
  const saveBtn = h(
    'button',
    { type: 'button', class: 'btn btn-primary', 'data-test': 'portal-save' },
    'Save portal',
  );
  function changed() {
    dirty = true;
    dirtyNote.hidden = false;
    paintPreview();
  }
  saveBtn.addEventListener('click', async () => {
    clearErrors(editorRoot);
    const bad = model.blocks.findIndex((b) => b.type === 'custom_button' && !safeUrl(b.url));
    if (bad >= 0) {
      const item = listEl.children[bad];
      const slot = item.querySelector('[data-error-for^="url-"]');
      slot.textContent = 'Enter a full http:// or https:// address.';
      item.querySelector('input[type=url]').focus();
      saveError.textContent = `Block ${bad + 1} (custom button) needs a valid link.`;
      return;
    }
    if (model.loaderUrl && !safeUrl(model.loaderUrl)) {
      showError(form, new Error('loaderUrl must be an http:// or https:// address'));
      return;
    }
    const portalSettings = {
      enabled: !!model.enabled,
      title: model.title.trim(),
      welcome: model.welcome.trim(),
      loaderUrl: model.loaderUrl.trim(),
      blocks: normalizeBlocks(model.blocks).map((b) =>
        b.type === 'custom_button' ? { ...b, label: b.label.trim(), url: b.url.trim() } : b,
      ),
    };
    setBusy(saveBtn, true);
    try {
      const data = await api.patch(`/api/projects/${encodeURIComponent(project.id)}`, {
        portalSettings,
      });
      onChange(data.project);
      dirty = false;
      dirtyNote.hidden = true;
      toast('Portal saved');
    } catch (err) {
      if (!showError(form, err, { loader: 'loaderUrl', welcome: 'welcome', title: 'title' }))
        saveError.textContent = err.message;
    } finally {
      setBusy(saveBtn, false);
    }
  });

  const editorRoot = h(
    'div',
    { class: 'editor', 'data-test': 'portal-editor' },
    h(
      'div',
      {},
      h('section', { class: 'card' }, h('h2', {}, 'Portal page'), form),
      h(
        'section',
        { class: 'card', 'data-test': 'block-editor' },
        h('h2', {}, 'Dashboard blocks'),
        h(
          'p',
          { class: 'muted small' },
          'Drag a block into the list (or click it to add it at the end). Drag blocks to reorder them, or use the arrow buttons; drag one out onto the remove area, or use ✕.',
        ),
        palette,
        listEl,
        trash,
        live,
      ),
      h('div', { class: 'card' }, saveError, h('div', { class: 'btn-row' }, saveBtn, dirtyNote)),
    ),
    h(
      'section',
      { class: 'card', 'data-test': 'portal-preview', 'aria-label': 'Live preview' },
      h(
        'div',
        { class: 'card-head' },
        h('h2', {}, 'Live preview'),
        h(
          'a',
          {
            class: 'btn btn-sm',
            href: `/p/${encodeURIComponent(project.slug)}`,
            target: '_blank',
            rel: 'noopener',
          },
          'Open the portal ↗',
        ),
      ),
      levelField,
      h('div', { class: 'preview-frame' }, previewBody),
    ),
  );
  mount(root, editorRoot);
  paintList();
  paintPreview();

  const beforeUnload = (e) => {
    if (dirty) {
      e.preventDefault();
      e.returnValue = '';
    }
  };
  window.addEventListener('beforeunload', beforeUnload);
  return () => window.removeEventListener('beforeunload', beforeUnload);
}
