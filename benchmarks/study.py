"""What the study scripts share: a quiet Lightning fit; trained weights and finished results kept in the
work dir, so that the same command goes on where a killed run stopped (:class:`StudyState`,
:func:`train_or_load`); the fixed calibration / test images; the results JSON (rendered into docs/ by
``benchmarks/render.py``); the speed studies' images and interleaved timing. Imported as ``study`` by the
scripts beside it (``python benchmarks/<script>.py`` puts this folder on ``sys.path``); not part of the library.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Subset

REPO = Path(__file__).resolve().parents[1]
# python benchmarks/<script>.py puts benchmarks/ first on sys.path, not the checkout: without this an installed
# lightning_snn (e.g. another checkout's editable install) would be the one measured
sys.path.insert(0, str(REPO))
from lightning_snn.data import CIFAR10DataModule  # noqa: E402


def portable(args) -> dict:
    """The script's settings for its results JSON, with absolute paths made relative to the
    checkout (a committed file must not name this machine's folders)."""
    out = dict(vars(args))
    for key, value in out.items():
        if isinstance(value, str) and Path(value).is_absolute():
            out[key] = os.path.relpath(Path(value).resolve(), REPO)  # e.g. ../shared/data/cifar10
    return out


def machine(threads: int | None = None) -> str:
    """The processor, torch threads and torch version, recorded beside a study's wall times."""
    threads = torch.get_num_threads() if threads is None else threads
    return f"{platform.processor() or platform.machine()}, {threads} threads, torch {torch.__version__}"


def sha256(path: Path) -> str:
    """Hex sha256 of a file (the checkpoint identity recorded in the docs)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def portable_paths(value):
    """``value`` with every string that names this machine's folders made portable: a path in the
    checkout relative to it, one in the temp dir ``<tmp>/<name>``, one in the home dir ``~/...``."""
    if isinstance(value, dict):
        return {k: portable_paths(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable_paths(v) for v in value]
    if isinstance(value, str):
        for root, short in ((str(REPO), None), (tempfile.gettempdir(), "<tmp>"), (os.path.expanduser("~"), "~")):
            if value.startswith(root + os.sep):
                if short is None:
                    return os.path.relpath(value, REPO)
                return f"<tmp>/{os.path.basename(value)}" if short == "<tmp>" else "~" + value[len(root) :]
    return value


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` atomically (a killed run leaves the old file or the new one, never half),
    with this machine's folders made portable (:func:`portable_paths`): committed files name none."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(portable_paths(payload), indent=2) + "\n")
    os.replace(tmp, path)


class StudyState:
    """A study's record in its work dir (``<work>/<name>_state.json``), saved after every finished
    piece (a trained network, a variant's numbers), so that the same command goes on where a
    killed run stopped and a rerun only computes what is missing.

    ``recipe`` holds the settings every stored piece depends on: a state stored with another
    recipe is refused, naming what differs (a rerun with the stored settings goes on; another
    ``--work-dir`` starts anew). ``defaults`` give the value of recipe keys added after a state was
    stored. Results that depend on more than the recipe are stored with :meth:`results`.
    """

    def __init__(self, path: Path, recipe: dict, defaults: dict | None = None) -> None:
        self.path = Path(path)
        self.data = {"recipe": dict(recipe)}
        if self.path.exists():
            stored = json.loads(self.path.read_text())
            stored["recipe"] = {**(defaults or {}), **stored["recipe"]}
            if stored["recipe"] != self.data["recipe"]:
                diff = {k: (stored["recipe"].get(k), v) for k, v in recipe.items() if stored["recipe"].get(k) != v}
                raise SystemExit(
                    f"{self.path} holds a study run with other settings {diff} (stored, asked): rerun with the "
                    "stored settings to go on, or pass another --work-dir to start a new study."
                )
            self.data = stored

    def entry(self, *keys: str) -> dict:
        """The nested dict ``data[keys[0]][keys[1]]...``, created empty where missing."""
        node = self.data
        for key in keys:
            node = node.setdefault(key, {})
        return node

    def results(self, entry: dict, depends_on: dict) -> dict:
        """``entry["results"]``: what was stored there with the same ``depends_on`` (e.g. the
        evaluation settings and the weights' sha256), or a fresh empty dict where they changed."""
        if entry.get("results_depend_on") != depends_on:
            entry["results_depend_on"], entry["results"] = depends_on, {}
        return entry["results"]

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        os.replace(tmp, self.path)


def fit_quietly(
    module: pl.LightningModule, args, work: Path, resume_dir: Path | None = None, callbacks: list | None = None
) -> tuple[pl.Trainer, float]:
    """Train ``module`` on real CIFAR-10 for ``args.epochs`` with ``args.seed``; no logger,
    progress bar or validation (the studies evaluate afterwards on fixed images).

    With ``resume_dir``, the state after every epoch goes to ``resume_dir/last.ckpt`` and a fit
    that finds one there goes on from it (a long study killed midway loses at most one epoch;
    the data order after a resume differs from an uninterrupted run's). Without it, nothing is
    checkpointed. ``callbacks`` are added to the trainer's. Returns the trainer (to save a Lightning
    checkpoint) and this call's training wall time in seconds."""
    pl.seed_everything(args.seed, workers=True)
    dm = CIFAR10DataModule(args.data_dir, download=False, num_workers=2, train_samples=args.train_samples)
    callbacks, ckpt_path = list(callbacks or []), None
    if resume_dir is not None:
        from pytorch_lightning.callbacks import ModelCheckpoint

        # save_top_k=1 (the newest epoch, monitor=None), not 0: Lightning >= 2.5 writes last.ckpt only in a
        # step where it saved a top-k checkpoint, so with 0 it came only at the end of training
        callbacks.append(ModelCheckpoint(dirpath=resume_dir, save_last=True, save_top_k=1, every_n_epochs=1))
        last = Path(resume_dir) / "last.ckpt"
        ckpt_path = str(last) if last.exists() else None
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        logger=False,
        enable_checkpointing=resume_dir is not None,
        callbacks=callbacks,
        enable_progress_bar=False,
        default_root_dir=work,
        limit_val_batches=0,
    )
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return trainer, time.perf_counter() - t0


def train_or_load(
    module: pl.LightningModule,
    args,
    state: StudyState,
    entry: dict,
    name: str,
    callbacks: list | None = None,
    resume: str | None = None,
) -> pl.LightningModule:
    """``module`` trained by :func:`fit_quietly`, or its weights loaded from ``<work>/<name>.ckpt``
    where ``entry`` (a piece of ``state``) recorded them: a checkpoint that changed since is
    refused. Training goes on from ``<work>/<name>_epochs/last.ckpt`` after a killed run (its epoch
    is recorded in ``resumed_at_epoch``). Records ``train_seconds``, ``checkpoint``, ``sha256`` and
    ``parameters`` in ``entry`` and saves the state. The checkpoint holds the weights alone (a
    Lightning checkpoint: ``train.py test --ckpt_path`` takes it). ``resume`` names the folder of
    the per-epoch checkpoints where a study's layout predates ``<name>_epochs``."""
    work = state.path.parent
    ckpt, resume = work / f"{name}.ckpt", work / (resume or f"{name}_epochs")
    if ckpt.exists() and "sha256" in entry:
        if sha256(ckpt) != entry["sha256"]:
            raise SystemExit(f"{ckpt} changed since the study recorded it: delete it (and its entry) to retrain.")
        module.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"])
        print(f"   loaded {ckpt} (trained in {entry['train_seconds'] / 60:.1f} min)", flush=True)
        return module
    if (resume / "last.ckpt").exists():
        epoch = torch.load(resume / "last.ckpt", map_location="cpu", weights_only=False)["epoch"]
        entry.setdefault("resumed_at_epoch", []).append(int(epoch) + 1)
    print(f"== training {name} ({args.epochs} epochs)", flush=True)
    trainer, seconds = fit_quietly(module, args, work, resume_dir=resume, callbacks=callbacks)
    trainer.save_checkpoint(ckpt, weights_only=True)
    entry["train_seconds"] = entry.get("train_seconds", 0.0) + seconds
    entry.update(checkpoint=os.path.relpath(ckpt.resolve(), REPO), sha256=sha256(ckpt))
    entry["parameters"] = sum(p.numel() for p in module.parameters())
    state.save()
    return module


def evaluation_images(args, calibration: bool = True) -> tuple[list[torch.Tensor] | None, list]:
    """The calibration batches (``args.calibration_samples`` fixed, seeded, un-augmented training
    images; ``None`` where ``calibration`` is false) and the test batches (the first
    ``args.test_samples`` test images), both in ``args.batch_size`` chunks: the same for every
    variant of a study."""
    dm = CIFAR10DataModule(args.data_dir, download=False, num_workers=0)
    dm.setup("fit")
    test = Subset(dm.test_set, range(min(args.test_samples, len(dm.test_set))))
    test_batches = list(DataLoader(test, batch_size=args.batch_size))
    if not calibration:
        return None, test_batches
    calib = dm.calibration_set(args.calibration_samples, seed=0)
    return list(torch.stack([calib[i][0] for i in range(len(calib))]).split(args.batch_size)), test_batches


# ---- what the speed studies share (simulation_speed.py, sparse_crossover.py, diagnostics_overhead.py) ----
def cifar_images(data_dir: str, split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` images of ``{split}.npz``, normalised as the data module does, and their labels."""
    from lightning_snn.data import CIFAR10_MEAN, CIFAR10_STD, load_npz_split

    images, labels = load_npz_split(Path(data_dir), split)
    mean, std = torch.tensor(CIFAR10_MEAN).view(1, -1, 1, 1), torch.tensor(CIFAR10_STD).view(1, -1, 1, 1)
    return (images[:n].float() / 255.0 - mean) / std, labels[:n]


def interleaved(fns: dict, repeats: int, sync=lambda: None, warm: dict | None = None, log=None, skipped=None) -> dict:
    """Warm each of ``fns`` up once (``warm[name]`` where given), then time them round-robin for
    ``repeats`` rounds, the order rotated by one each round: on a shared machine a change of load
    hits every one alike, so their ratios stay fair. Returns per name the lists ``wall``, ``cpu``
    (process CPU time) and ``faults`` (minor page faults), and ``out`` (the last run's output).
    With ``skipped`` (a dict), one whose warm-up fails (e.g. out of memory) is dropped, its error
    recorded there; ``log`` prints each round."""
    import resource

    kept = []
    for name, fn in fns.items():
        try:
            (warm or {}).get(name, fn)()
            sync()
            kept.append(name)
        except (RuntimeError, MemoryError) as exc:
            if skipped is None:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            skipped[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            print(f"NOTE: row {name} dropped: {skipped[name]}", flush=True)
    res = {k: {"wall": [], "cpu": [], "faults": [], "out": None} for k in kept}
    for i in range(repeats):
        k = i % len(kept) if kept else 0
        for name in kept[k:] + kept[:k]:
            sync()
            f0, t0, c0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter(), time.process_time()
            res[name]["out"] = fns[name]()
            sync()
            res[name]["wall"].append(time.perf_counter() - t0)
            res[name]["cpu"].append(time.process_time() - c0)
            res[name]["faults"].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
        if log:
            log(f"  round {i + 1}/{repeats}: " + ", ".join(f"{n} {res[n]['wall'][-1]:.3f}s" for n in kept))
    return res


# ---- i20k ----
def machine_record(device: torch.device | str = "cpu") -> dict:
    """The machine a speed study's timings come from, for its JSON: the CPU model, cores, torch
    threads and versions, and which checkout was measured; on CUDA also the GPU, CUDA and cuDNN
    versions and whether TF32 is on."""
    device, cpu = torch.device(device), platform.processor() or "?"
    if os.path.exists("/proc/cpuinfo"):
        cpu = next((x.split(":", 1)[1].strip() for x in open("/proc/cpuinfo") if x.startswith("model name")), cpu)
    info = dict(cpu_model=cpu, cpu_count=os.cpu_count(), torch_num_threads=torch.get_num_threads())
    info.update(torch=torch.__version__, python=sys.version.split()[0], platform=platform.platform())
    import lightning_snn

    info["lightning_snn"] = str(Path(lightning_snn.__file__).resolve().parent)  # which checkout was measured
    if device.type == "cuda":
        b = torch.backends
        info.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda, cudnn=b.cudnn.version())
        info.update(cudnn_allow_tf32=b.cudnn.allow_tf32, matmul_allow_tf32=b.cuda.matmul.allow_tf32)
    return info
