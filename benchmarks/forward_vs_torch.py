"""The NumPy forward pass beside PyTorch CPU: same machine, same run, same architecture.

    python benchmarks/forward_vs_torch.py [--nets resnet50 vgg16] [--batches 1 32] [--repeats 3] [--layers 8]
                                          [--threads N] [--rounds R] [--unfused] [--run] [--cpu]

Every (network, batch, engine) runs in its own child process, so each peak RSS (os.wait4's
ru_maxrss) is that engine's alone: interpreter, libraries, weights and the pass. Inside the child
the network is built, one warm-up pass runs at batch 1, then `--repeats` timed passes at the batch;
the time is the best of them (the pass alone: no start-up, weights or data). The torch model is the
same YAML read by tests/torch_model.py into torch.nn, in eval mode under torch.no_grad().
The targets: NumPy time ≤ 1.2 × torch's, NumPy peak RSS ≤ 2 × torch's.
`--layers N` also prints the N slowest layers of each engine at each batch (from one extra pass).
`--unfused` adds a NumPy run with every layer computed on its own: by default (when no one asks
for intermediate outputs) the pass folds a BatchNorm into the convolution before it, as
inference engines do.  The NumPy pass runs in one `forward.Session` (weights made, checked and
prepared once); `--run` adds a NumPy run calling `forward.run` for every pass, which finds the
prepared weights again in its cache after checking their fingerprints.
`--rounds R` measures each (network, batch) R times, torch and NumPy children alternating, and
prints every round's ratio and their median: on a shared VM one process's best pass differs from
the next one's by several percent (torch's resnet50 batch 1: 46-49 ms), more than a single
ratio can hide.
`--cpu` times each pass by the process's CPU time instead of the wall clock: with `--threads 1`, on
a machine other people load, a pass's CPU time barely moves while its wall time doubles.
`--threads N` limits both engines to N threads (OpenBLAS and torch's OpenMP); the default is every
CPU. Multi-threaded OpenBLAS collapses when another process holds a core (its threads wait on each
other), so on a shared machine compare at --threads 1 as well.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

INPUT = "3x224x224"
#: The clock of a timed pass: the wall clock, or with --cpu the process's CPU time (CLOCK set in the children).
CLOCK = time.process_time if os.environ.get("FORWARD_VS_TORCH_CLOCK") == "cpu" else time.perf_counter
ROOT = Path(__file__).resolve().parent.parent


def child(engine: str, net: str, batch: int, repeats: int, layers: int) -> dict:
    """Runs in the child process: {'seconds': best pass time, 'slowest': [(path, kind, seconds)]}."""
    import numpy as np

    import cnncalc

    network = cnncalc.load(net, INPUT)
    x = np.random.default_rng(0).standard_normal((batch, *network.input), dtype=np.float32)
    timed, profile = (torch_engine if engine == "torch" else numpy_engine)(net, network, engine)
    timed(x[:1])
    seconds = min(timed(x) for _ in range(repeats))
    slowest = sorted(profile(x), key=lambda t: -t[2])[:layers] if layers else []
    return {"seconds": seconds, "slowest": slowest}


def numpy_engine(net: str, network, engine: str):
    """(timed pass, per-layer profile) for cnncalc's NumPy pass in one forward.Session (weights
    made and prepared once, as torch's model holds its weights); engine 'numpy-unfused' runs
    every layer on its own (no BatchNorm folded into its conv), as the pass does with
    keep_outputs; 'numpy-run' calls forward.run per pass (weights found again in the cache)."""
    from cnncalc import forward as fw

    session = fw.Session(network)
    if engine == "numpy-unfused":
        fw.session._Pass.fusion = lambda self, nodes, i: (self.params.get(nodes[i].path, {}), [])

    def run(x):
        if engine == "numpy-run":
            result = fw.run(network, weights=session.weights, data=x, max_memory=0)
        else:
            result = session.run(x, max_memory=0)
        assert result.ok
        return result

    def timed(x):
        if CLOCK is time.perf_counter:
            return run(x).seconds  # the pass alone, as the session times it
        start = CLOCK()
        run(x)
        return CLOCK() - start

    def profile(x):
        return [(c.path, c.node.kind, c.seconds) for c in run(x).checks if c.node.leaf]
    return timed, profile


def torch_engine(net: str, network, engine: str = "torch"):
    """(timed pass, per-layer profile) for the same YAML built as torch.nn (eval, no_grad)."""
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    import torch_model

    from cnncalc.spec import resolve

    text = resolve(net)[1]  # (from a checkout too, without an install)
    model, _ = torch_model.read(text, network.input)

    def timed(x):
        tensor = torch.from_numpy(x)
        with torch.no_grad():
            start = CLOCK()
            model(tensor)
            return CLOCK() - start

    def profile(x):
        leaves = {name: m for name, m in model.named_modules() if not list(m.children())}
        started, spent = {}, {}
        handles = []
        for name, module in leaves.items():
            handles.append(module.register_forward_pre_hook(
                lambda m, a, name=name: started.__setitem__(name, time.perf_counter())))
            handles.append(module.register_forward_hook(
                lambda m, a, o, name=name: spent.__setitem__(name, time.perf_counter() - started[name])))
        try:
            timed(x)
        finally:
            for handle in handles:
                handle.remove()
        return [(name, type(leaves[name]).__name__, t) for name, t in spent.items()]
    return timed, profile


THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def measure(engine: str, net: str, batch: int, repeats: int, layers: int, threads: int | None,
            cpu: bool = False) -> dict:
    """Run one child; its report, with its peak RSS in MiB."""
    cmd = [sys.executable, __file__, "--child", engine, net, str(batch), str(repeats), str(layers)]
    env = dict(os.environ, **({name: str(threads) for name in THREAD_VARIABLES} if threads else {}))
    env["FORWARD_VS_TORCH_CLOCK"] = "cpu" if cpu else "wall"
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode:
        raise SystemExit(f"{engine} {net} batch {batch} failed:\n{proc.stderr}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["rss_mib"] = report["maxrss_kib"] / 1024
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=["resnet50", "vgg16"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--unfused", action="store_true")
    parser.add_argument("--run", action="store_true")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--cpu", action="store_true")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import resource

        engine, net, batch, repeats, layers = args.child
        report = child(engine, net, int(batch), int(repeats), int(layers))
        report["maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps(report))
        return
    import numpy
    import torch

    threads = args.threads or torch.get_num_threads()
    print(f"NumPy {numpy.__version__}, torch {torch.__version__}, {threads} thread(s) each, "
          f"{os.cpu_count()} CPUs; input {INPUT}; best of {args.repeats} passes after a warm-up"
          + ("; CPU time" if args.cpu else ""))
    print(f"{'network':16} {'batch':>5} {'NumPy s':>9} {'torch s':>9} {'time ×':>7} "
          f"{'NumPy MiB':>10} {'torch MiB':>10} {'RSS ×':>6}")
    for net in args.nets:
        for batch in args.batches:
            ratios = {}
            for _ in range(args.rounds):
                theirs = measure("torch", net, batch, args.repeats, args.layers, args.threads, args.cpu)
                engines = ["numpy"] + ["numpy-unfused"] * args.unfused + ["numpy-run"] * args.run
                for engine in engines:
                    ours = measure(engine, net, batch, args.repeats, args.layers, args.threads, args.cpu)
                    label = net if engine == "numpy" else f"{net} ({engine[6:]})"
                    ratios.setdefault(label, []).append(ours["seconds"] / theirs["seconds"])
                    print(f"{label:16} {batch:5} {ours['seconds']:9.3f} {theirs['seconds']:9.3f} "
                          f"{ours['seconds'] / theirs['seconds']:7.2f} {ours['rss_mib']:10.0f} "
                          f"{theirs['rss_mib']:10.0f} {ours['rss_mib'] / theirs['rss_mib']:6.2f}", flush=True)
                    for path, kind, seconds in ours["slowest"]:
                        print(f"    NumPy  {path:16} {kind:18} {seconds * 1e3:9.1f} ms")
                for path, kind, seconds in theirs["slowest"]:
                    print(f"    torch  {path:16} {kind:18} {seconds * 1e3:9.1f} ms")
            if args.rounds > 1:
                for label, values in ratios.items():
                    values.sort()
                    print(f"{label:16} {batch:5} time × over {len(values)} rounds: median {values[len(values) // 2]:.2f}, "
                          f"range {values[0]:.2f}-{values[-1]:.2f}", flush=True)


if __name__ == "__main__":
    main()
