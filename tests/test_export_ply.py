"""INRIA PLY writer/reader: round trip, exact header, Italink's strict rules, fuzzing."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from splatkit.errors import UserError
from splatkit.export.plugins import PLUGINS
from splatkit.export.ply import ply_header, read_ply, write_ply
from splatkit.splats import Splats

ITALINK_MAX_SPLATS = PLUGINS["italink"].file_cap


def random_splats(n: int, degree: int, seed: int = 0) -> Splats:
    return Splats.random(n, degree, seed)


def italink_accepts(data: bytes) -> tuple[bool, str]:
    """Italink's ParseSplatFromStream header rules (notes section 3), as a checker."""
    end = data.find(b"end_header\n")
    if end < 0:
        return False, "no end_header"
    lines = data[:end].decode("ascii").split("\n")[:-1]
    if lines[0] != "ply":
        return False, "line 1"
    if lines[1] != "format binary_little_endian 1.0":
        return False, "line 2"
    if not lines[2].startswith("element vertex "):
        return False, "line 3"
    n = int(lines[2].split()[2])
    if not 0 < n <= ITALINK_MAX_SPLATS:
        return False, "count"
    names = []
    for ln in lines[3:]:
        if not ln.startswith("property float "):
            return False, f"line {ln!r}"
        names.append(ln.split()[2])
    rest = [nm for nm in names if nm.startswith("f_rest_")]
    if len(rest) % 3:
        return False, "f_rest"
    for nm in ["x", "y", "z", "opacity", "f_dc_0", "f_dc_1", "f_dc_2"]:
        if nm not in names:
            return False, nm
    if len(data) - (end + len(b"end_header\n")) != n * 4 * len(names):
        return False, "body size"
    return True, ""


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_round_trip(tmp_path, degree):
    s = random_splats(50, degree, seed=degree)
    p = write_ply(s, tmp_path / "a.ply", pad_sh_to=None)
    r = read_ply(p)
    assert r.sh_degree == degree
    for k, v in s.as_dict().items():
        assert torch.equal(getattr(r, k), v), k
    # Padded to degree 3: the extra bands are zero and the rest unchanged.
    r3 = read_ply(write_ply(s, tmp_path / "b.ply"))
    assert r3.sh_degree == 3
    assert torch.equal(r3.shN[:, : s.shN.shape[1]], s.shN)
    assert not r3.shN[:, s.shN.shape[1] :].any()


def test_sh_degree_cut(tmp_path):
    s = random_splats(10, 3)
    r = read_ply(write_ply(s, tmp_path / "a.ply", sh_degree=1, pad_sh_to=None))
    assert r.sh_degree == 1 and torch.equal(r.shN, s.shN[:, :3])


def test_channel_major(tmp_path):
    s = random_splats(3, 1)
    p = write_ply(s, tmp_path / "a.ply", pad_sh_to=None)
    data = p.read_bytes()
    body = np.frombuffer(data[data.find(b"end_header\n") + 11 :], "<f4").reshape(3, -1)
    # x y z nx ny nz f_dc_0..2 f_rest_0..8 ...
    rest = body[:, 9:18]
    for c in range(3):
        for k in range(3):
            assert rest[1, c * 3 + k] == s.shN[1, k, c].item()
    assert (body[:, 3:6] == 0).all()


def test_exact_header(tmp_path):
    s = random_splats(7, 3)
    data = write_ply(s, tmp_path / "a.ply").read_bytes()
    head = data[: data.find(b"end_header\n") + 11].decode()
    assert head == ply_header(7, 3)
    lines = head.splitlines()
    assert lines[:3] == ["ply", "format binary_little_endian 1.0", "element vertex 7"]
    assert lines[3:9] == [f"property float {p}" for p in ["x", "y", "z", "nx", "ny", "nz"]]
    assert lines[9:12] == [f"property float f_dc_{i}" for i in range(3)]
    assert lines[12:57] == [f"property float f_rest_{i}" for i in range(45)]
    assert lines[57:] == ["property float opacity"] + [
        f"property float scale_{i}" for i in range(3)
    ] + [f"property float rot_{i}" for i in range(4)] + ["end_header"]
    assert len(data) == len(head) + 7 * 62 * 4
    assert not any(ln.startswith(("comment", "obj_info")) for ln in lines)
    assert italink_accepts(data) == (True, "")


def test_italink_checker_rejects_variants(tmp_path):
    good = write_ply(random_splats(4, 0), tmp_path / "a.ply").read_bytes()
    assert italink_accepts(good)[0]
    bad = [
        good.replace(b"ply\n", b"ply\ncomment made by x\n", 1),
        good.replace(b"property float opacity", b"property double opacity"),
        good.replace(b"binary_little_endian 1.0", b"binary_little_endian 1.00"),
        good.replace(b"element vertex 4", b"element vertex 0"),
        good[:-4],
    ]
    for b in bad:
        assert not italink_accepts(b)[0]


def test_empty_and_bad_degree(tmp_path):
    with pytest.raises(UserError):
        write_ply(random_splats(0, 0), tmp_path / "a.ply")
    with pytest.raises(UserError):
        write_ply(random_splats(3, 0), tmp_path / "a.ply", sh_degree=4)


@pytest.mark.parametrize(
    "edit,msg",
    [
        (lambda d: d[:-10], "truncated"),
        (lambda d: d.replace(b"property float opacity", b"property double opacity"), "not 'float'"),
        (lambda d: d.replace(b"property float opacity\n", b""), "missing"),
        (lambda d: d.replace(b"binary_little_endian", b"binary_big_endian"), "format"),
        (lambda d: d.replace(b"end_header", b"end_headr"), "header"),
        (lambda d: d.replace(b"property float f_rest_0\n", b""), "f_rest"),
        (lambda d: b"garbage" + d, "header"),
        (lambda d: d.replace(b"element vertex 5", b"element vertex 5\nelement face 2"), "element"),
    ],
)
def test_malformed(tmp_path, edit, msg):
    p = write_ply(random_splats(5, 1), tmp_path / "a.ply", pad_sh_to=None)
    p.write_bytes(edit(p.read_bytes()))
    with pytest.raises(UserError, match=msg):
        read_ply(p)


def test_missing_file(tmp_path):
    with pytest.raises(UserError):
        read_ply(tmp_path / "nope.ply")


def test_comments_tolerated_on_read(tmp_path):
    s = random_splats(5, 1)
    p = write_ply(s, tmp_path / "a.ply", pad_sh_to=None)
    p.write_bytes(p.read_bytes().replace(b"ply\n", b"ply\ncomment hi\n", 1))
    assert torch.equal(read_ply(p).means, s.means)


def test_fuzz_only_splats_or_user_error(tmp_path):
    rng = random.Random(1234)
    good = write_ply(random_splats(6, 1), tmp_path / "g.ply", pad_sh_to=None).read_bytes()
    hend = good.find(b"end_header\n") + 11
    p = tmp_path / "f.ply"
    outcomes = {"ok": 0, "err": 0}
    for _ in range(400):
        d = bytearray(good)
        kind = rng.randrange(6)
        if kind == 0:  # truncate anywhere
            d = d[: rng.randrange(len(d))]
        elif kind == 1:  # flip bytes in the header
            for _ in range(rng.randint(1, 4)):
                d[rng.randrange(hend)] = rng.randrange(256)
        elif kind == 2:  # garbage everywhere
            for _ in range(rng.randint(1, 30)):
                d[rng.randrange(len(d))] = rng.randrange(256)
        elif kind == 3:  # delete a header line
            lines = bytes(d[:hend]).split(b"\n")
            del lines[rng.randrange(len(lines) - 1)]
            d = bytearray(b"\n".join(lines)) + d[hend:]
        elif kind == 4:  # random bytes
            d = bytearray(rng.randbytes(rng.randrange(1, 400)))
        else:  # change the count
            d = bytearray(bytes(d).replace(b"vertex 6", f"vertex {rng.randrange(100)}".encode()))
        p.write_bytes(bytes(d))
        try:
            r = read_ply(p)
            assert isinstance(r, Splats)
            outcomes["ok"] += 1
        except UserError:
            outcomes["err"] += 1
    assert outcomes["ok"] > 0 and outcomes["err"] > 0


@pytest.mark.parametrize("degree,pad", [(0, None), (1, 3), (3, 3), (2, None)])
def test_plyfile_reads_what_we_write(tmp_path, degree, pad, monkeypatch):
    """plyfile (independent reader) sees the same header and values; several write blocks."""
    import plyfile

    from splatkit.export import ply as P

    monkeypatch.setattr(P, "WRITE_BLOCK", 7)  # 50 rows: 8 blocks, the last partial
    s = random_splats(50, degree, seed=3)
    p = write_ply(s, tmp_path / "a.ply", pad_sh_to=pad)
    v = plyfile.PlyData.read(str(p))["vertex"].data
    deg = degree if pad is None else max(degree, pad)
    k = (deg + 1) ** 2 - 1
    assert list(v.dtype.names) == P.ply_property_names(deg)
    assert all(v.dtype[nm] == np.dtype("<f4") for nm in v.dtype.names)

    def col(*names):
        return np.stack([v[nm] for nm in names], 1)

    assert np.array_equal(col("x", "y", "z"), s.means.numpy())
    assert not col("nx", "ny", "nz").any()
    assert np.array_equal(col("f_dc_0", "f_dc_1", "f_dc_2"), s.sh0[:, 0].numpy())
    if k:
        rest = col(*[f"f_rest_{i}" for i in range(3 * k)]).reshape(50, 3, k).transpose(0, 2, 1)
        kk = s.shN.shape[1]
        assert np.array_equal(rest[:, :kk], s.shN.numpy()) and not rest[:, kk:].any()
    assert np.array_equal(v["opacity"], s.opacity_logits.numpy())
    assert np.array_equal(col("scale_0", "scale_1", "scale_2"), s.log_scales.numpy())
    assert np.array_equal(col("rot_0", "rot_1", "rot_2", "rot_3"), s.quats.numpy())
