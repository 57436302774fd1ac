"""glTF binary (.glb) with the ``KHR_gaussian_splatting`` extension, written with pygltflib.

Followed from the extension's specification (KhronosGroup/glTF,
``extensions/2.0/Khronos/KHR_gaussian_splatting/README.md``, 2026 text):

- one mesh primitive, ``mode`` POINTS (0), with the extension object
  ``{"kernel": "ellipse", "colorSpace": "srgb_rec709_display", "projection": "perspective",
  "sortingMethod": "cameraDistance"}`` (splatkit trains on sRGB photos: display-referred sRGB);
- attributes, all float32: ``POSITION`` (VEC3, with min/max), ``KHR_gaussian_splatting:ROTATION``
  (VEC4 unit quaternion in glTF's (x, y, z, w) order), ``KHR_gaussian_splatting:SCALE`` (VEC3,
  linear: exp of the log-scales), ``KHR_gaussian_splatting:OPACITY`` (SCALAR, linear: sigmoid of
  the logits), ``KHR_gaussian_splatting:SH_DEGREE_0_COEF_0`` (VEC3, the raw DC coefficients),
  and per degree l = 1..3 ``KHR_gaussian_splatting:SH_DEGREE_l_COEF_n``, n = 0..2l, m = -l..l in
  that order: the spec's real SH basis with the Condon-Shortley phase is splatkit's (gsplat's)
  basis, so coefficient k = l^2 - 1 + n of ``shN`` is written as is;
- ``COLOR_0`` (VEC4 float, linear as glTF requires: the sRGB DC colour decoded) for readers that
  fall back to a point cloud;
- the node holds no transform; the splats are written in the glTF frame by the caller
  (:data:`splatkit.frames.UPRIGHT_TO_GLTF`: +Y up, metres).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from splatkit.fileio import write_bytes_atomic
from splatkit.splats import SH_C0, Splats

EXTENSION = "KHR_gaussian_splatting"
EXTENSION_OBJECT = {
    "kernel": "ellipse",
    "colorSpace": "srgb_rec709_display",
    "projection": "perspective",
    "sortingMethod": "cameraDistance",
}


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """The sRGB transfer function, inverted (IEC 61966-2-1)."""
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def splat_attributes(s: Splats, sh_degree: int) -> dict[str, np.ndarray]:
    """Attribute semantic -> float32 array, in the extension's conventions."""
    f = lambda t: t.detach().to("cpu").double().numpy()  # noqa: E731
    q = f(s.quats)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    dc = f(s.sh0)[:, 0, :]
    opacity = 1.0 / (1.0 + np.exp(-f(s.opacity_logits)))
    out = {
        "POSITION": f(s.means),
        "COLOR_0": np.concatenate([srgb_to_linear(dc * SH_C0 + 0.5), opacity[:, None]], 1),
        f"{EXTENSION}:ROTATION": q[:, [1, 2, 3, 0]],
        f"{EXTENSION}:SCALE": np.exp(f(s.log_scales)),
        f"{EXTENSION}:OPACITY": opacity,
        f"{EXTENSION}:SH_DEGREE_0_COEF_0": dc,
    }
    shN = f(s.shN)
    for l in range(1, min(sh_degree, s.sh_degree) + 1):  # noqa: E741
        for n in range(2 * l + 1):
            out[f"{EXTENSION}:SH_DEGREE_{l}_COEF_{n}"] = shN[:, l * l - 1 + n, :]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def glb_bytes(s: Splats, sh_degree: int = 3) -> bytes:
    """A .glb holding ``s`` (already in the glTF frame) as one KHR_gaussian_splatting primitive."""
    import pygltflib as G

    attrs = splat_attributes(s, sh_degree)
    blob, views, accessors, names = bytearray(), [], [], {}
    types = {1: "SCALAR", 3: "VEC3", 4: "VEC4"}
    for i, (name, a) in enumerate(attrs.items()):
        width = 1 if a.ndim == 1 else a.shape[1]
        views.append(G.BufferView(buffer=0, byteOffset=len(blob), byteLength=a.nbytes, target=G.ARRAY_BUFFER))
        acc = G.Accessor(bufferView=i, componentType=G.FLOAT, count=len(a), type=types[width])
        if name == "POSITION":
            acc.min, acc.max = a.min(0).tolist(), a.max(0).tolist()
        accessors.append(acc)
        blob += a.tobytes()
        names[name] = i
    prim = G.Primitive(
        attributes=G.Attributes(**{k: v for k, v in names.items() if k in ("POSITION", "COLOR_0")}),
        mode=G.POINTS,
        extensions={EXTENSION: dict(EXTENSION_OBJECT)},
    )
    for k, v in names.items():  # custom semantics: pygltflib keeps them as extra attributes
        if k not in ("POSITION", "COLOR_0"):
            setattr(prim.attributes, k, v)
    gltf = G.GLTF2(
        asset=G.Asset(version="2.0", generator="splatkit"),
        extensionsUsed=[EXTENSION],
        scene=0,
        scenes=[G.Scene(nodes=[0])],
        nodes=[G.Node(mesh=0, name="splats")],
        meshes=[G.Mesh(primitives=[prim], name="splats")],
        buffers=[G.Buffer(byteLength=len(blob))],
        bufferViews=views,
        accessors=accessors,
    )
    gltf.set_binary_blob(bytes(blob))
    return b"".join(gltf.save_to_bytes())


def write_glb(s: Splats, path: Path, sh_degree: int = 3) -> Path:
    """Write :func:`glb_bytes` atomically to ``path``."""
    write_bytes_atomic(Path(path), glb_bytes(s, sh_degree))
    return Path(path)
