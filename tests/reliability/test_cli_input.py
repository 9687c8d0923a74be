"""Bad input to the command line exits 2 (never 1, which a pipeline reads as a regression) with
one line on stderr and no traceback; a busy port or an unknown host too; no raw ESC bytes."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.helpers import example_analysis, run_verdict, write_analysis

WINDOW = ("--start", "2026-11-01T10:00:00Z", "--end", "2026-11-01T11:00:00Z")


def _config(tmp_path: Path, **changes: object) -> str:
    data = example_analysis()
    data.update(changes)
    return str(write_analysis(tmp_path / "a.yaml", data))


def _one_line_exit_2(args: list[str], expected: str) -> None:
    result = run_verdict(*args, timeout=60)
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in result.stderr and "\x1b" not in result.stderr


@pytest.mark.parametrize(
    ("flags", "changes", "expected"),
    [
        (["--timeout", "0"], {}, "--timeout: give seconds above 0"),
        (["--timeout", "-1"], {}, "--timeout: give seconds above 0"),
        (["--timeout", "inf"], {}, "--timeout: give seconds above 0"),
        (["--prometheus-url", "http://[::1"], {}, "not a valid URL"),
        (["--prometheus-url", "ftp://prometheus"], {}, "expected an http(s) URL"),
        ([], {"interval": "99999999999999d"}, "interval: a duration must be at most 366 days"),
        ([], {"interval": 0.0001}, "widen `interval` to at least 2s"),
    ],
)
def test_analyze_bad_input_exits_2_with_one_line(
    flags: list[str], changes: dict[str, object], expected: str, tmp_path: Path
) -> None:
    _one_line_exit_2(
        ["analyze", "--config", _config(tmp_path, **changes), *WINDOW, *flags], expected
    )


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (("--start", "2016-11-01T10:00:00Z", "--end", "2026-11-01T10:00:00Z"), "widen `interval`"),
        (
            ("--start", "2026-11-01T10:00:00Z", "--end", "2099-01-01T00:00:00Z"),
            "lies in the future",
        ),
        (("--start", "2026-11-01T10:00:00"), "has no zone"),
        (("--start", "0001-01-01T00:00:00+14:00"), "between 1970 and 2999"),
    ],
)
def test_analyze_windows_too_long_in_the_future_or_without_a_zone_exit_2(
    window: tuple[str, ...], expected: str, tmp_path: Path
) -> None:
    _one_line_exit_2(["analyze", "--config", _config(tmp_path), *window], expected)


def test_a_non_utf8_or_huge_analysis_file_exits_2(tmp_path: Path) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: \xff\xfe checkout\n")
    _one_line_exit_2(["analyze", "--config", str(binary), *WINDOW], "not UTF-8 text")
    huge = tmp_path / "huge.yaml"
    with huge.open("w") as out:
        out.write("name: checkout\n# " + "x" * (2 * 1024 * 1024) + "\n")
    _one_line_exit_2(["analyze", "--config", str(huge), *WINDOW], "larger than 1024 KiB")


def test_escape_bytes_from_user_input_are_not_printed_raw(tmp_path: Path) -> None:
    path = str(tmp_path / "\x1b[2J\x1b]0;owned\x07.yaml")
    _one_line_exit_2(["analyze", "--config", path, *WINDOW], "\\x1b[2J")


def test_serve_refuses_a_busy_port_a_bad_host_and_a_bad_log_level(tmp_path: Path) -> None:
    config = _config(tmp_path)
    store = f"sqlite:///{tmp_path / 'r.sqlite'}"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        _one_line_exit_2(
            ["serve", "--config", config, "--store", store, "--host", "127.0.0.1", "--port", port],
            f"cannot listen on 127.0.0.1:{port}: Address already in use",
        )
    _one_line_exit_2(
        ["serve", "--config", config, "--store", store, "--host", "no-such-host.invalid"],
        "--host: cannot listen on 'no-such-host.invalid'",
    )
    _one_line_exit_2(
        ["serve", "--config", config, "--store", store, "--log-level", "nonsense"],
        "--log-level: choose one of debug, info, warning, error",
    )
