"""360-degree input: which folders and videos hold equirectangular frames, and their ingest.

A photo is a full 360x180 panorama when its XMP says so (Google's photo-sphere tag
``GPano:ProjectionType="equirectangular"``, written by Ricoh Theta, Insta360, GoPro Max and phone
photo-sphere modes, without a cropped area smaller than the full panorama) or, without that tag,
when it is 2:1 within 1% (:func:`~.equirect.is_equirect_size`). A video is one when its frames
are 2:1 (the 360 cameras' own exports: 5.7K = 5760x2880, 4K = 3840x1920).

The frames themselves go through the ordinary ingest (working copies upright, damaged and duplicate
files skipped with their reason; video frames chosen by sharpness and motion) at up to
:data:`PANO_MAX_WIDTH` pixels wide, then are cut into views (:mod:`.views`) and registered as a rig
(:mod:`.rig`).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from PIL import Image

from ..config import IngestConfig, RunConfig
from ..errors import UserError
from ..events import NULL_BUS, EventBus
from ..ingest import Photo, PhotoSet, SourceKind, ingest
from ..ingest.names import shown
from ..ingest.scan import scan
from ..rundir import RunDir
from .equirect import is_equirect_size

#: 360 frames are worked on at up to this width (views of 1024 px at 90 degrees)
PANO_MAX_WIDTH = 4096
_TAG = re.compile(rb"ProjectionType(?:=\"|>)\s*equirectangular", re.IGNORECASE)
_NUM = {k: re.compile(rb"GPano:" + k.encode() + rb"(?:=\"|>)\s*(\d+)") for k in
        ("CroppedAreaImageWidthPixels", "FullPanoWidthPixels", "CroppedAreaImageHeightPixels",
         "FullPanoHeightPixels")}  # fmt: skip


def pano_tag(xmp: bytes) -> str:
    """``"full"``, ``"partial"`` (an equirectangular crop) or ``""`` (no projection tag)."""
    if not xmp or not _TAG.search(xmp):
        return ""
    n = {k: int(m.group(1)) for k, r in _NUM.items() if (m := r.search(xmp))}
    for crop, full in (("CroppedAreaImageWidthPixels", "FullPanoWidthPixels"),
                       ("CroppedAreaImageHeightPixels", "FullPanoHeightPixels")):  # fmt: skip
        if crop in n and full in n and n[crop] < n[full]:
            return "partial"
    return "full"


def is_panorama(path: Path) -> bool:
    """Whether the image at ``path`` is a full equirectangular 360 frame (header only)."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            xmp = im.info.get("xmp") or b""
            if isinstance(xmp, str):
                xmp = xmp.encode("utf-8", "replace")
    except (OSError, ValueError, Image.DecompressionBombError):
        return False
    tag = pano_tag(xmp)
    if tag == "partial":
        return False
    return tag == "full" or is_equirect_size(w, h)


def folder_is_pano(path: Path) -> bool:
    """Whether the photo folder holds 360 frames; refuses a mix of 360 frames and photos."""
    found, _ = scan(path)
    flags = [is_panorama(c.path) for c in found]
    n = sum(flags)
    if not n:
        return False
    if n < len(flags):
        odd = [c.rel for c, f in zip(found, flags, strict=True) if not f][:3]
        raise UserError(
            f"{shown(path)} mixes {n} 360-degree frames (equirectangular, 2:1) with "
            f"{len(flags) - n} ordinary photos (e.g. {', '.join(odd)}).",
            "Put the 360 frames and the ordinary photos in separate folders and train each alone.",
        )
    return True


def video_is_pano(path: Path) -> bool:
    """Whether the video's frames are equirectangular (2:1); False when it cannot be read."""
    import av

    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                return False
            s = c.streams.video[0]
            return is_equirect_size(int(s.codec_context.width), int(s.codec_context.height))
    except (av.error.FFmpegError, OSError):
        return False


def pano_ingest_config(cfg: IngestConfig) -> IngestConfig:
    """The ingest settings for 360 frames: wider working copies, 2:1 frames not refused."""
    return dataclasses.replace(cfg, max_image_size=min(PANO_MAX_WIDTH, 4 * cfg.max_image_size),
                               max_aspect_ratio=max(cfg.max_aspect_ratio, 2.1))  # fmt: skip


def run_pano_sfm(path: Path, kind: str, out_dir: Path, cfg: RunConfig, bus: EventBus = NULL_BUS):
    """360 photos or video -> views -> rig SfM: ``(photo_set, scene)`` as ingest + SfM give.

    ``photo_set`` lists the views (``vNN/<frame>.jpg``); its ``source_kind`` is ``kind``.
    """
    from ..video import extract_frames
    from .rig import run_rig_sfm
    from .views import cut_panoramas

    path, out_dir = Path(path), Path(out_dir)
    icfg = pano_ingest_config(cfg.ingest)
    video = SourceKind(kind) is SourceKind.PANO_VIDEO
    src = extract_frames(path, RunDir(out_dir).frames, icfg, bus) if video else path
    panos = ingest(src, RunDir(out_dir).work_images, icfg, bus)
    frames = [(p.name, p.path) for p in panos.photos]
    views = cut_panoramas(frames, RunDir(out_dir).work, cfg.ingest.pano_views, bus)
    scene = run_rig_sfm(views, out_dir, cfg.sfm, bus, sequential=SourceKind(kind).sequential)
    photos = [Photo(name=n, source=views.image_dir / n, path=views.image_dir / n, width=views.size,
                    height=views.size, orig_width=views.size, orig_height=views.size)
              for n in views.all_names()]  # fmt: skip
    photo_set = PhotoSet(src=path, image_dir=views.image_dir, photos=photos, skipped=panos.skipped,
                         source_kind=SourceKind(kind))  # fmt: skip
    return photo_set, scene


__all__ = ["pano_tag", "is_panorama", "folder_is_pano", "video_is_pano", "pano_ingest_config",
           "run_pano_sfm", "PANO_MAX_WIDTH"]  # fmt: skip
