"""operator/Dockerfile builds a small, non-root image whose entry point is ``kubetune operator``.

There is no Docker engine here, so the Dockerfile is checked as text against the repository
(base pinned, non-root numeric user matching the chart, entry point, copied paths that exist and
pass the build context's ignore file), and the promise it relies on is checked for real: the
operator imports without the trainer's heavy stack (torch, transformers, ...), which the image
does not install.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "operator" / "Dockerfile").read_text(encoding="utf-8")
IGNORE = (REPO / "operator" / "Dockerfile.dockerignore").read_text(encoding="utf-8")
HEAVY = ("torch", "transformers", "peft", "deepspeed", "datasets", "accelerate", "bitsandbytes", "numpy")


def _instructions(name: str) -> list[str]:
    return [line.split(None, 1)[1] for line in DOCKERFILE.splitlines() if line.startswith(f"{name} ")]


def _in_context(path: str) -> bool:
    """Whether ``path`` survives the allowlist-style ignore file (last matching pattern wins)."""
    included = True
    for raw in IGNORE.splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            included = negate
    return included


def test_base_image_is_a_pinned_slim_python() -> None:
    (arg,) = [a for a in _instructions("ARG") if a.startswith("PYTHON_IMAGE=")]
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+", arg), arg
    assert _instructions("FROM") == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]


def test_runs_as_the_chart_non_root_user_with_the_operator_entry_point() -> None:
    (user,) = _instructions("USER")
    uid, gid = (int(part) for part in user.split(":"))
    assert uid != 0 and gid != 0
    values = yaml.safe_load((REPO / "charts" / "kubetune" / "values.yaml").read_text(encoding="utf-8"))
    assert (values["podSecurityContext"]["runAsUser"], values["podSecurityContext"]["runAsGroup"]) == (uid, gid)
    assert json.loads(_instructions("ENTRYPOINT")[0]) == ["kubetune", "operator"]


def test_copied_sources_exist_and_are_in_the_build_context() -> None:
    sources = []
    for copy in _instructions("COPY"):
        if copy.startswith("--from="):
            continue
        *paths, _destination = copy.split()
        sources += paths
    assert sources == ["pyproject.toml", "README.md", "operator/kubetune/", "trainer_image/kubetune_trainer/"]
    for source in sources:
        assert (REPO / source).exists(), source
        assert _in_context(source.rstrip("/")), f"{source} is excluded by operator/Dockerfile.dockerignore"
    assert not _in_context(".venv") and not _in_context(".cluster") and not _in_context("tests")


def test_installs_the_package_without_extras() -> None:
    assert "pip install ." in DOCKERFILE and "[trainer" not in DOCKERFILE and "[serve" not in DOCKERFILE
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    names = {re.split(r"[<>=\[; ]", dep, maxsplit=1)[0].lower() for dep in dependencies}
    assert not names & set(HEAVY), names & set(HEAVY)


def test_the_operator_imports_without_the_trainer_stack() -> None:
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {HEAVY!r}:\n"
        "            raise ImportError(f'the operator image has no {name}')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import kubetune.cli, kubetune.handlers.app, kubetune.handlers.finetunejob, kubetune.handlers.modeldeployment\n"
        "print('imported')\n"
    )
    result = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0 and "imported" in result.stdout, result.stderr[-3000:]
