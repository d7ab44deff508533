#!/usr/bin/env python3
"""Benchmark the Nix library on the benchmark closure, against the stock
pipelines in the same run (alternating, medians, after one warm-up each):

  nix-build --check of buildLayeredImage, zstd   vs  tar | zstd -T2 -3
  nix-build --check of buildLayeredImage, gz     vs  tar | pigz -p2 -n
  ./result | wc -c of streamLayeredImage         vs  tar | openssl dgst -sha256

`nix-build --check` rebuilds the image and compares it with the first
build, so each timed run is a full build that must also be bit-for-bit
identical.

Usage: bench/nix_images.py --closure STORE_PATH [--runs 3]
(bench/run.sh --nix builds the closure and the helper, then runs this.)
"""

import argparse
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from layers import closure, sizes, timed  # noqa: E402


def nix_build(helper, app, attr, compressor, check=False):
    cmd = ["nix-build", os.path.join(os.path.dirname(__file__), "image.nix"),
           "-A", attr, "--no-out-link",
           "--arg", "helper", helper, "--argstr", "app", app,
           "--argstr", "compressor", compressor]
    if check:
        cmd.append("--check")
    return cmd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--closure", required=True)
    ap.add_argument("--stevedore", default="target/release/stevedore")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    helper = os.path.abspath(args.stevedore)
    paths = closure(args.closure)
    tar = "tar --hard-dereference -cf - " + " ".join(paths) + " 2>/dev/null"
    q = lambda cmd: " ".join(f"'{c}'" for c in cmd)  # noqa: E731

    # First builds (not timed): the outputs that --check rebuilds.
    results = {}
    for attr, comp in [("build", "zstd"), ("build", "gz"), ("stream", "gz")]:
        out = subprocess.run(nix_build(helper, args.closure, attr, comp),
                             check=True, capture_output=True, text=True).stdout.strip()
        results[(attr, comp)] = out
    stream = results[("stream", "gz")]

    pairs = [
        ("nix-build buildLayeredImage, zstd",
         q(nix_build(helper, args.closure, "build", "zstd", True)) + " > /dev/null 2>&1",
         "tar | zstd -T2 -3", f"{tar} | zstd -q -T2 -3 > /dev/null"),
        ("nix-build buildLayeredImage, gz",
         q(nix_build(helper, args.closure, "build", "gz", True)) + " > /dev/null 2>&1",
         "tar | pigz -p2 -n", f"{tar} | pigz -p2 -n > /dev/null"),
        ("streamLayeredImage: ./result | wc -c",
         f"{stream} | wc -c > /dev/null",
         "tar | openssl dgst -sha256", f"{tar} | openssl dgst -sha256 > /dev/null"),
    ]
    total = sum(sizes(paths).values())
    print(f"closure: {len(paths)} paths, {total / 2**30:.2f} GiB; {args.runs} runs, medians",
          file=sys.stderr)
    print("| stevedore | wall | peak RSS | stock | wall | peak RSS | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    nothing = lambda: None  # noqa: E731
    for name, ours, stock_name, stock in pairs:
        timed(ours, nothing)
        timed(stock, nothing)
        a, b = [], []
        for _ in range(args.runs):
            a.append(timed(ours, nothing))
            b.append(timed(stock, nothing))
        wa = statistics.median(w for w, _ in a)
        wb = statistics.median(w for w, _ in b)
        ra = max(r for _, r in a) / 1024
        rb = max(r for _, r in b) / 1024
        print(f"| {name} | {wa:.2f} s | {ra:.0f} MiB | `{stock_name}` | {wb:.2f} s "
              f"| {rb:.0f} MiB | {wa / wb:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
