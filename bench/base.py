#!/usr/bin/env python3
"""Benchmark images on a base (fromImage) against the stock tools.

The base is the benchmark closure as a docker-archive of zstd layers. Each
pair runs alternately after one warm-up run each, and the medians, ratios
and peak RSS are printed as a Markdown table (bench/layers.py's compare):

  build on the base (one small new layer), docker-archive
      vs  skopeo copy docker-archive:BASE oci:DIR  (the base's blobs alone)
      and vs  each layer (unpacked beforehand): openssl dgst -sha256, zstd -dc |
          openssl dgst -sha256  (the least a reader that checks digests and diff_ids
          does, with no entry read), one layer after the other, and one layer
          per core at once (stevedore reads a base's layers at once)
  export the base as one root file system tar
      vs  umoci unpack of the base, then tar of the root

stevedore reads every base layer as hostile input (each entry checked,
every file hashed) and copies the blobs; skopeo only copies and hashes
them, so the first ratio is the price of that reading.

Usage:
  bench/base.py --closure STORE_PATH [--runs 5] [--layers 20]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from layers import closure, compare, sizes, spec  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--closure", required=True)
    ap.add_argument("--stevedore", default="target/release/stevedore")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--layers", type=int, default=20)
    args = ap.parse_args()

    paths = closure(args.closure)
    work = tempfile.mkdtemp(prefix="stevedore-bench-base-")
    sd = os.path.abspath(args.stevedore)
    base_spec = os.path.join(work, "base.json")
    with open(base_spec, "w") as f:
        json.dump(spec(paths, args.layers), f)
    base = os.path.join(work, "base.tar")
    subprocess.run([sd, "build", base_spec, "--compress", "zstd", "--out", base],
                   check=True)
    tree = os.path.join(work, "tree", "etc")
    os.makedirs(tree)
    with open(os.path.join(tree, "motd"), "w") as f:
        f.write("on top of the base\n")
    top_spec = os.path.join(work, "top.json")
    with open(top_spec, "w") as f:
        json.dump({"version": 1, "name": "bench-top", "tag": "latest",
                   "base": {"path": base}, "layers": [],
                   "customisation": {"trees": [os.path.dirname(tree)]}}, f)
    out = os.path.join(work, "out")
    oci = os.path.join(work, "oci")

    def clean():
        for p in (out, oci):
            if os.path.isdir(p):
                shutil.rmtree(p)
            elif os.path.exists(p):
                os.remove(p)

    subprocess.run(["skopeo", "copy", "-q", f"docker-archive:{base}",
                    f"oci:{work}/base-oci:latest"], check=True)
    import tarfile
    with tarfile.open(base) as t:
        layers = json.load(t.extractfile("manifest.json"))[0]["Layers"]
        blobs = os.path.join(work, "blobs")
        t.extractall(blobs, members=[t.getmember(l) for l in layers])
    one = "openssl dgst -sha256 {0} >/dev/null && zstd -dc {0} | openssl dgst -sha256 >/dev/null"
    hashed = " && ".join(one.format(f"{blobs}/{l}") for l in layers)
    # The same, one layer per core at once, as stevedore reads a base.
    cores = os.cpu_count() or 1
    hashed_at_once = (
        f"printf '%s\\n' {' '.join(f'{blobs}/{l}' for l in layers)} "
        f"| xargs -P {cores} -I@ sh -c \"{one.format('@')}\"")
    pairs = [
        ("build on the base, docker-archive",
         f"{sd} build {top_spec} --out {out}",
         "per layer: openssl dgst -sha256, zstd -dc | openssl dgst -sha256",
         f"bash -c '{hashed}'"),
        ("build on the base, docker-archive",
         f"{sd} build {top_spec} --out {out}",
         f"the same, {cores} layers at once (xargs -P {cores})",
         hashed_at_once),
        ("build on the base, docker-archive",
         f"{sd} build {top_spec} --out {out}",
         "skopeo copy docker-archive: oci:",
         f"skopeo copy -q docker-archive:{base} oci:{oci}:latest"),
        ("export the base",
         f"{sd} export {base} --out {out}",
         "umoci unpack, then tar",
         f"umoci unpack --rootless --image {work}/base-oci:latest {oci} >/dev/null "
         f"&& tar -C {oci}/rootfs -cf {out} ."),
    ]
    total = sum(sizes(paths).values())
    print(f"base: {len(paths)} paths, {total / 2**30:.2f} GiB in "
          f"{len(spec(paths, args.layers)['layers'])} zstd layers "
          f"({os.path.getsize(base) / 2**20:.0f} MiB); {args.runs} runs, medians",
          file=sys.stderr)
    # The blobs just written are still being written back; that would slow
    # the first pair down.
    os.sync()
    compare(pairs, args.runs, clean)
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
