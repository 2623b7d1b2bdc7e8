"""Shared first step of the two README commands: make sure `.venv` exists and holds
exactly what requirements.txt pins, then re-run the calling script inside it.

Only the standard library is used here, because this runs on a machine that has
nothing but Python.
"""
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
VENV_PYTHON = VENV / "bin" / "python"
REQUIREMENTS = ROOT / "requirements.txt"
STAMP = VENV / ".requirements.sha256"


def _requirements_digest() -> str:
    # pyproject.toml too: it declares the `aerolith` console script installed below.
    return hashlib.sha256(REQUIREMENTS.read_bytes() + (ROOT / "pyproject.toml").read_bytes()
                          ).hexdigest()


def ensure_virtualenv() -> None:
    """Create the virtualenv and install requirements when they changed."""
    if not VENV_PYTHON.exists():
        print(f"Creating virtualenv in {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = _requirements_digest()
    if STAMP.exists() and STAMP.read_text().strip() == digest:
        return
    print("Installing requirements (first run takes a minute or two) ...", flush=True)
    pip = [str(VENV_PYTHON), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["install", "--upgrade", "pip"], check=True)
    subprocess.run(pip + ["install", "-r", str(REQUIREMENTS)], check=True)
    # The CLI (aerolith_cli) as an editable install; requirements pin the setuptools that
    # builds it, so no isolated build environment has to be downloaded.
    subprocess.run(pip + ["install", "--no-build-isolation", "--no-deps", "-e", str(ROOT)],
                   check=True)
    STAMP.write_text(digest)


def reexec_in_virtualenv(script: str) -> None:
    """Run `script` with the virtualenv's Python unless we already are that Python."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    ensure_virtualenv()
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), script, *sys.argv[1:]])
