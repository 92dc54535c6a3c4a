"""Train one member of the segmentation ensemble, export it to ONNX and write its model card.

Recipe (nnU-Net-like, scaled to a CPU): 3D U-Net on 48³ crops of the 2 mm working grid, two
thirds of the crops centred on tumour, cross-entropy + soft Dice, AdamW with polynomial decay,
left-right flips, random per-channel intensity scale/shift and random dropping of sequences (so
the network works with any subset of T1/T1c/T2/FLAIR). Checkpoints every ``checkpoint_every``
steps; an interrupted run resumes where it stopped. Deterministic for a given seed and thread count.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from neuronav.training.data import SEQUENCES, Case, load_case

N_CLASSES = 4
INPUT_CHANNELS = len(SEQUENCES)


@dataclass(frozen=True)
class TrainConfig:
    name: str
    seed: int
    steps: int = 1800
    crop: int = 48
    window: int = 64  # inference window (sliding, half-overlapping) of the exported network
    base: int = 16
    batch: int = 2
    lr: float = 2e-3
    weight_decay: float = 1e-4
    foreground_fraction: float = 0.67
    channel_drop: float = 0.35
    threads: int = 2
    checkpoint_every: int = 100
    validate_every: int = 500


def dice_scores(pred: npt.NDArray[np.integer[Any]], truth: npt.NDArray[np.integer[Any]]) -> dict[str, float]:
    """Dice of the BraTS regions (whole tumour 1+2+3, tumour core 1+3, enhancing 3). Empty vs empty = 1."""
    out = {}
    for name, labels in (("whole_tumour", (1, 2, 3)), ("tumour_core", (1, 3)), ("enhancing", (3,))):
        p, t = np.isin(pred, labels), np.isin(truth, labels)
        denom = int(p.sum() + t.sum())
        out[name] = 1.0 if denom == 0 else 2.0 * float(np.logical_and(p, t).sum()) / denom
    return out


class _Sampler:
    def __init__(self, cases: list[Case], cfg: TrainConfig) -> None:
        self.cases = cases
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)
        self.fg = [np.argwhere(c.labels > 0) for c in cases]
        self.brain = [np.argwhere(c.brain_mask[::4, ::4, ::4]) * 4 for c in cases]

    def crop(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        rng = self.rng
        n = int(rng.integers(len(self.cases)))
        case = self.cases[n]
        shape = np.asarray(case.labels.shape)
        crop = (self.cfg.crop,) * 3
        pool = self.fg[n] if len(self.fg[n]) and rng.uniform() < self.cfg.foreground_fraction else self.brain[n]
        centre = pool[int(rng.integers(len(pool)))] + rng.integers(-16, 17, 3)
        lo = np.clip(centre - np.asarray(crop) // 2, 0, shape - np.asarray(crop))
        sl = tuple(slice(int(a), int(a) + c) for a, c in zip(lo, crop, strict=True))
        img = case.images[(slice(None), *sl)].astype(np.float32)
        lab = case.labels[sl].astype(np.int64)
        if rng.uniform() < 0.5:  # left-right flip (axis 0 of the RAS working grid)
            img, lab = img[:, ::-1], lab[::-1]
        img = img * rng.normal(1.0, 0.1, (INPUT_CHANNELS, 1, 1, 1)).astype(np.float32) + rng.normal(
            0.0, 0.1, (INPUT_CHANNELS, 1, 1, 1)
        ).astype(np.float32)
        if rng.uniform() < self.cfg.channel_drop:
            keep = rng.uniform(size=INPUT_CHANNELS) < 0.5
            keep[int(rng.choice([1, 2, 3]))] = True  # at least one of T1c, T2, FLAIR
            img[~keep] = 0.0
        return np.ascontiguousarray(img), np.ascontiguousarray(lab)

    def batch(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        crops = [self.crop() for _ in range(self.cfg.batch)]
        return np.stack([c[0] for c in crops]), np.stack([c[1] for c in crops])


def train(
    cfg: TrainConfig,
    train_files: list[Path],
    val_files: list[Path],
    out_dir: Path,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train (or resume) one network; return its record (validation metrics, timings)."""
    import torch

    from neuronav.training.unet import UNet3D

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / f"{cfg.name}.checkpoint.pt"
    t_load = time.perf_counter()
    cases = [load_case(p) for p in train_files]
    log(f"{cfg.name}: {len(cases)} training cases loaded in {time.perf_counter() - t_load:.0f} s")
    sampler = _Sampler(cases, cfg)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # faster on a GPU when present
    model = UNet3D(INPUT_CHANNELS, N_CLASSES, base=cfg.base).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step0, history = 0, []
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sampler.rng.bit_generator.state = state["rng"]
        step0, history = state["step"], state["history"]
        log(f"{cfg.name}: resumed at step {step0}")
    started = time.perf_counter()
    model.train()
    for step in range(step0, cfg.steps):
        for group in opt.param_groups:
            group["lr"] = cfg.lr * (1 - step / cfg.steps) ** 0.9
        x, y = sampler.batch()
        xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        logits = model(xt)
        ce = torch.nn.functional.cross_entropy(logits, yt)
        prob = torch.softmax(logits, dim=1)
        onehot = torch.nn.functional.one_hot(yt, N_CLASSES).permute(0, 4, 1, 2, 3).float()
        inter = (prob * onehot).sum(dim=(0, 2, 3, 4))[1:]
        denom = (prob + onehot).sum(dim=(0, 2, 3, 4))[1:]
        dice = 1 - ((2 * inter + 1) / (denom + 1)).mean()
        loss = ce + dice
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        history.append(float(loss.detach()))
        done = step + 1
        if done % 25 == 0:
            rate = (time.perf_counter() - started) / (done - step0)
            log(f"{cfg.name}: step {done}/{cfg.steps} loss {np.mean(history[-25:]):.3f} ({rate:.2f} s/step)")
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            tmp = ckpt_path.with_name(ckpt_path.name + ".partial")
            torch.save(
                {
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "rng": sampler.rng.bit_generator.state,
                    "step": done,
                    "history": history,
                    "config": cfg.__dict__,
                },
                tmp,
            )
            tmp.replace(ckpt_path)
        if done % cfg.validate_every == 0 and done != cfg.steps:
            log(f"{cfg.name}: validation at step {done}: {validate(model, val_files, cfg.window)}")
            model.train()
    metrics = validate(model, val_files, cfg.window)
    log(f"{cfg.name}: final validation {metrics}")
    onnx_path = export_onnx(model, out_dir / f"{cfg.name}.onnx", cfg.window)
    return {
        "config": cfg.__dict__,
        "validation": metrics,
        "onnx": str(onnx_path),
        "train_seconds": time.perf_counter() - started,
        "final_loss": float(np.mean(history[-50:])) if history else None,
        "n_train_cases": len(train_files),
    }


def validate(model: Any, files: list[Path], window: int = 64) -> dict[str, float]:
    """Mean Dice on held-out cases (tumour cases only), predicted exactly as inference does:
    half-overlapping windows of the exported size, confined to the head."""
    import torch

    from neuronav.analysis.inference import confine_to_head, sliding_window

    model.eval()
    scores: list[dict[str, float]] = []

    def predict(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        with torch.no_grad():
            device = next(model.parameters()).device
            out = torch.softmax(model(torch.from_numpy(x).to(device)), dim=1)
            return np.asarray(out.cpu().numpy(), dtype=np.float32)

    for p in files:
        case = load_case(p)
        if not (case.labels > 0).any():
            continue
        probs = sliding_window(predict, case.images.astype(np.float32)[None], (window,) * 3, N_CLASSES)
        _, pred, _ = confine_to_head(probs, case.brain_mask)
        scores.append(dice_scores(pred, case.labels))
    return {k: round(float(np.mean([s[k] for s in scores])), 4) for k in ("whole_tumour", "tumour_core", "enhancing")}


def export_onnx(model: Any, path: Path, window: int = 64) -> Path:
    """Export with softmax included: input 'image' (1, 4, window³) → output 'probabilities'."""
    import torch

    class _WithSoftmax(torch.nn.Module):
        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: Any) -> Any:
            return torch.softmax(self.net(x), dim=1)

    model = model.to("cpu").eval()  # the shipped file is exported from the CPU copy
    dummy = torch.zeros((1, INPUT_CHANNELS, window, window, window))
    tmp = path.with_name(path.name + ".partial")
    with warnings.catch_warnings():
        # the exporter's notes on instance norm (always per-input statistics here) and on its legacy path
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            _WithSoftmax(model),
            (dummy,),
            str(tmp),
            input_names=["image"],
            output_names=["probabilities"],
            opset_version=17,
            dynamo=False,
        )
    tmp.replace(path)
    return path
