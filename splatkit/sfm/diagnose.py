"""Why SfM left photos out, in plain words, from the matching database and the ingest checks.

For each photo that was not placed, the likely reason, in order:

1. it belongs to another (smaller) model: a group of photos that share nothing with the kept one,
   typically another place or object mixed in;
2. the checks found it blurry (or dark);
3. its verified matches (two-view geometry inliers in the database) with the other photos:
   none -> it does not overlap them; few -> too little overlap; enough -> it matched but could
   not be fixed in place (too little angle, or repetitive texture).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .database import image_ids, verified_pairs

#: this share of verified pairs without parallax (or more) means: taken from one spot
NO_PARALLAX_SHARE = 0.6
NO_PARALLAX_TODO = (
    "Take a step sideways between photos (about 30 cm for an object, a metre or more for a "
    "room or building) instead of turning the camera from one spot; a tripod panorama cannot "
    "be reconstructed in 3D."
)
#: fewer verified matches than this with every other photo counts as "few" (COLMAP needs 15)
FEW_MATCHES = 40
OVERLAP_TODO = (
    "Photos need to overlap by about two thirds: walk around the object taking a photo every few "
    "steps."
)


def pair_inliers(db_path: Path) -> dict[str, dict[str, int]]:
    """name -> {other name: verified matches (two-view geometry inliers)} from the database."""
    out: dict[str, dict[str, int]] = {n: {} for n in image_ids(db_path)}
    for (a, b), n in verified_pairs(db_path).items():
        out[a][b] = out[b][a] = n
    return out


def clusters(names: list[str], inliers: dict[str, dict[str, int]]) -> list[list[str]]:
    """Groups (2 photos or more) of ``names`` connected by enough matches among themselves.

    COLMAP drops models of fewer than 10 photos when there is a bigger one, so a second scene
    mixed into the folder shows up here rather than as a model.
    """
    left = set(names)
    out = []
    for n in names:
        if n not in left:
            continue
        group, todo = [], [n]
        left.discard(n)
        while todo:
            a = todo.pop()
            group.append(a)
            for b, k in inliers.get(a, {}).items():
                if b in left and k >= FEW_MATCHES:
                    left.discard(b)
                    todo.append(b)
        if len(group) > 1:
            out.append(sorted(group))
    return sorted(out, key=lambda g: (-len(g), g))


def explain(
    unregistered: list[str],
    registered: set[str],
    other_groups: list[list[str]],
    inliers: dict[str, dict[str, int]],
    flags: dict[str, str],
) -> dict[str, str]:
    """Likely reason, per photo left out (see the module doc)."""
    group_of = {n: g for g in other_groups for n in g}
    out = {}
    for n in unregistered:
        g = group_of.get(n)
        if g is not None:
            others = [m for m in g if m != n]
            out[n] = (
                f"it forms a separate group with {_names(others)} that shares nothing with the "
                "placed photos (another place or object, or a gap in the coverage: photos taken in "
                "between join the two)"
            )
            continue
        flag = flags.get(n, "")
        if "blurry" in flag or "black" in flag or "blown out" in flag:
            out[n] = flag
            continue
        m = inliers.get(n, {})
        best_name, best = max(m.items(), key=lambda kv: kv[1], default=("", 0))
        best_placed = max((v for k, v in m.items() if k in registered), default=0)
        if best == 0:
            out[n] = "no matches with any other photo: it does not overlap them"
        elif best < FEW_MATCHES:
            out[n] = (
                f"few matches with the other photos (at most {best}, with {best_name}): too "
                "little overlap"
            )
        elif best_placed < FEW_MATCHES:
            out[n] = (
                f"it matches {best_name} (also left out) but hardly any placed photo (at most "
                f"{best_placed} matches): another place or object, or a gap in the photos"
            )
        else:
            out[n] = (
                f"it matches {best_name} ({best} points) but could not be fixed in place "
                "(too little change of viewpoint, or repetitive texture)"
            )
    return out


def failure(
    names: list[str],
    registered: int,
    models: list[list[str]],
    inliers: dict[str, dict[str, int]],
    flags: dict[str, str],
    no_parallax: float = 0.0,
    points: int | None = None,
) -> UserError:
    """The plain two-line error when SfM fails outright. ``no_parallax``: the share of matched
    pairs that show no change of viewpoint (:func:`~splatkit.sfm.database.no_parallax_share`):
    when most do, that is the cause, whatever the groups look like. ``points``: the photos were
    placed but only this many 3D points measured (too few to train from)."""
    n = len(names)
    if no_parallax >= NO_PARALLAX_SHARE:
        return UserError(
            f"The photos were all taken from about the same spot ({no_parallax:.0%} of the matched "
            "pairs show no change of viewpoint), so their depth cannot be measured.",
            NO_PARALLAX_TODO,
        )
    if points is not None:
        return UserError(
            f"SfM placed {registered} of {n} photos but could measure the depth of only {points} "
            "points: too little change of viewpoint between the photos, or too little detail.",
            NO_PARALLAX_TODO,
        )
    if len(models) > 1:
        sizes = ", ".join(str(len(g)) for g in models)
        return UserError(
            f"The photos fell apart into {len(models)} groups that share nothing ({sizes} photos); "
            f"the largest holds only {len(models[0])} of {n}.",
            "Keep one place or object per folder, and take more photos between the groups to "
            "connect them.",
        )
    what = (
        f"SfM could not place any of the {n} photos."
        if registered == 0
        else f"SfM could place only {registered} of {n} photos."
    )
    if not any(inliers.get(k) for k in names):
        return UserError(
            what + " No two of them share enough detail.",
            OVERLAP_TODO + " Avoid plain walls, glass and moving things.",
        )
    return UserError(what, OVERLAP_TODO)


def _names(names: list[str], most: int = 4) -> str:
    if len(names) <= most:
        return ", ".join(names)
    return ", ".join(names[:most]) + f" and {len(names) - most} more"


__all__ = ["pair_inliers", "explain", "failure", "FEW_MATCHES"]
