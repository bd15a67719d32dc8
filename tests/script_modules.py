"""Loading a script of benchmarks/ or fuzz/ in a test: by path, under a name nothing else has.

The scripts import their siblings by bare name (`import protocol`, `from common import ...`) after
putting their own folder on sys.path, as they must when run from the command line. Both folders have a
`common.py`, so a test that leaves either folder on sys.path decides which `common` every later import
gets (fuzz/common.py against benchmarks/common.py broke a test). Here the folder is on sys.path only
while the script loads; the sibling modules it imported are then kept under `nncodec_<folder>_<stem>`
names (reused by the next script of the same folder) and the bare names are given back.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent


def script_module_name(path: Path) -> str:
    return f"nncodec_{path.parent.name}_{path.stem}"


def load_script(relative: str) -> ModuleType:
    """The module of the script at `relative` (e.g. "benchmarks/bench_lossy.py"), loaded once per session.
    An import error is raised, never skipped: a test of a script that cannot load must fail."""
    path = REPO / relative
    name = script_module_name(path)
    if name in sys.modules:
        return sys.modules[name]
    folder = path.parent
    siblings = {p.stem: script_module_name(p) for p in folder.glob("*.py")}
    hidden = {stem: sys.modules.pop(stem) for stem in siblings if stem in sys.modules}
    sys.modules.update({stem: sys.modules[unique] for stem, unique in siblings.items() if unique in sys.modules})
    saved_path = list(sys.path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(folder))
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        sys.path[:] = saved_path
        for stem, unique in siblings.items():
            loaded = sys.modules.pop(stem, None)
            if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve().parent == folder:
                sys.modules[unique] = loaded
        sys.modules.update(hidden)
    return module
