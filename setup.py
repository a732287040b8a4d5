"""Builds the native extensions only; metadata lives in pyproject.toml (docs/conventions.md §1).

Every ``src/osgp/_native/*.pyx`` is one extension.  The C sources it links are
named in the ``# distutils: sources = ...`` header of the .pyx itself, so adding
a kernel family never touches this file.

Environment switches:
  OSGP_DEBUG=1      -O0 -g, assertions on, Cython line tracing off
  OSGP_SANITIZE=1   debug build with -fsanitize=address,undefined (GCC/Clang);
                    run Python with LD_PRELOAD=$(gcc -print-file-name=libasan.so)
  OSGP_NO_EXTENSIONS=1 at build time: build nothing (pure-Python install)
"""

import glob
import os
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def extensions():
    if _flag("OSGP_NO_EXTENSIONS"):
        return []
    from Cython.Build import cythonize
    from setuptools import Extension

    msvc = sys.platform == "win32"
    compile_args, link_args, macros = [], [], [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
    if msvc:
        compile_args += ["/O2"]
    elif _flag("OSGP_DEBUG") or _flag("OSGP_SANITIZE"):
        compile_args += ["-O0", "-g3", "-fno-omit-frame-pointer"]
        if _flag("OSGP_SANITIZE"):
            san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
            compile_args += san
            link_args += san
    else:
        # No -march flags: special instructions only behind runtime dispatch
        # (docs/conventions.md §13).
        compile_args += ["-O3", "-fno-strict-aliasing"]
        macros.append(("NDEBUG", "1"))
    if not msvc:
        compile_args += ["-std=c99", "-Wall", "-Wno-unused-function", "-Wno-unreachable-code"]
        # Only PyInit_* is exported (PyMODINIT_FUNC marks it visible): calls between
        # csrc/ files and their globals are then direct, not through the PLT/GOT.
        compile_args += ["-fvisibility=hidden"]

    exts = []
    for pyx in sorted(glob.glob(os.path.join("src", "osgp", "_native", "*.pyx"))):
        mod = "osgp._native." + os.path.splitext(os.path.basename(pyx))[0]
        exts.append(
            Extension(
                mod,
                [pyx],
                include_dirs=["csrc"],
                define_macros=macros,
                extra_compile_args=compile_args,
                extra_link_args=link_args,
            )
        )
    return cythonize(
        exts,
        language_level=3,
        include_path=["src"],
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
            "auto_pickle": False,  # key-holding objects are not picklable
            "autotestdict": False,
        },
        nthreads=int(os.environ.get("OSGP_BUILD_JOBS", "2")),
    )


setup(ext_modules=extensions())
