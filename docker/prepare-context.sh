#!/usr/bin/env bash
# Prepare the docker build context target/docker-context/ for docker/Dockerfile:
# the release `dynamo` binary (debug info stripped) and every shared library
# `ldd` says it loads, each copied to its own path under rootfs/, plus the
# dynamic loader and a minimal /etc/nsswitch.conf so host names resolve.
#
#   docker/prepare-context.sh             # cargo build --release, then collect
#   docker/prepare-context.sh --no-build  # collect an already built binary
#
# The binary is taken from $CARGO_TARGET_DIR/release (default target/release);
# the context always goes to target/docker-context in the repository, where
# docker-compose.yml looks for it.
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    *) echo "usage: $0 [--no-build]" >&2; exit 2 ;;
  esac
done

if [ "$build" = 1 ]; then
  cargo build --release -p dynamo-http --bin dynamo
fi
bin="${CARGO_TARGET_DIR:-target}/release/dynamo"
if [ ! -x "$bin" ]; then
  echo "prepare-context: $bin not found; build it: cargo build --release -p dynamo-http" >&2
  exit 1
fi

ctx=target/docker-context
rm -rf "$ctx"
mkdir -p "$ctx/rootfs/etc"
if command -v objcopy >/dev/null 2>&1; then
  objcopy --strip-debug "$bin" "$ctx/rootfs/dynamo"
else
  cp "$bin" "$ctx/rootfs/dynamo"
fi

# Every library ldd resolves ("name => /path (addr)") and the loader
# ("/lib64/ld-linux-x86-64.so.2 (addr)"); the vDSO has no file.
libs=$(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
if [ -z "$libs" ]; then
  echo "prepare-context: ldd found no libraries for $bin" >&2
  exit 1
fi
if ldd "$bin" | grep -q "not found"; then
  echo "prepare-context: $bin links libraries that are missing here:" >&2
  ldd "$bin" | grep "not found" >&2
  exit 1
fi
for lib in $libs; do
  mkdir -p "$ctx/rootfs$(dirname "$lib")"
  cp -L "$lib" "$ctx/rootfs$lib"
done
# glibc resolves host names (the peer addresses of the other nodes) through
# /etc/hosts and Docker's DNS; its NSS modules are built in since 2.34.
printf 'hosts: files dns\n' > "$ctx/rootfs/etc/nsswitch.conf"

echo "prepared $ctx: $(du -sh "$ctx" | cut -f1) ($(echo "$libs" | wc -l) libraries)"
