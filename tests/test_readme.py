"""Every code block of README.md runs, in order, in one empty folder, as a reader would paste it,
so the README cannot drift from the code.

Two blocks are checked rather than run, because the test suite itself runs after them: the install
block (its torch pin and extras must match pyproject.toml) and the bare `pytest` block (there must be
a test suite for it to find).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
RUN_ALL = ("import sys\nfor i, code in enumerate(sys.argv[1:]):\n"
           "    exec(compile(code, f'<README python block {i}>', 'exec'), {'__name__': '__main__'})\n"
           "    print('\\0block ok', flush=True)\n")


def blocks() -> list[tuple[str, str]]:
    return [(lang, body) for lang, body in FENCE.findall(README.read_text())]


def check_install(body: str) -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    for line in body.splitlines():
        args = line.split("#")[0].split()
        assert args[:2] == ["pip", "install"], line
        for arg in args[2:]:
            arg = arg.strip('"')
            if arg.startswith("-e"):
                continue
            if arg.startswith(".["):
                for extra in arg[2:-1].split(","):
                    assert re.search(rf"^{re.escape(extra)} = \[", pyproject, re.M), f"no extra {extra!r}"
            elif arg == ".":
                continue
            else:
                name = re.split(r"[=<>]", arg)[0]
                assert re.search(rf'"{re.escape(name)}[><=]', pyproject), f"{name} is not a dependency"


def test_the_readme_has_the_promised_sections_and_blocks():
    text = README.read_text()
    for heading in ("## Lossy compression", "## Which command do I want?", "## Examples"):
        assert heading in text
    kinds = [lang for lang, _ in blocks()]
    assert kinds and set(kinds) <= {"bash", "python"}, kinds  # every block is one the test can run


def test_every_code_block_runs(tmp_path):
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
           "OMP_NUM_THREADS": "1"}
    ran = checked = 0
    python_blocks = []
    for i, (lang, body) in enumerate(blocks()):
        if lang == "bash" and "pip install" in body:
            check_install(body)
            checked += 1
        elif lang == "bash" and body.strip() == "pytest":
            assert (ROOT / "tests").is_dir() and "testpaths" in (ROOT / "pyproject.toml").read_text()
            checked += 1
        elif lang == "bash":
            p = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=tmp_path, env=env, capture_output=True,
                               text=True, timeout=300)
            assert p.returncode == 0, f"README block {i} failed:\n{body}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"
            ran += 1
        else:
            python_blocks.append(body)
    # The python blocks depend on no shell block: they run after them, in order, each in a fresh
    # namespace of one interpreter (so torch is imported once), as if pasted into a new session.
    p = subprocess.run([sys.executable, "-c", RUN_ALL, *python_blocks], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, f"a README python block failed:\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"
    assert p.stdout.count("\0block ok") == len(python_blocks)
    ran += len(python_blocks)
    assert checked == 2 and ran == len(blocks()) - 2


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "examples").glob("*.py")))
def test_the_readme_lists_every_example(script):
    assert f"`{script}" in README.read_text()
