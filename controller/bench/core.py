"""``specbed bench verify``: the verification core (static cache, CUDA graphs, device verifier) timed.

Each of N agents drafts γ tokens with the real drafter (``agent.drafter.Drafter``
on the device, temperature 1, full sampling, top-K payload rebuilt with
tail-fill), and the same payloads are verified two ways by the controller's
core (``controller.target.StaticTarget`` + ``controller.device_verify``):

* ``batched``: one target pass over the N agents' γ + 1 positions (the
  batch-size bucket's captured graph), one device verification of the
  ragged batch, one (n_accepted, next_token) copy back;
* ``one_by_one``: per agent, its own pass and verification.

A round's time is wall time from the first host-to-device copy to the
verdicts on the host (everything the controller waits for).  ``floor_ms`` is
the target's weight bytes over the measured copy bandwidth (read + write):
the least time a pass that reads every weight once can take.  The eager path
(``controller.bench.eager.bench_verify``) runs beside it on the same models with
``eager_rounds`` rounds, for the comparison in BENCHMARKS.md.
"""

from __future__ import annotations

import platform
import time

import numpy as np

from agent.random_models import random_model
from controller.bench.device import VERIFY_CONFIGS, _device_info, _sync, measure_bandwidth
from controller.bench.eager import bench_verify


def _logits_check(target, device: str, vocab: int, context: int, gamma: int, seed: int) -> dict:
    """The static core's logits against the eager ``CachedLM`` path on the same sequence, over 3 rounds."""
    import torch

    from agent.lm import CachedLM
    from controller.target import StaticTarget

    rng = np.random.default_rng(seed)
    committed = rng.integers(0, vocab, context).tolist()
    core = StaticTarget(target, device, rows=1, max_len=context + 64)
    worst, argmax_agree, total = 0.0, 0, 0
    slot = core.slot()
    for _ in range(3):
        seq = committed + rng.integers(0, vocab, gamma).tolist()
        got = core.logits([slot], [seq], [len(committed) - 1])[0].float()
        eager = CachedLM(target, device)  # a fresh eager pass over the whole sequence (no cache games)
        want = eager.logits(seq, len(committed) - 1).float()
        worst = max(worst, float((got - want).abs().max()))
        argmax_agree += int((got.argmax(-1) == want.argmax(-1)).sum())
        total += got.shape[0]
        committed = seq[: len(committed) + 2] + [int(rng.integers(vocab))]
    _restore_attention(target)
    del core
    if str(device).startswith("cuda"):
        torch.cuda.empty_cache()
    return {"max_abs_logit_diff": round(worst, 4), "argmax_agree": f"{argmax_agree}/{total}"}


def _restore_attention(model) -> None:
    """Back to the model's default attention and cuDNN's SDPA (the eager path measures what it always did)."""
    import torch

    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("sdpa")
    torch.backends.cuda.enable_cudnn_sdp(True)


class _Agent:
    def __init__(self, drafter_model, slots, device, prompt, seed, top_k, vocab):
        from agent.drafter import Drafter, DraftSettings
        from agent.protocol import index_dtype_for
        from controller.device_verify import session_generator

        settings = DraftSettings(temperature=1.0, top_k=top_k, index_dtype=index_dtype_for(vocab))
        self.drafter = Drafter(drafter_model, settings, device)
        self.drafter.start(prompt, seed + 1)
        self.slots = slots  # {"batched": slot, "one_by_one": slot}
        self.gens = {w: session_generator(device, seed) for w in self.slots}
        self.payload = None
        self.drafts: list[int] = []

    def draft(self, gamma: int) -> None:
        from controller.device_verify import Payload

        d = self.drafter.draft(gamma)
        self.drafts = d.token_ids.tolist()
        self.payload = Payload(d.token_ids, d.draft_probs, d.topk_indices, d.topk_probs)

    def sequence(self) -> tuple[list[int], int]:
        return self.drafter.tokens + self.drafts, len(self.drafter.tokens) - 1

    def apply(self, n_accepted: int, next_token: int) -> None:
        self.drafter.accept(self.drafts[:n_accepted], next_token)


def _round(core, agents: list[_Agent], way: str, device: str) -> tuple[float, float, list[tuple[int, int]]]:
    """(wall s, target-forward s, verdicts) of one round verified ``way``."""
    import torch

    from controller.device_verify import verify_on_device

    groups = [agents] if way == "batched" else [[a] for a in agents]
    cuda = str(device).startswith("cuda")
    verdicts, fwd_s = [], 0.0
    _sync(device)
    t0 = time.perf_counter()
    for group in groups:
        seqs, starts = zip(*(a.sequence() for a in group), strict=True)
        if cuda:
            ev0, ev1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            ev0.record()
        f0 = time.perf_counter()
        out, offsets = core.forward([a.slots[way] for a in group], list(seqs), list(starts))
        if cuda:
            ev1.record()
        else:
            fwd_s += time.perf_counter() - f0
        got = verify_on_device(out, offsets, [a.payload for a in group], [a.gens[way] for a in group], 1.0, "tail-fill")
        if cuda:
            fwd_s += ev0.elapsed_time(ev1) / 1e3  # the forward's device time (the copy back synchronised)
        verdicts += [tuple(int(x) for x in row) for row in got.tolist()]
    return time.perf_counter() - t0, fwd_s, verdicts


def bench_verify_core(
    config: str = "paper",
    agents: tuple[int, ...] | list[int] = (1, 2, 4, 8),
    gamma: int = 4,
    top_k: int = 8,
    context: int = 512,
    rounds: int = 20,
    warmup: int = 3,
    device: str | None = None,
    seed: int = 0,
    eager_rounds: int = 5,
    command: str = "",
    progress=None,
) -> dict:
    """Rows of batched / one-by-one ms per round for each N in ``agents``; see the module docstring."""
    import torch

    from controller.target import StaticTarget

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = str(device).startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32
    say = progress or (lambda _msg: None)
    shapes = VERIFY_CONFIGS[config]
    t0 = time.perf_counter()
    target = random_model(shapes["target"], device, dtype, seed)
    drafter = random_model(shapes["drafter"], device, dtype, seed + 1)
    _sync(device)
    say(f"models built in {time.perf_counter() - t0:.1f} s")
    vocab = shapes["target"]["vocab_size"]
    weight_bytes = sum(p.nbytes for p in target.parameters())
    bandwidth = measure_bandwidth(device, (4 << 30) if cuda else (64 << 20))
    floor_ms = 1e3 * weight_bytes / bandwidth
    say(f"bandwidth {bandwidth / 1e9:.0f} GB/s, weights {weight_bytes / 1e9:.2f} GB, floor {floor_ms:.2f} ms")
    check = _logits_check(target, device, vocab, context, gamma, seed)
    say(f"static core against eager logits: {check}")
    result = {
        **_device_info(device),
        "machine": platform.node(),
        "command": command,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "core": "static cache per session row, CUDA graphs per (batch bucket, gamma+1), device verifier",
        "config": config,
        "dtype": str(dtype).removeprefix("torch."),
        "target_weight_bytes": weight_bytes,
        "gamma": gamma,
        "top_k": top_k,
        "context": context,
        "rounds": rounds,
        "warmup": warmup,
        "bandwidth_gb_s": round(bandwidth / 1e9, 1),
        "floor_ms": round(floor_ms, 3),
        "logits_check": check,
        "rows": [],
    }
    prompt_gen = np.random.default_rng(seed)
    for n in agents:
        core = StaticTarget(target, device, rows=2 * n, max_len=context + (warmup + rounds + 2) * (gamma + 1))
        # the batched slots take rows 0 .. n-1, as a controller's n sessions do (the batch is read in
        # place, controller.target); the one-by-one slots the rows after them
        rows = {way: [core.slot() for _ in range(n)] for way in ("batched", "one_by_one")}
        group = [
            _Agent(
                drafter,
                {way: rows[way][i] for way in rows},
                device,
                prompt_gen.integers(0, vocab, context).tolist(),
                seed + 1000 * i,
                top_k,
                vocab,
            )
            for i in range(n)
        ]
        for a in group:  # prefill each row (eager: a long, once-only shape), then capture the round's graphs
            seq = a.drafter.tokens
            for slot in a.slots.values():
                core.forward([slot], [seq], [len(seq) - 1])
        w0 = time.perf_counter()
        core.warmup([1, n], gamma + 1)
        _sync(device)
        warm_s = time.perf_counter() - w0
        times = {"batched": [], "one_by_one": []}
        fwd = {"batched": [], "one_by_one": []}
        accepted = agree = 0
        for r in range(warmup + rounds):
            for a in group:
                a.draft(gamma)
            order = ("batched", "one_by_one") if r % 2 == 0 else ("one_by_one", "batched")
            verdicts = {}
            for way in order:
                wall, f, verdicts[way] = _round(core, group, way, device)
                if r >= warmup:
                    times[way].append(wall)
                    fwd[way].append(f)
            if r >= warmup:
                accepted += sum(v[0] for v in verdicts["batched"])
                agree += sum(x == y for x, y in zip(verdicts["batched"], verdicts["one_by_one"], strict=True))
            for a, (n_acc, nxt) in zip(group, verdicts["batched"], strict=True):
                a.apply(n_acc, nxt)
        row = {"agents": n, "graph_capture_s": round(warm_s, 2)}
        for way in ("batched", "one_by_one"):
            ms = sorted(1e3 * t for t in times[way])
            row[f"{way}_ms_per_round"] = round(sum(ms) / rounds, 3)
            row[f"{way}_median_ms_per_round"] = round(ms[rounds // 2], 3)
            row[f"{way}_forward_ms_per_round"] = round(1e3 * sum(fwd[way]) / rounds, 3)
        row["batched_over_floor"] = round(row["batched_ms_per_round"] / floor_ms, 3)
        row["acceptance_rate"] = round(accepted / (rounds * n * gamma), 4)
        row["verdicts_agree"] = round(agree / (rounds * n), 4)
        result["rows"].append(row)
        say(str(row))
        for a in group:
            del a.drafter
        del group, core
        if cuda:
            torch.cuda.empty_cache()
    single = result["rows"][0]["batched_ms_per_round"] if result["rows"][0]["agents"] == 1 else None
    for row in result["rows"]:
        row["batched_over_single"] = None if single is None else round(row["batched_ms_per_round"] / single, 3)
    if eager_rounds > 0:
        _restore_attention(target)
        eager = bench_verify(
            config=config, agents=list(agents), gamma=gamma, top_k=top_k, context=context, rounds=eager_rounds,
            warmup=2, device=device, seed=seed, models=(target, drafter), progress=say,
        )  # fmt: skip
        result["eager"] = {
            "rounds": eager_rounds,
            "rows": [
                {
                    "agents": r["agents"],
                    "batched_ms_per_round": r["batched"]["ms_per_round"],
                    "one_by_one_ms_per_round": r["one_by_one"]["ms_per_round"],
                    "batched_forward_ms_per_round": r["batched"]["forward_ms_per_round"],
                }
                for r in eager["rows"]
            ],
        }
    return result


def format_core_table(result: dict) -> str:
    """The result as a Markdown table (static core beside the eager path)."""
    eager = {r["agents"]: r for r in result.get("eager", {}).get("rows", [])}
    lines = [
        f"{result['device']} (driver {result['driver'] or '-'}), torch {result['torch']}, "
        f"transformers {result['transformers']}; {result['config']} {result['dtype']}, gamma {result['gamma']}, "
        f"K {result['top_k']}, context {result['context']}; floor {result['floor_ms']:.2f} ms "
        f"({result['bandwidth_gb_s']} GB/s copy); logits check {result['logits_check']}",
        "| N | batched ms/round | 1-by-1 ms/round | batched fwd ms | x floor | x single | eager batched | eager 1-by-1 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["rows"]:
        e = eager.get(r["agents"], {})
        lines.append(
            f"| {r['agents']} | {r['batched_ms_per_round']:.2f} | {r['one_by_one_ms_per_round']:.2f} | "
            f"{r['batched_forward_ms_per_round']:.2f} | {r['batched_over_floor']:.2f} | {r['batched_over_single']} | "
            f"{e.get('batched_ms_per_round', '-')} | {e.get('one_by_one_ms_per_round', '-')} |"
        )
    return "\n".join(lines)
