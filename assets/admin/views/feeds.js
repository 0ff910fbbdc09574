// A project's update feeds (releases tab): whether Tauri, Sparkle, electron-updater and Velopack
// may read them without a license, and the address each updater is pointed at.

import { api } from '../../shared/api.js';
import { checkbox, copyButton, h, loading, mount, toast } from '../../shared/ui.js';
import { failInto } from '../state.js';

const UPDATERS = [
  ['Tauri', 'tauri', 'plugins.updater.endpoints in tauri.conf.json'],
  ['Sparkle', 'sparkle', 'SUFeedURL in Info.plist (add ?token= for a licensed feed)'],
  ['electron-updater', 'electron', 'publish.url (provider: generic)'],
  ['Velopack', 'velopack', 'the URL of a SimpleWebSource'],
];

export async function render(root, project) {
  const body = h('div', { 'data-test': 'feeds-body' }, loading('Loading feeds…'));
  mount(
    root,
    h(
      'section',
      { class: 'card', 'data-test': 'feeds' },
      h(
        'div',
        { class: 'card-head' },
        h(
          'div',
          {},
          h('h2', {}, 'Update feeds'),
          h(
            'p',
            { class: 'muted small' },
            'Desktop updaters read the published releases here, with their per-platform files. A licensed feed wants the license key (or a feed token); a public feed answers anyone.',
          ),
        ),
      ),
      body,
    ),
  );
  const base = `/api/projects/${encodeURIComponent(project.id)}/feeds`;
  try {
    paint(await api.get(base));
  } catch (err) {
    failInto(body, err, 'feeds-error');
  }

  function paint(feeds) {
    const toggle = checkbox({
      label: 'Public feeds',
      name: 'feeds-public',
      checked: feeds.public,
      hint: 'Anyone may read the feeds and download the releases, without a license.',
      test: 'feeds-public',
    });
    const input = toggle.querySelector('input');
    input.addEventListener('change', async () => {
      input.disabled = true;
      try {
        const next = await api.patch(base, { public: input.checked });
        toast(next.public ? 'The feeds are public' : 'The feeds answer licensed apps only');
      } catch (err) {
        input.checked = !input.checked;
        toast(err.message, 'error');
      } finally {
        input.disabled = false;
      }
    });
    const origin = window.location.origin;
    const rows = UPDATERS.map(([name, key, where]) => {
      const url = origin + feeds.paths[key];
      return h(
        'tr',
        { 'data-test': `feed-${key}` },
        h('th', {}, name, h('small', { class: 'muted' }, ` ${where}`)),
        h('td', {}, h('code', {}, url)),
        h('td', {}, copyButton(url, { test: `feed-copy-${key}` })),
      );
    });
    mount(
      body,
      toggle,
      h(
        'div',
        { class: 'table-wrap' },
        h('table', { class: 'table', 'data-test': 'feeds-table' }, h('tbody', {}, rows)),
      ),
    );
  }
}
