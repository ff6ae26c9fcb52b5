"""Size, cost and CPU inference speed of the change networks, measured side by side.

Prints, for each registered network: trainable parameters, GMAC and GFLOP (= 2 x GMAC) per
256 x 256 pair (measured with torch.utils.flop_counter), and inference throughput in megapixels
of change map per second for batches of 1 and 8 pairs of 256 x 256 px, with
``torch.set_num_threads`` equal to the machine's cores. The networks are timed in interleaved
rounds (one forward pass of each network and batch size per round), so a burst of load on a
shared machine hits all of them alike; the table gives the median and the best round, and the
last line the speed ratios measured in the same rounds. The ensemble row is three ``tinysiam``
members whose probabilities are averaged (the shape of ``tinysiam_ensemble.pt``).

    uv run --frozen python benchmarks/model_speed.py [--rounds 15] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from change_detection.networks import (
    NETWORKS,
    ProbabilityEnsemble,
    build_network,
    count_gmacs,
    count_parameters,
)

BATCHES = (1, 8)


def main() -> None:
    """Run the benchmark and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    print(
        f"machine: {platform.processor() or platform.machine()}, {cores} cores, "
        f"load average {os.getloadavg()[0]:.2f}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, device {args.device}"
    )
    nets = {}
    for name in NETWORKS:
        torch.manual_seed(0)
        nets[name] = build_network(name).to(args.device).eval()
    # the shipped ensemble's shape: three tinysiam members, probabilities averaged
    nets["tinysiam x3 (ensemble)"] = (
        ProbabilityEnsemble([build_network("tinysiam") for _ in range(3)]).to(args.device).eval()
    )
    inputs = {b: torch.randn(b, 3, args.size, args.size, device=args.device) for b in BATCHES}
    seconds: dict[tuple[str, int], list[float]] = {(n, b): [] for n in nets for b in BATCHES}
    with torch.inference_mode():
        for rnd in range(args.rounds + 1):  # round 0 warms up and is not counted
            for (name, batch), times in seconds.items():
                x = inputs[batch]
                if args.device == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                nets[name](x, x)
                if args.device == "cuda":
                    torch.cuda.synchronize()
                if rnd:
                    times.append(time.perf_counter() - t0)

    def mpx_s(name: str, batch: int, pick: str) -> float:
        times = seconds[(name, batch)]
        t = statistics.median(times) if pick == "median" else min(times)
        return batch * args.size**2 / t / 1e6

    print(
        f"{'network':<24}{'params':>10}{'GMAC':>7}{'GFLOP':>7}"
        + "".join(f"{f'Mpx/s b{b} med/best':>22}" for b in BATCHES)
    )
    for name, net in nets.items():
        gmac = count_gmacs(net, args.size)
        cells = (f"{mpx_s(name, b, 'median'):.2f} / {mpx_s(name, b, 'best'):.2f}" for b in BATCHES)
        speeds = "".join(f"{cell:>22}" for cell in cells)
        print(f"{name:<24}{count_parameters(net):>10,}{gmac:>7.2f}{2 * gmac:>7.2f}{speeds}")
    if len(nets) > 1:
        first, *others = nets
        for other in others:
            ratios = ", ".join(
                f"batch {b} {mpx_s(first, b, 'median') / mpx_s(other, b, 'median'):.2f}x"
                for b in BATCHES
            )
            print(f"speed of {first} / {other} (medians, same rounds): {ratios}")


if __name__ == "__main__":
    main()
