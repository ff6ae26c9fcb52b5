"""Size, cost and CPU inference speed of the change networks.

Prints, for each registered network: trainable parameters, GMAC and GFLOP (= 2 x GMAC) per
256 x 256 pair (measured with torch.utils.flop_counter), and inference throughput in megapixels
of change map per second for batches of 1 and 8 pairs of 256 x 256 px, with
``torch.set_num_threads`` equal to the machine's cores.

    uv run --frozen python benchmarks/model_speed.py [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from change_detection.networks import NETWORKS, build_network, count_gmacs, count_parameters


def throughput_mpx_s(net: torch.nn.Module, batch: int, size: int, repeats: int, device: str) -> float:
    """Median megapixels per second of ``net`` on ``batch`` random ``size``-px pairs."""
    a = torch.randn(batch, 3, size, size, device=device)
    b = torch.randn(batch, 3, size, size, device=device)
    times = []
    with torch.inference_mode():
        net(a, b)  # warm-up
        for _ in range(repeats):
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            net(a, b)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    times.sort()
    return batch * size * size / times[len(times) // 2] / 1e6


def main() -> None:
    """Run the benchmark and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    print(f"machine: {platform.processor() or platform.machine()}, {cores} cores, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}")
    print(f"{'network':<14}{'params':>10}{'GMAC':>8}{'GFLOP':>8}{'Mpx/s b1':>10}{'Mpx/s b8':>10}")
    for name in NETWORKS:
        torch.manual_seed(0)
        net = build_network(name).to(args.device).eval()
        gmac = count_gmacs(net, args.size)
        speeds = [throughput_mpx_s(net, b, args.size, args.repeats, args.device) for b in (1, 8)]
        print(f"{name:<14}{count_parameters(net):>10,}{gmac:>8.2f}{2 * gmac:>8.2f}"
              f"{speeds[0]:>10.2f}{speeds[1]:>10.2f}")


if __name__ == "__main__":
    main()
