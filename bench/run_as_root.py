#!/usr/bin/env python3
"""runAsRoot as a Nix build user against runAsRoot as root.

As root with 65536 ids, the script's namespace maps them one to one and
its chown and stat calls go straight to the kernel. As a build user (the
Nix sandbox), the helper's seccomp supervisor answers chown and shows the
recorded owners to stat (src/rootfs/chown/). This measures what that
costs the script: the same job (a base of FILES files in DIRS directories,
all owned by uid 1000, so every lookup finds a recorded owner) is run as
root and as `nobody` under setpriv, and the script times its own commands
with busybox `time`. The medians of RUNS runs and their ratio are printed
as a Markdown table.

    bench/run.sh --run-as-root [--runs 5] [--dirs 100] [--files 200]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile

HELPER = os.path.abspath("target/release/stevedore")
COMMANDS = [
    ("ls -lR /data", "/bin/busybox ls -lR /data"),
    ("find /data -type f", "/bin/busybox find /data -type f"),
    ("chown -R 1000:1000 /data", "/bin/busybox chown -R 1000:1000 /data"),
]


def nix_add(path):
    out = subprocess.run(["nix-store", "--add", path], check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def make_base(work, dirs, files):
    """A docker-archive: busybox in the store, /data/dN/fM owned by 1000."""
    bb = os.path.join(work, "busybox-static")
    os.makedirs(os.path.join(bb, "bin"))
    shutil.copy("/bin/busybox", os.path.join(bb, "bin/busybox"))
    os.symlink("busybox", os.path.join(bb, "bin/sh"))
    busybox = nix_add(bb)
    tree = os.path.join(work, "tree")
    entries = {"data": {"mode": 0o755, "uid": 1000, "gid": 1000}}
    for d in range(dirs):
        os.makedirs(os.path.join(tree, f"data/d{d}"))
        entries[f"data/d{d}"] = {"mode": 0o755, "uid": 1000, "gid": 1000}
        for f in range(files):
            path = f"data/d{d}/f{f}"
            with open(os.path.join(tree, path), "w") as out:
                out.write("x")
            entries[path] = {"mode": 0o644, "uid": 1000, "gid": 1000}
    metadata = os.path.join(work, "metadata.json")
    with open(metadata, "w") as out:
        json.dump({"version": 1, "entries": entries}, out)
    spec = os.path.join(work, "spec.json")
    with open(spec, "w") as out:
        json.dump({"version": 1, "name": "bench-run-as-root", "tag": "base",
                   "layers": [{"paths": [busybox]}],
                   "customisation": {"trees": [tree], "metadata": metadata}},
                  out)
    base = os.path.join(work, "base.tar")
    subprocess.run([HELPER, "build", spec, "--format", "docker-archive",
                    "--compress", "none", "--out", base], check=True)
    return busybox, base


def run_job(work, busybox, base, as_user):
    """One runAsRoot job; the seconds each command took in the script."""
    script = os.path.join(work, "script.sh")
    with open(script, "w") as out:
        for _, cmd in COMMANDS:
            out.write(f"/bin/busybox time -f %e {cmd} >/dev/null 2>>/times\n")
    script = nix_add(script)
    job = tempfile.mkdtemp(dir=work)
    os.chmod(job, 0o777)
    attrs = {
        "outputs": {"out": f"{job}/out", "metadata": f"{job}/metadata"},
        "stevedore": {"job": "run-as-root", "version": 1, "paths": [busybox],
                      "script": script, "shell": "/bin/sh",
                      "graph": "closure", "base": {"path": base}},
        "closure": [{"path": busybox, "references": []},
                    {"path": script, "references": []}],
    }
    with open(f"{job}/.attrs.json", "w") as out:
        json.dump(attrs, out)
    cmd = [HELPER, "nix-builder"]
    if as_user:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
               "--no-new-privs"] + cmd
    env = dict(os.environ, NIX_ATTRS_JSON_FILE=f"{job}/.attrs.json")
    subprocess.run(cmd, cwd=job, env=env, check=True)
    with open(f"{job}/out/times") as times:
        seconds = [float(line) for line in times.read().split()]
    shutil.rmtree(job, ignore_errors=True)
    return seconds


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--dirs", type=int, default=100)
    p.add_argument("--files", type=int, default=200)
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="stevedore-bench-run-as-root-")
    os.chmod(work, 0o755)
    try:
        busybox, base = make_base(work, args.dirs, args.files)
        os.chmod(base, 0o644)
        root, user = [], []
        for _ in range(args.runs):
            root.append(run_job(work, busybox, base, as_user=False))
            user.append(run_job(work, busybox, base, as_user=True))
        n = args.dirs * (args.files + 1) + 1
        print(f"{n} entries owned by uid 1000, median of {args.runs} runs\n")
        print("| command in the script | as root | as a build user | ratio |")
        print("| --- | --- | --- | --- |")
        for i, (name, _) in enumerate(COMMANDS):
            r = statistics.median(run[i] for run in root)
            u = statistics.median(run[i] for run in user)
            print(f"| `{name}` | {r:.2f} s | {u:.2f} s | {u / r:.1f}x |")
    finally:
        subprocess.run(["chmod", "-R", "u+rwX", work], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
