"""``specbed bench verify``'s eager path: batched against one-by-one verification of N agents' drafts, and its table."""

from __future__ import annotations

import time

from agent.random_models import random_model
from controller.bench.device import VERIFY_CONFIGS, _device_info, _sync, measure_bandwidth


class _VerifyAgent:
    """One agent of the benchmark: its drafter cache, two target caches (batched, one by one), its text."""

    def __init__(self, target, drafter, device: str, prompt: list[int], seed: int) -> None:
        import torch

        from agent.lm import CachedLM

        self.device = device
        self.committed = list(prompt)
        self.draft_lm = CachedLM(drafter, device)
        self.batched_lm = CachedLM(target, device)
        self.single_lm = CachedLM(target, device)
        # The controller keeps one CPU generator per session; each way of
        # verifying gets its own, seeded alike, so both see the same uniforms.
        self.batched_gen = torch.Generator().manual_seed(seed)
        self.single_gen = torch.Generator().manual_seed(seed)
        self.draft_gen = torch.Generator(device=device).manual_seed(seed + 1)
        start = len(prompt) - 1
        for lm in (self.draft_lm, self.batched_lm, self.single_lm):  # prefill the context
            lm.logits(self.committed, start)
        # This round's payload (see ``draft``).
        self.drafts = None
        self.q = None
        self.qx = None

    def draft(self, gamma: int, top_k: int, temperature: float = 1.0) -> None:
        """γ drafts sampled from the drafter; q as the controller rebuilds it from the top-K payload.

        As on the wire: the top-K indices and float16 probabilities go to the
        host, and the controller's q is ``reconstruct(..., "tail-fill")`` of
        them; ``qx`` holds the exact q_i(x_i) that rides along.
        """
        import torch

        from agent.lm import probs_from_logits
        from controller.verify import reconstruct

        seq = list(self.committed)
        tokens, qx, idx, vals = [], [], [], []
        vocab = None
        for _ in range(gamma):
            logits = self.draft_lm.logits(seq, len(seq) - 1)[-1]
            probs = probs_from_logits(logits, temperature)
            vocab = probs.shape[-1]
            top_vals, top_idx = torch.topk(probs, top_k)
            token = torch.multinomial(probs, 1, generator=self.draft_gen)
            tokens.append(token)
            qx.append(probs[token])
            idx.append(top_idx)
            vals.append(top_vals.to(torch.float16))
            seq.append(int(token))
        self.drafts = torch.cat(tokens).cpu()  # [γ]
        self.qx = torch.cat(qx).cpu()  # [γ] float32
        topk_idx, topk_probs = torch.stack(idx).cpu(), torch.stack(vals).cpu().float()  # [γ, K]
        self.q = reconstruct(topk_idx, topk_probs, vocab, "tail-fill")  # [γ, V] on the host

    def sequence(self) -> tuple[list[int], int]:
        """The sequence the target scores this round and the position its logits start at."""
        return self.committed + self.drafts.tolist(), len(self.committed) - 1

    def verify(self, logits, generator, temperature: float = 1.0) -> tuple[int, int]:
        """``speculative_verify`` on this round's payload, on the host where q and the generator live."""
        from agent.lm import probs_from_logits
        from controller.verify import speculative_verify

        p = probs_from_logits(logits, temperature).cpu()  # [γ + 1, V]
        return speculative_verify(self.drafts, self.q, p, generator, draft_token_probs=self.qx)

    def apply(self, n_accepted: int, next_token: int) -> None:
        """The verdict: accepted drafts and the next token join the text; the drafter rolls back."""
        self.committed.extend(self.drafts[:n_accepted].tolist())
        self.committed.append(next_token)
        self.draft_lm.rollback(min(len(self.draft_lm.fed), len(self.committed) - 1))


def _time_batched(agents: list[_VerifyAgent], device: str) -> tuple[float, float, list[tuple[int, int]]]:
    """(a) one ``batched_logits`` pass over all agents, then each agent's verification."""
    from controller.batch import batched_logits

    seqs, starts = zip(*(a.sequence() for a in agents), strict=True)
    _sync(device)
    t0 = time.perf_counter()
    all_logits = batched_logits([a.batched_lm for a in agents], list(seqs), list(starts))
    _sync(device)
    t1 = time.perf_counter()
    verdicts = [a.verify(logits, a.batched_gen) for a, logits in zip(agents, all_logits, strict=True)]
    _sync(device)
    t2 = time.perf_counter()
    return t2 - t0, t1 - t0, verdicts


def _time_one_by_one(agents: list[_VerifyAgent], device: str) -> tuple[float, float, list[tuple[int, int]]]:
    """(b) for each agent: its own target pass (``CachedLM.logits``), then its verification."""
    verdicts, forward = [], 0.0
    _sync(device)
    t0 = time.perf_counter()
    for a in agents:
        seq, start = a.sequence()
        f0 = time.perf_counter()
        logits = a.single_lm.logits(seq, start)
        _sync(device)
        forward += time.perf_counter() - f0
        verdicts.append(a.verify(logits, a.single_gen))
    _sync(device)
    return time.perf_counter() - t0, forward, verdicts


def _kernel_ms(step, agents: list[_VerifyAgent], device: str) -> tuple[float, list[tuple[int, int]]]:
    """GPU busy time of one verification step: the summed durations of the kernels and copies it ran (ms).

    Read from the PyTorch profiler, so the step's wall time is not used
    (the profiler slows the host down).  Tells the device's own work from
    the wall time, which on an eager model is often set by the host issuing
    kernels.
    """
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        _, _, verdicts = step(agents, device)
    busy_us = sum(e.time_range.elapsed_us() for e in prof.events() if e.device_type == DeviceType.CUDA)
    return busy_us / 1e3, verdicts


def bench_verify(
    config: str | dict = "paper",
    agents: tuple[int, ...] | list[int] = (1, 2, 4, 8, 12, 16),
    gamma: int = 4,
    top_k: int = 8,
    context: int = 512,
    rounds: int = 20,
    warmup: int = 3,
    device: str | None = None,
    seed: int = 0,
    bandwidth_bytes: int | None = None,
    progress=None,
    models: tuple | None = None,
) -> dict:
    """Batched against one-by-one verification of N agents' drafts on one target.

    ``config`` names a pair of shapes in ``VERIFY_CONFIGS`` (or is such a
    dict); both models are random (no weights are read).  For each N in
    ``agents``, N agents each get a random prompt of ``context`` tokens,
    prefilled into a drafter cache and two target caches.  Every round each
    agent drafts γ tokens from the drafter (temperature 1, full sampling;
    the controller's q rebuilt from the top-K payload with tail-fill), and
    the same drafts are verified two ways, each timed between device
    synchronisations:

    * ``batched``: one ``batched_logits`` pass over the N sequences, then N
      ``speculative_verify`` calls;
    * ``one_by_one``: N ``CachedLM.logits`` passes, each followed by its
      ``speculative_verify``.

    Both use the controller's code path: p is computed on the device and
    copied to the host, where q and the session's generator live.  The
    batched verdict is then applied to the agent (its text, its drafter
    cache; the target caches roll back next round), so both ways see the
    same inputs every round.  ``warmup`` rounds are run untimed first.
    Drafting is never timed.

    Per N the result gives ms per round (mean over ``rounds``; the target
    pass alone as ``forward_ms``), verified positions N·(γ+1) per round,
    positions per second, ms per verified position, the speedup (one by one
    over batched), peak device memory, and the tokens the rounds emitted.
    On CUDA one further round per N is run under the profiler for the GPU's
    busy time (``gpu_kernel_ms``: kernels and copies, not idle gaps).
    ``floor_ms`` is the target's weight bytes over the measured memory
    bandwidth: the least time any one target pass can take.  ``models``
    (target, drafter) reuses models already built from ``config``'s shapes.
    This is the eager path; ``controller.bench.core`` measures the static one.
    """
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = str(device).startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32
    name = config if isinstance(config, str) else "custom"
    shapes = VERIFY_CONFIGS[config] if isinstance(config, str) else config
    say = progress or (lambda _msg: None)

    t0 = time.perf_counter()
    target, drafter = models or (
        random_model(shapes["target"], device, dtype, seed),
        random_model(shapes["drafter"], device, dtype, seed + 1),
    )
    _sync(device)
    say(f"models built in {time.perf_counter() - t0:.1f} s")
    weight_bytes = sum(p.nbytes for p in target.parameters())
    drafter_bytes = sum(p.nbytes for p in drafter.parameters())
    vocab = shapes["target"]["vocab_size"]

    bandwidth = measure_bandwidth(device, bandwidth_bytes or ((4 << 30) if cuda else (64 << 20)))
    floor_ms = 1e3 * weight_bytes / bandwidth
    say(f"bandwidth {bandwidth / 1e9:.0f} GB/s, target weights {weight_bytes / 1e9:.2f} GB, floor {floor_ms:.2f} ms")

    result = {
        **_device_info(device),
        "config": name,
        "target_shape": shapes["target"],
        "drafter_shape": shapes["drafter"],
        "dtype": str(dtype).removeprefix("torch."),
        "target_params": sum(p.numel() for p in target.parameters()),
        "drafter_params": sum(p.numel() for p in drafter.parameters()),
        "target_weight_bytes": weight_bytes,
        "drafter_weight_bytes": drafter_bytes,
        "gamma": gamma,
        "top_k": top_k,
        "reconstruction": "tail-fill",
        "temperature": 1.0,
        "context": context,
        "rounds": rounds,
        "warmup": warmup,
        "seed": seed,
        "bandwidth_gb_s": round(bandwidth / 1e9, 1),
        "floor_ms": round(floor_ms, 3),
        "rows": [],
    }
    prompt_gen = torch.Generator().manual_seed(seed)
    for n in agents:
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        group = [
            _VerifyAgent(
                target,
                drafter,
                device,
                torch.randint(0, vocab, (context,), generator=prompt_gen).tolist(),
                seed=seed + 1000 * i,
            )
            for i in range(n)
        ]
        times = {"batched": [], "one_by_one": []}
        forward = {"batched": [], "one_by_one": []}
        accepted, agree = 0, 0
        for r in range(warmup + rounds):
            for a in group:
                a.draft(gamma, top_k)
            # Alternate which way goes first, so neither always finds the GPU idle or warm.
            order = ("batched", "one_by_one") if r % 2 == 0 else ("one_by_one", "batched")
            verdicts = {}
            for way in order:
                total, fwd, verdicts[way] = (_time_batched if way == "batched" else _time_one_by_one)(group, device)
                if r >= warmup:
                    times[way].append(total)
                    forward[way].append(fwd)
            if r >= warmup:
                accepted += sum(v[0] for v in verdicts["batched"])
                agree += sum(x == y for x, y in zip(verdicts["batched"], verdicts["one_by_one"], strict=True))
            for a, (n_acc, nxt) in zip(group, verdicts["batched"], strict=True):
                a.apply(n_acc, nxt)
        kernel_ms = {"batched": None, "one_by_one": None}
        if cuda:  # one more round, profiled, for the GPU's own busy time
            for a in group:
                a.draft(gamma, top_k)
            kernel_ms["batched"], verdicts = _kernel_ms(_time_batched, group, device)
            kernel_ms["one_by_one"], _ = _kernel_ms(_time_one_by_one, group, device)
            for a, (n_acc, nxt) in zip(group, verdicts, strict=True):
                a.apply(n_acc, nxt)
        positions = n * (gamma + 1)
        row = {"agents": n, "positions_per_round": positions}
        for way in ("batched", "one_by_one"):
            ms = 1e3 * sum(times[way]) / rounds
            row[way] = {
                "ms_per_round": round(ms, 3),
                "median_ms_per_round": round(1e3 * sorted(times[way])[rounds // 2], 3),
                "forward_ms_per_round": round(1e3 * sum(forward[way]) / rounds, 3),
                "tokens_per_s": round(positions / ms * 1e3, 1),
                "ms_per_position": round(ms / positions, 4),
                "gpu_kernel_ms_per_round": None if kernel_ms[way] is None else round(kernel_ms[way], 3),
                "gpu_kernel_ms_per_position": None if kernel_ms[way] is None else round(kernel_ms[way] / positions, 4),
            }
        row["speedup"] = round(row["one_by_one"]["ms_per_round"] / row["batched"]["ms_per_round"], 3)
        row["floor_ms_batched"] = round(floor_ms, 3)
        row["floor_ms_one_by_one"] = round(n * floor_ms, 3)
        row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if cuda else None
        row["accepted_per_round"] = round(accepted / rounds, 3)
        row["emitted_per_round"] = round((accepted + n * rounds) / rounds, 3)
        row["acceptance_rate"] = round(accepted / (rounds * n * gamma), 4)
        row["verdicts_agree"] = round(agree / (rounds * n), 4)
        result["rows"].append(row)
        say(format_verify_row(row))
        del group
    return result


VERIFY_COLUMNS = (
    "N",
    "positions/round",
    "batched ms/round",
    "1-by-1 ms/round",
    "batched fwd ms",
    "1-by-1 fwd ms",
    "batched tok/s",
    "1-by-1 tok/s",
    "batched ms/pos",
    "1-by-1 ms/pos",
    "batched GPU-busy ms",
    "1-by-1 GPU-busy ms",
    "speedup",
    "peak GiB",
    "emitted/round",
)


def format_verify_row(row: dict) -> str:
    """One table row of ``bench_verify``'s result, in the order of ``VERIFY_COLUMNS``."""
    b, s = row["batched"], row["one_by_one"]
    cells = (
        row["agents"],
        row["positions_per_round"],
        f"{b['ms_per_round']:.2f}",
        f"{s['ms_per_round']:.2f}",
        f"{b['forward_ms_per_round']:.2f}",
        f"{s['forward_ms_per_round']:.2f}",
        f"{b['tokens_per_s']:.0f}",
        f"{s['tokens_per_s']:.0f}",
        f"{b['ms_per_position']:.3f}",
        f"{s['ms_per_position']:.3f}",
        "-" if b["gpu_kernel_ms_per_round"] is None else f"{b['gpu_kernel_ms_per_round']:.2f}",
        "-" if s["gpu_kernel_ms_per_round"] is None else f"{s['gpu_kernel_ms_per_round']:.2f}",
        f"{row['speedup']:.2f}",
        "-" if row["peak_memory_gib"] is None else f"{row['peak_memory_gib']:.1f}",
        f"{row['emitted_per_round']:.2f}",
    )
    return "| " + " | ".join(str(c) for c in cells) + " |"


def format_verify_table(result: dict) -> str:
    """``bench_verify``'s result as a Markdown table with a header of the run's settings."""
    head = (
        f"device {result['device']} (driver {result['driver'] or '-'}), torch {result['torch']}, "
        f"transformers {result['transformers']}\n"
        f"config {result['config']} ({result['dtype']}): target {result['target_params'] / 1e9:.2f} B params, "
        f"drafter {result['drafter_params'] / 1e9:.2f} B params; gamma {result['gamma']}, K {result['top_k']}, "
        f"context {result['context']}, {result['rounds']} rounds after {result['warmup']} warm-up\n"
        f"memory bandwidth {result['bandwidth_gb_s']} GB/s (copy, read + write); target weights "
        f"{result['target_weight_bytes'] / 1e9:.2f} GB; floor per target pass {result['floor_ms']:.2f} ms "
        f"(one by one: N x floor per round)\n"
    )
    lines = ["| " + " | ".join(VERIFY_COLUMNS) + " |", "|" + " --- |" * len(VERIFY_COLUMNS)]
    lines += [format_verify_row(row) for row in result["rows"]]
    return head + "\n".join(lines)
