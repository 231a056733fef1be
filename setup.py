"""ms_lars: builds the C++ CPU kernels into the package, so a wheel carries them (see README, Install)."""
import os
import runpy
import shutil
import sys

from setuptools import Distribution, find_packages, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = runpy.run_path(os.path.join(HERE, "ms_lars", "_version.py"))["__version__"]
KERNELS = runpy.run_path(os.path.join(HERE, "ms_lars", "_kernel_build.py"))


class BuildKernels(build_ext):
    """Compile ms_lars/kernels/*.cc into ms_lars/kernels/<kernel>-<digest>.so. Without a working
    compiler the package still builds, with a warning: its kernels are then compiled at first use,
    or the composed-op path runs."""

    def run(self):
        source_dir = os.path.join(HERE, "ms_lars", "kernels")
        target_dir = source_dir if self.inplace or getattr(self, "editable_mode", False) else \
            os.path.join(self.build_lib, "ms_lars", "kernels")
        os.makedirs(target_dir, exist_ok=True)
        compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
        for source in KERNELS["SOURCES"]:
            library = os.path.join(target_dir, KERNELS["library_name"](source, source_dir))
            # Compiled beside it and renamed: a process that has the library loaded keeps its copy.
            partial = f"{library}.{os.getpid()}.partial"
            error = "no C++ compiler found (set CXX or install g++)" if compiler is None else None
            if compiler is not None:
                try:
                    result = KERNELS["compile_kernel"](compiler, os.path.join(source_dir, source), partial)
                    error = None if result.returncode == 0 else result.stderr[-2000:]
                    if error is None:
                        os.replace(partial, library)
                        remove_stale_libraries(target_dir, library)
                except OSError as exc:
                    error = str(exc)
            if os.path.exists(partial):
                os.unlink(partial)
            if error is not None:
                print(f"ms_lars: WARNING: the CPU kernel {source} was not built ({error}); it will be compiled at "
                      f"first use, or the slower composed-op path will run", file=sys.stderr)

    def get_outputs(self):
        return []


def remove_stale_libraries(target_dir, library):
    """Remove the libraries an earlier build of the same kernel left (other digests), so that a
    reused build directory does not put them in a wheel."""
    stem = os.path.basename(library).rsplit("-", 1)[0]
    for name in os.listdir(target_dir):
        if name.startswith(stem + "-") and name.endswith(".so") and os.path.join(target_dir, name) != library:
            os.unlink(os.path.join(target_dir, name))


class BinaryDistribution(Distribution):
    """The wheel carries compiled kernels: it is for one platform and Python."""

    def has_ext_modules(self):
        return True


setup(
    name="ms_lars",
    version=VERSION,
    description="LARS and Lamb for MindSpore 2.x on CPU, GPU and Ascend: drop-in replacements for "
                "mindspore.nn.LARS and mindspore.nn.Lamb",
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["ms_lars", "ms_lars.*"]),
    # The kernels' C++ source ships too: a kernel is rebuilt at first use if it was edited.
    package_data={"ms_lars": ["kernels/*.cc", "kernels/*.h"]},
    cmdclass={"build_ext": BuildKernels},
    distclass=BinaryDistribution,
    python_requires=">=3.9",
    # numpy<2: with NumPy 2, MindSpore 2.10's mindspore.dataset fails ("Unable to avoid copy").
    # mindspore: the versions the suite was run on (README, "Tested MindSpore versions").
    install_requires=["mindspore>=2.7.0,<2.11", "numpy>=1.21,<2"],
    extras_require={
        "examples": ["scikit-learn>=1.0", "matplotlib>=3.5"],
        # The tests run scripts/train.py too, so they need what it needs.
        # pytest-xdist: pytest.ini runs the suite in two processes (it is bound by graph compiles).
        "test": ["pytest>=7", "pytest-xdist>=3", "hypothesis>=6.100", "scikit-learn>=1.0", "matplotlib>=3.5"],
    },
    license="Apache-2.0",
)
