"""Compiles the gettext catalogues (``evidence_daemon/locale/*/LC_MESSAGES/*.po``) into the
``.mo`` files the package ships, when the package is built (wheel, sdist install, .deb).

The ``.mo`` files are build products and never checked in; everything else about the package
is in pyproject.toml. Babel is a build requirement only: at run time gettext (stdlib) reads
the compiled files.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


def compile_catalogues(source_root: Path, target_root: Path) -> list[Path]:
    """Every ``<lang>/LC_MESSAGES/<domain>.po`` under ``source_root`` compiled beside its
    counterpart under ``target_root``; a fuzzy translation is left out (English shows)."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    written = []
    for po_path in sorted(source_root.glob("*/LC_MESSAGES/*.po")):
        with po_path.open("rb") as po_file:
            catalogue = read_po(po_file, locale=po_path.parent.parent.name)
        mo_path = target_root / po_path.relative_to(source_root).with_suffix(".mo")
        mo_path.parent.mkdir(parents=True, exist_ok=True)
        with mo_path.open("wb") as mo_file:
            write_mo(mo_file, catalogue, use_fuzzy=False)
        written.append(mo_path)
    return written


class BuildWithCatalogues(build_py):
    """build_py, then the compiled catalogues into the build (or, editable, the source tree)."""

    def run(self) -> None:
        super().run()
        source = Path(__file__).resolve().parent / "evidence_daemon" / "locale"
        target = (source if getattr(self, "editable_mode", False)
                  else Path(self.build_lib) / "evidence_daemon" / "locale")
        compile_catalogues(source, target)


setup(cmdclass={"build_py": BuildWithCatalogues})
