"""Import deepctr-torch without its network version check; everything else imports it from here.

deepctr-torch 0.3.0 runs, at import time, ``deepctr_torch.utils.check_version``
from its package ``__init__``: a thread that calls
``requests.get("https://pypi.python.org/pypi/deepctr-torch/json")``. A library
import must not open a network connection (offline machines hang on DNS, CI
sandboxes fail, and the thread prints to stdout when it cannot connect).

How it is neutralised, without patching anything global: before the package
is imported, this module loads deepctr's own ``utils.py`` under its real name
``deepctr_torch.utils``, replaces that module's ``check_version`` with a no-op,
and registers it in :data:`sys.modules`. The package ``__init__`` then finds
the already-loaded submodule (``from .utils import check_version``) and calls
the no-op. Nothing is monkeypatched in ``threading``, ``socket`` or
``requests``, so there is no race with the thread and no side effect on other
libraries. If ``deepctr_torch`` was already imported by someone else before this
module (the check has then already run), :data:`VERSION_CHECK_SUPPRESSED` is
False; the project only imports deepctr through here.

Warnings: with torch 2.14 the import and the forward/backward passes of WDL,
PNN and DeepFM raise no warning beyond the ``DeprecationWarning`` that
pyproject's pytest filter already ignores for ``deepctr_torch.*`` (checked by
``tests/test_deepctr_baselines.py`` under ``-W error``), so nothing is
suppressed here.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_PACKAGE = "deepctr_torch"
_UTILS = f"{_PACKAGE}.utils"


def _no_version_check(version: str) -> None:
    """Stand-in for ``deepctr_torch.utils.check_version``: no thread, no network."""
    del version


def _preload_quiet_utils() -> ModuleType:
    """Execute deepctr's real ``utils.py`` as ``deepctr_torch.utils`` with a no-op version check."""
    spec = importlib.util.find_spec(_PACKAGE)  # a top-level find_spec imports nothing
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("deepctr-torch is not installed (pip install deepctr-torch)")
    path = Path(next(iter(spec.submodule_search_locations))) / "utils.py"
    utils_spec = importlib.util.spec_from_file_location(_UTILS, path)
    if utils_spec is None or utils_spec.loader is None:
        raise ImportError(f"{path}: cannot load deepctr_torch.utils")
    utils = importlib.util.module_from_spec(utils_spec)
    utils_spec.loader.exec_module(utils)
    if not hasattr(utils, "check_version"):
        raise ImportError(f"{path}: no check_version; this deepctr-torch version is not supported")
    utils.check_version = _no_version_check  # type: ignore[attr-defined]
    return utils


def _import_deepctr() -> tuple[ModuleType, bool]:
    """Import ``deepctr_torch``; returns the package and whether the version check was suppressed."""
    if _PACKAGE in sys.modules:  # imported before us: the check has already run
        return sys.modules[_PACKAGE], False
    utils = _preload_quiet_utils()
    sys.modules[_UTILS] = utils
    try:
        package = importlib.import_module(_PACKAGE)
    except BaseException:
        sys.modules.pop(_UTILS, None)
        raise
    if sys.modules.get(_UTILS) is not utils:  # pragma: no cover - would mean a changed loader
        raise ImportError("deepctr_torch.utils was reloaded; the version check may have run")
    if getattr(package, "utils", None) is not utils:
        package.utils = utils  # the attribute the normal import machinery would have set
    return package, True


deepctr_torch, VERSION_CHECK_SUPPRESSED = _import_deepctr()

from deepctr_torch.inputs import (  # noqa: E402  (must follow the quiet import above)
    SparseFeat,
    VarLenSparseFeat,
    build_input_features,
)
from deepctr_torch.models import PNN, WDL, DeepFM  # noqa: E402
from deepctr_torch.models.basemodel import BaseModel  # noqa: E402

DEEPCTR_VERSION: str = str(deepctr_torch.__version__)

__all__ = [
    "DEEPCTR_VERSION",
    "PNN",
    "VERSION_CHECK_SUPPRESSED",
    "WDL",
    "BaseModel",
    "DeepFM",
    "SparseFeat",
    "VarLenSparseFeat",
    "build_input_features",
]
