#!/usr/bin/env python3
"""Run the whole test suite (extra arguments go to pytest).

    python3 scripts/test.py

Uses DATABASE_URL / REDIS_URL when set, otherwise starts embedded PostgreSQL and Redis
with their data under .var/, and stops them afterwards.
"""
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bootstrap  # noqa: E402

_bootstrap.reexec_in_virtualenv(__file__)
sys.path.insert(0, str(_bootstrap.ROOT))

from aerolith.devservices import running_services  # noqa: E402


def main() -> int:
    with running_services() as service_env:
        env = {**os.environ, **service_env, "DJANGO_SETTINGS_MODULE": "aerolith.settings.test"}
        result = subprocess.run([sys.executable, "-m", "pytest", *sys.argv[1:]],
                                env=env, cwd=_bootstrap.ROOT)
    # pytest exits 5 when it collected nothing: that must fail too, and it does (non-zero).
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
