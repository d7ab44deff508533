#!/usr/bin/env python3
"""Times `stevedore nix-db` against `nix-store --load-db` on a synthetic graph.

The graph has --paths store paths (default 10,000) that need not exist: each
refers to up to 12 earlier paths, a few refer to themselves, and every one has
a narHash (SHA-256 in nix-base32, as exportReferencesGraph writes it) and a
narSize. The same registration goes to both tools, each into a fresh root:

  stevedore nix-db GRAPH --root DIR
  nix-store --store local?root=DIR --load-db < REGISTRATION

Run from the repository after `cargo build --release`:

  python3 bench/nixdb.py [--paths 10000] [--runs 7]

Prints one line per tool with the median and the spread of the runs, and the
size of the database each wrote.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time

ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz"


def nix_base32(digest: bytes) -> str:
    """Nix's base-32: the bytes as a little-endian number, 5-bit digits
    printed most significant first."""
    n = int.from_bytes(digest, "little")
    length = (len(digest) * 8 + 4) // 5
    return "".join(ALPHABET[(n >> (5 * i)) & 31] for i in reversed(range(length)))


def synthetic_graph(count: int, seed: int = 1):
    rng = random.Random(seed)
    entries = []
    for i in range(count):
        digest = hashlib.sha1(f"path {i}".encode()).digest()
        path = f"/nix/store/{nix_base32(digest)}-pkg-{i}"
        refs = set()
        if i:
            for _ in range(rng.randint(0, 12)):
                # Mostly recent paths, some old ones: libraries many use.
                j = i - 1 - int(rng.expovariate(1 / 50)) if rng.random() < 0.8 else rng.randrange(i)
                refs.add(entries[max(j, 0)]["path"])
        if rng.random() < 0.05:
            refs.add(path)
        nar = hashlib.sha256(f"nar {i}".encode()).digest()
        entries.append(
            {
                "path": path,
                "narHash": "sha256:" + nix_base32(nar),
                "narSize": rng.randint(200, 50_000_000),
                "references": sorted(refs),
                "_hex": nar.hex(),
            }
        )
    return entries


def registration(entries) -> str:
    """`nix-store --load-db` input: path, narHash, narSize, deriver (empty),
    the number of references, the references."""
    out = []
    for e in entries:
        out += [e["path"], e["_hex"], str(e["narSize"]), "", str(len(e["references"]))]
        out += e["references"]
    return "\n".join(out) + "\n"


def timed(cmd, stdin=None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdin=stdin, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--paths", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--stevedore", default="target/release/stevedore")
    args = ap.parse_args()

    entries = synthetic_graph(args.paths)
    refs = sum(len(e["references"]) for e in entries)
    work = tempfile.mkdtemp(prefix="stevedore-bench-nixdb-")
    try:
        graph = os.path.join(work, "graph.json")
        with open(graph, "w") as f:
            json.dump([{k: v for k, v in e.items() if k != "_hex"} for e in entries], f)
        reg = os.path.join(work, "registration")
        with open(reg, "w") as f:
            f.write(registration(entries))
        print(f"{args.paths} paths, {refs} references, {args.runs} runs each")

        results = {}
        sizes = {}
        for tool in ("stevedore nix-db", "nix-store --load-db"):
            times = []
            for run in range(args.runs):
                root = os.path.join(work, f"root-{run}")
                os.mkdir(root)
                if tool == "stevedore nix-db":
                    # The graph's roots get gcroots; load-db makes none.
                    times.append(timed([args.stevedore, "nix-db", graph, "--root", root]))
                else:
                    with open(reg) as stdin:
                        times.append(
                            timed(["nix-store", "--store", f"local?root={root}", "--load-db"], stdin)
                        )
                db = os.path.join(root, "nix/var/nix/db/db.sqlite")
                sizes[tool] = os.path.getsize(db)
                shutil.rmtree(root)
            results[tool] = times
            print(
                f"{tool:22} median {statistics.median(times):.3f} s "
                f"(min {min(times):.3f}, max {max(times):.3f}), db.sqlite {sizes[tool]} bytes"
            )
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
