"""Cameras given by the user, checked before anything is written or trained.

A camera file (a COLMAP model or a ``transforms.json``) can be readable and still be garbage:
a focal length of 0 or NaN, a principal point far outside the image, a pose that is not a
rotation and a translation, image sizes that are not those of the image files, two cameras for
one image, every camera at one point. Training on such cameras runs to the end and writes a
meaningless scene with exit code 0, so each camera is checked here and every failure gets a
:class:`Problem` that names the image, the field (in the words of the file it came from) and the
reason. :func:`refuse` turns them into the two-line :class:`~splatkit.errors.UserError`.

What can be fixed safely is fixed and said, by the callers: images that are a uniform scale of the
size in the file (:func:`size_scale`) get their cameras scaled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import UserError
from ..events import NULL_BUS, EventBus, Message
from ..ingest.names import shown

STAGE = "sfm"
#: fewest cameras a scene can be trained from
MIN_IMAGES = 3
#: a principal point may lie this fraction of the image size outside the image, no further
PP_MARGIN = 0.25
#: plausible focal lengths, as a multiple of the image's longer side (fields of view from about
#: 168 down to about 1 degree)
FOCAL_RANGE = (0.05, 50.0)
#: largest |R^T R - I| entry of a rotation (larger: scaled or skewed, not rigid)
ROTATION_TOL = 1e-3
#: an image is a uniform scale of the given size if both sides agree within this many pixels
SIZE_TOL = 1.0


@dataclass
class Problem:
    """One reason why a camera cannot be used."""

    where: str  # which image: "frame 3 (images/0003.jpg)", "image 0003.jpg"
    field: str  # in the file's own words: "fl_x", "transform_matrix", "the focal length of camera 2"
    reason: str  # "is 0: a focal length is a positive number of pixels"

    def __str__(self) -> str:
        where = f"{self.where}:" if self.where and self.field else self.where
        return " ".join(p for p in (where, self.field, self.reason) if p)


@dataclass
class Labels:
    """How the fields of one camera are called in its file (for the messages)."""

    fx: str = "the focal length"
    fy: str = "the focal length"
    cx: str = "the principal point"
    cy: str = "the principal point"
    size: str = "the image size"
    pose: str = "the pose"
    extra: dict = field(default_factory=dict)


def refuse(problems: list[Problem], file: Path, todo: str) -> UserError:
    """The UserError for ``problems`` found in ``file``: the first one, and how many more."""
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    return UserError(f"{shown(file)}: {problems[0]}{more}.", todo)


def new_cameras_todo(photos: Path) -> str:
    return f"Fix the file, or give the photos alone to compute new cameras: splatkit train {shown(photos)}"


def camera_problems(where: str, K: np.ndarray, w2c: np.ndarray, w: int, h: int,
                    labels: Labels) -> list[Problem]:
    """What is wrong with one pinhole camera (intrinsics ``K``, world-to-camera 4x4 ``w2c``)."""
    out: list[Problem] = []
    if not (w > 0 and h > 0):
        out.append(Problem(where, labels.size, f"is {w}x{h}: an image has a positive size"))
        return out
    for name, v in ((labels.fx, K[0, 0]), (labels.fy, K[1, 1])):
        if not (math.isfinite(v) and v > 0):
            out.append(Problem(where, name, f"is {v:g}: a focal length is a positive number of pixels"))
            break
        if not FOCAL_RANGE[0] <= v / max(w, h) <= FOCAL_RANGE[1]:
            fov = math.degrees(2 * math.atan(0.5 * max(w, h) / v))
            out.append(Problem(where, name, f"is {v:g} pixels: for a {w}x{h} image that is a field of view "
                                            f"of {fov:.3g} degrees, not a camera's"))
            break
    for name, v, size in ((labels.cx, K[0, 2], w), (labels.cy, K[1, 2], h)):
        if not (math.isfinite(v) and -PP_MARGIN * size <= v <= (1 + PP_MARGIN) * size):
            out.append(Problem(where, name, f"is {v:g}, far outside the {w}x{h} image (the optical "
                                            "centre lies inside it, near the middle)"))
            break
    out += pose_problems(where, w2c, labels.pose)
    return out


def pose_problems(where: str, m: np.ndarray, label: str) -> list[Problem]:
    """A 4x4 camera pose that is not finite, not a rotation and translation, or not 4x4-affine."""
    m = np.asarray(m, dtype=np.float64)
    if not np.isfinite(m).all() or np.abs(m).max() > 1e150:
        return [Problem(where, label, "holds NaN, infinite or absurdly large numbers")]
    if np.abs(m[3] - (0, 0, 0, 1)).max() > 1e-6:
        return [Problem(where, label, f"has the last row {np.round(m[3], 4).tolist()}, not [0, 0, 0, 1]")]
    R = m[:3, :3]
    err = float(np.abs(R.T @ R - np.eye(3)).max())
    if err > ROTATION_TOL:
        s = np.linalg.svd(R, compute_uv=False)
        return [Problem(where, label, "is not a rotation and a translation (its 3x3 part is scaled or "
                                      f"skewed: axis lengths {s.min():.3g} to {s.max():.3g}, not 1)")]
    if np.linalg.det(R) < 0:
        return [Problem(where, label, "is a mirror image (its 3x3 part has determinant -1)")]
    return []


def set_problems(names: list[str], centers: np.ndarray, file_label: str) -> list[Problem]:
    """Problems of the camera set as a whole: too few, duplicate names, all at one point."""
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in seen:
            return [Problem(shown(n), "", f"is listed twice ({file_label} {seen[n] + 1} and {i + 1}): "
                                          "one image has one camera")]
        seen[n] = i
    if len(names) < MIN_IMAGES:
        return [Problem("", "", f"only {len(names)} usable camera(s) (training needs at least "
                                f"{MIN_IMAGES})")]
    c = np.asarray(centers, dtype=np.float64)
    spread = float(np.abs(c - c.mean(0)).max())
    if spread <= 1e-9 * max(1.0, float(np.abs(c).max())):
        return [Problem("", "", f"all {len(names)} cameras are at the same place (their poses are "
                                "missing or all the same)")]
    return []


def safe_relative(name: str) -> bool:
    """Whether an image name stays inside its folder (relative, no ``..``)."""
    p = PurePosixPath(name.replace("\\", "/"))
    return bool(name) and not p.is_absolute() and ".." not in p.parts and ":" not in p.parts[0]


def image_status(path: Path) -> tuple[int, int] | str:
    """The image's (width, height) as stored, or why it cannot be used (missing, damaged, ...).

    JPEGs are decoded at 1/8 size (cheap) and PNGs verified, so that a truncated file is caught
    here rather than half-way through training.
    """
    try:
        with Image.open(path) as im:
            size = im.size
            if im.format == "PNG":
                im.verify()
            else:
                im.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
                im.load()
    except FileNotFoundError:
        return "is missing"
    except IsADirectoryError:
        return "is a folder, not an image"
    except PermissionError:
        return "cannot be read (permission denied)"
    except (UnidentifiedImageError, Image.DecompressionBombError):
        return "is not a readable image"
    except (OSError, SyntaxError, ValueError) as e:
        return f"is damaged or truncated ({e})"
    return size


def size_scale(given: tuple[int, int], actual: tuple[int, int]) -> float | None:
    """``s`` with ``actual == s * given`` (1.0 when equal), or None when it is no uniform scale."""
    (gw, gh), (aw, ah) = given, actual
    if (gw, gh) == (aw, ah):
        return 1.0
    if gw <= 0 or gh <= 0:
        return None
    s = aw / gw
    if abs(gh * s - ah) <= SIZE_TOL and abs(ah / gh * gw - aw) <= SIZE_TOL:
        return s
    return None


def size_problem(where: str, label: str, given: tuple[int, int], actual: tuple[int, int]) -> Problem:
    turned = size_scale((given[1], given[0]), actual) is not None
    return Problem(where, label, f"is {given[0]}x{given[1]} but the image file is {actual[0]}x{actual[1]}"
                   + (" (turned by 90 degrees)" if turned else " (not the same shape)"))


def validate_cameras(scene, source: Path, photos: Path | None = None) -> None:
    """Check a :class:`~splatkit.scene.Scene` before training: every camera usable, every image
    present at the size of its camera. Raises the two-line UserError with the first problem."""
    cams = scene.cameras
    K = cams.K.double().numpy()
    w2c = cams.world_to_cam.double().numpy()
    problems: list[Problem] = []
    for i, n in enumerate(cams.names):
        w, h = int(cams.width[i]), int(cams.height[i])
        where = f"image {shown(n)}"
        problems += camera_problems(where, K[i], w2c[i], w, h, Labels())
        status = image_status(Path(scene.image_dir) / n)
        if isinstance(status, str):
            problems.append(Problem(where, "the file", status))
        elif status != (w, h):
            problems.append(size_problem(where, "the camera size", (w, h), status))
    problems += set_problems(cams.names, cams.centers.double().numpy(), "entries")
    if problems:
        raise refuse(problems, source, new_cameras_todo(photos or source))


def check_model(rec, image_dir: Path, sparse: Path, ext: str, bus: EventBus = NULL_BUS) -> list[str]:
    """Check a COLMAP model (a ``pycolmap.Reconstruction``) read from ``sparse`` against the images
    in ``image_dir``; returns the names of the images to use, sorted.

    Fixed in ``rec`` and said: images that are missing or damaged are left out (while enough
    remain); cameras whose images are a uniform scale of their size are rescaled; 3D points that
    are not finite are removed. Everything else that is wrong raises the two-line UserError.
    """
    todo = new_cameras_todo(image_dir)
    posed = sorted((im for im in rec.images.values() if im.has_pose), key=lambda im: im.name)
    if not posed:
        raise UserError(f"{shown(sparse / ('images' + ext))} lists {rec.num_images()} image(s) and none "
                        "has a pose (no registered images).", todo)
    outside = [im for im in posed if not safe_relative(im.name)]
    if outside:
        raise refuse([Problem(f"image {shown(outside[0].name)}", "", "is a path outside the images folder")],
                     sparse, todo)
    status = {im.name: image_status(image_dir / im.name) for im in posed}
    posed = _drop_unusable(rec, posed, status, image_dir, sparse, bus)
    problems = _rescale_cameras(rec, posed, status, ext, bus)
    for im in posed:
        problems += _image_problems(rec, im, ext)
    names = [im.name for im in posed]
    if not problems:
        problems = set_problems(names, np.stack([im.projection_center() for im in posed]), "entries")
    if problems:
        raise refuse(problems, sparse, todo)
    bad = [pid for pid, pt in rec.points3D.items() if not np.isfinite(pt.xyz).all()]
    for pid in bad:
        rec.delete_point3D(pid)
    if bad:
        bus.emit(Message(STAGE, f"{len(bad)} 3D point(s) of the model are not finite numbers: removed.",
                         "warning"))
    return names


def _drop_unusable(rec, posed: list, status: dict, image_dir: Path, sparse: Path, bus: EventBus) -> list:
    """The images whose file is usable; the others are deregistered and named in a warning."""
    bad = [(n, s) for n, s in status.items() if isinstance(s, str)]
    if not bad:
        return posed
    usable = len(posed) - len(bad)
    eg = f"{shown(bad[0][0])} {bad[0][1]}" + (f", and {len(bad) - 1} more" if len(bad) > 1 else "")
    if usable < MIN_IMAGES or usable < len(posed) / 2:
        raise UserError(f"Only {usable} of the {len(posed)} photos of the COLMAP model in {shown(sparse)} "
                        f"can be used from {shown(image_dir)} ({eg}).",
                        "Point to the project folder whose images/ holds the photos the model was made from.")
    for im in posed:
        if isinstance(status[im.name], str):
            rec.deregister_frame(im.frame_id)
    bus.emit(Message(STAGE, f"{len(bad)} photo(s) of the COLMAP model are not usable and are left out "
                            f"({eg}).", "warning"))
    return [im for im in posed if not isinstance(status[im.name], str)]


def _rescale_cameras(rec, posed: list, status: dict, ext: str, bus: EventBus) -> list[Problem]:
    """Cameras whose images are a uniform scale of the camera size are rescaled (and said)."""
    problems: list[Problem] = []
    scaled: list[tuple] = []
    by_camera: dict[int, dict] = {}  # camera id -> image size -> first image name of that size
    for im in posed:
        by_camera.setdefault(im.camera_id, {}).setdefault(status[im.name], im.name)
    for cid, sizes in sorted(by_camera.items()):
        cam = rec.cameras[cid]
        label = f"the size of camera {cid} in cameras{ext}"
        (size, name), *other = sizes.items()
        if other:
            (w2, h2), name2 = other[0]
            problems.append(Problem(f"image {shown(name2)}", "", f"is {w2}x{h2} pixels but {shown(name)} of "
                                    f"the same camera {cid} is {size[0]}x{size[1]}"))
            continue
        given = (int(cam.width), int(cam.height))
        s = size_scale(given, size)
        if s is None:
            problems.append(size_problem(f"image {shown(name)}", label, given, size))
        elif s != 1.0:
            cam.rescale(size[0], size[1])
            scaled.append((s, given, size))
    if scaled:
        s, given, size = scaled[0]
        bus.emit(Message(STAGE, f"The images are {s:.2g} times the size of their camera in cameras{ext} "
                                f"({given[0]}x{given[1]} -> {size[0]}x{size[1]} pixels"
                                + (f"; {len(scaled)} cameras" if len(scaled) > 1 else "")
                                + "): the cameras are scaled to match.", "warning"))
    return problems


def _image_problems(rec, im, ext: str) -> list[Problem]:
    cam = rec.cameras[im.camera_id]
    where = f"image {shown(im.name)}"
    cid = im.camera_id
    of = f"of camera {cid} in cameras{ext}"
    labels = Labels(fx=f"the focal length {of}", fy=f"the focal length {of}", cx=f"the principal point {of}",
                    cy=f"the principal point {of}", size=f"the size {of}", pose=f"its pose in images{ext}")
    if cam.model.name == "EQUIRECTANGULAR" or not cam.is_perspective():
        return [Problem(where, f"camera {cid} in cameras{ext}", f"is a {cam.model.name} camera: only "
                        "perspective cameras can be used (for a 360-degree camera, give the folder of "
                        "its equirectangular frames: splatkit cuts them into perspective views)")]
    pose = im.cam_from_world()
    q = np.asarray(pose.rotation.quat, dtype=np.float64)
    norm = float(np.linalg.norm(q))
    if not np.isfinite(q).all() or abs(norm - 1.0) > ROTATION_TOL:
        return [Problem(where, labels.pose, f"is not a rotation: its quaternion (QW, QX, QY, QZ) has length "
                        f"{norm:.3g}, not 1")]
    m = np.eye(4)
    m[:3, :4] = np.asarray(pose.matrix())
    K = np.asarray(cam.calibration_matrix(), dtype=np.float64)
    return camera_problems(where, K, m, int(cam.width), int(cam.height), labels)


__all__ = [
    "Problem", "Labels", "refuse", "camera_problems", "pose_problems", "set_problems",
    "image_status", "size_scale", "size_problem", "safe_relative", "validate_cameras", "check_model",
    "MIN_IMAGES",
]
