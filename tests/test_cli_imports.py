"""Start at once: `verdict --help` and `verdict analyze` import only what they use.

Asserted on the modules a fresh interpreter has loaded (the figures, as ratios to a bare
`python -c pass`, are in `python -m benchmarks cost`).
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import REPO

HEAVY = ("scipy", "scipy.stats", "numpy", "pydantic", "rich", "fastapi", "uvicorn", "starlette",
         "kubernetes", "structlog", "requests", "yaml")


def _loaded_after(code: str) -> set[str]:
    probe = (
        "import json, sys\n"
        f"{code}\n"
        f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120,
        check=True,
    )
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def _help(*args: str) -> str:
    return (
        "import contextlib, io\n"
        "from analyzer.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        f"    main({list(args)!r})"
    )


def test_help_imports_nothing_heavy() -> None:
    assert _loaded_after(_help("--help")) == set()
    # typer reads parameter types through pydantic; nothing else is needed for a command's help
    assert _loaded_after(_help("analyze", "--help")) <= {"pydantic"}


def test_the_analyze_path_leaves_out_scipy_stats_and_the_web_stack() -> None:
    # what `verdict analyze` loads before it runs (`load_analyze_path`)
    loaded = _loaded_after("import analyzer.cli\nanalyzer.cli.load_analyze_path()")
    assert {"numpy", "pydantic", "requests"} <= loaded  # it does use these
    assert "scipy" not in loaded  # the rate bounds' special functions are numpy's
    assert not loaded & {"fastapi", "uvicorn", "starlette", "kubernetes"}


def test_mann_whitney_still_works_when_scipy_stats_comes_late() -> None:
    loaded = _loaded_after(
        "from analyzer.stats.mann_whitney import mann_whitney_compare\n"
        "import sys\n"
        "assert 'scipy.stats' not in sys.modules\n"
        "r = mann_whitney_compare([1.0, 2.0, 3.0, 4.0] * 5, [1.5, 2.5, 3.5, 4.5] * 5, direction='increase')\n"
        "assert 0.0 <= r.p_value <= 1.0, r"
    )
    assert "scipy.stats" in loaded
