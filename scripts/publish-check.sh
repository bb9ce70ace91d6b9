#!/usr/bin/env bash
# Packages both libraries and builds each from its .crate file, as crates.io would take them,
# without uploading anything: `cargo publish --dry-run --workspace`, on fresh copies.
#
# Why a script: the dry run verifies the exporter against the packaged layer through a local
# registry under the target directory, and cargo unpacks that registry's crates into
# $CARGO_HOME/registry/src/-<hash>/, with a hash that repeats from one run to the next (the same
# for two checkouts in different directories). Cargo reuses an unpacked crate whose directory
# exists without comparing checksums, and treats a registry crate it has compiled as fresh
# whatever its files now say. So a later dry run on the same machine (a CI machine that clones
# into the same directory every time, or a maintainer between two releases) can build the
# exporter against the layer of an earlier run, and fail, or pass, for the wrong reason. This
# script removes the workspace's own unpacked crates and their compiled artifacts first, so
# every run checks the code it packaged. Nothing else in $CARGO_HOME is touched. The dry run
# builds in its own target directory (target/publish-check, from 30 seconds to 2 minutes on
# 2 cores the first time), so that cleaning it leaves the tests' builds alone.
#
# Usage: scripts/publish-check.sh [extra cargo publish arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

cargo_home="${CARGO_HOME:-$HOME/.cargo}"
# "name version" of every package the workspace publishes (publish = false packages are skipped).
own_crates=$(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
for package in json.load(sys.stdin)["packages"]:
    if package.get("publish") != []:
        print(package["name"], package["version"])
')
clean_args=()
while read -r name version; do
    clean_args+=(-p "$name")
    for unpacked in "$cargo_home"/registry/src/*/"$name-$version"; do
        if [ -d "$unpacked" ]; then
            echo "publish-check: removing a stale unpacked copy: $unpacked"
            rm -rf "$unpacked"
        fi
    done
done <<<"$own_crates"

export CARGO_TARGET_DIR=target/publish-check
if [ -d "$CARGO_TARGET_DIR" ]; then
    cargo clean --quiet "${clean_args[@]}"
fi
cargo publish --dry-run --workspace "$@"
