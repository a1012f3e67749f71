"""The packaging files agree with each other and the package imports cleanly."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_python = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert conda_python == ["python=3.11"]
    env_requirements = [r for r in pip_section if not r.startswith("-e")]
    assert "-e ." in pip_section, "environment.yml must install this project"
    assert {_name(r) for r in env_requirements} == {_name(r) for r in project["dependencies"]}
    # Same version specifiers too, except torch, which the environment pins to the CPU wheel.
    pinned = {_name(r): r for r in project["dependencies"]}
    for requirement in env_requirements:
        if _name(requirement) != "torch":
            assert requirement == pinned[_name(requirement)]


def test_torch_requirement_admits_the_pinned_cpu_wheel():
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch = next(Requirement(r) for r in project["dependencies"] if _name(r) == "torch")
    assert torch.specifier.contains("2.13.0")
    assert not torch.specifier.contains("3.0.0"), "an open range would pull a CUDA build"


def test_import_does_no_io_and_exposes_the_public_api(tmp_path):
    # Import in a fresh interpreter with an empty working directory: nothing is created.
    code = "import ettlib, os; print(sorted(os.listdir('.')))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_console_script_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["ett"] == "ettlib.cli:main"


def _fresh_import(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=ROOT).stdout.strip()


def test_only_the_transformer_adapter_imports_torch():
    # River, the baselines, the registry and the package itself work without PyTorch.
    code = ("import sys, numpy as np\n"
            "import ettlib\n"
            "from ettlib.training.adapters import RiverAdapter, PersistenceAdapter, TrainingAdapter\n"
            "from ettlib.training import registry\n"
            "river = registry.create('river', seed=1)\n"
            "river.restore_state(river.checkpoint_state())\n"
            "registry.create('persistence').predict(np.ones((3, 2)), ('close', 'volume'))\n"
            "print('torch' in sys.modules)\n"
            "from ettlib.training.adapters import TransformerAdapter\n"
            "print('torch' in sys.modules)\n")
    assert _fresh_import(code).splitlines() == ["False", "True"]


def test_the_package_exports_what_a_user_needs():
    import ettlib
    from ettlib import errors

    seed_names = {"InferenceTrainingCoordinator", "InferenceFrameReference", "TrainingEventSubscriber",
                  "CandleCompletionEvent", "PivotEvent", "DataProvider", "ReplayEngine"}
    entry_points = {"Workbench", "Session", "run_experiment", "ExperimentConfig"}
    adapters = {"TransformerAdapter", "RealTrainingAdapter", "RiverAdapter", "PersistenceAdapter",
                "TrainingAdapter"}
    error_names = {n for n in errors.__all__ if n[0].isupper()} | {"ExperimentError", "ReportError"}
    assert set(ettlib.__all__) == seed_names | entry_points | adapters | error_names
    for name in ettlib.__all__:  # each resolves (the lazy ones on first use)
        assert getattr(ettlib, name).__name__ == {"RealTrainingAdapter": "TransformerAdapter"}.get(name, name)
    assert issubclass(ettlib.ExperimentError, ettlib.EttError)
    # importing the package loads neither torch nor papermill (a fresh interpreter)
    assert _fresh_import("import sys, ettlib; print('torch' in sys.modules, 'papermill' in sys.modules)") \
        == "False False"
