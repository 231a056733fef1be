# ms_lars on aarch64 (the Ascend hosts' CPU), emulated on an x86-64 Debian/Ubuntu machine. Source it:
#
#   . scripts/aarch64_env.sh
#
# It exports
#   ARM_PY          the python of an aarch64 venv (Python 3.11 + MindSpore's aarch64 wheel), run by
#                   qemu-user through binfmt_misc
#   ARM_CXX         the aarch64 cross compiler, standing in for an aarch64 host's own g++
#   QEMU_LD_PREFIX  the aarch64 root those programs find their libraries in
# Built from Debian's arm64 packages, unpacked into a directory (not installed over this system), and
# from PyPI's aarch64 MindSpore wheel. Needs root (apt-get, binfmt_misc) and the network to Debian's
# and PyPI's archives; about 6 minutes the first time, then instant (ARM_ROOT, ARM_VENV are kept).
# Emulation is slow: use it for correctness, never for speed. Where something cannot be set up it
# says what, and ARM_PY is left pointing at no working python: the tests that need it skip.
#
# Settings: ARM_ROOT (default $TMPDIR/armroot), ARM_VENV ($TMPDIR/armvenv), ARM_MS (MindSpore, 2.10.0).
_ms_lars_tmp=$(python3 -c "import tempfile; print(tempfile.gettempdir())")
ARM_ROOT=${ARM_ROOT:-$_ms_lars_tmp/armroot}
ARM_VENV=${ARM_VENV:-$_ms_lars_tmp/armvenv}
ARM_MS=${ARM_MS:-2.10.0}
export QEMU_LD_PREFIX=$ARM_ROOT ARM_CXX=aarch64-linux-gnu-g++ ARM_PY=$ARM_VENV/bin/python

_ms_lars_apt() {   # apt-get install, with one 'apt-get update' where the lists are stale
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1; }
}

if ! command -v qemu-aarch64-static >/dev/null || ! command -v "$ARM_CXX" >/dev/null; then
  _ms_lars_apt g++-aarch64-linux-gnu qemu-user-static \
    || echo "aarch64_env: could not install g++-aarch64-linux-gnu and qemu-user-static"
fi

# binfmt_misc: the kernel hands aarch64 ELF files to qemu (F: the interpreter is opened now, so it
# works inside the venv's and other mount namespaces too).
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null
if [ -e /proc/sys/fs/binfmt_misc/register ] && [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  echo ':qemu-aarch64:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' \
    > /proc/sys/fs/binfmt_misc/register 2>/dev/null || echo "aarch64_env: could not register qemu-aarch64 with binfmt_misc"
fi

# An aarch64 Python 3.11 and the libraries MindSpore loads, from Debian's arm64 packages.
if [ ! -x "$ARM_ROOT/usr/bin/python3.11" ]; then
  dpkg --print-foreign-architectures | grep -q arm64 || { dpkg --add-architecture arm64; apt-get update -qq >/dev/null 2>&1; }
  _ms_lars_debs=$(mktemp -d)
  (cd "$_ms_lars_debs" && for p in python3.11-minimal libpython3.11-minimal libpython3.11-stdlib python3.11 \
      python3.11-venv libc6 libexpat1 zlib1g libffi8 libssl3 libsqlite3-0 libbz2-1.0 liblzma5 libncursesw6 libtinfo6 \
      libreadline8 libuuid1 libgcc-s1 libstdc++6 libgomp1 libcrypt1 libdb5.3 libnsl2 libtirpc3 libgssapi-krb5-2 \
      libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1; do
      apt-get download "$p:arm64" >/dev/null 2>&1 || echo "aarch64_env: no $p:arm64"
    done
    apt-get download python3-pip-whl python3-setuptools-whl >/dev/null 2>&1)
  mkdir -p "$ARM_ROOT"
  for _ms_lars_deb in "$_ms_lars_debs"/*.deb; do dpkg -x "$_ms_lars_deb" "$ARM_ROOT"; done
  rm -rf "$_ms_lars_debs"
fi

# The venv, with MindSpore's aarch64 wheel (pip cannot choose it from an x86-64 host: downloaded
# for the platform first), NumPy < 2 (as setup.py pins it) and pytest.
if [ -x "$ARM_ROOT/usr/bin/python3.11" ] && { [ ! -x "$ARM_PY" ] || ! "$ARM_PY" -c "import mindspore" >/dev/null 2>&1; }; then
  "$ARM_ROOT/usr/bin/python3.11" -m venv "$ARM_VENV"
  _ms_lars_wheels=$(mktemp -d)
  pip download -q --platform manylinux2014_aarch64 --python-version 3.11 --only-binary=:all: --no-deps \
    "mindspore==$ARM_MS" -d "$_ms_lars_wheels" >/dev/null 2>&1
  "$ARM_PY" -m pip install -q "$_ms_lars_wheels"/*.whl "numpy<2" pytest "hypothesis>=6.100" >/dev/null 2>&1 \
    || echo "aarch64_env: MindSpore $ARM_MS did not install into $ARM_VENV"
  rm -rf "$_ms_lars_wheels"
fi
unset _ms_lars_tmp _ms_lars_debs _ms_lars_deb _ms_lars_wheels
unset -f _ms_lars_apt
