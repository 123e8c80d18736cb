// The run page refreshes its main part in place every 2 s until the run ends (no page reload, focus
// and scroll position kept). The HTML comes from the leader, already escaped.
// @ts-check

const main = /** @type {HTMLElement} */ (document.getElementById('run'));
const id = main.dataset.run ?? '';
let last = '';

async function refresh() {
  try {
    const res = await fetch(`/runs/${encodeURIComponent(id)}/main`, { headers: { accept: 'application/json' } });
    if (!res.ok) return setTimeout(refresh, 5000);
    const { html, live } = /** @type {{ html: string, live: boolean }} */ (await res.json());
    if (html !== last) {
      last = html;
      main.innerHTML = html;
    }
    if (!live) {
      document.getElementById('live-note')?.remove();
      const h1 = main.querySelector('h1');
      if (h1) document.title = `secd — ${h1.textContent ?? ''}`;
      return;
    }
  } catch {
    // the leader is restarting: try again a little later
  }
  setTimeout(refresh, 2000);
}

if (main.dataset.live === 'true') setTimeout(refresh, 2000);
