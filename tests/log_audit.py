"""Every log line of the whole test run, checked at the end: no secret, no full phone number.

The app's own formatter (bot/logs.py) renders each record at INFO and above, as in production,
into a file; when the session ends the file is searched for the test configuration's secrets
and for mainland mobile numbers that escaped the mask. Any hit fails the run, with the lines.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.logs import LogfmtFormatter

_PHONE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
_LOG = Path(tempfile.mkdtemp(prefix="bot-test-logs-")) / "run.log"


def _secrets() -> list[str]:
    from tests.bot.console.test_console import PASSWORD
    from tests.conftest import AES_KEY, API_TOKEN, SECRET

    return [SECRET, AES_KEY, API_TOKEN, PASSWORD]


@pytest.fixture(scope="session", autouse=True)
def every_log_line() -> Iterator[None]:
    """Write every record of the run through the production formatter."""
    handler = logging.FileHandler(_LOG, encoding="utf-8")
    handler.setFormatter(LogfmtFormatter())
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    # As bot/logs.py's setup_logging does in production. (Here the access log would also be
    # the WeChat stand-in's: WeChat's classic /cgi-bin/token takes the secret in its URL.)
    access = logging.getLogger("aiohttp.access")
    access_level = access.level
    access.setLevel(logging.WARNING)
    yield
    access.setLevel(access_level)
    root.removeHandler(handler)
    root.setLevel(level)
    handler.close()


# Under pytest-xdist each worker audits its own log; the controller adds up what they found.
_from_workers: dict[str, Any] = {"checked": 0, "leaks": []}


def _audit() -> tuple[int, list[str]]:
    """Lines checked in this process's log, and the leaking ones."""
    if not _LOG.exists():
        return 0, []
    secrets = _secrets()
    leaks, checked = [], 0
    with _LOG.open(encoding="utf-8", errors="replace") as lines:
        for checked, line in enumerate(lines, 1):
            if _PHONE.search(line) or any(secret in line for secret in secrets):
                leaks.append(f"{checked}: {line.strip()[:300]}")
    return checked, leaks


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist's controller: collect a finished worker's audit."""
    checked, leaks = node.workeroutput.get("log_audit", (0, []))
    _from_workers["checked"] += checked
    _from_workers["leaks"] += leaks


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a log line holds a secret or an unmasked phone number."""
    checked, leaks = _audit()
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller reports
        workeroutput["log_audit"] = (checked, leaks[:20])
        return
    checked += _from_workers["checked"]
    leaks += _from_workers["leaks"]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"log audit: {checked} lines checked, {len(leaks)} leaks")
    if leaks:
        if reporter is not None:
            for leak in leaks[:20]:
                reporter.write_line(f"  LEAK {leak}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
