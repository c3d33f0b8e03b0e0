"""``specbed bench telemetry|fuzz|verify``: benchmarks recorded in BENCHMARKS.md."""

from __future__ import annotations

import argparse
import json
import sys

from controller.cli.common import add_command, add_json_argument, add_out_argument, dump_json, fail, write_out


def register(sub) -> None:
    bench = add_command(sub, "bench", help="benchmarks; results are recorded in BENCHMARKS.md")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    tele = add_command(bench_sub, "telemetry", help="sampling overhead: thread CPU time per second at a given rate")
    tele.add_argument("--rate", type=float, default=20.0, help="samples per second (default 20)")
    tele.add_argument("--duration", type=float, default=10.0, help="seconds to sample (default 10)")
    add_out_argument(tele, "also write the result to DIR/bench-telemetry.json")
    add_json_argument(tele)
    tele.add_argument(
        "--host-sampler",
        choices=("psutil", "procfs"),
        default="psutil",
        help="CPU/memory source: psutil (default) or procfs (kept-open /proc reads)",
    )
    tele.set_defaults(func=cmd_bench)
    fz = add_command(bench_sub, "fuzz", help="malformed frames against the protocol decoder (exit 1 on a finding)")
    fz.add_argument("--frames", type=int, default=100_000, help="frames to generate (default 100000)")
    fz.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    add_out_argument(fz, "also write the result to DIR/bench-fuzz.json")
    add_json_argument(fz)
    fz.set_defaults(func=cmd_bench_fuzz)
    ver = add_command(
        bench_sub,
        "verify",
        help="batched against one-by-one target verification of N agents' drafts (random Llama models)",
    )
    ver.add_argument(
        "--config",
        choices=("paper", "tiny"),
        default="paper",
        help="model shapes: paper (Llama-3.1-8B target, Llama-3.2-1B drafter; default) or tiny (CPU smoke test)",
    )
    ver.add_argument(
        "--agents", default="1,2,4,8,12,16", help="agent counts N, comma-separated (default 1,2,4,8,12,16)"
    )
    ver.add_argument("--gamma", type=int, default=4, help="drafts per agent per round (default 4)")
    ver.add_argument("--top-k", type=int, default=8, help="K of the top-K payload (default 8)")
    ver.add_argument("--context", type=int, default=512, help="prompt tokens per agent, prefilled (default 512)")
    ver.add_argument("--rounds", type=int, default=20, help="timed rounds per N (default 20)")
    ver.add_argument("--warmup", type=int, default=3, help="untimed rounds first (default 3)")
    ver.add_argument("--device", default=None, help="torch device (default cuda when available, else cpu)")
    ver.add_argument("--seed", type=int, default=0, help="seed of the models, prompts and sampling (default 0)")
    ver.add_argument(
        "--eager-rounds", type=int, default=5, help="rounds of the eager path beside the core (0: skip; default 5)"
    )
    add_out_argument(ver, "also write the result to DIR/bench-verify.json")
    add_json_argument(ver)
    ver.set_defaults(func=cmd_bench_verify)


def cmd_bench(args: argparse.Namespace) -> int:
    from controller.bench.telemetry import bench_telemetry

    result = bench_telemetry(rate_hz=args.rate, duration_s=args.duration, host_sampler=args.host_sampler)
    print(dump_json(result), end="")
    if args.out:
        path = write_out(args.out, "bench-telemetry.json", dump_json(result))
        print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_bench_fuzz(args: argparse.Namespace) -> int:
    from controller.fuzz import fuzz_ok, run_fuzz

    if args.frames < 1:
        return fail("--frames must be at least 1")
    result = run_fuzz(args.frames, args.seed, progress=lambda n: print(f"{n} frames", file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{result['frames']} frames (seed {result['seed']}): {result['other_exceptions']} exceptions other than "
            f"ProtocolError, {result['slow_calls']} calls over {result['slow_call_threshold_s']} s (slowest "
            f"{result['slowest_call_cpu_s']} s CPU, {result['slowest_call_wall_s']} s wall), "
            f"RSS {result['rss_before_bytes'] / 2**20:.1f} MiB before, "
            f"{result['rss_after_bytes'] / 2**20:.1f} MiB after, {result['wall_s']} s"
        )
        print("outcomes: " + ", ".join(f"{k} {v}" for k, v in result["outcomes"].items()))
        for ex in result["examples"]:
            print(f"  {ex['kind']}: {ex['exception']} (frame {ex['frame_hex']})")
    if args.out:
        path = write_out(args.out, "bench-fuzz.json", dump_json(result))
        print(f"wrote {path}", file=sys.stderr)
    return 0 if fuzz_ok(result) else 1


def cmd_bench_verify(args: argparse.Namespace) -> int:
    from controller.bench.core import bench_verify_core, format_core_table

    try:
        agents = [int(n) for n in args.agents.split(",") if n.strip()]
    except ValueError:
        return fail(f"--agents takes comma-separated counts, got {args.agents!r}")
    if not agents or min(agents) < 1:
        return fail("--agents needs counts of at least 1")
    result = bench_verify_core(
        config=args.config,
        agents=agents,
        gamma=args.gamma,
        top_k=args.top_k,
        context=args.context,
        rounds=args.rounds,
        warmup=args.warmup,
        device=args.device,
        seed=args.seed,
        eager_rounds=args.eager_rounds,
        command="specbed " + " ".join(sys.argv[1:]),
        progress=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_core_table(result))
    if args.out:
        path = write_out(args.out, "bench-verify.json", dump_json(result))
        print(f"wrote {path}", file=sys.stderr)
    return 0
