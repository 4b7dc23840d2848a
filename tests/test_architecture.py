"""The tree is the architecture, checked rather than hoped for.

- The layers in `.importlinter` (foundations at the bottom, CLI and dashboard on top) hold for every import,
  at module level or inside a function: `lint-imports` (import-linter) reads them all.
- No module over 400 lines, no function over 60, at most 15 modules in one folder.
- The README's Architecture section is the one map: it lists every subpackage, lists none that is gone,
  and every `cifar_core/...` path the README names exists.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cifar_core"
SOURCES = ("cifar_core", "studio", "app_pages")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_MODULES_PER_FOLDER = 15


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` over the packages under `root`, with the project's contracts."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())",
                           "--config", str(ROOT / ".importlinter"), "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_every_import_follows_the_layers():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "BROKEN" not in result.stdout and result.stdout.count("KEPT") == 2


def test_the_layer_check_fails_on_an_upward_import_inside_a_function(tmp_path):
    for name in ("cifar_core", "studio"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    planted = tmp_path / "cifar_core" / "base" / "errors.py"
    planted.write_text(planted.read_text() + "\n\ndef _upward():\n    from cifar_core.training import trainer  # noqa: F401\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0 and "cifar_core.base.errors -> cifar_core.training.trainer" in result.stdout


def python_files() -> list[Path]:
    files = [ROOT / "app.py"]
    for name in SOURCES:
        files += sorted((ROOT / name).rglob("*.py"))
    return [f for f in files if "__pycache__" not in f.parts]


def size_problems(files: list[Path], root: Path = ROOT) -> list[str]:
    problems = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(root)
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            problems.append(f"{rel}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    problems.append(f"{rel}:{node.lineno} {node.name}(): {length} lines")
    folders: dict[Path, int] = {}
    for path in files:
        folders[path.parent] = folders.get(path.parent, 0) + (path.name != "__init__.py")
    problems += [f"{folder.relative_to(root)}/: {n} modules" for folder, n in folders.items() if n > MAX_MODULES_PER_FOLDER]
    return problems


def test_modules_functions_and_folders_stay_small():
    assert size_problems(python_files()) == []


def test_the_size_check_finds_a_long_function_a_long_module_and_a_crowded_folder(tmp_path):
    (tmp_path / "long.py").write_text("def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES)
    (tmp_path / "big.py").write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    for i in range(MAX_MODULES_PER_FOLDER - 1):
        (tmp_path / f"m{i}.py").write_text("")
    assert size_problems(sorted(tmp_path.glob("*.py")), tmp_path) == [
        f"big.py: {MAX_MODULE_LINES + 1} lines", f"long.py:1 f(): {MAX_FUNCTION_LINES + 1} lines", f"./: {MAX_MODULES_PER_FOLDER + 1} modules"]


# ---------------------------------------------------------------- the README's map


def subpackages(package: Path = PACKAGE) -> set[str]:
    """Every subpackage of the engine, as the README writes it: `cifar_core/data/layouts/`."""
    return {str(init.parent.relative_to(package.parent)) + "/" for init in package.rglob("__init__.py")
            if init.parent != package and "__pycache__" not in init.parts}


def architecture_section(readme: str) -> str:
    match = re.search(r"^## Architecture\n(.*?)(?=^## )", readme + "\n## ", re.S | re.M)
    assert match, "the README has no '## Architecture' section"
    return match.group(1)


def map_problems(readme: str, packages: set[str], root: Path = ROOT) -> list[str]:
    section = architecture_section(readme)
    listed = set(re.findall(r"^[-|*] *`(cifar_core/[\w/]+/)`", section, re.M))
    problems = [f"{p} is not in the README's Architecture section" for p in sorted(packages - listed)]
    problems += [f"{p} is in the README's Architecture section but is not a subpackage" for p in sorted(listed - packages)]
    for path in sorted(set(re.findall(r"`(cifar_core/[\w/.]+)`", readme))):
        if not (root / path).exists():
            problems.append(f"the README names {path}, which does not exist")
    return problems


def test_the_readme_architecture_is_the_map_of_the_engine():
    assert map_problems((ROOT / "README.md").read_text(encoding="utf-8"), subpackages()) == []


def test_the_map_check_fails_on_a_subpackage_without_a_line_and_on_a_stale_path():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert map_problems(readme, subpackages() | {"cifar_core/newthing/"}) == [
        "cifar_core/newthing/ is not in the README's Architecture section"]
    stale = readme.replace("## Architecture\n", "## Architecture\n\n- `cifar_core/gone/` nothing any more\n", 1)
    problems = map_problems(stale, subpackages())
    assert "cifar_core/gone/ is in the README's Architecture section but is not a subpackage" in problems
    assert "the README names cifar_core/gone/, which does not exist" in problems


@pytest.mark.parametrize("module", ["cifar_core.cli.main"])
def test_the_cli_imports_no_benchmark_and_no_browser(module):
    code = (f"import sys, {module}; bad = sorted(m for m in sys.modules if m.startswith(('cifar_core.bench', 'playwright', "
            "'streamlit', 'studio'))); print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
