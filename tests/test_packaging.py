"""What the code imports is declared in pyproject.toml, and the lock pins every declared package at a version it allows."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from sustainable_ipa.config import PROJECT_ROOT

CODE_DIRS = ("src", "bench", "tests")


def declared() -> list[Requirement]:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project.get("optional-dependencies", {}).values() for r in group]
    return [Requirement(r) for r in project["dependencies"] + extras]


def local_modules() -> set[str]:
    """Top-level names of this repository: what src/ and bench/ hold, and any module under tests/ (pytest puts
    each test folder on the path, so `fakes` and `helpers` are imported by name)."""
    paths = [*(PROJECT_ROOT / "src").iterdir(), *(PROJECT_ROOT / "bench").iterdir(), *(PROJECT_ROOT / "tests").rglob("*.py")]
    return {p.stem for p in paths if p.suffix == ".py" or (p / "__init__.py").is_file()}


def imported_modules() -> dict[str, str]:
    """Top-level module → the first file importing it, for every absolute import in the code."""
    found: dict[str, str] = {}
    for folder in CODE_DIRS:
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(PROJECT_ROOT)))
    return found


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (PROJECT_ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = version
    return pins


def test_every_third_party_import_is_declared():
    third_party = {m: f for m, f in imported_modules().items()
                   if m not in sys.stdlib_module_names and m not in local_modules()}
    distributions = packages_distributions()
    names = {canonicalize_name(r.name) for r in declared()}
    undeclared = {module: (distributions.get(module), where) for module, where in third_party.items()
                  if not {canonicalize_name(d) for d in distributions.get(module, [])} & names}
    assert undeclared == {}, "imported (module: distribution, file) but not declared in pyproject.toml"


def test_the_lock_pins_every_declared_package_at_a_version_it_allows():
    pins = lock_pins()
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), \
            f"requirements.lock pins {name}=={pins[name]}, pyproject.toml asks {requirement}: run `make lock`"
