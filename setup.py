"""The build's one step that pyproject.toml cannot say: ship ``unreal_export/import_splat.py``.

The Unreal editor script lives at the repository's top (it runs inside Unreal, not in splatkit);
an installed splatkit copies it beside every export, so the wheel carries it as
``splatkit/unreal_export/import_splat.py`` (:data:`splatkit.export.manifest.EDITOR_SCRIPT`).
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

EDITOR_SCRIPTS = ["unreal_export/import_splat.py"]


class BuildPyWithEditorScript(build_py):
    def run(self):
        super().run()
        for rel in EDITOR_SCRIPTS:
            target = Path(self.build_lib) / "splatkit" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(__file__).parent / rel, target)


setup(cmdclass={"build_py": BuildPyWithEditorScript})
