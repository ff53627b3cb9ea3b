#!/bin/sh
# Installs what nestvm needs to build, test and benchmark, from Debian 12's packages, if missing.
set -eu
PKGS="cmake ninja-build g++ binutils make ccache python3 libzydis-dev libfmt-dev libgtest-dev libgmock-dev \
libbenchmark-dev nlohmann-json3-dev qemu-system-x86"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
