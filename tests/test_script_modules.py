"""Scripts of benchmarks/ and fuzz/ load side by side in one test session: both folders have a `common`
module, and loading one script must neither hand the other folder's `common` to a later script nor leave
its folder on sys.path."""

from __future__ import annotations

import sys

from script_modules import REPO, load_script


def test_two_folders_with_a_common_module_do_not_collide():
    bare_before = sys.modules.get("common")
    path_before = list(sys.path)
    fuzz_common = load_script("fuzz/common.py")
    bench_lossy = load_script("benchmarks/bench_lossy.py")  # imports benchmarks' `common` by bare name
    make_results = load_script("benchmarks/make_results.py")  # imports bench_lossy and protocol by bare name
    assert fuzz_common.__file__ == str(REPO / "fuzz" / "common.py")
    assert hasattr(fuzz_common, "fix_checksums") and not hasattr(fuzz_common, "load_average")
    bench_common = sys.modules["nncodec_benchmarks_common"]
    assert bench_common.__file__ == str(REPO / "benchmarks" / "common.py") and hasattr(bench_common, "load_average")
    assert make_results.bench_lossy is bench_lossy  # a sibling is loaded once and shared
    assert make_results.protocol is bench_lossy.protocol is sys.modules["nncodec_benchmarks_protocol"]
    assert sys.modules.get("common") is bare_before and "protocol" not in sys.modules
    assert sys.path == path_before
    assert load_script("fuzz/common.py") is fuzz_common
