"""Which photo pairs are matched, and the matching (COLMAP's matcher and geometric verification).

Methods (``SfmConfig.matcher``):

* ``exhaustive``: every pair, n(n-1)/2 of them. Finds every overlap; its cost grows with the
  square of the number of photos.
* ``retrieval``: each photo with its ``retrieval_neighbours`` most similar photos, found by image
  retrieval: a vocabulary tree (COLMAP's visual index: k-means visual words with a Hamming
  embedding) built from this photo set's own SIFT descriptors, so nothing is downloaded. Then
  up to :data:`TRANSITIVE_ROUNDS` rounds of transitive pairs: photos a and c that both share
  :data:`TRANSITIVE_MIN_INLIERS` verified matches with a photo b are matched too (at most
  :data:`TRANSITIVE_PER_PHOTO` new pairs per photo and round, strongest links first). A walk
  around a building overlaps along chains of neighbours, which this follows.
* ``sequential``: for photos in capture order (video frames; names sorted): each with the next
  :data:`SEQUENTIAL_OVERLAP` and then every 2nd, 4th, ... ones, plus loop closure: each frame
  with its :data:`LOOP_NEIGHBOURS` most similar frames by the same retrieval (and the transitive
  rounds), so that a walk that comes back to its start is closed.
* ``spatial``: neighbours by EXIF GPS position (COLMAP's spatial matcher).
* ``auto``: sequential for video, exhaustive up to :data:`EXHAUSTIVE_MAX` photos, else retrieval
  (the threshold is measured: docs/benchmarks.md).

Every chosen pair is matched and geometrically verified by COLMAP (exactly those pairs, through
a pair list); COLMAP skips pairs already in the database, so an interrupted run resumes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycolmap

from ..config import SfmConfig
from ..events import NULL_BUS, EventBus, Message
from ..ingest import PhotoSet
from .calls import (
    interruptible_call,
    log_level,
    matching_options,
    native_stderr_silenced,
    verification_options,
)
from .database import image_ids, verified_pairs

STAGE = "sfm"
METHODS = ("auto", "exhaustive", "retrieval", "sequential", "spatial")
#: above this many photos, ``auto`` uses retrieval instead of every pair (docs/benchmarks.md)
EXHAUSTIVE_MAX = 60
SEQUENTIAL_OVERLAP = 10
LOOP_NEIGHBOURS = 5
TRANSITIVE_ROUNDS = 2
TRANSITIVE_MIN_INLIERS = 30
TRANSITIVE_PER_PHOTO = 15
#: descriptors sampled (evenly over the photos) to train the visual words
VOCAB_TRAIN_DESCRIPTORS = 40_000
#: descriptors per photo indexed and queried (the largest-scale ones)
VOCAB_MAX_FEATURES = 4096
#: pairs per matching block: Ctrl-C is honoured between blocks
BLOCK = 100


@dataclass
class PairStats:
    """What the matching stage did."""

    method: str
    pairs: int  # image pairs matched
    verified: int  # of them, pairs with a verified two-view geometry (>= 15 inlier matches)
    seconds: float
    index_seconds: float = 0.0  # building the vocabulary tree and querying it (in ``seconds``)


def pair_method(photos: PhotoSet, cfg: SfmConfig, bus: EventBus = NULL_BUS) -> str:
    """The method that ``cfg.matcher`` means for these photos (``auto`` resolved)."""
    m = cfg.matcher
    if m == "spatial" and not photos.has_gps:
        m = "auto"
        bus.emit(
            Message(
                STAGE,
                "Spatial matching needs GPS positions in the photos' EXIF and "
                "these have none: using the automatic choice instead.",
                level="warning",
            )
        )
    if m == "auto":
        if photos.source_kind.sequential:
            return "sequential"  # frames in order: neighbours overlap
        return "exhaustive" if len(photos) <= EXHAUSTIVE_MAX else "retrieval"
    return m


def match_photos(
    db: Path, work: Path, names: list[str], method: str, cfg: SfmConfig
) -> PairStats:
    """Match the pairs that ``method`` chooses among ``names`` (in capture order)."""
    t = time.time()
    index_s = 0.0
    mopts, vopts = matching_options(cfg), verification_options(cfg)
    if method == "exhaustive":
        pairing = pycolmap.ExhaustivePairingOptions()
        pairing.block_size = 10  # 10 x 10 photos (default 50 x 50): Ctrl-C between blocks
        interruptible_call(
            pycolmap.match_exhaustive, str(db), matching_options=mopts, pairing_options=pairing,
            verification_options=vopts,
        )  # fmt: skip
        n = len(names) * (len(names) - 1) // 2
    elif method == "spatial":
        pairing = pycolmap.SpatialPairingOptions()
        pairing.ignore_z = True
        pairing.max_num_neighbors = 50
        interruptible_call(
            pycolmap.match_spatial, str(db), matching_options=mopts, pairing_options=pairing,
            verification_options=vopts,
        )  # fmt: skip
        n = -1  # chosen inside COLMAP
    else:
        ti = time.time()
        vocab = build_vocab_tree(db, work / "vocab_tree.bin", cfg)
        if method == "retrieval":
            pairs = retrieval_pairs(db, vocab, cfg.retrieval_neighbours, num_threads=cfg.num_threads)
        else:
            pairs = sequential_pairs(db, names, SEQUENTIAL_OVERLAP)
            pairs |= retrieval_pairs(db, vocab, LOOP_NEIGHBOURS, num_threads=cfg.num_threads)
        index_s = time.time() - ti
        match_pairs(db, work / "pairs.txt", pairs, cfg)
        for _ in range(TRANSITIVE_ROUNDS):
            new = transitive_pairs(db, pairs)
            if not new:
                break
            match_pairs(db, work / "pairs.txt", new, cfg)
            pairs |= new
        n = len(pairs)
    verified = len(verified_pairs(db))
    return PairStats(method, n if n >= 0 else verified, verified, time.time() - t, index_s)


def build_vocab_tree(db: Path, path: Path, cfg: SfmConfig) -> Path:
    """A vocabulary tree trained on this database's own SIFT descriptors, written to ``path``.

    The visual words are k-means centres of :data:`VOCAB_TRAIN_DESCRIPTORS` descriptors drawn
    evenly from every photo (seeded, so the same photos give the same tree); their number grows
    with the photo count (8 per photo, between 256 and 2048).
    """
    d = pycolmap.Database.open(str(db))
    try:
        images = sorted(d.read_all_images(), key=lambda im: im.name)
        rng = np.random.default_rng(cfg.seed)
        per_image = max(32, VOCAB_TRAIN_DESCRIPTORS // max(1, len(images)))
        parts = []
        for im in images:
            desc = d.read_descriptors(im.image_id).data
            if len(desc) > per_image:
                desc = desc[np.sort(rng.choice(len(desc), per_image, replace=False))]
            parts.append(desc)
    finally:
        d.close()
    train = np.ascontiguousarray(np.concatenate(parts).astype(np.float32))
    opts = pycolmap.VisualIndex.BuildOptions()
    opts.num_visual_words = int(np.clip(8 * len(images), 256, 2048))
    opts.num_visual_words = min(opts.num_visual_words, max(16, len(train) // 40))
    opts.num_iterations = 10
    opts.num_rounds = 1
    opts.num_threads = cfg.num_threads
    pycolmap.set_random_seed(cfg.seed)  # the Hamming-embedding projection
    index = pycolmap.VisualIndex.create(128, 64)
    with log_level(2), native_stderr_silenced():  # faiss' advice on the training set size
        index.build(opts, pycolmap.FeatureDescriptorsFloat(pycolmap.FeatureExtractorType.SIFT, train))
    path.parent.mkdir(parents=True, exist_ok=True)
    index.write(str(path))
    return path


def retrieval_pairs(
    db: Path, vocab: Path, neighbours: int, query: list[int] | None = None, num_threads: int = -1
) -> set[tuple[int, int]]:
    """Each image (or each of ``query``) with its ``neighbours`` most similar images.

    Pairs are image ids ``(smaller, larger)``. ``num_threads`` is :attr:`SfmConfig.num_threads`:
    with one thread the pairs are the same on every run.
    """
    opts = pycolmap.VocabTreePairingOptions()
    opts.vocab_tree_path = str(vocab)
    opts.num_images = neighbours + 1  # an image is its own best match
    opts.max_num_features = VOCAB_MAX_FEATURES
    opts.num_threads = num_threads
    d = pycolmap.Database.open(str(db))
    try:
        with log_level(2):
            gen = pycolmap.VocabTreePairGenerator(opts, d, list(query or []))
            found = gen.all_pairs()
    finally:
        d.close()
    return {(min(a, b), max(a, b)) for a, b in found if a != b}


def transitive_pairs(
    db: Path, tried: set[tuple[int, int]], min_inliers: int = TRANSITIVE_MIN_INLIERS,
    per_photo: int = TRANSITIVE_PER_PHOTO,
) -> set[tuple[int, int]]:  # fmt: skip
    """Untried pairs (a, c) linked through a photo b by two verified pairs of ``min_inliers``+.

    Each candidate scores the sum over its links of the weaker pair's inliers; each photo takes
    its ``per_photo`` best-scoring candidates.
    """
    d = pycolmap.Database.open(str(db))
    try:
        pair_ids, counts = d.read_two_view_geometry_num_inliers()
    finally:
        d.close()
    links: dict[int, dict[int, int]] = {}
    for pid, n in zip(pair_ids, counts, strict=True):
        if n >= min_inliers:
            a, b = pycolmap.pair_id_to_image_pair(pid)
            links.setdefault(a, {})[b] = int(n)
            links.setdefault(b, {})[a] = int(n)
    score: dict[tuple[int, int], int] = {}
    for nb in links.values():
        items = sorted(nb.items())
        for i, (a, na) in enumerate(items):
            for c, nc in items[i + 1 :]:
                if (a, c) not in tried:
                    score[(a, c)] = score.get((a, c), 0) + min(na, nc)
    ranked = sorted(score.items(), key=lambda kv: (-kv[1], kv[0]))
    taken: dict[int, int] = {}
    out = set()
    for (a, c), _ in ranked:
        if taken.get(a, 0) < per_photo or taken.get(c, 0) < per_photo:
            out.add((a, c))
            taken[a] = taken.get(a, 0) + 1
            taken[c] = taken.get(c, 0) + 1
    return out


def sequential_pairs(db: Path, names: list[str], overlap: int) -> set[tuple[int, int]]:
    """Each photo with the next ``overlap`` ones, then every 2nd, 4th, 8th ... (quadratic)."""
    ids = image_ids(db)
    order = [ids[n] for n in names if n in ids]
    out = set()
    for i, a in enumerate(order):
        steps = list(range(1, overlap + 1)) + [2**k for k in range(1, 16) if 2**k > overlap]
        for s in steps:
            if i + s < len(order):
                b = order[i + s]
                out.add((min(a, b), max(a, b)))
    return out


def match_pairs(
    db: Path, list_path: Path, pairs: set[tuple[int, int]], cfg: SfmConfig, guided: bool = False
) -> None:
    """Match and verify exactly ``pairs`` (image ids); pairs already in the database are skipped."""
    if not pairs:
        return
    names = {v: k for k, v in image_ids(db).items()}
    lines = [f"{names[a]} {names[b]}" for a, b in sorted(pairs)]
    list_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    pairing = pycolmap.ImportedPairingOptions()
    pairing.match_list_path = str(list_path)
    pairing.block_size = BLOCK
    interruptible_call(
        pycolmap.match_image_pairs, str(db), matching_options=matching_options(cfg, guided),
        pairing_options=pairing, verification_options=verification_options(cfg),
    )  # fmt: skip


__all__ = [
    "PairStats",
    "pair_method",
    "match_photos",
    "build_vocab_tree",
    "retrieval_pairs",
    "sequential_pairs",
    "transitive_pairs",
    "match_pairs",
    "EXHAUSTIVE_MAX",
    "METHODS",
]
