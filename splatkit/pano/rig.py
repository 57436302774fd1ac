"""Structure from motion for 360-degree frames: the cut views registered as a COLMAP rig.

COLMAP's own recipe (``python/examples/panorama_sfm.py``): every panorama is one *frame* of a rig
whose sensors are the pinhole views (:mod:`.equirect`), all at the panorama's centre with fixed
rotations (``cam_from_rig = R_k R_0^T``, view 0 the reference). Features are found once per
panorama pixel (each view's mask keeps the pixels nearest its centre), views of one frame are never
matched with each other, geometric verification uses the rig, and bundle adjustment keeps the
rig and the intrinsics fixed: only one pose per panorama is estimated.

Output, as :func:`splatkit.sfm.run_sfm`: ``OUT/images/vNN/<frame>.jpg`` and ``OUT/sparse/0``
(PINHOLE, with ``rigs.bin``/``frames.bin``); ``OUT/sfm_work/pano.json`` records the inputs so that
a second run reuses the result.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pycolmap

from ..config import SfmConfig
from ..errors import UserError
from ..events import NULL_BUS, EventBus, Message, StageProgress
from ..fileio import write_text_atomic
from ..rundir import RunDir
from ..scene import Scene
from ..sfm.calls import extraction_options, interruptible_call, matching_options, quiet_colmap
from ..sfm.loaders import load_scene
from .views import CutViews

STAGE = "sfm"
RECIPE = 1
#: frames matched all against all up to this many; beyond, each with its sequence neighbours
EXHAUSTIVE_MAX_FRAMES = 12
SEQUENTIAL_OVERLAP = 4


@dataclass
class RigResult:
    """What the rig SfM placed: frame names (panoramas) placed and left out, and the numbers."""

    placed: list[str]
    unplaced: list[str]
    num_points: int
    mean_reprojection_error_px: float
    seconds: dict[str, float]


def rig_config(views: CutViews) -> pycolmap.RigConfig:
    """One rig: view k at the panorama centre, turned by ``R_k``; view 0 the reference."""
    cams = []
    R0 = views.rotations[0]
    for k, R in enumerate(views.rotations):
        cam_from_rig = None
        if k:
            cam_from_rig = pycolmap.Rigid3d(pycolmap.Rotation3d(R @ R0.T), np.zeros((3, 1)))
        cam = pycolmap.RigConfigCamera(ref_sensor=k == 0, image_prefix=f"{views.folder(k)}/",
                                       cam_from_rig=cam_from_rig)  # fmt: skip
        cam.camera = views.camera()
        cams.append(cam)
    return pycolmap.RigConfig(cameras=cams)


def run_rig_sfm(views: CutViews, out_dir: Path, cfg: SfmConfig, bus: EventBus = NULL_BUS,
                sequential: bool = False) -> Scene:  # fmt: skip
    """Place the panoramas of ``views``; write ``out_dir/images`` + ``out_dir/sparse/0``.

    Frames are matched all against all up to :data:`EXHAUSTIVE_MAX_FRAMES` of them; beyond, or
    when ``sequential`` (frames of a video), each with its :data:`SEQUENTIAL_OVERLAP` neighbours.

    Raises:
        UserError: fewer than 3 panoramas could be placed.
    """
    out_dir = Path(out_dir)
    work = RunDir(out_dir).sfm_work
    work.mkdir(parents=True, exist_ok=True)
    key = _key(views, cfg, sequential)
    record = work / "pano.json"
    try:
        old = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = {}
    if old.get("key") == key and RunDir(out_dir).sparse.is_dir():
        bus.emit(Message(STAGE, "Reusing the panorama poses computed before for the same frames and "
                                "settings."))
        return load_scene(out_dir, unregistered=old["unregistered"])
    record.unlink(missing_ok=True)
    with quiet_colmap():
        rec, res = _place(views, work, cfg, bus, sequential)
    _write(rec, views, out_dir)
    unregistered = [views.view_name(k, f) for f in res.unplaced for k in range(len(views.rotations))]
    write_text_atomic(record, json.dumps({"key": key, "unregistered": unregistered, **asdict(res)}, indent=1))
    bus.emit(Message(STAGE, f"Placed {len(res.placed)} of {len(views.frames)} panoramas "
                            f"({len(views.rotations)} views each); {res.num_points} points, mean "
                            f"reprojection error {res.mean_reprojection_error_px:.2f} px."))  # fmt: skip
    for f in res.unplaced:
        bus.emit(Message(STAGE, f"Could not place the panorama {f}: it shares too little with the "
                         "others. It is left out.", level="warning"))  # fmt: skip
    return load_scene(out_dir, unregistered=unregistered)


def _place(views: CutViews, work: Path, cfg: SfmConfig, bus: EventBus, sequential: bool):
    db = work / "pano.db"
    db.unlink(missing_ok=True)
    t, secs = time.time(), {}
    bus.emit(StageProgress(STAGE, 0, 3, detail="finding features in the 360 views"))
    cam = views.camera()
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = cam.model.name
    reader.camera_params = cam.params_to_string()
    reader.mask_path = str(views.mask_dir)
    interruptible_call(pycolmap.extract_features, str(db), str(views.image_dir),
                       image_names=views.all_names(),
                       camera_mode=pycolmap.CameraMode.PER_FOLDER, reader_options=reader,
                       extraction_options=extraction_options(cfg))  # fmt: skip
    with pycolmap.Database.open(str(db)) as d:
        pycolmap.apply_rig_config([rig_config(views)], d)
    secs["extract"] = time.time() - t
    t = time.time()
    bus.emit(StageProgress(STAGE, 1, 3, detail="matching the 360 views"))
    mopts = matching_options(cfg)
    mopts.rig_verification = True
    mopts.skip_image_pairs_in_same_frame = True
    if len(views.frames) <= EXHAUSTIVE_MAX_FRAMES and not sequential:
        interruptible_call(pycolmap.match_exhaustive, str(db), matching_options=mopts)
    else:
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = SEQUENTIAL_OVERLAP
        pairing.expand_rig_images = True
        interruptible_call(pycolmap.match_sequential, str(db), matching_options=mopts,
                           pairing_options=pairing)
    secs["match"] = time.time() - t
    t = time.time()
    bus.emit(StageProgress(STAGE, 2, 3, detail="placing the panoramas"))
    opts = pycolmap.IncrementalPipelineOptions()
    opts.num_threads, opts.random_seed = cfg.num_threads, cfg.seed
    opts.ba_refine_sensor_from_rig = False
    opts.ba_refine_focal_length = opts.ba_refine_principal_point = opts.ba_refine_extra_params = False
    (work / "pano_sparse").mkdir(exist_ok=True)
    maps = interruptible_call(pycolmap.incremental_mapping, str(db), str(views.image_dir),
                              str(work / "pano_sparse"), options=opts)  # fmt: skip
    secs["map"] = time.time() - t
    recs = sorted(maps.values(), key=lambda r: -r.num_reg_frames()) if maps else []
    placed = sorted({views.frame_of(recs[0].images[i].name) for i in recs[0].reg_image_ids()}) if recs else []
    if len(placed) < 3:
        raise UserError(
            f"Only {len(placed)} of {len(views.frames)} panoramas could be placed.",
            "Walk on with the camera between shots (a step or two; 360 frames taken from one spot "
            "cannot give depth), keeping the same scene in sight.",
        )
    unplaced = [f for f in views.frames if f not in set(placed)]
    res = RigResult(placed, unplaced, recs[0].num_points3D(), recs[0].compute_mean_reprojection_error(), secs)
    return recs[0], res


def _write(rec: pycolmap.Reconstruction, views: CutViews, out_dir: Path) -> None:
    """The model and the views it placed into ``out_dir`` (replacing an earlier result)."""
    for p in (RunDir(out_dir).images, RunDir(out_dir).sparse):
        if p.exists():
            shutil.rmtree(p)
    RunDir(out_dir).sparse.mkdir(parents=True)
    rec.write_binary(str(RunDir(out_dir).sparse))
    for i in rec.reg_image_ids():
        n = rec.images[i].name
        (RunDir(out_dir).images / n).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(views.image_dir / n, RunDir(out_dir).images / n)


def _key(views: CutViews, cfg: SfmConfig, sequential: bool) -> str:
    settings = {k: v for k, v in asdict(cfg).items() if k != "num_threads"}  # threads: speed only
    what = {"recipe": RECIPE, "pycolmap": pycolmap.__version__, "cfg": settings, "views": views.key,
            "sequential": sequential}
    h = hashlib.sha256(json.dumps(what, sort_keys=True).encode())
    return h.hexdigest()


__all__ = ["run_rig_sfm", "rig_config", "RigResult"]
