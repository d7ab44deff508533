#!/usr/bin/env python3
"""How stevedore's time and memory grow with the closure.

Generates two synthetic closures of the same shape in a scratch store
directory, a small one and one ten times larger, and times each command on
both. The shape is a package set's: paths in eight levels (libraries at
the bottom, applications on top), each referring to up to eight paths of
lower levels, mostly of the level just below, and the same number of
small files in every path.

  stevedore layers GRAPH --strategy auto|popularity
  stevedore stream SPEC > /dev/null
  stevedore build SPEC --compress zstd --format oci-dir
  stevedore nix-db GRAPH --root DIR
  tar --sort=name -cf - -C STORE . | openssl dgst -sha256   (stock)

The spec puts the store layers of the auto plan (100 layers) on a store
whose `store_dir` is the scratch directory, so no Nix store is needed.
Prints, per command, the wall time and peak RSS at both sizes and the
growth of each: linear growth is a time ratio of at most the size ratio.
The stock tar pass over the same store says how much of the growth is the
file system's (more inodes and dentries than the caches hold well).

Run from the repository after `cargo build --release`:

  python3 bench/scale.py [--paths 1000 10000] [--files-per-path 100] [--runs 3]
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nixdb import nix_base32  # noqa: E402

LEVELS = 8


def synthetic_graph(count, seed=1):
    """`count` store paths in LEVELS levels; each refers to up to eight
    paths of lower levels (the level below three times in four), so the
    number of ways down stays that of a real closure."""
    rng = random.Random(seed)
    entries = []
    by_level = [[] for _ in range(LEVELS)]
    for i in range(count):
        level = i * LEVELS // count
        path = f"/nix/store/{nix_base32(hashlib.sha1(f'path {i}'.encode()).digest())}-pkg-{i}"
        refs = set()
        if level:
            for _ in range(rng.randint(1, 8)):
                lower = level - 1 if rng.random() < 0.75 else rng.randrange(level)
                refs.add(rng.choice(by_level[lower]))
        by_level[level].append(path)
        nar = hashlib.sha256(f"nar {i}".encode()).digest()
        entries.append({"path": path, "narHash": "sha256:" + nix_base32(nar),
                        "references": sorted(refs)})
    return entries


def make_closure(root, paths, files_per_path):
    """A store of `paths` directories of `files_per_path` files each under
    ROOT/store, and its graph twice: ROOT/graph.json naming that store,
    ROOT/nix-graph.json the same paths under /nix/store (for nix-db).
    Returns the store directory."""
    store = os.path.join(root, "store")
    os.makedirs(store)
    graph = synthetic_graph(paths)
    for i, entry in enumerate(graph):
        name = os.path.basename(entry["path"])
        top = os.path.join(store, name)
        os.makedirs(os.path.join(top, "share"))
        size = 0
        for f in range(files_per_path):
            sub = "share" if f % 4 else ""
            body = (f"{name} file {f}\n" * (1 + (i * 31 + f) % 24)).encode()
            with open(os.path.join(top, sub, f"f{f}"), "wb") as out:
                out.write(body)
            size += len(body)
        entry["narSize"] = size + 512 * files_per_path
    rename = {e["path"]: os.path.join(store, os.path.basename(e["path"])) for e in graph}
    store_graph = [
        {
            "path": rename[e["path"]],
            "narHash": e["narHash"],
            "narSize": e["narSize"],
            "references": sorted(rename[r] for r in e["references"]),
        }
        for e in graph
    ]
    nix_graph = graph
    with open(os.path.join(root, "graph.json"), "w") as out:
        json.dump(store_graph, out)
    with open(os.path.join(root, "nix-graph.json"), "w") as out:
        json.dump(nix_graph, out)
    return store


def timed(cmd, cleanup=lambda: None):
    """Wall seconds and peak RSS (MiB) of a shell command, via GNU time."""
    cleanup()
    with tempfile.NamedTemporaryFile("r") as rep:
        subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", rep.name, "sh", "-c", cmd],
                       check=True)
        wall, rss = rep.read().split()[-2:]
    cleanup()
    return float(wall), int(rss) / 1024


def measure(stevedore, root, store, runs):
    graph = os.path.join(root, "graph.json")
    plan = json.loads(subprocess.run([stevedore, "layers", graph, "--strategy", "auto"],
                                     check=True, capture_output=True, text=True).stdout)
    spec = os.path.join(root, "spec.json")
    with open(spec, "w") as out:
        json.dump({"version": 1, "name": "scale", "tag": "latest", "store_dir": store,
                   "layers": [{"paths": layer} for layer in plan]}, out)
    out_dir = os.path.join(root, "oci")
    db_root = os.path.join(root, "db-root")

    def clean():
        shutil.rmtree(out_dir, ignore_errors=True)
        shutil.rmtree(db_root, ignore_errors=True)
        os.makedirs(db_root)

    commands = [
        ("layers --strategy auto", f"{stevedore} layers {graph} --strategy auto > /dev/null"),
        ("layers --strategy popularity",
         f"{stevedore} layers {graph} --strategy popularity > /dev/null"),
        ("stream", f"{stevedore} stream {spec} > /dev/null"),
        ("build --compress zstd",
         f"{stevedore} build {spec} --format oci-dir --compress zstd --out {out_dir}"),
        ("nix-db", f"{stevedore} nix-db {os.path.join(root, 'nix-graph.json')} --root {db_root}"),
        # The stock pass over the same files, as the stream's benchmark
        # takes it: what the file system's own growth is.
        ("stock: tar --sort=name | openssl dgst -sha256",
         f"tar --sort=name -cf - -C {store} . | openssl dgst -sha256 > /dev/null"),
    ]
    results = {}
    for name, cmd in commands:
        timed(cmd, clean)
        runs_of = [timed(cmd, clean) for _ in range(runs)]
        results[name] = (statistics.median(w for w, _ in runs_of), max(r for _, r in runs_of))
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stevedore", default="target/release/stevedore")
    ap.add_argument("--paths", type=int, nargs=2, default=[1000, 10000])
    ap.add_argument("--files-per-path", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", default=None, help="scratch directory (default: a temporary one)")
    args = ap.parse_args()
    stevedore = os.path.abspath(args.stevedore)
    work = tempfile.mkdtemp(prefix="stevedore-scale-", dir=args.work)
    try:
        results = []
        for paths in args.paths:
            root = os.path.join(work, str(paths))
            os.makedirs(root)
            store = make_closure(root, paths, args.files_per_path)
            results.append(measure(stevedore, root, store, args.runs))
            shutil.rmtree(root)
        small, large = args.paths
        files = args.files_per_path
        growth = large / small
        print(f"{small:,} paths ({small * files:,} files) against {large:,} paths "
              f"({large * files:,} files); {args.runs} runs, medians")
        print(f"| command | wall, {small:,} | peak RSS | wall, {large:,} | peak RSS "
              f"| time growth (linear: {growth:.0f}x) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name in results[0]:
            (wa, ra), (wb, rb) = results[0][name], results[1][name]
            cell = name.replace("|", "\\|")
            print(f"| `{cell}` | {wa:.2f} s | {ra:.0f} MiB | {wb:.2f} s | {rb:.0f} MiB "
                  f"| {wb / wa if wa else float('inf'):.1f}x |", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
