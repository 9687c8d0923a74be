"""Run `verdict` on a pseudo-terminal of a given width, as a person at a terminal sees it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path

from analyzer.render import LOOK_LEGEND
from tests.helpers import REPO

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


@dataclass(frozen=True)
class Screen:
    """What a command showed on the terminal (stdout and stderr, escapes removed)."""

    code: int
    text: str
    columns: int

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    def too_wide(self) -> list[str]:
        """Lines longer than the terminal (they would wrap)."""
        return [line for line in self.lines if len(line) > self.columns]


def run_in_terminal(
    *args: str,
    columns: int,
    env: dict[str, str] | None = None,
    cwd: Path = REPO,
    timeout: float = 180.0,
) -> Screen:
    """`verdict *args` with stdin, stdout and stderr on a pseudo-terminal `columns` wide (and
    `COLUMNS` set), run to its end; what it showed, escapes removed."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    environment = {**os.environ, "COLUMNS": str(columns), "LINES": "50", "TERM": "xterm"}
    environment.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "analyzer.cli", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        cwd=cwd,
        env={**environment, **(env or {})},
        close_fds=True,
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the terminal closed: the command ended
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif process.poll() is not None:
                break
        else:
            process.kill()
            raise TimeoutError(f"verdict {' '.join(args)} ran past {timeout:g} s")
        code = process.wait(timeout=30)
    finally:
        with contextlib.suppress(OSError):
            os.close(leader)
        if process.poll() is None:
            process.kill()
            process.wait()
    text = b"".join(chunks).decode("utf-8", errors="replace").replace("\r\n", "\n")
    return Screen(code=code, text=_ESCAPES.sub("", text), columns=columns)


METRICS = ("error-rate", "latency-p99", "success-rate")
FIGURE = r"(?:\d[\d.]* (?:%|ms|s)|n/a)"
CHUNK = re.compile(
    rf"^(?P<name>[a-z0-9-]+) (?P<verdict>pass|fail|inconclusive|no data) "
    rf"(?P<canary>{FIGURE}) vs (?P<baseline>{FIGURE})$"
)


def flat(text: str) -> str:
    """The text as one line of single spaces (a terminal wraps long lines anywhere)."""
    return " ".join(text.split())


def look_chunks(screen: Screen) -> list[list[dict[str, str]]]:
    """Every look's metric figures, from the look lines (between the legend and the table)."""
    lines = screen.lines
    start = lines.index(LOOK_LEGEND) + 1
    looks: list[list[dict[str, str]]] = []
    message = False  # a hold's message (and its wrapped lines) between two looks
    for line in lines[start:]:
        if line.startswith(("held at ", "metric hold cleared")):
            message = True
        elif line.startswith("step "):
            message = False
            looks.append([])
        elif message:
            continue
        elif line.startswith("  ") and looks:
            for chunk in line.strip().split("   "):
                found = CHUNK.match(chunk)
                assert found, f"not a metric's figures: {chunk!r}"
                looks[-1].append(found.groupdict())
        else:
            break
    return looks


def assert_units(looks: list[list[dict[str, str]]]) -> None:
    for look in looks:
        assert [c["name"] for c in look] == list(METRICS)
        for chunk in look:
            unit = "ms" if chunk["name"] == "latency-p99" else "%"
            for side in ("canary", "baseline"):
                assert chunk[side] == "n/a" or chunk[side].endswith(f" {unit}"), chunk
