"""Files shipped with the package: versioned SQL, presets, templates.

The canonical copies of ``sql/`` and the default ``redaction_rules.yaml`` live at the top of
the repository, where a reviewer looks for them; the wheel carries them inside the package
(see ``force-include`` in pyproject.toml).  Running from a source checkout (``PYTHONPATH``
or an editable install) finds them at the repository root instead.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
_SOURCE_ROOT = PACKAGE_DIR.parent.parent  # plugin/ils_redact -> repository root


def package_file(relpath: str, *, source_fallback: str | None = None) -> Path:
    """Path of a shipped file, from the installed package or the source checkout."""
    inside = PACKAGE_DIR / relpath
    if inside.exists():
        return inside
    outside = _SOURCE_ROOT / (source_fallback or relpath)
    if outside.exists():
        return outside
    raise FileNotFoundError(f"ils-redact is missing its file {relpath}; reinstall the package")


def sql_dir(engine: str) -> Path:
    """Directory of versioned SQL for ``postgresql`` or ``mariadb``."""
    return package_file(f"sql/{engine}")
