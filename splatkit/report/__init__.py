"""``OUT/report.html``: one self-contained page about a run (opens offline, images inlined).

Sections: what went in (photos used, skipped and why), where the cameras are (top-down and side
plots from ``sparse/0``), how training went (loss and held-out PSNR from ``events.jsonl``), how
good it is (held-out photos beside their renders from ``previews/``, worst three first, with
PSNR/SSIM from ``metrics.json``), what came out (files, sizes, splat count) and the next step.
Every part is optional: a run that stopped early still gets a page saying what is missing.
"""

from __future__ import annotations

import base64
import html
import io
import shlex
from pathlib import Path

from ..errors import UserError
from ..events import EvalResult, Event, Message, TrainStep, read_events
from ..fileio import write_text_atomic
from ..metrics import RunMetrics, SkySummary, finite
from ..rundir import DESCRIPTIONS, RunDir, check_layout
from ..runlock import reading
from ..scores import ViewScore

#: Preview images wider than this are scaled down in the page (keeps the file small).
MAX_PREVIEW_WIDTH = 1000
WORST = 3


def _b64(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _img(png: bytes, alt: str) -> str:
    return f'<img src="{_b64(png)}" alt="{html.escape(alt)}">'


def _preview_png(path: Path) -> bytes:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.width > MAX_PREVIEW_WIDTH:
            h = round(im.height * MAX_PREVIEW_WIDTH / im.width)
            im = im.resize((MAX_PREVIEW_WIDTH, h), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=True)
        return buf.getvalue()


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def _tree_size(p: Path) -> tuple[int, int]:
    if p.is_file():
        return p.stat().st_size, 1
    files = [f for f in p.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files), len(files)


def _num(key: str, text: str) -> str:
    """A number the tests compare with metrics.json."""
    return f'<b data-key="{html.escape(key)}">{html.escape(text)}</b>'


def _fmt_time(s: float) -> str:
    return f"{s:.1f} s" if s < 90 else f"{s / 60:.1f} min"


def _count(v: int | None) -> str:
    return "?" if v is None else str(v)


def _section_inputs(m: RunMetrics) -> str:
    im = m.images
    if im is None:
        return "<p>No record of the photos (metrics.json missing: did training finish?).</p>"
    rows = [
        ("Photos found", _num("images.input", _count(im.input))),
        ("Used", _num("images.used", _count(im.used))),
        ("Skipped", _num("images.skipped", str(len(im.skipped)))),
        ("Placed by SfM (camera pose found)", _num("images.registered", _count(im.registered))),
        ("Trained on", _num("images.train", _count(im.train))),
        ("Held out for measuring quality", _num("images.test", _count(im.test))),
    ]
    out = ["<table class='kv'>"] + [f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows]
    out.append("</table>")
    if im.skipped:
        out.append("<h3>Skipped photos</h3><ul>")
        out += [f"<li><code>{html.escape(s.name)}</code>: {html.escape(s.reason)}</li>"
                for s in im.skipped]
        out.append("</ul>")
    if im.unregistered:
        out.append("<h3>Photos SfM could not place</h3><p>These did not overlap enough with the "
                   "others (or were blurred); they were not used for training.</p><ul>")
        out += [f"<li><code>{html.escape(n)}</code></li>" for n in im.unregistered]
        out.append("</ul>")
    return "\n".join(out)


def _section_cameras(out_dir: Path) -> str:
    from ..viewer.cameras import has_model, held_out, read_model, scene_frame
    from .plots import cameras_figure

    if not has_model(out_dir):
        return "<p>No camera poses (sparse/0 missing).</p>"
    import numpy as np

    cams, pts, _ = read_model(out_dir)
    if not cams:
        return "<p>The camera model has no placed photos.</p>"
    test = held_out([c.name for c in cams])
    frame = scene_frame(cams, pts)
    png = cameras_figure(
        np.stack([c.center for c in cams]), np.stack([c.forward for c in cams]),
        np.array([c.name in test for c in cams]), pts, np.array(frame["up"]))
    return (f"<p>{len(cams)} cameras and {len(pts):,} sparse points from <code>sparse/0</code>. "
            "Dots are camera centres, arrows the way each camera looked (blue: trained on, "
            "orange: held out). Cameras should surround or face the subject, without gaps; "
            "an isolated or backwards camera is usually a wrongly placed photo.</p>"
            + _img(png, "camera positions from above and from the side"))


def _eval_views(m: RunMetrics) -> tuple[int, int] | None:
    """(photos the evaluations during training used, held-out photos in all)."""
    from ..train.loop import EVAL_VIEWS

    test = m.images.test if m.images is not None else None
    return (min(EVAL_VIEWS, test), test) if test else None


def _section_training(events: list[Event], m: RunMetrics) -> str:
    from .plots import training_figure

    # a resumed run appends to events.jsonl: keep the last record of each step
    steps = sorted({e.step: e for e in events if isinstance(e, TrainStep)}.values(),
                   key=lambda e: e.step)
    evals = sorted({e.step: e for e in events if isinstance(e, EvalResult)}.values(),
                   key=lambda e: e.step)
    if not steps and not evals:
        return "<p>No training progress recorded in events.jsonl.</p>"
    png = training_figure([e.step for e in steps], [float(e.loss) for e in steps],
                          [e.step for e in evals], [float(e.psnr) for e in evals],
                          finite(m.psnr), _eval_views(m))
    parts = [_img(png, "training loss and held-out PSNR curves")]
    if steps:
        last = steps[-1]
        parts.append(f"<p>{last.step:,} of {last.total_steps:,} steps, "
                     f"{last.num_splats:,} splats at the end, "
                     f"{float(last.seconds_per_step):.3f} s per step.</p>")
    warns = [e for e in events if isinstance(e, Message) and e.level == "warning"]
    if warns:
        parts.append("<h3>Warnings during the run</h3><ul>")
        parts += [f"<li>[{html.escape(e.stage)}] {html.escape(e.text)}</li>" for e in warns]
        parts.append("</ul>")
    return "\n".join(parts)


def _figure(out_dir: Path, r: ViewScore, cls: str) -> str:
    prev = RunDir(out_dir).previews / f"{Path(r.name).stem}.png"
    name = html.escape(r.name)
    cap = (f"<code>{name}</code>: PSNR "
           f"<span class='psnr'>{r.psnr:.2f}</span> dB, SSIM <span class='ssim'>{r.ssim:.3f}</span>")
    img = (_img(_preview_png(prev), f"{r.name}: photo (left) and render (right)")
           if prev.exists() else "<p class='missing'>(no preview image)</p>")
    return (f"<figure class='{cls}' data-name='{name}'>{img}"
            f"<figcaption>{cap}</figcaption></figure>")


def _section_quality(out_dir: Path, m: RunMetrics) -> str:
    rows = list(m.per_image)
    if m.psnr is None or m.ssim is None:
        return "<p>No quality measurements (metrics.json missing or incomplete).</p>"
    psnr, ssim = _num("psnr", f"{m.psnr:.2f}"), _num("ssim", f"{m.ssim:.3f}")
    head = (f"<p>Held-out photos (never trained on), rendered from their cameras: mean PSNR "
            f"{psnr} dB, SSIM {ssim}. "
            "PSNR compares pixels (above ~25 dB looks good, below ~20 dB shows visible blur or "
            "floaters); SSIM compares structure (1 is perfect). Each picture: the photo on the "
            "left, splatkit's render on the right.</p>")
    if not rows:
        return head + "<p>No held-out photos in this run.</p>"
    ranked = sorted(rows, key=lambda r: r.psnr)
    worst, rest = ranked[:WORST], sorted(ranked[WORST:], key=lambda r: r.name)
    out = [head, f"<h3>The {len(worst)} worst (lowest PSNR)</h3>"]
    out += [_figure(out_dir, r, "worst") for r in worst]
    if rest:
        out.append("<h3>The others, by name</h3>")
        out += [_figure(out_dir, r, "other") for r in rest]
    return "\n".join(out)


def _section_blocks(out_dir: Path, m: RunMetrics) -> str:
    """A capture trained in blocks: each block's share, and the held-out photos that look
    across a border (where a seam would show)."""
    rd = RunDir(out_dir)
    summary = rd.read_json_object(rd.blocks_summary) or {}
    rows = [r for r in summary.get("blocks", []) if isinstance(r, dict)]
    out = [f"<p>This capture was trained in {len(rows)} blocks, each on the photos that see it; "
           "each block kept the splats of its own part of the ground.</p>",
           "<table><tr><th>block</th><th>photos</th><th>points</th><th>splats</th><th>minutes</th>"
           "<th>peak memory</th></tr>"]
    out += [f"<tr><td>{int(r.get('block', 0)) + 1}</td><td>{r.get('photos')}</td>"
            f"<td>{r.get('points'):,}</td><td>{r.get('splats'):,}</td>"
            f"<td>{float(r.get('seconds', 0)) / 60:.1f}</td>"
            f"<td>{float(r.get('peak_rss_mb', 0)):.0f} MB</td></tr>"
            for r in rows]
    out.append("</table>")
    borders = summary.get("border_views") or {}
    scored = {r.name: r for r in m.per_image}
    shown = [scored[n] for n in borders if n in scored]
    if shown:
        out.append(f"<h3>Held-out photos across block borders ({len(shown)})</h3><p>Each sees two "
                   "or more blocks: a seam between blocks would show here.</p>")
        out += [_figure(out_dir, r, "border") for r in shown]
    return "\n".join(out)


def _section_sky(out_dir: Path, m: RunMetrics) -> str:
    """The learned sky panorama (``sky.png``), when the run has one."""
    png = RunDir(out_dir).sky_png
    sky = m.sky or SkySummary()
    share = f" {100 * sky.share:.1f}% of the training pixels show it;" if sky.share is not None else ""
    return (f"<p>What lies at infinity, learned behind the splats as a {_count(sky.width)} x "
            f"{_count(sky.height)} panorama (forward in the middle, up at the top);{share} "
            "the Unreal export places it as the level's sky, aligned with the splats. Parts no "
            "photo saw are filled from their neighbours.</p>"
            f"<figure class='sky'>{_img(_preview_png(png), 'the learned sky panorama')}</figure>")


def _section_cleanup(out_dir: Path, m: RunMetrics) -> str:
    from .cleanup import section

    return section(out_dir, m, _img)


def _section_coach(out_dir: Path, c) -> str:
    """The capture coach (:mod:`.coach`): the diagnosis, the advice, the map from above, the
    photos not placed and why, the worst held-out views and their causes."""
    from .coach import split_preview
    from .plots import coverage_figure, view_errors_figure

    out = [f"<p class='diagnosis' data-key='coach.diagnosis'><b>{html.escape(c.diagnosis)}</b></p>"]
    if c.advice:
        out.append("<h3>For your next capture</h3><ol class='advice'>")
        out += [f"<li>{html.escape(a)}</li>" for a in c.advice]
        out.append("</ol>")
    if c.findings:
        out.append("<h3>What the coach measured</h3><ul class='findings'>")
        out += [f"<li data-key='{html.escape(f.key)}'>{html.escape(f.text[0].upper() + f.text[1:])}"
                + (f" (<code>{html.escape(_short_list(f.photos))}</code>)" if f.photos else "")
                + "</li>" for f in c.findings]
        out.append("</ul>")
    if c.unplaced:
        out.append("<h3>Photos that were not placed, and why</h3><ul class='unplaced'>")
        out += [f"<li data-kind='{html.escape(r['kind'])}'><code>{html.escape(r['name'])}</code>: "
                f"{html.escape(r['why'])}</li>" for r in c.unplaced]
        out.append("</ul>")
    if c.coverage is not None and c.coverage.get("points", 0) >= 10:
        out.append("<h3>From above: how many photos saw each part</h3><p>Each square is a patch "
                   "of the scene seen from above, coloured by how many photos saw the points SfM "
                   "found there (bright: many). Orange squares were seen by 3 photos or fewer "
                   "(thin: blurry or missing in the result); red hatching marks gaps inside the "
                   "scene that no photo saw well enough; white dots are where you stood.</p>")
        out.append(_img(coverage_figure(c.coverage), "map from above of how many photos saw "
                        "each part of the scene"))
    bad = [v for v in c.views if v.key not in ("ok", "unknown")][:WORST]
    if bad:
        out.append("<h3>Where the held-out views are worst, and why</h3>")
    for v in bad:
        pr = split_preview(RunDir(out_dir).previews / f"{Path(v.name).stem}.png")
        if pr is not None:
            import numpy as np

            out.append(_img(view_errors_figure(pr[0], pr[1], np.asarray(v.error_blocks),
                                               f"{v.name}: {v.psnr:.2f} dB"),
                            f"{v.name}: photo, render and where they differ"))
        out.append(f"<p class='cause' data-key='{html.escape(v.key)}'><code>{html.escape(v.name)}"
                   f"</code> ({v.psnr:.2f} dB): {html.escape(v.cause)}.</p>")
    return "\n".join(out)


def _short_list(names: list[str], most: int = 6) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _section_outputs(out_dir: Path, m: RunMetrics) -> str:
    what = DESCRIPTIONS
    rows = []
    for p in sorted(out_dir.iterdir(), key=lambda p: (p.is_dir(), p.name)):
        if p.name.startswith(".") or p.name == RunDir(out_dir).report.name:
            continue
        size, n = _tree_size(p)
        label = p.name + ("/" if p.is_dir() else "")
        count = (f" ({n} file{'s' if n != 1 else ''})") if p.is_dir() else ""
        rows.append(f"<tr><td><code>{html.escape(label)}</code></td><td>{_size(size)}{count}</td>"
                    f"<td>{html.escape(what.get(p.name, ''))}</td></tr>")
    facts = []
    if m.num_splats is not None:
        facts.append(_num("num_splats", f"{m.num_splats:,}") + " splats")
    if m.steps is not None:
        device = html.escape(m.device or "?")
        facts.append(_num("steps", f"{m.steps:,}") + f" steps on {device}")
    res = m.resolution_detail
    if res.trained:
        note = (f" (asked for {res.requested:,}: the photos are smaller)"
                if (res.requested or 0) > res.trained else "")
        facts.append("trained and evaluated at " + _num("resolution", f"{res.trained:,}")
                     + f" px on the longest side{note}")
    secs = m.seconds
    if "total" in secs:
        stages = ", ".join(f"{html.escape(k)} {_fmt_time(v)}" for k, v in secs.items()
                           if k != "total")
        facts.append(f"{_fmt_time(secs['total'])} in all ({stages})")
    return ((f"<p>{'; '.join(facts)}.</p>" if facts else "")
            + "<table class='files'><tr><th>File</th><th>Size</th><th>What it is</th></tr>"
            + "".join(rows) + "</table>")


def _section_next(out_dir: Path) -> str:
    """What to do now, for the state the run is in (finished, stopped, poses only)."""
    from ..train.checkpoint import list_checkpoints

    rd = RunDir(out_dir)
    q = html.escape(shlex.quote(str(out_dir)))
    if rd.is_finished():
        return (f"<p>Write the files the Unreal Engine splat plugins import:</p>"
                f"<pre>splatkit export {q} --for unreal</pre>"
                f"<p>Look around the scene in your web browser (works offline; click a camera to "
                f"see through it):</p><pre>splatkit view {q}</pre>")
    found = list_checkpoints(out_dir)
    if found:
        return (f"<p>Training stopped at step {found[-1][0]} before it finished, so there is no "
                f"scene to export or view yet. Continue it (nothing done is lost):</p>"
                f"<pre>{html.escape(rd.train_command(resume=True))}</pre>")
    return ("<p>The camera poses are ready but nothing has been trained yet. Train:</p>"
            f"<pre>{html.escape(rd.train_command())}</pre>")


CSS = """
body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:0 auto;padding:16px 20px;color:#222}
h1{margin-bottom:0} .sub{color:#666;margin-top:2px}
h2{border-bottom:1px solid #ddd;padding-top:10px}
img{max-width:100%;height:auto;display:block} figure{margin:12px 0 20px}
figure.worst figcaption{color:#a40} table{border-collapse:collapse}
td,th{padding:3px 10px;text-align:left;border-bottom:1px solid #eee;vertical-align:top}
pre{background:#f4f4f4;padding:8px 12px;border-radius:4px;overflow-x:auto}
code{background:#f4f4f4;padding:0 3px;border-radius:3px} .missing{color:#999}
nav a{margin-right:12px}
.diagnosis{font-size:17px;background:#fff6e0;padding:8px 12px;border-left:4px solid #e0a000}
"""


def render_html(out_dir: Path, next_step: str | None = None, shown_path: str | None = None,
                coaching=None) -> str:
    """The page for ``out_dir`` as a string (see :func:`build_report`); ``next_step`` (HTML) and
    ``shown_path`` replace the next-step commands and the folder shown (the classroom server);
    ``coaching``: the coach's result (:func:`.coach.analyse`; made here when not given).

    A damaged run file (``metrics.json`` that is not an object, an event with a field of the wrong
    type, a model that cannot be read) costs its section, which says so, never the page."""
    rd = RunDir(Path(out_dir))
    m = RunMetrics.read(rd.metrics)
    damaged = m is None and rd.metrics.exists()
    m = m or RunMetrics()
    events = read_events(rd.events)
    if coaching is None:
        from .coach import analyse

        coaching = analyse(out_dir, m)
    sections = [
        ("coach", "Capture coach", _guard(_section_coach, out_dir, coaching)),
        ("inputs", "What went in", _guard(_section_inputs, m)),
        ("cameras", "Where the cameras are", _guard(_section_cameras, out_dir)),
        ("training", "How training went", _guard(_section_training, events, m)),
        ("quality", "How good it is", _guard(_section_quality, out_dir, m)),
        *([("blocks", "Blocks", _guard(_section_blocks, out_dir, m))]
          if RunDir(out_dir).blocks.is_dir() else []),
        *([("sky", "The sky", _guard(_section_sky, out_dir, m))] if rd.sky_png.is_file() else []),
        ("cleanup", "What cleanup removed", _guard(_section_cleanup, out_dir, m)),
        ("outputs", "What came out", _guard(_section_outputs, out_dir, m)),
        ("next", "Next step", _guard(_section_next, out_dir) if next_step is None else next_step),
    ]
    if damaged:
        sections[1] = (sections[1][0], sections[1][1],
                       f"<p class='missing'>{rd.metrics.name} is damaged (not a JSON object): the "
                       "run's numbers cannot be shown.</p>")
    title = f"splatkit report: {out_dir.name}"
    summary = ""
    if m.psnr is not None:
        summary = (f"{m.num_splats or 0:,} splats, held-out PSNR {m.psnr:.2f} dB, "
                   f"preset {html.escape(m.preset or '?')}")
    nav = "".join(f"<a href='#{k}'>{t}</a>" for k, t, _ in sections)
    body = "\n".join(f"<section id='{k}'><h2>{t}</h2>\n{s}\n</section>" for k, t, s in sections)
    ver = m.versions.get("splatkit", "")
    return (f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p class='sub'>{summary}<br>"
            f"<code>{html.escape(str(out_dir) if shown_path is None else shown_path)}</code></p>"
            f"<nav>{nav}</nav>\n{body}\n"
            f"<p class='sub'>Made by splatkit {html.escape(str(ver))}.</p></body></html>\n")


def _guard(section, *args) -> str:
    """A section's HTML, or a line saying it cannot be shown (a damaged run file)."""
    try:
        return section(*args)
    except UserError as e:
        return f"<p class='missing'>{html.escape(e.what)}</p>"
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, OSError):
        return ("<p class='missing'>This part cannot be shown: a file of the run is damaged or was "
                "not written by splatkit.</p>")


def report_command(out_dir: Path) -> Path:
    """``splatkit report OUT``: the page written under the folder's reader lock, so that it never
    describes a run that is being replaced; a live run is named as such instead."""
    out_dir = Path(out_dir).resolve()
    if out_dir.is_dir():
        check_layout(RunDir(out_dir))
    with reading(out_dir, "report"):
        return build_report(out_dir)


def build_report(out_dir: Path) -> Path:
    """Write ``out_dir/report.html`` (atomically) and return its path."""
    out_dir = Path(out_dir).resolve()
    if not out_dir.is_dir():
        raise UserError(f"{out_dir} is not a folder.",
                        "Give the output folder of `splatkit train`.")
    rd = RunDir(out_dir)
    if not any(p.exists() for p in (rd.metrics, rd.events, rd.sparse.parent, rd.scene_ply)):
        raise UserError(f"{out_dir} does not look like a splatkit output folder "
                        "(no metrics.json, events.jsonl, sparse/ or scene.ply).",
                        "Give the folder that `splatkit train -o OUT` wrote.")
    from . import coach

    coaching = coach.analyse(out_dir)
    coach.save(out_dir, coaching)  # the one-line diagnosis in metrics.json, for the class wall
    write_text_atomic(rd.report, render_html(out_dir, coaching=coaching))
    return rd.report
