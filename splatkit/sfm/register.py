"""A second chance for the photos that the first pass left out, before they are dropped.

After the first mapping, each photo outside the largest model gets, in order:

1. new features: up to :data:`SECOND_CHANCE_FEATURES` times as many (at least 8192), found on the
   whole working copy rather than at ``SfmConfig.max_image_size``;
2. matching against its placed neighbours (every placed photo for small sets, else its
   :data:`NEIGHBOURS` most similar placed photos by the vocabulary tree) and the other left-out
   photos, with guided matching (after the two-view geometry is found, features are matched
   again along it, which recovers matches the ratio test threw away);
3. registration into the existing model: COLMAP's incremental mapper continues from it.

The continued model is kept when it places more photos than the first one.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path

import pycolmap

from ..config import SfmConfig
from ..events import NULL_BUS, EventBus, Message, StageProgress
from ..ingest import PhotoSet
from .calls import extraction_options, interruptible_call, log_level
from .database import forget_features, image_cameras, image_ids
from .mapping import Model, continue_mapping
from .pairs import build_vocab_tree, match_pairs, retrieval_pairs

STAGE = "sfm"
SECOND_CHANCE_FEATURES = 2
#: up to this many placed photos, a left-out photo is matched with all of them
ALL_PLACED_MAX = 40
NEIGHBOURS = 30


@dataclass
class SecondChance:
    """What the second chance tried and placed."""

    tried: list[str] = field(default_factory=list)
    placed: list[str] = field(default_factory=list)
    pairs: int = 0
    seconds: float = 0.0


def second_chance(
    db: Path, photos: PhotoSet, best: Model, work: Path, cfg: SfmConfig, refine_pp: bool,
    bus: EventBus = NULL_BUS,
) -> tuple[Model, SecondChance]:  # fmt: skip
    """Try the photos outside ``best`` again (see the module doc); returns the model to keep."""
    t = time.time()
    placed = set(best.names)
    left = [n for n in photos.names if n not in placed]
    result = SecondChance(tried=left)
    if not left or not cfg.second_chance:
        return best, result
    bus.emit(
        Message(
            STAGE,
            f"{len(left)} photo(s) not placed yet; trying them again with more features and "
            "guided matching against the placed photos.",
        )
    )
    bus.emit(StageProgress(STAGE, 3, 4, detail=f"second chance for {len(left)} photos"))
    ids = image_ids(db)
    _extract_again(db, photos, [ids[n] for n in left], left, cfg)
    pairs = _pairs(db, work, [ids[n] for n in left], [ids[n] for n in best.names], cfg)
    match_pairs(db, work / "pairs_second.txt", pairs, cfg, guided=True)
    result.pairs = len(pairs)
    model_dir = work / "first_model"
    model_dir.mkdir(parents=True, exist_ok=True)
    best.rec.write_binary(str(model_dir))
    models = continue_mapping(
        db, photos.image_dir, model_dir, work / "sparse_second", cfg, refine_pp, len(photos), bus
    )
    keep = best
    for m in models:
        if placed <= set(m.names) and len(m.names) > len(keep.names):
            keep = m
    result.placed = sorted(set(keep.names) - placed)
    result.seconds = time.time() - t
    return keep, result


def _extract_again(db: Path, photos: PhotoSet, ids: list[int], names: list[str], cfg: SfmConfig):
    """New, denser features for ``names`` on the whole working copy, in their own cameras."""
    forget_features(db, ids)
    cams = image_cameras(db)
    size = max(max(p.width, p.height) for p in photos.photos if p.name in set(names))
    opts = extraction_options(
        cfg,
        max_image_size=max(size, cfg.max_image_size),
        max_features=max(8192, SECOND_CHANCE_FEATURES * cfg.max_features),
    )
    by_cam: dict[int, list[str]] = {}
    for n in names:
        by_cam.setdefault(cams[n], []).append(n)
    for cam, group in sorted(by_cam.items()):
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = cfg.camera_model
        reader.existing_camera_id = cam
        with log_level(2):
            interruptible_call(
                pycolmap.extract_features, str(db), str(photos.image_dir), image_names=group,
                camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader,
                extraction_options=opts,
            )  # fmt: skip


def _pairs(db: Path, work: Path, left: list[int], placed: list[int], cfg: SfmConfig) -> set:
    """Left-out x placed neighbours, and left-out x left-out."""
    pairs = {(min(a, b), max(a, b)) for a, b in itertools.combinations(left, 2)}
    if len(placed) <= ALL_PLACED_MAX:
        return pairs | {(min(a, b), max(a, b)) for a in left for b in placed}
    vocab = work / "vocab_tree.bin"
    if not vocab.is_file():
        build_vocab_tree(db, vocab, cfg)
    found = retrieval_pairs(db, vocab, NEIGHBOURS + len(left), query=left, num_threads=cfg.num_threads)
    return pairs | found


__all__ = ["SecondChance", "second_chance"]
