"""Read a downpour run directory without downpour: json, numpy, torch and safetensors only.

    python docs/read_run.py RUN                 # every .safetensors (metadata, dtypes, shapes) and .json in RUN
    python docs/read_run.py RUN images.npy      # and the cat network's features of (N, C, H, W) images, every stage
    python docs/read_run.py RUN images.npy features.safetensors      # and those features written there

What each file holds is in docs/training.md, "Reading a run without downpour". The functions below rebuild a cat
network's (cat-demo, the main job) parameters by their layout words (model.safetensors; a cluster run's server
shards), its input processing (preprocess.*) and every stage (filter -> L2 pool -> LCN; a recurrent top, not the
main job's, is not read); tests/test_read_run.py checks them against downpour's own model and forward. Images go in
as the data source gives them: (N, C, H, W) = model.json's input_shape, float, grey in [0, 1] (docs/data.md).
"""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file


def read_pair(stem: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """``stem.safetensors`` (tensors by name) and ``stem.json`` (a dict)."""
    return load_file(f"{stem}.safetensors"), json.loads(Path(f"{stem}.json").read_text())


def describe(run: Path) -> None:
    """Print every safetensors file's metadata and tensors, and every JSON file's top-level keys."""
    for path in sorted(run.rglob("*")):
        name = path.relative_to(run)
        if path.suffix == ".safetensors":
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
                print(f"{name}: metadata keys {sorted(meta)}")
                for key in f.keys():
                    part = f.get_slice(key)
                    print(f"  {key:32} {part.get_dtype():4} {part.get_shape()}  {meta.get('layout.' + key, '')}")
        elif path.suffix == ".json":
            record = json.loads(path.read_text())
            print(f"{name}: keys {sorted(record) if isinstance(record, dict) else type(record).__name__}")


# --- the parameters, by the layout words --------------------------------------------------------------------------
# a layout's shape words are its first parenthesis: "(tile rows 2, tile columns 2, maps 8, ...)" -> [2, 2, 8, ...]
_SHAPE = re.compile(r"\(((?:[a-z][a-z ]*? \d+, )*[a-z][a-z ]*? \d+)[:)]")
# a piece of a shard: "[0, 2048) stages.0.filter.weight [2, 2, 8, 1, 8, 8]" and, where the shard cuts the tensor,
# " (its elements [0, 2176))": shard elements [a, b) are the tensor's row-major elements [lo, hi)
_PIECE = re.compile(r"\[(\d+), (\d+)\) (\S+) \[([\d, ]*)\](?: \(its elements \[(\d+), (\d+)\)\))?")


def shape_words(text: str) -> list[int] | None:
    """The shape a layout's words give, None where they give none ("(shape [...])" and the like)."""
    found = _SHAPE.search(text)
    return [int(n) for n in re.findall(r"(\d+)(?:, |$)", found.group(1))] if found else None


def parameters(run: Path) -> dict[str, torch.Tensor]:
    """Every tensor of model.safetensors by name, each checked against its layout's shape words."""
    with safe_open(str(run / "model.safetensors"), "pt") as f:
        meta, out = f.metadata() or {}, {key: f.get_tensor(key) for key in f.keys()}
    for name, t in out.items():
        said = shape_words(meta.get(f"layout.{name}", ""))
        if said is not None and said != list(t.shape):
            raise ValueError(f"{run / 'model.safetensors'}: {name} is {list(t.shape)}, its layout says {said}")
    return out


def from_shards(path: Path) -> dict[str, torch.Tensor]:
    """The trainable parameters a server checkpoint's shards hold (``shard<j>.params``), each piece put where its
    words say: a tensor of the shape they give, filled row-major."""
    out: dict[str, torch.Tensor] = {}
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
        for key in f.keys():
            if not re.fullmatch(r"shard\d+\.params", key):     # the update rule's state, the simulator's own
                continue
            vec = f.get_tensor(key)
            for a, b, name, shape, lo, hi in _PIECE.findall(meta[f"layout.{key}"]):
                if name not in out:                             # NaN until every shard holding a piece has filled it
                    size = [int(n) for n in shape.split(", ")] if shape else []
                    out[name] = torch.full(size, float("nan"), dtype=vec.dtype)
                flat = out[name].view(-1)
                start, end = (int(lo), int(hi)) if lo else (0, flat.numel())     # the whole tensor, uncut
                flat[start:end] = vec[int(a):int(b)]
    return out


# --- the input processing: preprocess.json's order, normalize "patch", then the whitening, then "ufldl" -------
def _normalise(x: torch.Tensor, stats: dict) -> torch.Tensor:
    """Per-sample normalisation with the training set's statistic (stats["variance_floor"] or stats["clip"])."""
    flat = x.reshape(len(x), -1).double()
    centred = flat - flat.mean(dim=1, keepdim=True)
    if stats["normalize"] == "patch":              # own mean off, divided by sqrt(own variance + set-wide floor)
        out = centred / (centred.var(dim=1, unbiased=False, keepdim=True) + stats["variance_floor"]).sqrt()
    elif stats["clip"] == 0:
        out = torch.full_like(centred, 0.5)
    else:                                          # "ufldl": clipped at +-clip, then into [0.1, 0.9]
        out = (centred.clamp(-stats["clip"], stats["clip"]) / stats["clip"] + 1.0) * 0.4 + 0.1
    return out.float().reshape(x.shape)


def _spectral(x: torch.Tensor, t: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each channel reflect-padded by half its side, its rfft2 times power ** (-strength / 2) (0 at the mean, the
    power floored at 1e-7 of the largest but the mean's), cropped back, times the set-wide scale."""
    scale, strength = t["spectral.scale"].tolist()                    # [scale, strength]
    power = t["spectral.power"]                                       # (H + 2 ph, (W + 2 pw) // 2 + 1) float64
    n, c, h, w = x.shape
    ph, pw = min(h // 2, h - 1), min(w // 2, w - 1)
    padded = F.pad(x.reshape(n * c, 1, h, w).double(), (pw, pw, ph, ph), mode="reflect")
    ac = power.clone()
    ac[0, 0] = 0.0
    gain = power.clamp_min(float(ac.max()) * 1e-7) ** (-0.5 * strength)
    gain[0, 0] = 0.0
    out = torch.fft.irfft2(torch.fft.rfft2(padded)[:, 0] * gain, s=(h + 2 * ph, w + 2 * pw))
    return (out[:, ph:ph + h, pw:pw + w].reshape(n, c, h, w) * scale).float()


def prepare(run: Path, images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) images as loaded -> the model's input, as training's samples were prepared."""
    tensors, meta = read_pair(run / "preprocess")
    x = images.float()
    if meta["normalize"] == "patch":
        x = _normalise(x, meta["stats"])
    if meta["whiten"] == "spectral":
        x = _spectral(x, tensors)
    elif meta["whiten"] == "zca":                                     # (x - mean) @ matrix over flattened C*H*W
        x = ((x.reshape(len(x), -1) - tensors["zca.mean"]) @ tensors["zca.matrix"]).reshape(x.shape)
    if meta["normalize"] == "ufldl":
        x = _normalise(x, meta["stats"])
    return x


# --- a stage of the cat network: filter -> L2 pool -> LCN -----------------------------------------------------
def filters(weights: dict[str, torch.Tensor], options: dict, stage: int = 0) -> torch.Tensor:
    """Stage ``stage``'s filters as used, (tH, tW, M, C, k, k): the stored tensor is each filter's direction;
    with filter_norm r > 0 every filter is rescaled to L2 norm r * stride * sqrt(C / M)."""
    w = weights[f"stages.{stage}.filter.weight"]                      # (tile rows, tile cols, maps, C, k, k)
    norms = options["filter_norm"]
    r = norms[0] if len(norms) == 1 else norms[stage]
    if not r:
        return w
    radius = r * options["strides"][stage] * math.sqrt(w.shape[3] / w.shape[2])
    return w * (radius / w.pow(2).sum(dim=(-3, -2, -1), keepdim=True).clamp_min(1e-24).sqrt())


def _window_matrix(n: int, taps: torch.Tensor) -> torch.Tensor:
    """(n, n): row i holds the Gaussian taps centred on i that fall inside 0..n-1, rescaled to sum to 1."""
    k = len(taps)
    tap = torch.arange(n)[None, :] - torch.arange(n)[:, None] + k // 2
    a = torch.where((tap >= 0) & (tap < k), taps[tap.clamp(0, k - 1)], torch.zeros(()))
    return a / a.sum(dim=1, keepdim=True)


def lcn(x: torch.Tensor, side: int) -> torch.Tensor:
    """Local contrast normalisation: a Gaussian window (side ``side``, std side / 4) over space and channels,
    border-corrected; subtract the local mean, divide by max(local std, the image's mean local std)."""
    r = torch.arange(side, dtype=torch.float64) - (side - 1) / 2
    taps = torch.exp(-0.5 * (r / (side / 4)) ** 2)
    taps = (taps / taps.sum()).float()
    rows, cols = _window_matrix(x.shape[2], taps), _window_matrix(x.shape[3], taps)
    mean = lambda t: rows @ t.mean(dim=1, keepdim=True) @ cols.T      # noqa: E731  (B, 1, H, W)
    x = x - x[:, :1, :1, :1]
    v = x - mean(x)
    sigma = torch.sqrt(mean(v * v) + 1e-4 ** 2)
    return v / torch.maximum(sigma, sigma.mean(dim=(1, 2, 3), keepdim=True))


def stage(weights: dict[str, torch.Tensor], o: dict, i: int, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Stage i + 1 (its input (N, C, H, W): the images prepared, or the stage below's normalised maps) ->
    its codes (N, M, Ho, Wo), pooled and normalised maps (N, M, Hp, Wp)."""
    k, s, q, u = o["kernels"][i], o["strides"][i], o["pools"][i], o["pool_strides"][i]
    w = filters(weights, o, i)
    th, tw, m, c = w.shape[:4]
    n, _, h, width = x.shape
    ho, wo = (h - k) // s + 1, (width - k) // s + 1
    full = w[torch.arange(ho) % th][:, torch.arange(wo) % tw]         # position (i, j) uses bank (i mod tH, j mod tW)
    cols = F.unfold(x, k, stride=s).view(n, c, k, k, ho, wo)
    codes = torch.einsum("bcuvij,ijmcuv->bmij", cols, full)
    pooled = torch.sqrt(F.avg_pool2d(codes * codes, q, u) * q * q + 1e-8)
    side = min(pooled.shape[2:])
    return codes, pooled, lcn(pooled, min(o["lcn"], side - 1 + side % 2))


def features(run: Path, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Prepared inputs (N, C, H, W) -> every stage's "stage<K>/codes", "stage<K>/pooled" and "stage<K>" (its
    normalised maps), K from 1: downpour's layer names (features_at)."""
    weights, options = parameters(run), json.loads((run / "model.json").read_text())["options"]
    out = {}
    for i in range(len(options["maps"])):
        codes, pooled, x = stage(weights, options, i, x)
        out |= {f"stage{i + 1}/codes": codes, f"stage{i + 1}/pooled": pooled, f"stage{i + 1}": x}
    return out


def refusal(run: Path, images: np.ndarray | None = None) -> str | None:
    """Why ``run`` (and ``images``, where given) cannot be read as asked, in one line; None where they can. A folder
    that is not a run would list nothing and exit 0; another model's run, or images of another shape, would end in
    a KeyError or a tensor-size error deep in :func:`features`."""
    if not run.is_dir() or not any((run / name).is_file() for name in ("config.toml", "model.json")):
        what = "does not exist" if not run.exists() else "is not a folder" if not run.is_dir() else (
            "holds no config.toml: not a downpour run directory (give the --out directory of a `downpour train` run)")
        return f"{str(run)!r} {what}"
    if images is None:
        return None
    if not (run / "model.json").is_file():      # (a run stopped before it wrote its model: its files still list)
        return f"{str(run)!r} holds no model.json yet (written when training ends): no model to compute features with"
    meta = json.loads((run / "model.json").read_text())
    if "maps" not in meta.get("options", {}):
        return (f"{str(run / 'model.json')!r} is of model {meta.get('model')!r}, and this script rebuilds the features "
                "of the cat network only (cat-demo, the main job); the other models' layouts in model.safetensors "
                "give their formulas (docs/training.md, \"Reading a run without downpour\")")
    shape = list(meta["input_shape"])
    if images.ndim != 4 or list(images.shape[1:]) != shape:
        return (f"the images are {list(images.shape)}, and the run's model.json takes (N, C, H, W) images of "
                f"input_shape {shape}: (N, {', '.join(map(str, shape))})")
    return None


if __name__ == "__main__":
    run = Path(sys.argv[1])
    images = np.load(sys.argv[2], allow_pickle=False) if len(sys.argv) > 2 else None
    if (why := refusal(run, images)) is not None:
        print(f"read_run.py: error: {why}", file=sys.stderr)
        sys.exit(2)
    describe(run)
    if (run / "checkpoints" / "server.safetensors").exists():
        held = from_shards(run / "checkpoints" / "server.safetensors")
        print(f"server checkpoint: {len(held)} parameters rebuilt from its shards' words: {sorted(held)}")
    if len(sys.argv) > 2:
        found = features(run, prepare(run, torch.from_numpy(images)))
        for name, value in found.items():
            print(f"{name}: shape {list(value.shape)}, mean {float(value.mean()):.6g}, std {float(value.std()):.6g}")
        if len(sys.argv) > 3:
            save_file({name: value.contiguous() for name, value in found.items()}, sys.argv[3])
