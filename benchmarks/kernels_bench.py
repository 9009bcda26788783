"""Timing of cnncalc.forward's convolution kernels (and whole networks built on them) against PyTorch.

    python benchmarks/kernels_bench.py                 # conv layers of resnet50/vgg16, batch 1 and 32
    python benchmarks/kernels_bench.py --batch 1       # one batch size only
    python benchmarks/kernels_bench.py --nets          # whole resnet50 / vgg16 forward passes too
    python benchmarks/kernels_bench.py --check         # the whole-net outputs agree with torch

Each figure is the best of several runs (the machine may be shared).  Whole networks are timed in
fresh subprocesses, one per implementation, so that peak-RSS growth during the pass (``mem``)
compares like with like; the NumPy networks use in-place BatchNorm/ReLU as cnncalc.forward does
for arrays it owns.  Needs torch for the comparison columns.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from cnncalc.forward import conv, linear, pool  # noqa: E402

#: name, C_in, C_out, input size, kernel, stride (padding = kernel // 2)
LAYERS = [
    ("resnet50 conv1 7x7/2", 3, 64, 224, 7, 2),
    ("resnet50 1x1 64->64", 64, 64, 56, 1, 1),
    ("resnet50 3x3 64->64", 64, 64, 56, 3, 1),
    ("resnet50 1x1 64->256", 64, 256, 56, 1, 1),
    ("resnet50 3x3/2 128->128", 128, 128, 56, 3, 2),
    ("resnet50 1x1/2 256->512", 256, 512, 56, 1, 2),
    ("resnet50 3x3 256->256 @14", 256, 256, 14, 3, 1),
    ("resnet50 3x3 512->512 @7", 512, 512, 7, 3, 1),
    ("vgg16 3x3 3->64 @224", 3, 64, 224, 3, 1),
    ("vgg16 3x3 64->64 @224", 64, 64, 224, 3, 1),
    ("vgg16 3x3 128->128 @112", 128, 128, 112, 3, 1),
    ("vgg16 3x3 256->256 @56", 256, 256, 56, 3, 1),
    ("vgg16 3x3 512->512 @28", 512, 512, 28, 3, 1),
    ("vgg16 3x3 512->512 @14", 512, 512, 14, 3, 1),
]


def best_time(fn, reps: int) -> float:
    """Best wall time of ``reps`` calls after one warm-up call, in seconds."""
    fn()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def blas_info() -> str:
    """Which BLAS library / kernel numpy's matmul runs on, and with how many threads."""
    try:
        from threadpoolctl import threadpool_info
        return "; ".join(f"{i['internal_api']} {i.get('version')} {i.get('architecture')} "
                         f"threads={i['num_threads']}" for i in threadpool_info())
    except ImportError:
        pass
    cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    info = f"{cfg['name']} {cfg['version']}"
    try:  # numpy's bundled OpenBLAS tells its runtime kernel and thread count
        import ctypes
        import glob
        libs = glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs",
                                      "*openblas*"))
        lib = ctypes.CDLL(libs[0])
        for prefix in ("scipy_openblas_", "scipy_openblas64_", "openblas_"):
            for suffix in ("64_", ""):
                core = getattr(lib, f"{prefix}get_corename{suffix}", None)
                threads = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                if core and threads:
                    core.restype = ctypes.c_char_p
                    return f"{info}, kernel {core().decode()}, threads={threads()}"
    except (OSError, IndexError):
        pass
    return info


def bench_layers(batches) -> None:
    """Print numpy conv vs torch.conv2d per layer shape and batch size."""
    try:
        import torch
        import torch.nn.functional as F
        torch.set_grad_enabled(False)
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    print(f"{'layer':28s} {'N':>3s} {'numpy ms':>10s} {'torch ms':>10s} {'ratio':>6s} {'GFLOP/s':>8s}")
    for name, cin, cout, size, k, s in LAYERS:
        for n in batches:
            x = rng.standard_normal((n, cin, size, size), dtype=np.float32)
            w = rng.standard_normal((cout, cin, k, k), dtype=np.float32)
            p = k // 2
            reps = 10 if n == 1 else 3
            t_np = best_time(lambda: conv.conv(x, w, None, (s, s), ((p, p), (p, p)), (1, 1), 1), reps)
            out = (size + 2 * p - k) // s + 1
            flops = 2 * n * cout * cin * k * k * out * out
            t_th = ratio = float("nan")
            if torch is not None:
                xt, wt = torch.from_numpy(x), torch.from_numpy(w)
                t_th = best_time(lambda: F.conv2d(xt, wt, None, s, p), reps)
                ratio = t_np / t_th
            print(f"{name:28s} {n:3d} {t_np * 1e3:10.2f} {t_th * 1e3:10.2f} {ratio:6.2f} "
                  f"{flops / t_np / 1e9:8.0f}", flush=True)


# --------------------------------------------------------------------------- whole networks

RESNET50_STAGES = [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]  # width, blocks, stride
VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def numpy_resnet50(rng):
    """Random resnet50 weights (conv weights and folded batch norms) as nested dicts."""
    def conv(cin, cout, k):
        return rng.standard_normal((cout, cin, k, k), dtype=np.float32) * np.float32(
            (2.0 / (cin * k * k)) ** 0.5)

    def bn(c):  # folded inference batch norm: per-channel scale and shift, shaped (C, 1, 1)
        return (rng.uniform(0.5, 1.0, (c, 1, 1)).astype(np.float32),
                rng.uniform(-0.1, 0.1, (c, 1, 1)).astype(np.float32))
    P = {"conv1": conv(3, 64, 7), "bn1": bn(64), "blocks": []}
    cin = 64
    for width, blocks, stride in RESNET50_STAGES:
        for i in range(blocks):
            blk = {"stride": stride if i == 0 else 1, "c1": conv(cin, width, 1), "b1": bn(width),
                   "c2": conv(width, width, 3), "b2": bn(width), "c3": conv(width, 4 * width, 1),
                   "b3": bn(4 * width)}
            if i == 0:
                blk["down"], blk["dbn"] = conv(cin, 4 * width, 1), bn(4 * width)
            P["blocks"].append(blk)
            cin = 4 * width
    P["fc"] = (rng.standard_normal((1000, 2048), dtype=np.float32) * np.float32(0.02),
               np.zeros(1000, np.float32))
    return P


def numpy_resnet50_forward(x, P):
    """resnet50 on cnncalc.forward's kernels; BatchNorm and ReLU in place on arrays the pass owns."""
    def conv_bn(x, w, bn, stride=1, relu=True):
        p = w.shape[-1] // 2
        y = conv.conv(x, w, None, (stride, stride), ((p, p), (p, p)), (1, 1), 1)
        y *= bn[0]
        y += bn[1]
        return np.maximum(y, 0, out=y) if relu else y
    x = conv_bn(x, P["conv1"], P["bn1"], 2)
    x = pool.max_pool(x, (3, 3), (2, 2), (1, 1), (1, 1), ((x.shape[2] - 1) // 2 + 1,) * 2)
    for blk in P["blocks"]:
        s = blk["stride"]
        idt = conv_bn(x, blk["down"], blk["dbn"], s, relu=False) if "down" in blk else x
        o = conv_bn(x, blk["c1"], blk["b1"])
        o = conv_bn(o, blk["c2"], blk["b2"], s)
        o = conv_bn(o, blk["c3"], blk["b3"], relu=False)
        o += idt
        x = np.maximum(o, 0, out=o)
    x = pool.adaptive_avg_pool(x, (1, 1)).reshape(x.shape[0], -1)
    return linear.linear(x, *P["fc"])


def numpy_vgg16(rng):
    """Random vgg16 weights."""
    feats, cin = [], 3
    for v in VGG16:
        if v == "M":
            feats.append(v)
        else:
            feats.append((rng.standard_normal((v, cin, 3, 3), dtype=np.float32)
                          * np.float32((2.0 / (cin * 9)) ** 0.5), np.zeros(v, np.float32)))
            cin = v
    fc = [(rng.standard_normal((o, i), dtype=np.float32) * np.float32(0.01), np.zeros(o, np.float32))
          for i, o in [(25088, 4096), (4096, 4096), (4096, 1000)]]
    return {"features": feats, "fc": fc}


def numpy_vgg16_forward(x, P):
    """vgg16 on cnncalc.forward's kernels; ReLU in place."""
    for item in P["features"]:
        if item == "M":
            x = pool.max_pool(x, (2, 2), (2, 2), (0, 0), (1, 1), (x.shape[2] // 2,) * 2)
        else:
            x = conv.conv(x, item[0], item[1], (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
            np.maximum(x, 0, out=x)
    x = pool.adaptive_avg_pool(x, (7, 7)).reshape(x.shape[0], -1)
    for i, (w, b) in enumerate(P["fc"]):
        x = linear.linear(x, w, b)
        if i < 2:
            np.maximum(x, 0, out=x)
    return x


def torch_net(name):
    """The same architectures as torch.nn modules in eval mode (torchvision layout)."""
    import torch.nn as nn

    class Bottleneck(nn.Module):
        def __init__(self, cin, width, stride):
            super().__init__()
            cout = 4 * width
            self.c1, self.b1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
            self.c2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
            self.b2 = nn.BatchNorm2d(width)
            self.c3, self.b3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
            self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout)) if stride != 1 or cin != cout else None)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            idt = x if self.down is None else self.down(x)
            o = self.relu(self.b1(self.c1(x)))
            o = self.relu(self.b2(self.c2(o)))
            return self.relu(self.b3(self.c3(o)) + idt)

    if name == "resnet50":
        layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                  nn.MaxPool2d(3, 2, 1)]
        cin = 64
        for width, blocks, stride in RESNET50_STAGES:
            for i in range(blocks):
                layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
                cin = 4 * width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 1000)]
    else:
        layers, cin = [], 3
        for v in VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
                cin = v
        layers += [nn.AdaptiveAvgPool2d(7), nn.Flatten(), nn.Linear(25088, 4096), nn.ReLU(True),
                   nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
                   nn.Linear(4096, 1000)]
    return nn.Sequential(*layers).eval()


def run_net(name: str, batch: int, impl: str, reps: int) -> None:
    """(In a subprocess.) Time one implementation; print 'time_s peak_growth_bytes'."""
    x = np.random.default_rng(1).standard_normal((batch, 3, 224, 224), dtype=np.float32)
    if impl == "torch":
        import torch
        torch.set_grad_enabled(False)
        net, xt = torch_net(name), torch.from_numpy(x)
        fn = lambda: net(xt)  # noqa: E731
    else:
        P = (numpy_resnet50 if name == "resnet50" else numpy_vgg16)(np.random.default_rng(0))
        forward = numpy_resnet50_forward if name == "resnet50" else numpy_vgg16_forward
        fn = lambda: forward(x, P)  # noqa: E731
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t = best_time(fn, reps)
    print(t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before)


def bench_nets(batches, rounds: int = 2) -> None:
    """Whole-network time and peak memory growth, numpy vs torch, best over ``rounds`` rounds."""
    print(f"\n{'network':10s} {'N':>3s} {'numpy ms':>10s} {'torch ms':>10s} {'ratio':>6s} "
          f"{'numpy mem MB':>13s} {'torch mem MB':>13s}")
    for name in ("resnet50", "vgg16"):
        for n in batches:
            best = {}
            for _ in range(rounds):  # alternate the implementations so noise hits both alike
                for impl in ("numpy", "torch"):
                    cmd = [sys.executable, __file__, "--run", name, str(n), impl,
                           str(5 if n == 1 else 2)]
                    t, mem = map(float, subprocess.check_output(cmd, text=True).split())
                    old = best.get(impl, (float("inf"), 0))
                    best[impl] = (min(old[0], t), max(old[1], mem))
            (tn, mn), (tt, mt) = best["numpy"], best["torch"]
            print(f"{name:10s} {n:3d} {tn * 1e3:10.1f} {tt * 1e3:10.1f} {tn / tt:6.2f} "
                  f"{mn / 2 ** 20:13.0f} {mt / 2 ** 20:13.0f}", flush=True)


def check_nets() -> None:
    """The NumPy resnet50 / vgg16 reproduce torch's outputs with torch's weights."""
    import torch
    torch.set_grad_enabled(False)
    for name in ("resnet50", "vgg16"):
        torch.manual_seed(0)
        net = torch_net(name)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        x = torch.randn(2, 3, 224, 224)
        want = net(x).numpy()
        got = _numpy_from_torch(name, net)(x.numpy())
        print(f"{name}: relative error {np.abs(got - want).max() / np.abs(want).max():.2e}")


def _numpy_from_torch(name, net):
    """The NumPy forward of ``name`` with the weights of the torch module ``net``."""
    import torch.nn as nn

    def a(t):
        return t.detach().numpy().copy()

    def bn(m):
        scale = (m.weight / (m.running_var + m.eps).sqrt()).detach()
        shift = (m.bias - m.running_mean * scale).detach()
        return a(scale).reshape(-1, 1, 1), a(shift).reshape(-1, 1, 1)
    mods = list(net)
    if name == "vgg16":
        feats = ["M" if isinstance(m, nn.MaxPool2d) else (a(m.weight), a(m.bias))
                 for m in mods if isinstance(m, (nn.MaxPool2d, nn.Conv2d))]
        fc = [(a(m.weight), a(m.bias)) for m in mods if isinstance(m, nn.Linear)]
        P = {"features": feats, "fc": fc}
        return lambda x: numpy_vgg16_forward(x, P)
    P = {"conv1": a(mods[0].weight), "bn1": bn(mods[1]), "blocks": [],
         "fc": (a(mods[-1].weight), a(mods[-1].bias))}
    for blk in mods[4:-3]:
        d = {"stride": blk.c2.stride[0], "c1": a(blk.c1.weight), "b1": bn(blk.b1),
             "c2": a(blk.c2.weight), "b2": bn(blk.b2), "c3": a(blk.c3.weight), "b3": bn(blk.b3)}
        if blk.down is not None:
            d["down"], d["dbn"] = a(blk.down[0].weight), bn(blk.down[1])
        P["blocks"].append(d)
    return lambda x: numpy_resnet50_forward(x, P)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, action="append", help="batch size(s); default 1 and 32")
    ap.add_argument("--nets", action="store_true", help="also time whole resnet50 / vgg16")
    ap.add_argument("--nets-only", action="store_true", help="only the whole networks")
    ap.add_argument("--check", action="store_true", help="compare whole-net outputs with torch")
    ap.add_argument("--run", nargs=4, help=argparse.SUPPRESS)  # subprocess entry point
    args = ap.parse_args()
    if args.run:
        name, n, impl, reps = args.run
        return run_net(name, int(n), impl, int(reps))
    if args.check:
        return check_nets()
    batches = args.batch or [1, 32]
    print(f"numpy {np.__version__}; BLAS: {blas_info()}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    if not args.nets_only:
        bench_layers(batches)
    if args.nets or args.nets_only:
        bench_nets(batches)


if __name__ == "__main__":
    main()
