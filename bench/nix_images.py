#!/usr/bin/env python3
"""Benchmark the Nix library on the benchmark closure, against the stock
pipelines in the same run (alternating, medians, after one warm-up each):

  nix-build --check of buildLayeredImage, zstd   vs  tar | zstd -T2 -3,
      both as a plain pipeline and as a derivation (nix-build --check)
  nix-build --check of buildLayeredImage, gz     vs  tar | pigz -p2 -n, same
  ./result | wc -c of streamLayeredImage         vs  tar | openssl dgst -sha256

`nix-build --check` rebuilds the image and compares it with the first
build, so each timed run is a full build that must also be bit-for-bit
identical.

Usage: bench/nix_images.py --closure STORE_PATH [--runs 3]
(bench/run.sh --nix builds the closure and the helper, then runs this.)
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from layers import closure, compare, nix_build_cmd, sizes  # noqa: E402


def nix_build(helper, app, attr, compressor, check=False, paths=""):
    cmd = nix_build_cmd(os.path.join(os.path.dirname(__file__), "image.nix"), attr, helper,
                        app=app, compressor=compressor, paths=paths)
    if check:
        cmd.append("--check")
    return cmd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--closure", required=True)
    ap.add_argument("--stevedore", default="target/release/stevedore")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    # A copy of the helper, so a rebuild of target/ during the run cannot
    # change the derivations between the first build and the checks.
    snapshot = tempfile.mkdtemp(prefix="stevedore-bench-")
    helper = os.path.join(snapshot, "stevedore")
    shutil.copy2(args.stevedore, helper)
    paths = closure(args.closure)
    tar = "tar --hard-dereference -cf - " + " ".join(paths) + " 2>/dev/null"
    q = lambda cmd: " ".join(f"'{c}'" for c in cmd)  # noqa: E731

    # First builds (not timed): the outputs that --check rebuilds.
    results = {}
    joined = " ".join(paths)
    for attr, comp in [("build", "zstd"), ("build", "gz"), ("stream", "gz"),
                       ("stockZstd", "gz"), ("stockGz", "gz")]:
        out = subprocess.run(nix_build(helper, args.closure, attr, comp, paths=joined),
                             check=True, capture_output=True, text=True).stdout.strip()
        results[(attr, comp)] = out
    stream = results[("stream", "gz")]

    def check(attr, comp):
        return q(nix_build(helper, args.closure, attr, comp, True, joined)) + " > /dev/null 2>&1"

    pairs = [
        ("nix-build buildLayeredImage, zstd", check("build", "zstd"),
         "nix-build of tar | zstd -T2 -3", check("stockZstd", "gz")),
        ("nix-build buildLayeredImage, zstd", check("build", "zstd"),
         "tar | zstd -T2 -3", f"{tar} | zstd -q -T2 -3 > /dev/null"),
        ("nix-build buildLayeredImage, gz", check("build", "gz"),
         "nix-build of tar | pigz -p2 -n", check("stockGz", "gz")),
        ("nix-build buildLayeredImage, gz", check("build", "gz"),
         "tar | pigz -p2 -n", f"{tar} | pigz -p2 -n > /dev/null"),
        ("streamLayeredImage: ./result | wc -c",
         f"{stream} | wc -c > /dev/null",
         "tar | openssl dgst -sha256", f"{tar} | openssl dgst -sha256 > /dev/null"),
    ]
    total = sum(sizes(paths).values())
    print(f"closure: {len(paths)} paths, {total / 2**30:.2f} GiB; {args.runs} runs, medians",
          file=sys.stderr)
    compare(pairs, args.runs, lambda: None)

if __name__ == "__main__":
    main()
