"""The library as an installable package: pyproject.toml against the requirements files, and a real
``pip install`` into a fresh virtual environment outside the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "contrastive-explorer"


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirements_file(name: str) -> dict[str, str]:
    """``{canonical name: specifier}`` of a requirements file's own lines (``-r`` and options skipped)."""
    out = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        out[canonicalize_name(req.name)] = str(req.specifier)
    return out


def _declared(reqs: list[str]) -> dict[str, str]:
    """The same for a pyproject list, leaving out references to the project's own extras."""
    out = {}
    for text in reqs:
        req = Requirement(text)
        if canonicalize_name(req.name) != PROJECT:
            out[canonicalize_name(req.name)] = str(req.specifier)
    return out


def test_requirements_txt_is_the_library_plus_the_app_extra():
    project = _pyproject()["project"]
    declared = _declared(project["dependencies"]) | _declared(project["optional-dependencies"]["app"])
    assert declared == _requirements_file("requirements.txt")


def test_requirements_dev_txt_is_every_other_extra():
    """requirements-dev.txt (what CI installs) holds the bench, tensorboard, onnx and dev extras, so the
    suite exercises every optional feature."""
    extras = _pyproject()["project"]["optional-dependencies"]
    declared = {}
    for name in ("bench", "tensorboard", "onnx", "dev"):
        declared |= _declared(extras[name])
    assert declared == _requirements_file("requirements-dev.txt")
    assert (ROOT / "requirements-dev.txt").read_text().splitlines()[0] == "-r requirements.txt"


def test_console_script_does_not_shadow_a_command():
    scripts = _pyproject()["project"]["scripts"]
    assert scripts == {"contrastive-explorer": "cl.cli:console_main"}


@pytest.mark.slow
def test_pip_install_into_a_fresh_venv_then_import_help_and_train(tmp_path):
    """``pip install`` of a copy of the checkout's package files into a new virtual environment, then
    from a folder outside the checkout: ``import cl`` resolves to the installed copy, the installed
    metadata declares requirements.txt's library dependencies, ``contrastive-explorer --help`` works
    and a digits training writes a checkpoint whose card names its data.

    The venv sees this interpreter's site-packages (``--system-site-packages``), so PyTorch is not
    downloaded again; pip still resolves every declared dependency against them (no ``--no-deps``),
    and builds with the setuptools already installed (``--no-build-isolation``). What this proves:
    the build backend, the package list, the entry point and the dependency metadata work, and the
    library runs without the checkout on its path. What it does not: that PyPI's newest releases of
    the dependencies still fit (CI's install of requirements-dev.txt checks that)."""
    src = tmp_path / "src"
    src.mkdir()
    # A copy: an in-tree build would leave build/ and *.egg-info in the checkout.
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "cl", src / "cl", ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    # --without-pip: the venv runs this interpreter's pip and setuptools (a venv's own bundled
    # setuptools may be too old to build a wheel without the `wheel` package).
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    pip = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-build-isolation", str(src)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert pip.returncode == 0, pip.stderr[-3000:]

    outside = tmp_path / "elsewhere"
    outside.mkdir()

    def run(*cmd, timeout=300):
        return subprocess.run(list(cmd), capture_output=True, text=True, cwd=outside, env=env, timeout=timeout)

    probe = run(str(py), "-c", "import cl, importlib.metadata as m, json; "
                "print(json.dumps([cl.__file__, cl.__version__, m.requires('contrastive-explorer')]))")
    assert probe.returncode == 0, probe.stderr
    where, version, requires = json.loads(probe.stdout)
    assert Path(where).resolve().is_relative_to(venv.resolve()), where
    assert version == _pyproject()["project"]["version"]
    core = {canonicalize_name(Requirement(r).name): str(Requirement(r).specifier) for r in requires
            if Requirement(r).marker is None}
    assert core == _declared(_pyproject()["project"]["dependencies"])

    script = venv / "bin" / "contrastive-explorer"
    helped = run(str(script), "--help")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: contrastive-explorer") and "train" in helped.stdout

    out = outside / "digits.safetensors"
    trained = run(str(script), "train", "--dataset", "digits", "--epochs", "2", "--out", str(out), "--json")
    assert trained.returncode == 0, trained.stderr[-3000:]
    payload = json.loads(trained.stdout.strip().splitlines()[-1])
    assert payload["epochs_completed"] == 2 and payload["train_data"]["dataset"] == "digits"
    assert payload["metrics"]["paper"]["n_test"] > 0
    card = run(str(py), "-m", "cl", "card", str(out), "--json")
    assert card.returncode == 0, card.stderr
    assert json.loads(card.stdout.strip().splitlines()[-1])["data"]["n_images"] == payload["n_train"]
