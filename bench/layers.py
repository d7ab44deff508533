#!/usr/bin/env python3
"""Benchmark stevedore's layer writing against the stock pipelines.

Runs, in the same session and on the same closure, each pair of commands
alternately (after one warm-up run each, so the page cache is equally warm)
and prints medians, ratios and peak RSS as a Markdown table:

  stream (uncompressed, N layers)   vs  tar -cf - PATHS | openssl dgst -sha256
  build --compress zstd (oci-dir)   vs  tar -cf - PATHS | zstd -T2 -3
  build --compress gzip (oci-dir)   vs  tar -cf - PATHS | pigz -p2 -n

Usage:
  bench/layers.py --closure STORE_PATH [--runs 5] [--layers 100]

STORE_PATH is the top of the closure, e.g. the `app` of
../shared/bench/fixture.nix (see bench/run.sh, which builds it).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile


def closure(path):
    out = subprocess.run(["nix-store", "-qR", path], check=True,
                         capture_output=True, text=True).stdout.split()
    return sorted(out)


def sizes(paths):
    """narSize of each path, for a layer plan that gives big paths their own
    layer (as the popularity order roughly does)."""
    out = subprocess.run(["nix-store", "-q", "--size"] + paths, check=True,
                         capture_output=True, text=True).stdout.split()
    return dict(zip(paths, map(int, out)))


def spec(paths, layers):
    size = sizes(paths)
    ordered = sorted(paths, key=lambda p: (-size[p], p))
    plan = [[p] for p in ordered[:layers - 1]] + [ordered[layers - 1:]]
    plan = [l for l in plan if l]
    return {"version": 1, "name": "bench", "tag": "latest",
            "layers": [{"paths": l} for l in plan]}


def timed(cmd, cleanup):
    """Wall seconds and peak RSS (KiB) of a shell command, via GNU time."""
    cleanup()
    with tempfile.NamedTemporaryFile("r") as rep:
        subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", rep.name,
                        "sh", "-c", cmd], check=True)
        wall, rss = rep.read().split()[-2:]
    cleanup()
    return float(wall), int(rss)


def nix_build_cmd(file, attr, helper, **strings):
    """`nix-build FILE -A ATTR --no-out-link --arg helper HELPER` with each
    keyword as an `--argstr`."""
    cmd = ["nix-build", file, "-A", attr, "--no-out-link", "--arg", "helper", helper]
    for name, value in strings.items():
        cmd += ["--argstr", name, value]
    return cmd


def wall(runs_of, median):
    """A median wall time with the fastest and slowest of the runs."""
    walls = [w for w, _ in runs_of]
    return f"{median:.2f} s ({min(walls):.2f} to {max(walls):.2f})"


def compare(pairs, runs, cleanup):
    """Times each (name, command, stock name, stock command) pair: one
    warm-up run each, then `runs` alternating runs; prints a Markdown table
    of medians with the fastest and slowest run, peak RSS and the ratio
    of the medians."""
    print("| stevedore | wall (fastest to slowest) | peak RSS | stock "
          "| wall (fastest to slowest) | peak RSS | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, ours, stock_name, stock in pairs:
        timed(ours, cleanup)
        timed(stock, cleanup)
        a, b = [], []
        for _ in range(runs):
            a.append(timed(ours, cleanup))
            b.append(timed(stock, cleanup))
        wa = statistics.median(w for w, _ in a)
        wb = statistics.median(w for w, _ in b)
        ra = max(r for _, r in a) / 1024
        rb = max(r for _, r in b) / 1024
        cell = stock_name.replace("|", "\\|")
        print(f"| `{name}` | {wall(a, wa)} | {ra:.0f} MiB | `{cell}` | {wall(b, wb)} "
              f"| {rb:.0f} MiB | {wa / wb:.2f}x |", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--closure", required=True)
    ap.add_argument("--stevedore", default="target/release/stevedore")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--layers", type=int, default=100)
    ap.add_argument("--work", default=None,
                    help="scratch directory for outputs (default: a temp dir)")
    args = ap.parse_args()

    paths = closure(args.closure)
    work = args.work or tempfile.mkdtemp(prefix="stevedore-bench-")
    os.makedirs(work, exist_ok=True)
    spec_path = os.path.join(work, "spec.json")
    with open(spec_path, "w") as f:
        json.dump(spec(paths, args.layers), f)
    sd = os.path.abspath(args.stevedore)
    out = os.path.join(work, "out")
    quoted = " ".join(paths)
    # --hard-dereference: an image holds the content of every hard link (an
    # optimised store has many), so the stock pass must read it too.
    tar = f"tar --hard-dereference -cf - {quoted} 2>/dev/null"

    def clean():
        if os.path.isdir(out):
            shutil.rmtree(out)
        elif os.path.exists(out):
            os.remove(out)

    pairs = [
        ("stream, uncompressed",
         f"{sd} stream {spec_path} > /dev/null",
         "tar | openssl dgst -sha256",
         f"{tar} | openssl dgst -sha256 > /dev/null"),
        ("build --compress zstd",
         f"{sd} build {spec_path} --format oci-dir --compress zstd --out {out}",
         "tar | zstd -T2 -3",
         f"{tar} | zstd -q -T2 -3 > {out}"),
        ("build --compress gzip",
         f"{sd} build {spec_path} --format oci-dir --compress gzip --out {out}",
         "tar | pigz -p2 -n",
         f"{tar} | pigz -p2 -n > {out}"),
    ]
    total = sum(sizes(paths).values())
    print(f"closure: {len(paths)} paths, {total / 2**30:.2f} GiB; "
          f"{len(spec(paths, args.layers)['layers'])} layers; {args.runs} runs, medians",
          file=sys.stderr)
    compare(pairs, args.runs, clean)
    if not args.work:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
