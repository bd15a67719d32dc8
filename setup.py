"""Only the optional C extension; everything else is in pyproject.toml.

nncodec.codecs._planes_c (the planes loops, nncodec/codecs/planes_jit.py) is built when a C compiler is
there; `optional=True`: without one the install goes on and numpy (or numba, the `jit` extra) does the work.
"""

import sys

from setuptools import Extension, setup

setup(ext_modules=[Extension("nncodec.codecs._planes_c", ["nncodec/codecs/_planes_c.c"],
                             extra_compile_args=[] if sys.platform == "win32" else ["-O3"], optional=True)])
