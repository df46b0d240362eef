"""Build the Cython kernels (minigrad._ops, _gemm, _checks, _optim_ops, _pool, _embedding,
_cross_entropy). Metadata lives in pyproject.toml.

The extension is optional: where no C compiler works (or the C fails to build), setup warns and
installs the pure-Python package, which then runs on the NumPy twins of the kernels. Set
MINIGRAD_REQUIRE_EXTENSION=1 to make such a failure an error instead.

Environment switches (read at build time):
  MINIGRAD_NATIVE=1        add -march=native (default: portable -O3)
  MINIGRAD_CYTHON_DEBUG=1  boundscheck/wraparound/initializedcheck on, -O0 -g
  MINIGRAD_CYTHON_WERROR=1 Cython warnings are errors (CI; e.g. a negative index where
                           wraparound is off, which the release build would make undefined)
Never -ffast-math: it would set flush-to-zero for the whole process. -fno-trapping-math only lets
gcc turn the float selects of the gate math into vector blends, and -fno-math-errno lets it
vectorize sqrtf (nothing reads errno); results are unchanged (every kernel output compared bit for
bit with and without it).
"""

import os
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, CompileError, ExecError, LinkError, PlatformError

DEBUG = os.environ.get("MINIGRAD_CYTHON_DEBUG") == "1"
if os.environ.get("MINIGRAD_CYTHON_WERROR") == "1":
    from Cython.Compiler import Options

    Options.warning_errors = True
NATIVE = os.environ.get("MINIGRAD_NATIVE") == "1"

if sys.platform == "win32":
    compile_args = ["/Od", "/Zi"] if DEBUG else ["/O2"]
else:
    # -fno-math-errno: adam_update's sqrtf loop vectorizes (3.8 -> 0.5 ns an element)
    compile_args = (["-O0", "-g"] if DEBUG else ["-O3"]) + ["-fno-trapping-math", "-fno-math-errno"]
    if NATIVE:
        compile_args.append("-march=native")

# One extension per concept (docs/kernels.md): the cell kernels (_ops), the GEMM layer and linear
# (_gemm), argument checks and workspaces (_checks), optimizer updates (_optim_ops), the
# embedding gradient (_embedding), softmax cross-entropy (_cross_entropy). Their C is in
# minigrad/csrc/ (headers found through the include path "minigrad").
MODULES = {
    "_checks": [],
    "_pool": ["csrc/mg_pool.h"],
    "_gemm": ["csrc/small_gemm.h", "csrc/mg_arrays.h", "csrc/mg_math.h"],
    "_ops": [
        "csrc/mg_cells.h",
        "csrc/mg_dropout.h",
        "csrc/small_gemm.h",
        "csrc/mg_arrays.h",
        "csrc/mg_math.h",
    ],
    "_optim_ops": ["csrc/mg_optim.h", "csrc/mg_math.h"],
    "_embedding": [],
    "_cross_entropy": ["csrc/mg_softmax.h", "csrc/mg_math.h"],
}
# the kernels' thread pool (_pool, csrc/mg_pool.h) runs on POSIX threads
link_args = [] if sys.platform == "win32" else ["-pthread"]
if sys.platform != "win32":
    compile_args.append("-pthread")
extensions = [
    Extension(
        f"minigrad.{name}",
        [f"minigrad/{name}.pyx"],
        include_dirs=[np.get_include(), "minigrad"],
        depends=[f"minigrad/{h}" for h in headers + ["csrc/mg_debug.h"]],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
        + ([("MINIGRAD_DEBUG", "1")] if DEBUG else []),
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    for name, headers in MODULES.items()
]


class optional_build_ext(build_ext):
    """build_ext for every extension listed, where a compiler failure skips that extension with
    a warning instead of failing the install (MINIGRAD_REQUIRE_EXTENSION=1: it fails)."""

    # PlatformError: no compiler found; ExecError/CCompilerError: the compiler cannot run;
    # CompileError/LinkError: it ran and failed; OSError: the build could not write its output.
    FAILURES = (CCompilerError, CompileError, ExecError, LinkError, PlatformError, OSError)

    def run(self):
        try:
            super().run()
        except self.FAILURES as e:
            self._skip(self.extensions, e)
            self.extensions = []

    def build_extensions(self):
        self._skipped = []
        super().build_extensions()
        # the skipped ones are no outputs: --inplace copies and installs only what was built
        self.extensions = [ext for ext in self.extensions if ext not in self._skipped]

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except self.FAILURES as e:
            self._skip([ext], e)
            self._skipped.append(ext)

    @staticmethod
    def _skip(exts, error):
        if os.environ.get("MINIGRAD_REQUIRE_EXTENSION") == "1":
            raise error
        names = ", ".join(ext.name for ext in exts) or "the extensions"
        print(
            f"WARNING: {names} not built ({type(error).__name__}: {error}). minigrad installs "
            "without it and runs on its NumPy kernels (slower). Install a C compiler and "
            "reinstall for the compiled kernels; MINIGRAD_REQUIRE_EXTENSION=1 makes this an "
            "error.",
            file=sys.stderr,
        )


directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
}

# The debug build generates its C apart, so switching modes regenerates it with the right
# directives.
setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        build_dir="build/cython-debug" if DEBUG else None,
    ),
    cmdclass={"build_ext": optional_build_ext},
)
