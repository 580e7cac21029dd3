"""What the console's browser tests share: Debian's Chromium driven by Playwright (never a browser of
Playwright's own download), a server of the module's own, and a screenshot of every page they see, saved
under the test output folder (``PROCESSION_TEST_OUTPUT``, by default ``test-output/`` in the project)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("PROCESSION_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
OUTPUT = Path(os.environ.get("PROCESSION_TEST_OUTPUT", Path(__file__).parents[2] / "test-output")) / "console"
FLAGS = [  # no call home: this machine's network is closed, and a test must not depend on one
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]  # fmt: skip


def chromium_or_skip() -> str:
    """The system Chromium's path; without one the tests are skipped (failed under CI=true)."""
    if not Path(CHROMIUM).exists():
        message = f"no Chromium at {CHROMIUM} (Debian's chromium package; `make test` installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


class Shots:
    """Screenshots numbered in the order taken, named by the test and the page."""

    def __init__(self, test: str) -> None:
        self.folder = OUTPUT / re.sub(r"[^A-Za-z0-9_.-]+", "_", test)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.n = 0

    def __call__(self, page: object, name: str) -> Path:
        self.n += 1
        path = self.folder / f"{self.n:02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
        page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
        return path
