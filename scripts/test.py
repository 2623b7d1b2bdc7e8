#!/usr/bin/env python3
"""Run the whole test suite (extra arguments go to pytest).

    python3 scripts/test.py

Uses DATABASE_URL / REDIS_URL when set, otherwise starts embedded PostgreSQL and Redis
with their data under .var/, and stops them afterwards. The browser tests (tests/browser/)
drive Debian's Chromium: when /usr/bin/chromium is missing and this runs as root on a
Debian-like system, it is installed with apt-get first; otherwise those tests fail and say
how to install it.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bootstrap  # noqa: E402

_bootstrap.reexec_in_virtualenv(__file__)
sys.path.insert(0, str(_bootstrap.ROOT))

from aerolith.devservices import running_services  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def ensure_chromium() -> None:
    """Install Debian's Chromium for the browser tests when it is missing and we can (root,
    apt-get); never a browser download of Playwright's own."""
    if os.environ.get("AEROLITH_CHROMIUM") or os.path.exists(CHROMIUM):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"test.py: {CHROMIUM} is missing and cannot be installed here (needs root and apt-get); "
              "the browser tests will fail. Install it: apt-get install -y chromium", flush=True)
        return
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("test.py: installing Chromium for the browser tests: apt-get update && apt-get install -y "
          "--no-install-recommends chromium", flush=True)
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]):
        if subprocess.run(command, env=apt_env).returncode != 0:
            print(f"test.py: `{' '.join(command)}` failed; the browser tests will fail.", flush=True)
            return


def main() -> int:
    ensure_chromium()
    with running_services() as service_env:
        env = {**os.environ, **service_env, "DJANGO_SETTINGS_MODULE": "aerolith.settings.test"}
        result = subprocess.run([sys.executable, "-m", "pytest", *sys.argv[1:]],
                                env=env, cwd=_bootstrap.ROOT)
    # pytest exits 5 when it collected nothing: that must fail too, and it does (non-zero).
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
