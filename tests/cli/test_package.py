"""Packaging: a non-editable `pip install .` must carry everything simu-bench reads at run time.

The expected contents are computed from the source tree, so the tests stay right as files are
added: every .py and .yaml file under `simu_bench/`, `tasks/` (installed as `simu_bench.tasks`)
and `baselines/` (installed as `simu_bench.baselines`) must be in the wheel, and every folder
that holds such files must be a package listed in pyproject.toml.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# source folder -> where it lands in the installed package (pyproject's package-dir mapping)
SOURCES = {"simu_bench": "simu_bench", "tasks": "simu_bench/tasks", "baselines": "simu_bench/baselines"}
SHIPPED = (".py", ".yaml", ".yml")
# never copied into the build tree: outputs, caches and environments that a build must not read
SCRATCH = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                 ".benchmarks", "runs", "results")


def shipped_sources(root: Path = ROOT) -> dict[str, Path]:
    """Installed path (inside the wheel) -> source file, for every file the wheel must hold."""
    files = {}
    for folder, installed in SOURCES.items():
        for path in sorted((root / folder).rglob("*")):
            if path.is_file() and path.suffix in SHIPPED and "__pycache__" not in path.parts:
                files[f"{installed}/{path.relative_to(root / folder).as_posix()}"] = path
    return files


def package_of(installed: str) -> str:
    return installed.rsplit("/", 1)[0].replace("/", ".")


def test_every_source_folder_is_a_listed_package():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(config["packages"])
    needed = {package_of(installed) for installed in shipped_sources()}
    missing = sorted(needed - listed)
    assert not missing, (
        f"add {missing} to [tool.setuptools] packages in pyproject.toml, or their files are not installed"
    )
    for package, folder in config["package-dir"].items():
        assert SOURCES[folder] == package.replace(".", "/"), (package, folder)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> tuple[Path, Path]:
    """(wheel, the source copy it was built from); a build writes build/ and *.egg-info there."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"
    shutil.copytree(ROOT, source, ignore=SCRATCH)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "-w", str(tmp / "dist"), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (path,) = (tmp / "dist").glob("simu_bench-*.whl")
    return path, source


@pytest.mark.packaging
def test_wheel_holds_every_runtime_file(wheel):
    path, source_copy = wheel
    expected = shipped_sources(source_copy)  # the tree as built (the working tree may move on)
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        missing = sorted(set(expected) - names)
        assert not missing, f"not in the wheel (packages {sorted({package_of(m) for m in missing})}): {missing}"
        for installed, source in expected.items():
            assert archive.read(installed) == source.read_bytes(), installed
        # nothing lands at the top level of site-packages except the package and its metadata
        top = {name.split("/")[0] for name in names}
        assert {t for t in top if not t.endswith(".dist-info")} == {"simu_bench"}


@pytest.mark.packaging
def test_wheel_declares_the_console_script(wheel):
    with zipfile.ZipFile(wheel[0]) as archive:
        (entry_points,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
        parser = configparser.ConfigParser()
        parser.read_string(archive.read(entry_points).decode())
    assert parser["console_scripts"]["simu-bench"] == "simu_bench.cli:main"


@pytest.mark.packaging
def test_unpacked_wheel_runs_without_the_source_tree(wheel, tmp_path):
    """Import from the wheel's files only, then ask every subcommand's parser for --help."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel[0]) as archive:
        archive.extractall(site)
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import simu_bench, simu_bench.cli as cli;"
        "assert simu_bench.__file__.startswith(sys.argv[1]), simu_bench.__file__;"
        "cli.build_parser().parse_args(['--help'])"
    )
    result = subprocess.run([sys.executable, "-c", script, str(site)], capture_output=True, text=True, cwd=tmp_path,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: simu-bench" in result.stdout


def test_readme_test_command_is_what_ci_runs():
    """The README's test command and .ci/run must not drift apart."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Run the tests", 1)[1]
    command = section.split("```bash\n", 1)[1].split("\n```", 1)[0].strip()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    steps = [line.strip() for line in ci if line.strip().startswith(("pip install", "python -m pytest"))]
    assert " && ".join(steps) == command
    install = readme.split("## Install and run", 1)[1].split("```bash\n", 1)[1].split("\n```", 1)[0]
    assert install.startswith(steps[0] + " && ")  # the CPU install is the one CI tests
