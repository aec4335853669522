"""What a glance at a page would catch, measured from element boxes in the browser.

:data:`PROBLEMS` is a JavaScript function run in each frame of a page (the dashboard and its component iframes);
it returns one sentence per problem:

- a button or tab whose label is cut (its text is wider than the box that clips it);
- a button drawn over an image (a Stop button over the live preview);
- a chart's toolbar (plotly's mode bar) over one of its legend entries, a legend entry over an axis title, a tick
  label or an annotation, or two legend entries over each other;
- an axis tick label cut off by the chart's edge, or two tick labels of one axis over each other;
- a numeric axis whose tick labels, read as numbers, do not increase along it (a log axis labelled
  "0.1, 9, 8, 7": plotly's digit-only minor labels).
"""

from __future__ import annotations

from typing import Any

PROBLEMS = r"""() => {
  const problems = [];
  const shown = e => { const r = e.getBoundingClientRect(), s = getComputedStyle(e);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'; };
  const box = e => e.getBoundingClientRect();
  const overlap = (a, b) => Math.max(0, Math.min(a.right, b.right) - Math.max(a.left, b.left))
                          * Math.max(0, Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top));
  const label = e => (e.innerText || e.textContent || '').trim().replace(/\s+/g, ' ');
  const minus = text => text.replace(/\u2212/g, '-');
  const tickValue = t => {  // "10" with a superscript tspan (plotly's power format) is 10 to that power
    const sup = [...t.querySelectorAll('tspan')].find(s => /baseline-shift|super/.test(s.getAttribute('style') || '')
                                                        || Number.parseFloat(s.getAttribute('dy') || '0') < 0);
    if (!sup) return Number(minus(label(t)));
    const base = minus(label(t)).slice(0, -label(sup).length).replace(/[×x]?10$/, '') || '1';
    return Number(base) * 10 ** Number(minus(label(sup)));
  };
  const controls = [...document.querySelectorAll('button, [role="tab"]')].filter(shown);
  for (const b of controls) {
    for (const e of [b, ...b.querySelectorAll('*')]) {
      const s = getComputedStyle(e);
      if (s.overflow !== 'visible' && label(e) && e.scrollWidth > e.clientWidth + 1) {
        problems.push(`label cut: "${label(b)}" needs ${e.scrollWidth} px, has ${e.clientWidth} px`);
        break;
      }
    }
  }
  const images = [...document.querySelectorAll('img')].filter(shown);
  for (const b of controls.filter(b => b.tagName === 'BUTTON' && label(b)))
    for (const im of images)
      if (overlap(box(b), box(im)) > 4) problems.push(`button "${label(b)}" drawn over an image`);
  for (const gd of [...document.querySelectorAll('.js-plotly-plot')].filter(shown)) {
    const frame = box(gd.querySelector('.main-svg') || gd);
    const bar = gd.querySelector('.modebar');
    const entries = [...gd.querySelectorAll('.legend .traces')].filter(shown);
    const titles = [...gd.querySelectorAll('.g-xtitle, .g-ytitle, .g-x2title, .g-y2title, .annotation, '
                                           + 'g[class$="tick"] > text')].filter(shown);
    for (const [i, t] of entries.entries()) {
      if (bar && overlap(box(bar), box(t)) > 0) problems.push(`toolbar over legend entry "${label(t)}"`);
      for (const a of titles)
        if (overlap(box(a), box(t)) > 4) problems.push(`legend entry "${label(t)}" over the text "${label(a)}"`);
      for (const u of entries.slice(i + 1))
        if (overlap(box(t), box(u)) > 4) problems.push(`legend entries "${label(t)}" and "${label(u)}" overlap`);
    }
    const axes = {};
    for (const t of [...gd.querySelectorAll('g[class$="tick"] > text, g[class$="tick2"] > text')].filter(shown)) {
      const layer = t.closest('g[class*="axislayer"]');
      const key = (layer ? layer.getAttribute('class') : '') + '|' + t.parentNode.getAttribute('class');
      (axes[key] = axes[key] || []).push(t);
    }
    for (const ticks of Object.values(axes)) {
      for (const [i, t] of ticks.entries()) {
        const r = box(t);
        const across = Math.max(2, 0.3 * r.width), down = Math.max(2, 0.3 * r.height);  // a glyph box's padding
        if (r.left < frame.left - across || r.right > frame.right + across
            || r.top < frame.top - down || r.bottom > frame.bottom + down)
          problems.push(`axis label "${label(t)}" cut off by the chart's edge (label ${Math.round(r.left)}…`
            + `${Math.round(r.right)} × ${Math.round(r.top)}…${Math.round(r.bottom)}, chart ${Math.round(frame.left)}…`
            + `${Math.round(frame.right)} × ${Math.round(frame.top)}…${Math.round(frame.bottom)})`);
        for (const u of ticks.slice(i + 1))
          if (overlap(r, box(u)) > 1) problems.push(`axis labels "${label(t)}" and "${label(u)}" overlap`);
      }
    }
    for (const [key, ax] of Object.entries(gd._fullLayout || {})) {
      if (!/^[xy]axis\d*$/.test(key) || !['log', 'linear'].includes(ax.type) || !ax._id) continue;
      const read = [...gd.querySelectorAll(`g.${ax._id}tick > text`)].filter(shown).map(t => {
        return [ax._id[0] === 'x' ? box(t).left : -box(t).top, tickValue(t), label(t)];
      }).filter(v => Number.isFinite(v[1])).sort((a, b) => a[0] - b[0]);
      const rising = ax.autorange === 'reversed' ? -1 : 1;
      if (read.some((v, i) => i > 0 && rising * (v[1] - read[i - 1][1]) <= 0))
        problems.push(`axis labels out of order: ${read.map(v => v[2]).join(', ')}`);
    }
  }
  return problems;
}"""


def problems(page: Any) -> list[str]:
    """Every problem :data:`PROBLEMS` finds in ``page``'s frames (a frame that is gone by then is skipped)."""
    found: list[str] = []
    for frame in page.frames:
        try:
            found += [f"{p}" if frame == page.main_frame else f"{p} (in {frame.url.split('/')[-1][:40]})"
                      for p in frame.evaluate(PROBLEMS)]
        except Exception as exc:  # a Streamlit rerun can drop a component's iframe while it is being measured
            if "detached" not in str(exc).lower() and "destroyed" not in str(exc).lower():
                raise
    return found
