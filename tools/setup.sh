#!/usr/bin/env bash
# Install everything prune-and-export needs on a fresh Debian 12 machine: the cross toolchains and
# emulators (apt), then the Python packages into ./.venv. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  g++-aarch64-linux-gnu g++-arm-linux-gnueabihf   # cross compilers for the ARM Linux targets
  qemu-user qemu-system-arm                       # run ARM binaries and Cortex-M firmware here
  gcc-arm-none-eabi libnewlib-arm-none-eabi       # Cortex-M firmware
  openssh-server openssh-client                   # the ssh runner, tested against an sshd on loopback
  iproute2                                        # ip netns: the Ray cluster test runs in a network namespace of its own
  clang libclang-rt-14-dev                        # libFuzzer for the frame parser (the runtime is not a hard dependency of clang)
  gcc g++ make cmake                               # the x86_64 target's toolchain (stub, libraries)
)
python3 -m venv --help >/dev/null 2>&1 || APT_PACKAGES+=(python3-venv)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 is required, found {sys.version.split()[0]}"'
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
echo "setup: pip install -e .[test,sb3,ray] into .venv"
.venv/bin/python -m pip install -q -e '.[test,sb3,ray]'
.venv/bin/python -c 'import sklearn.datasets; sklearn.datasets.load_digits()'  # the autoencoder's data ships with scikit-learn
echo "setup: done ($(.venv/bin/python -c 'import torch, tvm, onnxruntime; print("torch", torch.__version__, "tvm", tvm.__version__, "onnxruntime", onnxruntime.__version__)'))"
