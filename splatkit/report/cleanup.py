"""The report's cleanup section: what cleanup removed, by which rule, how many, what it cost on
the held-out photos, and the scene before and after from above and behind the cameras (where
floaters show), from ``metrics.json``'s ``cleanup`` and ``previews/cleanup/``."""

from __future__ import annotations

import html
from pathlib import Path

from ..metrics import RunMetrics
from ..rundir import RunDir

#: What each rule removes, in a user's words.
RULE_WORDS = {
    "unseen": "no training photo needs them: their largest share of any training pixel's colour "
              "was below the level chosen",
    "isolated": "floating alone, far from any other splat for their distance to the cameras",
    "clearance": "where the photographer stood: next to a camera, outside its view",
}


def section(out_dir: Path, m: RunMetrics, img) -> str:
    """The section's HTML; ``img(png_bytes, alt)`` embeds a picture (the report's helper)."""
    c = m.cleanup
    if c is None:
        return ("<p>No cleanup in this run (trained with <code>--cleanup none</code>, or before "
                "splatkit had it): export and view use <code>scene.ply</code> as trained.</p>")
    rd = RunDir(Path(out_dir))
    n = c.kept + c.removed_total
    delta = c.psnr_after - c.psnr_before
    removed = c.removed_total
    out = [f"<p class='cleanup'>Cleanup removed <b data-key='cleanup.removed'>{removed:,}</b> of "
           f"{n:,} splats ({100 * removed / max(n, 1):.1f}%); held-out PSNR "
           f"{c.psnr_before:.2f} &rarr; {c.psnr_after:.2f} dB ({delta:+.3f} dB). "
           f"<code>{rd.scene_clean_ply.name}</code> holds the rest and is what "
           f"the Unreal export and the viewer use; <code>{rd.scene_ply.name}</code> stays as "
           "trained (<code>--cleanup none</code> uses it).</p>", "<table class='cleanup'>"
           "<tr><th>rule</th><th>removed</th><th>level chosen</th><th>what they were</th></tr>"]  # fmt: skip
    for rule, words in RULE_WORDS.items():
        level = c.levels.get(rule)
        out.append(f"<tr data-rule='{rule}'><td>{rule}</td><td>{c.removed.get(rule, 0):,}</td>"
                   f"<td>{'-' if level is None else html.escape(f'{level:g}')}</td>"
                   f"<td>{html.escape(words)}</td></tr>")  # fmt: skip
    out.append("</table>")
    pics = [(w, rd.cleanup_preview(w)) for w in ("before", "after")]
    if all(p.is_file() for _, p in pics):
        out.append("<p>The scene from above and behind the cameras, off the photo path (floaters "
                   "show from there): before cleanup, then after.</p>")
        out += [f"<figure class='cleanup-{w}'>{img(p.read_bytes(), f'{w} cleanup')}"
                f"<figcaption>{w} cleanup</figcaption></figure>" for w, p in pics]
    return "\n".join(out)
