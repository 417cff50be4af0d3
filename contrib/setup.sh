#!/usr/bin/env bash
# Set up a development machine (Debian/Ubuntu): the test bed's system packages, then a
# virtualenv in .venv with pveoci and its test and lint tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(openssh-server openssh-client openssh-sftp-server lxc busybox-static zstd ca-certificates qemu-user-static
          podman containerd docker.io skopeo umoci docker-registry)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi
}

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
python=${PYTHON:-python3}
if ! "$python" -m venv --help >/dev/null 2>&1; then missing+=(python3-venv); fi
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null; then
    echo "setup: installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian's docker-registry starts a registry on every address (port 5000) where systemd runs: the tests start
    # their own on loopback, so the one the package enables goes again.
    if [[ " ${missing[*]} " == *" docker-registry "* ]] && command -v systemctl >/dev/null \
        && [ -d /run/systemd/system ]; then
      as_root systemctl disable --now docker-registry >/dev/null 2>&1 || true
    fi
  else
    echo "setup: no apt-get here; install ${missing[*]} yourself for the test bed" >&2
  fi
fi

# As on a Proxmox VE node: root owns the ids 100000-165535 that unprivileged containers are mapped to, so that
# lxc-usernsexec (newuidmap) can unpack as an unprivileged container's root (tests/runtime/test_swapscript.py).
for ids in /etc/subuid /etc/subgid; do
  if ! grep -qs '^root:100000:65536$' "$ids"; then
    as_root sh -c "echo root:100000:65536 >> $ids" || echo "setup: could not add root's ids to $ids" >&2
  fi
done

if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
echo "setup: ready (.venv)"
