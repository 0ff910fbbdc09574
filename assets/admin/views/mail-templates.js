// A project's e-mail templates (#/projects/ID/mail): each kind's subject, plain text and HTML,
// the project's override or the embedded default, with a live preview and a reset.

import { api } from '../../shared/api.js';
import {
  field,
  formError,
  h,
  loading,
  mount,
  onSubmit,
  titleCase,
  toast,
} from '../../shared/ui.js';
import { failInto } from '../state.js';

export async function render(root, project) {
  mount(root, loading('Loading the templates…'));
  const base = `/api/projects/${encodeURIComponent(project.id)}/mail-templates`;
  let templates;
  try {
    templates = (await api.get(base)).data.templates;
  } catch (err) {
    failInto(root, err);
    return;
  }
  let kind = templates[0].kind;
  const picker = h(
    'select',
    { 'aria-label': 'Message', 'data-test': 'mail-template-kind' },
    templates.map((t) => h('option', { value: t.kind }, titleCase(t.kind))),
  );
  const editor = h('div', { 'data-test': 'mail-template-editor' });
  picker.addEventListener('change', () => {
    kind = picker.value;
    paint();
  });
  mount(
    root,
    h(
      'section',
      { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', {}, 'E-mail templates'), picker),
      h(
        'p',
        { class: 'muted' },
        'Placeholders are written {{ name }} and inserted as text (HTML-escaped in the HTML part). Empty parts use the default.',
      ),
      editor,
    ),
  );

  function paint() {
    const t = templates.find((x) => x.kind === kind);
    const preview = h('div', { 'data-test': 'mail-template-preview' });
    const form = h(
      'form',
      { novalidate: true, 'data-test': 'mail-template-form' },
      h(
        'p',
        { class: 'small' },
        'Placeholders: ',
        t.variables.map((v) => h('code', { class: 'mono' }, `{{ ${v} }} `)),
      ),
      field({
        label: 'Subject',
        name: 'subject',
        value: t.subject,
        maxlength: 200,
        test: 'tpl-subject',
      }),
      field({
        label: 'Plain text',
        name: 'text',
        type: 'textarea',
        rows: 8,
        value: t.text,
        test: 'tpl-text',
      }),
      field({
        label: 'HTML',
        name: 'html',
        type: 'textarea',
        rows: 8,
        value: t.html,
        test: 'tpl-html',
      }),
      formError(),
      h(
        'div',
        { class: 'btn-row' },
        h('button', { type: 'submit', class: 'btn btn-primary', 'data-test': 'tpl-save' }, 'Save'),
        h(
          'button',
          {
            type: 'button',
            class: 'btn',
            'data-test': 'tpl-preview',
            onclick: () => showPreview(),
          },
          'Preview',
        ),
        h(
          'button',
          {
            type: 'button',
            class: 'btn btn-outline-danger',
            'data-test': 'tpl-reset',
            onclick: async () => {
              const res = await api.del(`${base}/${kind}`);
              replace(res.data);
              toast('Back to the default');
              paint();
            },
          },
          'Use the default',
        ),
      ),
    );
    const body = () => {
      const fd = new FormData(form);
      return {
        subject: String(fd.get('subject') || ''),
        text: String(fd.get('text') || ''),
        html: String(fd.get('html') || ''),
      };
    };
    async function showPreview() {
      try {
        const r = (await api.post(`${base}/${kind}/preview`, body())).data;
        mount(
          preview,
          h('h3', {}, r.subject),
          h('pre', { class: 'evidence-json small', 'data-test': 'tpl-preview-text' }, r.text),
          h('pre', { class: 'evidence-json small', 'data-test': 'tpl-preview-html' }, r.html),
        );
      } catch (err) {
        failInto(preview, err);
      }
    }
    onSubmit(form, async () => {
      const res = await api.put(`${base}/${kind}`, body());
      replace(res.data);
      toast('Template saved');
    });
    mount(editor, form, preview);
  }

  function replace(t) {
    templates = templates.map((x) => (x.kind === t.kind ? t : x));
  }

  paint();
}
