"""The Unreal splat plugins splatkit exports for: one :class:`PluginPreset` per plugin, as data.

A preset holds everything the export needs to know about one plugin: how it is shown, whether
its conventions were read in its importer's source (``verified``), the formats and SH degree it
reads, the splat budget, the import factory ``unreal_export/import_splat.py`` pins, the plugin's
own fixed PLY->Unreal axis mapping (``ply_axes``: a plugin frame of :mod:`splatkit.frames`) and
how it stores splats (:class:`Storage`, applied by :mod:`splatkit.export.limits`). ``xv3dgs``,
``luma`` and ``uefn`` ship binary-only importers: their axes and limits are assumptions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from splatkit.errors import UserError
from splatkit.frames import ITALINK_AXES, RDF, Axes


@dataclass(frozen=True)
class Storage:
    """How a plugin stores splats (units: metres unless named); None: not a limit of it.

    ``position``: ``unorm-box`` (unsigned normalised integers of ``bits`` over the file's box),
    ``float16-cm`` (half floats of centimetres) or ``fixed`` (fixed point, ``step_m`` steps).
    """

    position: str
    bits: tuple[int, int, int] | None = None
    max_abs_m: float | None = None
    step_m: float | None = None
    max_sigma_m: float | None = None
    log_scale_cm: tuple[float, float] | None = None
    log_scale_m: tuple[float, float] | None = None
    #: a hard cap on the splats of one file (tiles keep each file under it)
    max_splats_per_file: int | None = None


@dataclass(frozen=True)
class PluginPreset:
    """One Unreal plugin, as data. ``max_splats`` None: the default budget is the file cap
    (``storage.max_splats_per_file``), or none where no practical cap is known."""

    name: str
    title: str
    verified: bool  # conventions read in the plugin's importer source
    ply_axes: Axes  # the plugin's fixed PLY -> UE mapping: ue = 100 * M @ ply
    note: str
    formats: tuple[str, ...] = ("ply",)
    sh_degree: int = 3
    max_splats: int | None = None
    factory_import: bool = True
    #: the import factory ``import_splat.py`` pins (None: let Unreal pick by extension)
    factory_class: str | None = None
    storage: Storage | None = None

    @property
    def file_cap(self) -> int | None:
        """Most splats one file may hold (None: no cap)."""
        return self.storage.max_splats_per_file if self.storage is not None else None

    @property
    def default_max_splats(self) -> int | None:
        """The splat budget when the user gives none."""
        return self.max_splats if self.max_splats is not None else self.file_cap


_PRESETS = (
    PluginPreset(
        "nanogs",
        "NanoGS (TimChen1383/NanoGaussianSplatting)",
        verified=True,
        ply_axes=RDF,
        note="Nanite-style LOD, handles millions; prune near-transparent splats (TSR ghosting).",
        factory_class="/Script/NanoGSEditor.GaussianSplatAssetFactory",
        # GaussianDataTypes.h PackSplatToUint4, GaussianSplatting.ush: float16 centimetres
        # (|x| <= 65504 cm), scales as 8-bit logarithms of centimetres over [-8, 14]
        storage=Storage("float16-cm", max_abs_m=65504.0 / 100.0, log_scale_cm=(-8.0, 14.0)),
    ),
    PluginPreset(
        "italink",
        "Italink GaussianSplattingForUnrealEngine",
        verified=True,
        ply_axes=ITALINK_AXES,
        note="Strict PLY header; uses only the DC colour; hard cap 10,485,760 splats per file.",
        sh_degree=0,
        factory_class="/Script/GaussianSplattingEditor.GaussianSplattingPointCloudAssetFactory",
        # GaussianSplattingPointCloud.cpp, Compression/Spz.cpp: 24-bit fixed point with 12
        # fractional bits, scales (ln s + 10) x 16 in a byte, at most 10 Mi splats per file
        storage=Storage(
            "fixed",
            max_abs_m=2.0**23 / 4096.0,
            step_m=1.0 / 4096.0,
            log_scale_m=(-10.0, 255.0 / 16.0 - 10.0),
            max_splats_per_file=10 * 1024 * 1024,
        ),
    ),
    PluginPreset(
        "picosplat",
        "PICOSplat (Pico-Developer/splat_unreal)",
        verified=True,
        ply_axes=RDF,
        note="DC colour only; positions quantised over the file's box (tiles help).",
        sh_degree=0,
        max_splats=1_000_000,
        factory_class="/Script/PICOSplatEditor.SplatAssetFactory",
        # SplatAsset.cpp, PackedTypes.h, unpacking.hlsl: 11/11/10-bit unorm over the box;
        # covariances as 10/11-bit floats with a 5-bit exponent: sigma <= 2.54 m
        storage=Storage(
            "unorm-box", bits=(11, 11, 10), max_sigma_m=math.sqrt(2.0**15 * (1 + 31 / 32)) / 100.0
        ),
    ),
    PluginPreset(
        "xv3dgs",
        "XVERSE XV3DGS / XScene (assumed: binary-only importer)",
        verified=False,
        ply_axes=RDF,
        note="Assumed COLMAP axes (not verifiable: no importer source); Niagara; Win64 only.",
        max_splats=2_000_000,
    ),
    PluginPreset(
        "luma",
        "Luma AI (assumed: binary-only importer)",
        verified=False,
        ply_axes=RDF,
        note="Assumed COLMAP axes (not verifiable); drag the .ply into the editor.",
        max_splats=2_000_000,
        factory_import=False,
    ),
    PluginPreset(
        "uefn",
        "UEFN / Unreal native Gaussian splats (assumed: binary-only importer)",
        verified=False,
        ply_axes=RDF,
        note="Imports binary PLY and SPZ (Epic's documentation); axes assumed (not verifiable).",
        formats=("ply", "spz"),
    ),
    PluginPreset(
        "generic",
        "Any INRIA-PLY reader",
        verified=False,
        ply_axes=RDF,
        note="INRIA 3DGS PLY, COLMAP 'RDF' axes (-Y up, +Z forward).",
    ),
)

#: The presets by name, in the order the CLI lists them.
PLUGINS: dict[str, PluginPreset] = {p.name: p for p in _PRESETS}


def preset(plugin: str) -> PluginPreset:
    """The preset of ``plugin``; a :class:`~splatkit.errors.UserError` naming the known ones."""
    if plugin not in PLUGINS:
        raise UserError(f"Unknown plugin {plugin!r}.", f"Use one of {', '.join(PLUGINS)}.")
    return PLUGINS[plugin]
