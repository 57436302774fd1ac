"""Checks on what students upload: photos (many files or one zip) or one video.

Nothing about a file is trusted but its content: the type is found from its first bytes (and images
must open with Pillow), names are replaced by safe ones, and a zip is read entry by entry with limits
on count, total uncompressed size and compression ratio (zip bombs), refusing absolute paths, ``..``
and symlinks; a damaged zip (bad header, CRC error, cut-off data) is refused too. Every refusal is
an :class:`UploadError` with a message a student can act on, and leaves nothing behind. A video's
frames are capped: :func:`save_upload` returns the frame rate that keeps it within
``max_video_frames``, which the job uses.
"""

from __future__ import annotations

import re
import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

IMAGE_TYPES = {"jpeg": ".jpg", "png": ".png", "heic": ".heic", "avif": ".avif"}
#: ISO media brands (``ftyp``) of HEIF photos (iPhones) and AVIF photos; any other is a video
HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1"}
AVIF_BRANDS = {b"avif", b"avis"}
#: what students may upload as photos, in words
PHOTO_WORDS = "a JPEG, PNG, HEIC or AVIF photo"
VIDEO_TYPES = {"mp4": ".mp4", "matroska": ".mkv", "avi": ".avi"}


@dataclass
class UploadLimits:
    max_request_mb: float = 500.0  # one upload request, all files together
    max_files: int = 300  # photos per job (files, or image entries of a zip)
    max_file_mb: float = 50.0  # one photo
    max_unzipped_mb: float = 1024.0  # all entries of a zip, uncompressed
    max_zip_ratio: float = 100.0  # uncompressed / compressed size of one entry (photos: about 1)
    max_zip_entries: int = 2000
    min_photos: int = 3
    max_video_frames: int = 120  # frames taken from one video (its frame rate is lowered to fit)


class UploadError(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def sniff(head: bytes) -> str | None:
    """The type of a file from its first bytes: jpeg, png, heic, avif, zip, mp4, matroska, avi or
    None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        if head[8:12] in HEIC_BRANDS:
            return "heic"
        if head[8:12] in AVIF_BRANDS:
            return "avif"
        return "mp4"  # also .mov and .m4v
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"  # also .webm
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    return None


def _check_image(path: Path, shown: str) -> None:
    """The photo must decode to its end: ``verify`` reads the structure (PNG chunks and CRCs), then
    the picture is decoded (a JPEG at 1/8 scale, which still reads every byte of its data), so that
    a file cut short is refused here rather than failing the job later."""
    from PIL import Image

    from ..ingest.formats import heif_problem

    heif_problem()  # registers pillow-heif's reader with Pillow
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
    except Exception:  # noqa: BLE001 - any decoder error means: not a usable photo
        raise UploadError(f"{shown} looks like a photo but cannot be opened (damaged or cut off). "
                          "Upload it again, or leave it out.") from None


def _safe_stem(name: str) -> str:
    stem = PurePosixPath(name.replace("\\", "/")).stem
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem)[:60] or "photo"


def check_client_name(name: str) -> str:
    """A multipart file name must be a plain file name (browsers send only that)."""
    name = name or "upload"
    if "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        raise UploadError(f"The file name {name!r} is not allowed: send files, not paths.")
    return name


def save_upload(files: list[tuple[str, Path]], dest: Path, limits: UploadLimits) -> tuple[str, float | None]:
    """Check the uploaded files (``(client name, spooled path)``) and put the photos (or the
    video) into ``dest``. Returns a short note (what was received) and, for a video, the frame rate
    (frames per second) that keeps it within ``limits.max_video_frames`` (else None). Raises
    :class:`UploadError`; on any failure ``dest`` is removed."""
    if not files:
        raise UploadError("No files were sent. Choose your photos (or one zip, or one video).")
    dest.mkdir(parents=True, exist_ok=True)
    try:
        return _save(files, dest, limits)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _save(files: list[tuple[str, Path]], dest: Path, limits: UploadLimits) -> tuple[str, float | None]:
    kinds = []
    for name, path in files:
        check_client_name(name)
        with open(path, "rb") as f:
            kinds.append(sniff(f.read(16)))
    if len(files) == 1 and kinds[0] == "zip":
        n = _extract_zip(files[0][1], files[0][0], dest, limits)
        return f"{n} photos from {files[0][0]}", None
    if len(files) == 1 and kinds[0] in VIDEO_TYPES:
        frames, seconds = _check_video(files[0][1], files[0][0])
        shutil.copyfile(files[0][1], dest / ("video" + VIDEO_TYPES[kinds[0]]))
        fps = limits.max_video_frames / seconds
        return (f"video {files[0][0]} ({seconds:.0f} s, {frames} frames; at most "
                f"{min(frames, limits.max_video_frames)} used)"), fps
    if any(k == "zip" or k in VIDEO_TYPES for k in kinds):
        raise UploadError("Send either photos, or one zip, or one video, not a mix.")
    if len(files) > limits.max_files:
        raise UploadError(f"{len(files)} files is too many: at most {limits.max_files} photos per job.")
    for i, ((name, path), kind) in enumerate(zip(files, kinds, strict=True)):
        if kind not in IMAGE_TYPES:
            raise UploadError(f"{name} is not {PHOTO_WORDS} (checked by its content). "
                              "Convert it to JPEG or leave it out.")
        if path.stat().st_size > limits.max_file_mb * 1e6:
            raise UploadError(f"{name} is larger than {limits.max_file_mb:g} MB.", 413)
        _check_image(path, name)
        shutil.copyfile(path, dest / f"{i:04d}_{_safe_stem(name)}{IMAGE_TYPES[kind]}")
    if len(files) < limits.min_photos:
        raise UploadError(f"Only {len(files)} photos: send at least {limits.min_photos} "
                          "(20-60 photos around the object work best).")
    return f"{len(files)} photos", None


def _zip_entry_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    p = PurePosixPath(name.replace("\\", "/"))
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    if ".." in p.parts:
        return "points outside the zip (..)"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link"
    return None


def _extract_zip(src: Path, shown: str, dest: Path, limits: UploadLimits) -> int:
    try:
        return _unpack(src, shown, dest, limits)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError):
        raise UploadError(f"{shown} is damaged (cut off or corrupted) and cannot be unpacked. "
                          "Make the zip again, or upload the photos themselves.") from None


def _unpack(src: Path, shown: str, dest: Path, limits: UploadLimits) -> int:
    zf = zipfile.ZipFile(src)
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_zip_entries:
            raise UploadError(f"{shown} has {len(infos)} entries: at most {limits.max_zip_entries}.")
        total = 0
        for info in infos:
            problem = _zip_entry_problem(info)
            if problem:
                raise UploadError(f"{shown} was refused: the entry {info.filename!r} {problem}.")
            total += info.file_size
            if info.file_size > 1e6 and info.file_size > limits.max_zip_ratio * max(info.compress_size, 1):
                raise UploadError(f"{shown} was refused: {info.filename!r} unpacks to "
                                  f"{info.file_size / max(info.compress_size, 1):.0f} times its size "
                                  "(a zip bomb?). Zip the photos themselves.", 413)
        if total > limits.max_unzipped_mb * 1e6:
            raise UploadError(f"{shown} unpacks to {total / 1e6:.0f} MB: at most "
                              f"{limits.max_unzipped_mb:g} MB.", 413)
        photos = [i for i in infos if not i.is_dir() and _wanted(i.filename)]
        if len(photos) > limits.max_files:
            raise UploadError(f"{shown} holds {len(photos)} photos: at most {limits.max_files}.")
        if len(photos) < limits.min_photos:
            raise UploadError(f"{shown} holds {len(photos)} JPEG/PNG/HEIC/AVIF photos: send at least "
                              f"{limits.min_photos}.")
        budget = limits.max_unzipped_mb * 1e6
        for k, info in enumerate(photos):
            target = dest / f"{k:04d}_{_safe_stem(info.filename)}.tmp"
            written = 0
            with zf.open(info) as fin, open(target, "wb") as fout:
                while chunk := fin.read(1 << 20):
                    written += len(chunk)
                    budget -= len(chunk)
                    # the header's sizes are not trusted: count what really comes out
                    if written > limits.max_file_mb * 1e6 or budget < 0:
                        raise UploadError(f"{shown} was refused: {info.filename!r} is too large "
                                          "when unpacked.", 413)
                    fout.write(chunk)
            with open(target, "rb") as f:
                kind = sniff(f.read(16))
            if kind not in IMAGE_TYPES:
                raise UploadError(f"{info.filename} in {shown} is not {PHOTO_WORDS} "
                                  "(checked by its content).")
            _check_image(target, info.filename)
            target.rename(target.with_suffix(IMAGE_TYPES[kind]))
        return len(photos)


def _wanted(name: str) -> bool:
    p = PurePosixPath(name)
    if any(part.startswith(".") or part == "__MACOSX" for part in p.parts):
        return False
    return p.suffix.lower() in (".jpg", ".jpeg", ".png", ".heic", ".heif", ".avif")


#: a video with more frames than this is refused (about 28 minutes at 30 frames a second)
MAX_VIDEO_DECODED = 50_000


def _check_video(path: Path, shown: str) -> tuple[int, float]:
    """(frames, seconds) of the video, counted by decoding it: the duration in the file's header is
    not trusted (a long clip may claim to last a second). Seconds run from the first to the last
    frame's time, as the job's frame sampling reads them. Refuses files without a picture, that do
    not decode, or that are very long."""
    try:
        import av
    except ImportError:
        raise UploadError("This server cannot read videos (PyAV is not installed). "
                          "Send photos instead, or ask your teacher.") from None
    frames, first, last = 0, None, None
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise UploadError(f"{shown} has no video track.")
            st = c.streams.video[0]
            st.thread_type = "AUTO"
            rate = float(st.average_rate or 30)
            for frame in c.decode(st):
                t = frame.time if frame.time is not None else frames / rate
                first = t if first is None else min(first, t)
                last = t if last is None else max(last, t)
                frames += 1
                if frames > MAX_VIDEO_DECODED:
                    raise UploadError(f"{shown} is too long ({MAX_VIDEO_DECODED} frames at most): "
                                      "cut it to a few minutes around the object.", 413)
    except UploadError:
        raise
    except Exception:  # noqa: BLE001 - a decoder error: keep what decoded, if anything
        if not frames:
            raise UploadError(f"{shown} looks like a video but cannot be read.") from None
    if frames == 0:
        raise UploadError(f"{shown} has no picture that can be decoded.")
    return frames, max(last - first + 1.0 / rate, 1.0 / rate)


def find_video(photos_dir: Path) -> Path | None:
    vids = [p for p in Path(photos_dir).glob("video.*")]
    return vids[0] if vids else None
