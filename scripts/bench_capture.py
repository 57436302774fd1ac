"""The captures phones make, against the same pictures as plain JPEG / SDR video.

    python scripts/bench_capture.py [--steps N] heic [--set strecha_fountain_p11] [--quality 90]
    python scripts/bench_capture.py hdr [--set strecha_fountain_p11] [--size 800]
    python scripts/bench_capture.py raw [--set strecha_fountain_p11]

heic: the set's JPEGs converted to HEIC (pillow-heif, the EXIF kept), then `splatkit train
--preset quick` on each folder. Prints the camera rotations of one run against the other
(gauge-free: the angle between the two runs' relative rotations of every pair of photos; max
and median) and each run's held-out PSNR.

hdr: the set's photos (``--size`` px wide, even) as a clip, each held for 3 frames at 6 fps,
once as 8-bit SDR H.264 (crf 16) and once carried into HLG by BT.2408's display-light mapping
as 10-bit HEVC (crf 12, BT.2020, tagged arib-std-b67), as a phone tags it. Prints the PSNR of
every HLG frame as splatkit decodes it against the SDR source frame (min, mean), and of the
same frames decoded as if they were SDR; then `splatkit train --preset quick --video-fps 6`
on each clip and their held-out PSNR.

raw: the set's JPEGs as the DNGs a camera would have recorded (sRGB curve undone, seen through a
white balance of (2, 1, 1.5), a 12-bit RGGB mosaic: ``splatkit.ingest.raw.write_dng``), then
`splatkit train --preset quick` on the DNG folder: developed by rawpy, against the JPEG run of
``heic`` (pair rotations, held-out PSNR).

Outputs in _runs/capture/ (kept for inspection); each training runs alone, under nice.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
RUNS = REPO / "_runs" / "capture"
FPS, HOLD = 6, 3


STEPS: list[str] = []  # ["--steps", N] when --steps is given


def train(src: Path, out: Path, *extra: str) -> dict:
    if not (out / "metrics.json").is_file():
        # an interrupted run there starts over (its SfM is reused)
        again = ["--restart"] if (out / "checkpoints").is_dir() else []
        cmd = ["nice", "-n", "10", sys.executable, "-m", "splatkit", "train", str(src), "-o", str(out),
               "--preset", "quick", "--quiet", *STEPS, *again, *extra]
        print("running:", " ".join(cmd), flush=True)
        t0 = time.time()
        subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        print(f"  {time.time() - t0:.0f} s", flush=True)
    return json.loads((out / "metrics.json").read_text())


def rotations(out: Path) -> dict[str, np.ndarray]:
    import pycolmap

    rec = pycolmap.Reconstruction(str(out / "sparse" / "0"))
    got = {}
    for im in rec.images.values():
        cfw = im.cam_from_world() if callable(im.cam_from_world) else im.cam_from_world
        got[im.name] = np.asarray(cfw.rotation.matrix())
    return got


def pair_angles(a: dict, b: dict) -> list[float]:
    """Degrees between the relative rotations of every pair of photos placed in both runs."""
    names = sorted(set(a) & set(b))
    out = []
    for i, j in itertools.combinations(names, 2):
        ra, rb = a[i] @ a[j].T, b[i] @ b[j].T
        c = (np.trace(ra @ rb.T) - 1) / 2
        out.append(float(np.degrees(np.arccos(np.clip(c, -1, 1)))))
    return out


def heic(a) -> None:
    from pillow_heif import register_heif_opener

    register_heif_opener()
    jpegs = DATASETS / a.set / "images"
    folder = RUNS / f"{a.set}_heic{a.quality}_photos"
    folder.mkdir(parents=True, exist_ok=True)
    for f in sorted(jpegs.glob("*.jpg")):
        dest = folder / (f.stem + ".heic")
        if not dest.exists():
            tmp = dest.with_suffix(".tmp")
            with Image.open(f) as im:  # x265 preset "fast": a phone's hardware encoder is quick too
                im.save(tmp, "HEIF", quality=a.quality, exif=im.getexif().tobytes(),
                        enc_params={"preset": "fast"})
            tmp.rename(dest)
    mb = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
    mbj = sum(p.stat().st_size for p in jpegs.glob("*.jpg")) / 2**20
    mj = train(jpegs, RUNS / f"{a.set}_jpeg")
    mh = train(folder, RUNS / f"{a.set}_heic{a.quality}")
    ang = pair_angles(rotations(RUNS / f"{a.set}_jpeg"), rotations(RUNS / f"{a.set}_heic{a.quality}"))
    print(f"\ncommand: python scripts/bench_capture.py {' '.join(STEPS)} heic --set {a.set} "
          f"--quality {a.quality}")
    print(f"load average: {os.getloadavg()[0]:.2f}")
    print("| input | MB | registered | held-out PSNR | SSIM |")
    print("|---|---|---|---|---|")
    print(f"| JPEG | {mbj:.1f} | {mj['images']['registered']} | {mj['psnr']:.2f} | {mj['ssim']:.3f} |")
    print(f"| HEIC q{a.quality} | {mb:.1f} | {mh['images']['registered']} | {mh['psnr']:.2f} | "
          f"{mh['ssim']:.3f} |")
    print(f"pair rotations HEIC vs JPEG: max {max(ang):.4f} deg, median {np.median(ang):.4f} deg "
          f"over {len(ang)} pairs; PSNR difference {mh['psnr'] - mj['psnr']:+.2f} dB")


def raw(a) -> None:
    sys.path.insert(0, str(REPO))
    from splatkit.ingest.raw import write_dng

    jpegs = DATASETS / a.set / "images"
    folder = RUNS / f"{a.set}_dng_photos"
    folder.mkdir(parents=True, exist_ok=True)
    for f in sorted(jpegs.glob("*.jpg")):
        dest = folder / (f.stem + ".dng")
        if not dest.exists():
            with Image.open(f) as im:
                v = np.asarray(im.convert("RGB"), np.float64) / 255.0
            lin = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
            tmp = dest.with_suffix(".tmp")
            write_dng(tmp, lin[: lin.shape[0] // 2 * 2, : lin.shape[1] // 2 * 2])
            tmp.rename(dest)
    mj = train(jpegs, RUNS / f"{a.set}_jpeg")
    mr = train(folder, RUNS / f"{a.set}_dng")
    ang = pair_angles(rotations(RUNS / f"{a.set}_jpeg"), rotations(RUNS / f"{a.set}_dng"))
    print(f"\ncommand: python scripts/bench_capture.py {' '.join(STEPS)} raw --set {a.set}")
    print(f"load average: {os.getloadavg()[0]:.2f}")
    print("| input | registered | held-out PSNR | SSIM |")
    print("|---|---|---|---|")
    for label, m in (("JPEG", mj), ("DNG (developed by rawpy)", mr)):
        print(f"| {label} | {m['images']['registered']} | {m['psnr']:.2f} | {m['ssim']:.3f} |")
    print(f"pair rotations DNG vs JPEG: max {max(ang):.4f} deg, median {np.median(ang):.4f} deg "
          f"over {len(ang)} pairs; PSNR difference {mr['psnr'] - mj['psnr']:+.2f} dB")


def _frames(name: str, size: int) -> list[np.ndarray]:
    out = []
    for f in sorted((DATASETS / name / "images").glob("*.[jJ][pP][gG]")):
        with Image.open(f) as im:
            im.draft("RGB", (size * 2, size * 2))
            w = size
            h = round(im.height * w / im.width) // 2 * 2
            out.append(np.asarray(im.convert("RGB").resize((w, h), Image.Resampling.LANCZOS)))
    return out


def _sdr_clip(path: Path, frames: list[np.ndarray]) -> None:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        s.options = {"crf": "16", "preset": "fast"}
        for a in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def hdr(a) -> None:
    import av

    sys.path.insert(0, str(REPO))
    from splatkit.ingest.hdr import frame_colour, frame_to_image, write_hdr_clip

    RUNS.mkdir(parents=True, exist_ok=True)
    photos = _frames(a.set, a.size)
    frames = [p for p in photos for _ in range(HOLD)]
    sdr, hlg = RUNS / f"{a.set}_{a.size}_sdr.mp4", RUNS / f"{a.set}_{a.size}_hlg.mp4"
    if not sdr.exists():
        _sdr_clip(sdr, frames)
    if not hlg.exists():
        write_hdr_clip(hlg, frames, FPS, "hlg")
    ours, naive = [], []
    t0, desc = time.time(), ""
    with av.open(str(hlg)) as c:
        for k, fr in enumerate(c.decode(video=0)):
            colour = frame_colour(fr)
            desc = colour.description
            ours.append(_psnr(np.asarray(frame_to_image(fr, colour, a.size)), frames[k]))
            naive.append(_psnr(np.asarray(fr.to_image()), frames[k]))
    per_frame = (time.time() - t0) / len(ours)
    ms = train(sdr, RUNS / f"{a.set}_{a.size}_sdr", "--video-fps", str(FPS))
    mh = train(hlg, RUNS / f"{a.set}_{a.size}_hlg", "--video-fps", str(FPS))
    print(f"\ncommand: python scripts/bench_capture.py {' '.join(STEPS)} hdr --set {a.set} --size {a.size}")
    print(f"load average: {os.getloadavg()[0]:.2f}")
    print(f"HLG decode: {desc}")
    print(f"HLG frames vs SDR source: min {min(ours):.2f} dB, mean {np.mean(ours):.2f} dB "
          f"({len(ours)} frames, {per_frame * 1000:.0f} ms a frame decoded and converted); decoded as "
          f"SDR: mean {np.mean(naive):.2f} dB")
    print("| clip | registered | held-out PSNR | SSIM |")
    print("|---|---|---|---|")
    for label, m in (("SDR 8-bit H.264", ms), ("HLG 10-bit HEVC", mh)):
        print(f"| {label} | {m['images']['registered']} | {m['psnr']:.2f} | {m['ssim']:.3f} |")
    print(f"PSNR difference HLG - SDR: {mh['psnr'] - ms['psnr']:+.2f} dB")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=0, help="training steps (default: the preset's)")
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("heic")
    p.add_argument("--set", default="strecha_fountain_p11")
    p.add_argument("--quality", type=int, default=90)
    p = sub.add_parser("hdr")
    p.add_argument("--set", default="strecha_fountain_p11")
    p.add_argument("--size", type=int, default=800)
    p = sub.add_parser("raw")
    p.add_argument("--set", default="strecha_fountain_p11")
    a = ap.parse_args()
    if a.steps:
        STEPS[:] = ["--steps", str(a.steps)]
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    {"heic": heic, "hdr": hdr, "raw": raw}[a.what](a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
