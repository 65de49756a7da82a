#!/bin/sh
# Installs the Debian packages parlua needs to build, test and benchmark,
# but only those that are missing. Usage: scripts/deps.sh [build|test|bench]
set -eu
need="make gcc pkg-config liblua5.4-dev libreadline-dev lua5.4 lua-cjson"
case "${1:-build}" in
  test)  need="$need lua-busted clang libclang-rt-14-dev bsdutils luarocks openmpi-bin libopenmpi-dev" ;;  # bsdutils: script(1)
  bench) need="$need python3" ;;
esac
missing=""
for p in $need; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "parlua needs these Debian packages:$missing" >&2
  echo "install them with: sudo apt-get install$missing" >&2
  exit 1
fi
echo "installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq $missing >/dev/null
