#!/usr/bin/env python3
"""PyTorch reference timings for zobench: forward, MeZO step, SGD step, Adam step.

Written for zobench from the MeZO paper's Algorithm 1 (Malladi et al., NeurIPS 2023) and the
behaviour of its trainer as summarised in the project's notes; no code is taken from MeZO.

What one "MeZO step" is here (exactly what MeZO's trainer does for ZO-SGD, q = 1):

    seed = a fresh random integer
    perturb(+mu):  torch.manual_seed(seed); for each trainable p (named_parameters order):
                   z = torch.normal(0, 1, p.shape); p.data = p.data + mu * z
    l_plus  = loss(theta + mu z)                       (inference mode)
    perturb(-2mu)  (same seed, so the same z)
    l_minus = loss(theta - mu z)
    g = (l_plus - l_minus) / (2 mu)                    (a Python float)
    perturb(+mu)   (restores theta)
    update:        torch.manual_seed(seed); for each p: z = torch.normal(...);
                   p.data = p.data - lr * (g * z + wd * p.data)   (wd only on weights that
                   are not biases or layer norms; wd = 0 by default)

So a MeZO step costs two forward passes and four passes of Gaussian generation over the
parameters. "sgd" and "adam" are first-order steps (forward, backward, torch.optim step).

The loss is the one zobench trains with:
  * causal LMs (LLaMA, Mistral, Qwen2, OPT, GPT-2, GGUF files): next-token cross-entropy over the
    non-padding positions (transformers' `labels=` loss);
  * encoders (BERT, RoBERTa): an attention-masked mean pool of the last hidden states, a new
    linear 2-way head (weights N(0, initializer_range^2) from a seeded generator, zero bias,
    trainable) and cross-entropy against labels `row % 2`.

Every phase runs with the model in eval mode (no dropout), as MeZO evaluates its losses.

Output: one JSON object on stdout, e.g.

    {"forward": {"median_s": ..., "p10_s": ..., "p90_s": ..., "peak_rss_bytes": ...,
                 "peak_rss_after_load_bytes": ..., "repeats": 5, "warmup": 1, "loss": ...},
     "mezo": {...}, "sgd": {...}, "adam": {...},
     "versions": {...}, "threads": 2, "model": "...", "batch": 16, "seq": 32, ...}

Run `python3 mezo_reference.py --help` for the options; see README.md beside this file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import resource
import subprocess
import sys
import time
from typing import Any, Callable

METHODS = ("forward", "mezo", "sgd", "adam")
CAUSAL_TYPES = {"llama", "mistral", "qwen2", "opt", "gpt2", "gpt_neo", "gptj", "phi", "gemma"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="PyTorch reference timings (forward / MeZO / SGD / Adam) for zobench.",
    )
    ap.add_argument("--model", required=True,
                    help="HF folder (config.json + model.safetensors) or a .gguf file")
    ap.add_argument("--batch", type=int, default=16, help="rows B of the synthetic batch")
    ap.add_argument("--seq", type=int, default=32, help="tokens T per row of the synthetic batch")
    ap.add_argument("--input", default=None,
                    help="JSON file with input_ids (and optionally attention_mask), lists of "
                         "B lists of T ints; overrides --batch/--seq")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads(N) (default: torch's choice)")
    ap.add_argument("--method", default="all",
                    help="forward, mezo, sgd, adam, a comma list of them, or all (default)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repetitions per method")
    ap.add_argument("--warmup", type=int, default=1, help="untimed repetitions first")
    ap.add_argument("--seed", type=int, default=0, help="seed of the batch, the head and MeZO")
    ap.add_argument("--lr", type=float, default=1e-6, help="learning rate of every step")
    ap.add_argument("--mu", type=float, default=1e-3, help="MeZO perturbation scale (eps)")
    ap.add_argument("--weight-decay", type=float, default=0.0, help="MeZO weight decay")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                    help="parameter and compute dtype (default float32)")
    ap.add_argument("--phase", action="store_true",
                    help="run each method in its own child process, so that each method's "
                         "peak RSS is its own (the model is loaded once per child)")
    return ap.parse_args(argv)


def selected_methods(spec: str) -> list[str]:
    if spec == "all":
        return list(METHODS)
    out = []
    for m in spec.split(","):
        m = m.strip()
        if m not in METHODS:
            raise SystemExit(f"--method: unknown method `{m}` (choose from {', '.join(METHODS)}, all)")
        if m not in out:
            out.append(m)
    return out


# ---------------------------------------------------------------------------------------------
# Memory


def maxrss_bytes() -> int:
    """Peak resident set of this process so far (getrusage; Linux reports KiB)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) if sys.platform == "darwin" else int(r) * 1024


def reset_hwm() -> bool:
    """Resets the kernel's VmHWM (Linux: writing 5 to clear_refs). True if it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def vm_hwm_bytes() -> int | None:
    """VmHWM of /proc/self/status in bytes, or None where there is no procfs."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# ---------------------------------------------------------------------------------------------
# Statistics


def quantile(xs: list[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of a non-empty list."""
    s = sorted(xs)
    pos = (len(s) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def time_it(fn: Callable[[], float], warmup: int, repeats: int) -> dict[str, Any]:
    for _ in range(warmup):
        fn()
    times = []
    loss = float("nan")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        loss = fn()
        times.append(time.perf_counter() - t0)
    return {
        "median_s": quantile(times, 0.5),
        "p10_s": quantile(times, 0.1),
        "p90_s": quantile(times, 0.9),
        "times_s": times,
        "repeats": len(times),
        "warmup": warmup,
        "loss": loss,
    }


# ---------------------------------------------------------------------------------------------
# Model and batch


def read_config(path: str) -> dict[str, Any]:
    cfg_path = os.path.join(path, "config.json")
    with open(cfg_path) as f:
        return json.load(f)


class Bench:
    """A loaded model, its trainable parameters, one batch and the loss closure."""

    def __init__(self, args: argparse.Namespace):
        import torch

        self.torch = torch
        self.args = args
        self.dtype = getattr(torch, args.dtype)
        path = args.model
        self.is_gguf = path.endswith(".gguf")
        if self.is_gguf:
            from transformers import AutoModelForCausalLM

            folder, name = os.path.split(os.path.abspath(path))
            self.model = load_pretrained(AutoModelForCausalLM, folder, self.dtype, gguf_file=name)
            self.model_type = getattr(self.model.config, "model_type", "gguf")
            self.causal = True
        else:
            cfg = read_config(path)
            self.model_type = cfg.get("model_type", "")
            archs = cfg.get("architectures") or []
            self.causal = self.model_type in CAUSAL_TYPES or any(
                a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in archs
            )
            if self.causal:
                from transformers import AutoModelForCausalLM

                self.model = load_pretrained(AutoModelForCausalLM, path, self.dtype)
            else:
                from transformers import AutoModel

                self.model = load_pretrained(AutoModel, path, self.dtype)
        self.model.eval()
        config = self.model.config
        self.vocab = int(config.vocab_size)
        self.head = None
        if not self.causal:
            hidden = int(config.hidden_size)
            std = float(getattr(config, "initializer_range", 0.02))
            gen = torch.Generator().manual_seed(args.seed)
            head = torch.nn.Linear(hidden, 2)
            with torch.no_grad():
                head.weight.copy_(torch.randn(2, hidden, generator=gen) * std)
                head.bias.zero_()
            self.head = head.to(self.dtype)
        self.make_batch()
        # Trainable parameters in MeZO's order: named_parameters() (tied weights once), then
        # the head.
        self.named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        if self.head is not None:
            self.named += [("classifier." + n, p) for n, p in self.head.named_parameters()]
        self.params = [p for _, p in self.named]

    def make_batch(self) -> None:
        torch = self.torch
        args = self.args
        if args.input:
            with open(args.input) as f:
                data = json.load(f)
            ids = torch.tensor(data["input_ids"], dtype=torch.long)
            if "attention_mask" in data:
                mask = torch.tensor(data["attention_mask"], dtype=torch.long)
            else:
                mask = torch.ones_like(ids)
            if ids.dim() != 2 or mask.shape != ids.shape:
                raise SystemExit(f"{args.input}: input_ids and attention_mask must be B x T lists")
            if int(ids.min()) < 0 or int(ids.max()) >= self.vocab:
                raise SystemExit(f"{args.input}: token ids must lie in 0..{self.vocab}")
        else:
            gen = torch.Generator().manual_seed(args.seed)
            ids = torch.randint(0, self.vocab, (args.batch, args.seq), generator=gen)
            mask = torch.ones_like(ids)
        self.ids, self.mask = ids, mask
        b = ids.shape[0]
        if self.causal:
            self.labels = ids.masked_fill(mask == 0, -100)
        else:
            self.labels = torch.arange(b) % 2

    def loss(self):
        """The training loss (a 0-d tensor) at the current parameters."""
        torch = self.torch
        if self.causal:
            out = self.model(input_ids=self.ids, attention_mask=self.mask, labels=self.labels)
            return out.loss
        out = self.model(input_ids=self.ids, attention_mask=self.mask)
        h = out.last_hidden_state
        m = self.mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        logits = self.head(pooled)
        return torch.nn.functional.cross_entropy(logits.float(), self.labels)

    # -- the four phases ---------------------------------------------------------------------

    def forward(self) -> float:
        with self.torch.inference_mode():
            return float(self.loss())

    def mezo_perturb(self, seed: int, scale: float) -> None:
        """MeZO's in-place perturbation: reseed, then p += scale * z for every parameter."""
        torch = self.torch
        torch.manual_seed(seed)
        for p in self.params:
            z = torch.normal(mean=0.0, std=1.0, size=p.data.size(), device=p.data.device,
                             dtype=p.data.dtype)
            p.data = p.data + scale * z

    def mezo_update(self, seed: int, g: float) -> None:
        """MeZO's SGD update with z regenerated from the same seed."""
        torch = self.torch
        lr, wd = self.args.lr, self.args.weight_decay
        torch.manual_seed(seed)
        for name, p in self.named:
            z = torch.normal(mean=0.0, std=1.0, size=p.data.size(), device=p.data.device,
                             dtype=p.data.dtype)
            low = name.lower()
            decayed = not ("bias" in low or "layer_norm" in low or "layernorm" in low
                           or low.endswith("norm.weight"))
            if decayed and wd != 0.0:
                p.data = p.data - lr * (g * z + wd * p.data)
            else:
                p.data = p.data - lr * (g * z)

    def mezo(self) -> float:
        torch = self.torch
        mu = self.args.mu
        seed = self.rng.randint(0, 999_999_999)
        with torch.no_grad():
            self.mezo_perturb(seed, mu)
            with torch.inference_mode():
                l_plus = float(self.loss())
            self.mezo_perturb(seed, -2.0 * mu)
            with torch.inference_mode():
                l_minus = float(self.loss())
            g = (l_plus - l_minus) / (2.0 * mu)
            self.mezo_perturb(seed, mu)
            self.mezo_update(seed, g)
        return l_plus

    def first_order(self, opt) -> float:
        opt.zero_grad(set_to_none=True)
        loss = self.loss()
        loss.backward()
        opt.step()
        return float(loss.detach())

    def run(self, method: str) -> dict[str, Any]:
        torch = self.torch
        self.rng = random.Random(self.args.seed)
        if method == "forward":
            fn = self.forward
        elif method == "mezo":
            fn = self.mezo
        elif method == "sgd":
            opt = torch.optim.SGD(self.params, lr=self.args.lr, momentum=0.0)
            fn = lambda: self.first_order(opt)  # noqa: E731
        elif method == "adam":
            opt = torch.optim.Adam(self.params, lr=self.args.lr)
            fn = lambda: self.first_order(opt)  # noqa: E731
        else:
            raise ValueError(method)
        hwm_ok = reset_hwm()
        res = time_it(fn, self.args.warmup, self.args.repeats)
        res["peak_rss_bytes"] = maxrss_bytes()
        res["peak_rss_after_load_bytes"] = vm_hwm_bytes() if hwm_ok else None
        if method in ("sgd", "adam"):
            # Free the optimizer state and gradients before the next method.
            for p in self.params:
                p.grad = None
        return res


def load_pretrained(cls, path: str, dtype, **kw):
    """`cls.from_pretrained` with the dtype keyword of either transformers generation."""
    try:
        return cls.from_pretrained(path, dtype=dtype, **kw)
    except TypeError:
        return cls.from_pretrained(path, torch_dtype=dtype, **kw)


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("torch", "transformers", "safetensors", "gguf", "accelerate", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass  # an absent optional package is just not listed
    return out


def vm_rss_bytes() -> int | None:
    """Current VmRSS of /proc/self/status in bytes, or None where there is no procfs."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def run_in_process(args: argparse.Namespace, methods: list[str]) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch

    # What the process holds before the model: the interpreter and torch's libraries (much
    # more for a CUDA build of torch than for the CPU-only one).
    baseline_rss = vm_rss_bytes()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    bench = Bench(args)
    load_s = time.perf_counter() - t0
    rss_after_load = vm_rss_bytes()
    out: dict[str, Any] = {}
    for m in methods:
        out[m] = bench.run(m)
    n_params = sum(p.numel() for p in bench.params)
    out.update({
        "model": args.model,
        "model_type": bench.model_type,
        "family": "causal-lm" if bench.causal else "encoder+head",
        "trainable_params": int(n_params),
        "batch": int(bench.ids.shape[0]),
        "seq": int(bench.ids.shape[1]),
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "load_s": load_s,
        "baseline_rss_bytes": baseline_rss,
        "rss_after_load_bytes": rss_after_load,
    })
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    methods = selected_methods(args.method)
    if args.phase and len(methods) > 1:
        # One child per method: each peak RSS is that method's own (plus the model load).
        result: dict[str, Any] = {}
        base = [a for a in (argv if argv is not None else sys.argv[1:])]
        base = strip_option(base, "--method")
        base = [a for a in base if a != "--phase"]
        for m in methods:
            cmd = [sys.executable, os.path.abspath(__file__), *base, "--method", m]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr)
                raise SystemExit(f"method {m}: child exited with {proc.returncode}")
            child = json.loads(proc.stdout)
            result[m] = child.pop(m)
            for k, v in child.items():
                result.setdefault(k, v)
        result["phase_processes"] = True
    else:
        result = run_in_process(args, methods)
        result["phase_processes"] = len(methods) == 1
    result["versions"] = versions()
    result["cpu"] = cpu_name()
    result["lr"] = args.lr
    result["mu"] = args.mu
    result["seed"] = args.seed
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


def strip_option(argv: list[str], name: str) -> list[str]:
    """argv without `name VALUE` / `name=VALUE`."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == name:
            skip = True
            continue
        if a.startswith(name + "="):
            continue
        out.append(a)
    return out


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
