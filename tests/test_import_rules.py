"""The boundary between the core and its plugins, as a rule a test enforces (.importlinter).

`lint-imports` runs on the sources of this checkout (the core and every plugin on PYTHONPATH, not
the installed copies): the core imports no plugin, a plugin imports only the plugins it declares,
and no package has an import cycle, function-level imports included. Two more checks keep the
rules honest: the contracts' lists follow each plugin's pyproject.toml, and every third-party
import of a distribution is one it declares.
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path


if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = sorted(p.parent for p in (ROOT / "shlax_plugins").glob("*/pyproject.toml"))


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\s\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _distribution(folder: Path) -> tuple[str, str, set[str]]:
    """(distribution, import package, declared distributions: dependencies and extras)."""
    meta = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    declared = list(meta.get("dependencies", []))
    declared += [r for extra in meta.get("optional-dependencies", {}).values() for r in extra]
    packages = [p.name for p in folder.iterdir() if (p / "__init__.py").is_file()]
    assert len(packages) == 1, f"{folder}: one import package per distribution, found {packages}"
    return meta["name"], packages[0], {_name(r) for r in declared}


DISTS = {folder: _distribution(folder) for folder in [ROOT, *PLUGINS]}


def _sources_path() -> str:
    return os.pathsep.join([str(ROOT), *(str(p) for p in PLUGINS)])


def test_lint_imports_passes() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": _sources_path()})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " 0 broken" in proc.stdout


def test_contracts_follow_what_each_plugin_declares() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    by_package = {pkg: (dist, declared) for dist, pkg, declared in DISTS.values()}
    plugin_packages = {pkg for folder, (_d, pkg, _x) in DISTS.items() if folder != ROOT}
    roots = set(config["importlinter"]["root_packages"].split())
    assert roots == plugin_packages | {"shlax_core"}, "a plugin is missing from root_packages"
    assert set(config["importlinter:contract:core-imports-no-plugin"]["forbidden_modules"].split()) == plugin_packages
    assert set(config["importlinter:contract:no-cycles"]["ancestors"].split()) == roots
    dist_package = {dist.lower(): pkg for dist, pkg, _x in DISTS.values()}
    for pkg in sorted(plugin_packages):
        _dist, declared = by_package[pkg]
        allowed = {dist_package[d] for d in declared if d in dist_package}
        forbidden = set(config[f"importlinter:contract:{pkg}"]["forbidden_modules"].split())
        assert forbidden == plugin_packages - allowed - {"shlax_core", pkg}, (
            f"{pkg}: .importlinter's forbidden list does not follow its pyproject.toml")


def test_every_third_party_import_is_declared() -> None:
    """What a distribution imports from outside the standard library, it declares (dependencies or
    extras): a plugin that works only because the core happens to install click is a plugin
    that breaks the day the core stops."""
    import grimp

    sys.path[:0] = [str(ROOT), *(str(p) for p in PLUGINS)]
    try:
        graph = grimp.build_graph(*(pkg for _d, pkg, _x in DISTS.values()), include_external_packages=True,
                                  cache_dir=None, exclude_type_checking_imports=True)
    finally:
        del sys.path[:len(PLUGINS) + 1]
    owners = {m: {d.lower().replace("_", "-") for d in ds} for m, ds in packages_distributions().items()}
    ours = {pkg: dist.lower() for dist, pkg, _x in DISTS.values()}
    undeclared = []
    for _folder, (dist, pkg, declared) in DISTS.items():
        for module in sorted(_modules(graph, pkg)):
            for imported in graph.find_modules_directly_imported_by(module):
                top = imported.split(".")[0]
                if top == pkg or top in sys.stdlib_module_names or top == "__future__":
                    continue
                wanted = {ours[top]} if top in ours else owners.get(top, {f"? (module {top})"})
                if not wanted & declared:
                    undeclared.append(f"{module} imports {imported}: {dist} does not declare {' or '.join(sorted(wanted))}")
    assert undeclared == []


def _modules(graph, package: str) -> set[str]:
    return {m for m in graph.modules if m == package or m.startswith(package + ".")}
