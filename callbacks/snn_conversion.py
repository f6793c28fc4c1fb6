"""The conversion callback: calibrate -> convert -> evaluate across T -> log.

Runs at the end of ``fit`` and at the end of ``test`` (a checkpoint given with
``--ckpt_path``). The work itself is :func:`lightning_snn.evaluation.evaluate_config`; this
callback checks its settings and the results path before training, builds the loaders (each
DDP rank gets its share of the calibration and test images; thresholds are all-reduced with MAX
and counts with SUM, so the numbers equal a single process's), stops at the next batch on
SIGTERM (:mod:`lightning_snn.callbacks.signals`), prints the table and logs its scalars to every
logger (tables and plots where the logger shows them: :mod:`lightning_snn.callbacks.wandb_logging`),
then writes ``snn_results.json`` into the run's own directory (:mod:`lightning_snn.callbacks.run_files`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Dataset, Subset

from lightning_snn.conversion_config import ConversionConfig
from lightning_snn.diagnostics import EnergyModel
from lightning_snn.evaluation import ConversionReport, evaluate_config
from lightning_snn.export import ExportConfig, export_nir
from lightning_snn.recurrent_conversion import check_recurrent_config, is_recurrent
from lightning_snn.report import write_dashboard
from lightning_snn.results import dashboard_name

from .run_files import claim_files, release, run_dir, write_json_atomic
from .signals import Repeatable, SigtermFlag, until_sigterm
from .wandb_logging import log_dashboard, log_report

# SigtermFlag and until_sigterm are re-exported: their home is signals.py
__all__ = ["SNNConversion", "SigtermFlag", "run_dir", "shard", "until_sigterm", "write_json_atomic"]


def shard(dataset: Dataset, rank: int, world_size: int) -> Dataset:
    """Rank ``rank``'s share (every ``world_size``-th item), without padding duplicates."""
    if world_size == 1:
        return dataset
    return Subset(dataset, list(range(rank, len(dataset), world_size)))


def _shift_size(report: ConversionReport) -> str:
    """The shift's size where it is not the paper's default, for the printed header."""
    if report.shift == "constant":
        return f" {report.shift_fraction:g} V_th/step"
    return f" x{report.shift_scale:g}" if report.shift_scale != 1 else ""


class SNNConversion(pl.Callback):
    """Convert the trained ANN to an SNN and report accuracy at every simulation length.

    Args:
        timesteps: simulation lengths T at which to report SNN accuracy.
        shift: ``"membrane"`` (V_th/2 initial membrane: one simulation gives every T),
            ``"bias"`` (the paper's V_th/(2T) bias, one simulation per T), ``"constant"``
            (``shift_fraction x V_th`` every step, the paper's Tables 2-3; one simulation) or ``"none"``.
        shift_scale: multiplies the membrane or bias shift (0 = none, 1 = the paper's; Fig. 3B-D).
        shift_fraction: the constant shift per step in units of V_th (``shift: constant`` only;
            default 1/1600 = 6.25e-4, the paper's A.2).
        average_over: ``[first, last]``, e.g. ``[400, 600]``: also report the mean and standard
            deviation of the SNN's accuracy over every T of that range, from the same simulation
            (the paper's Tables 2-3); ``last`` must be in the simulation (``<= max(timesteps)``).
        readout: ``"analog"`` (sum of the last layer's output) or ``"spiking"`` (IF output
            layer with threshold = max logit, as in the paper).
        calibration_samples: training images (fixed, seeded, un-augmented subset) for the
            thresholds; None = the whole training set, as the paper does.
        calibration_seed: seed of that subset.
        max_test_samples: evaluate on the first N test images only; None = all.
        batch_size: evaluation batch size (default: the DataModule's ``eval_batch_size``).
        time_chunk: time steps folded into one forward pass; ``"auto"`` picks per device.
        calibration: how thresholds are set: ``"max"`` (the paper), ``"percentile"`` (per layer,
            see ``percentile``), ``"channel"`` (max per output channel) or ``"lambda"`` (QCFS's
            clip level ``lambda``; see :func:`lightning_snn.conversion.calibrate_thresholds`).
        percentile: ``p`` in (0, 100] for ``calibration: percentile``, e.g. 99.99.
        correction: ``"none"`` or ``"light"`` (SNN Calibration's bias correction on the
            calibration images, :func:`lightning_snn.correction.correct_bias`; membrane or no shift).
        correction_timesteps: the T the correction is tuned for (required with ``light``); the
            curve still comes from one simulation, every T with the same corrected SNN.
        neuron: ``"if"`` (the paper's integrate-and-fire neuron) or ``"signed"`` (it also fires
            negative spikes that take back early ones, so its spike count depends only on the
            total input, not on when it came: fewer errors at T <= 8; not with a gated max-pool), or
            another registered neuron model or its import path (docs/EXTENDING.md).
        diagnostics: also report firing rates, synaptic operations, energy per image and per-layer
            errors at every T, from the same simulation (at most a few % more time), and draw
            ``snn_report.png`` beside the results (:mod:`lightning_snn.diagnostics`, :mod:`lightning_snn.report`).
        statistics: more per-layer diagnostics by name, e.g. ``[silent, saturated]`` (the fraction of
            neurons that never fired / fired at every step), or a registered one's import path
            (:mod:`lightning_snn.layer_statistics`, docs/EXTENDING.md); image models, with ``diagnostics``.
        energy_ac_pj, energy_mac_pj: energy of one accumulate / multiply-accumulate in pJ
            (defaults: 45 nm, Horowitz 2014).
        output_loops: recurrent models only (appendix A.4): the loop counts ``L`` of the spiking output
            layer, whose input is replayed ``L`` times (default 1, 2, 4, 8, 16; ``timesteps`` are then
            the SNN's steps per word, see :mod:`lightning_snn.recurrent_evaluation`).
        results_file: where the results go: a file name (or relative path) in the run's own
            directory, or an absolute path (refused at the start if a file is there already, as is
            a relative path that leads out of the run's directory). The dashboard goes beside it,
            named after it (``snn_results.json`` -> ``snn_report.png``,
            :func:`lightning_snn.results.dashboard_name`); both are claimed before training.
        export: ``"nir"``: also write the SNN as ``snn.nir`` beside the results, for other
            simulators (:mod:`lightning_snn.export`; needs ``pip install -e ".[nir]"``).
        export_timesteps: the T the file is for (the membrane shift is written as the bias shift
            ``V_th / (2T)``); required with ``export``.
        export_options: ``{pooling: avg|sum|conv, integrator: true|false}`` for
            :func:`lightning_snn.export.export_nir` (docs/EXPORT.md says which importer needs which).
        on_fit: run at the end of fit.
        on_test: run at the end of test.
    """

    def __init__(
        self,
        timesteps: list[int] = [16, 32, 64, 128, 256, 512],  # noqa: B006 (jsonargparse shows it)
        shift: str = "membrane",
        readout: str = "analog",
        calibration_samples: int | None = None,
        calibration_seed: int = 0,
        max_test_samples: int | None = None,
        batch_size: int | None = None,
        time_chunk: int | str = "auto",
        calibration: str = "max",
        percentile: float | str = 99.99,  # str: "nan" or "abc" reach check_calibration's message, not the parser's
        correction: str = "none",
        correction_timesteps: int | None = None,
        neuron: str = "if",
        diagnostics: bool = True,
        energy_ac_pj: float = 0.9,
        energy_mac_pj: float = 4.6,
        output_loops: list[int] | None = None,
        results_file: str = "snn_results.json",
        on_fit: bool = True,
        on_test: bool = True,
        export: str | None = None,
        export_timesteps: int | None = None,
        export_options: dict[str, Any] | None = None,
        shift_scale: float = 1.0,
        shift_fraction: float | None = None,
        average_over: list[int] | None = None,
        statistics: list[str] | None = None,
    ) -> None:
        for name, value in (("energy_ac_pj", energy_ac_pj), ("energy_mac_pj", energy_mac_pj)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise ValueError(f"snn.{name} must be a number of picojoules >= 0, e.g. 0.9, got {value!r}.")
        energy = EnergyModel(float(energy_ac_pj), float(energy_mac_pj))
        #: every conversion setting, checked once here and passed down as is (evaluation.evaluate_config)
        self.config = ConversionConfig(
            timesteps, shift, readout, time_chunk, calibration, percentile, correction, correction_timesteps, neuron,
            shift_scale, shift_fraction, average_over, diagnostics, energy, batch_size, tuple(statistics or ()),
            output_loops,
        )  # fmt: skip
        self.timesteps = list(self.config.timesteps)
        self.shift_scale, self.shift_fraction, self.average_over = shift_scale, shift_fraction, average_over
        #: the export's settings, checked once here against the conversion's (None: no export)
        self.export_config = ExportConfig.build(export, export_timesteps, export_options, self.config)
        self.export, self.export_timesteps, self.export_options = export, export_timesteps, dict(export_options or {})
        self.calibration, self.percentile, self.neuron = calibration, percentile, neuron
        self.output_loops = self.config.output_loops
        self.correction, self.correction_timesteps = correction, correction_timesteps
        self.diagnostics, self.energy = diagnostics, self.config.energy
        for name, value in (("calibration_samples", calibration_samples), ("max_test_samples", max_test_samples)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"snn.{name} must be a positive int or null (the default), got {value!r}.")
        if not isinstance(results_file, (str, Path)) or not str(results_file).strip():
            raise ValueError(f"snn.results_file must be a file name, got {results_file!r}.")
        self.shift, self.readout = shift, readout
        self.calibration_samples, self.calibration_seed = calibration_samples, calibration_seed
        self.max_test_samples, self.batch_size = max_test_samples, batch_size
        self.time_chunk, self.results_file = time_chunk, str(results_file)
        self.on_fit, self.on_test = on_fit, on_test
        self.results: dict[str, Any] | None = None
        self.report: ConversionReport | None = None
        self._claimed: list[Path] | None = None  # the files the next evaluation writes (rank zero)

    # ---- hooks ---------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Check, before any training, what the evaluation at the end will need."""
        if not ((stage == "fit" and self.on_fit) or (stage == "test" and self.on_test)):
            return
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "calibration_set"):
            raise TypeError(
                "SNNConversion needs a DataModule with calibration_set() and test_set "
                "(e.g. lightning_snn.data.CIFAR10DataModule); pass one, or set snn.on_fit/on_test to false."
            )
        model = pl_module.model if hasattr(pl_module, "model") else pl_module
        if is_recurrent(model):  # appendix A.4's converter: refuse an unknown model or setting now
            check_recurrent_config(model, self.config)
            if self.export is not None:
                raise ValueError("snn.export applies to image models only (the recurrent SNN has no NIR form here).")
        else:
            graph = self.config.check_model(model)  # Hardswish, nn.Upsample, ...: refused now, not after training
            if self.export_config is not None:
                self.export_config.check_graph(graph, self.config)  # the same prepared graph
        if trainer.is_global_zero:
            self._release()
            self._claimed = self._claim(trainer)  # the files this evaluation will write, or a refusal now

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_evaluated = False

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # here, not in on_fit_end: Lightning calls on_fit_end after its teardown, which has moved the
        # model to the CPU (a GPU run would calibrate and simulate on the CPU, and DDP over NCCL
        # could not all-reduce the thresholds)
        if self.on_fit:
            self._fit_evaluated = True
            self.evaluate(trainer, pl_module, stage="fit")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a fit whose training loop did not run (limit_train_batches=0) has no on_train_end
        if self.on_fit and not getattr(self, "_fit_evaluated", False):
            self.evaluate(trainer, pl_module, stage="fit")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.on_test:
            self.evaluate(trainer, pl_module, stage="test")

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._release()  # no empty results file left behind by a failed run

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._release()  # claimed, never evaluated

    def _release(self) -> None:
        release(self._claimed)
        self._claimed = None

    # ---- the work ------------------------------------------------------------------------
    def _claim(self, trainer: pl.Trainer) -> list[Path]:
        """Claim the results file and, with the diagnostics, its dashboard beside it, and with an
        export the NIR file last (an absolute results_file replaces the run's folder;
        ``run_files.claim_files`` refuses a taken one)."""
        name = Path(self.results_file)
        names = [name, name.with_name(dashboard_name(name.name))] if self.diagnostics else [name]
        if self.export is not None:  # snn_results.json -> snn.nir; a.json -> a.nir
            names.append(name.with_name("snn.nir" if name.name == "snn_results.json" else f"{name.stem}.nir"))
        return claim_files(run_dir(trainer), names, "snn.results_file")

    def _loader(self, dataset: Dataset, trainer: pl.Trainer, datamodule, flag: SigtermFlag) -> Repeatable:
        batch_size = self.batch_size or getattr(datamodule, "eval_batch_size", 256)
        part = shard(dataset, trainer.global_rank, trainer.world_size)
        loader = DataLoader(part, batch_size=batch_size, num_workers=getattr(datamodule, "num_workers", 0))
        return Repeatable(trainer, loader, flag)

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> dict[str, Any]:
        """Calibrate, convert, evaluate every T; print, log and write the results (rank zero)."""
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "calibration_set"):
            raise TypeError(
                "SNNConversion needs a DataModule with calibration_set() and test_set "
                "(e.g. lightning_snn.data.CIFAR10DataModule)."
            )
        if not hasattr(datamodule, "test_set"):
            datamodule.setup("test")
        model = pl_module.model if hasattr(pl_module, "model") else pl_module
        # the trainer's device, not the module's: after the trainer's teardown (on_fit_end, or a
        # call after fit returned) Lightning has moved the module to the CPU
        device = trainer.strategy.root_device
        home = getattr(pl_module, "device", device)
        if home != device:
            pl_module.to(device)
        try:
            return self._evaluate(trainer, model, datamodule, stage, device)
        finally:
            if home != device:
                pl_module.to(home)

    def _evaluate(self, trainer: pl.Trainer, model, datamodule, stage: str, device) -> dict[str, Any]:
        calibration = datamodule.calibration_set(self.calibration_samples, self.calibration_seed)
        test_set = datamodule.test_set
        if self.export is not None:  # the export's input shape (image models only; text batches have none)
            self._input_shape = tuple(test_set[0][0].shape)
        if self.max_test_samples is not None and self.max_test_samples < len(test_set):
            test_set = Subset(test_set, range(self.max_test_samples))
        rank_zero_info(
            f"SNN conversion ({stage}): calibrating on {len(calibration)} images, then T up to "
            f"{self.timesteps[-1]} on {len(test_set)} test images"
        )
        with SigtermFlag() as flag:
            test_batches = self._loader(test_set, trainer, datamodule, flag)
            if trainer.is_global_zero and trainer.progress_bar_callback is not None:
                from tqdm.auto import tqdm

                test_batches = tqdm(test_batches, desc=f"SNN eval (T<={self.timesteps[-1]})", leave=False)
            calibration_batches = self._loader(calibration, trainer, datamodule, flag)
            report = evaluate_config(model, calibration_batches, test_batches, self.config, device=device)
        results = {
            "stage": stage,
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
            "calibration_seed": self.calibration_seed,
            "world_size": trainer.world_size,
            **report.to_json(),
        }
        self.report, self.results = report, results
        if trainer.is_global_zero:
            self._report(trainer, report, results)
        return results

    def _report(self, trainer: pl.Trainer, report: ConversionReport, results: dict[str, Any]) -> None:
        """Print and log first, write the file last: a failed write never loses the numbers."""
        claimed, self._claimed = self._claimed, None
        s = report.seconds
        clip = {True: "on", False: "OFF (plain-ReLU source ANN)", None: "n/a"}[report.threshold_clip_on]
        rank_zero_info(
            f"SNN conversion ({results['stage']}, shift={report.shift}{_shift_size(report)}, readout={report.readout}, "
            f"calibration={report.calibration}, correction={report.correction}, neuron={report.neuron}, "
            f"{report.num_test_images} test images, {report.calibration_images} calibration images, "
            f"threshold ReLU clip {clip})\n{report.table()}\n"
            f"  time: calibration {s['calibration']:.1f}s, correction {s.get('correction', 0.0):.1f}s, "
            f"simulation {s['simulation']:.1f}s"
        )
        metrics = {"snn/ann_acc": report.ann_acc}
        for t in report.timesteps:
            metrics[f"snn/acc_T{t}"] = report.snn_acc[t]
            metrics[f"snn/conversion_loss_T{t}"] = report.conversion_loss[t]
        if report.average is not None:
            metrics.update(report.average.metrics())
        for name, v in results["thresholds"].items():
            if isinstance(v, (int, float)):
                metrics[f"snn/threshold/{name}"] = v
        for t in results.get("firing_rates", {}):  # with diagnostics
            metrics[f"snn/firing_rate_T{t}"] = results["firing_rates"][t]["network"]
            metrics[f"snn/sops_T{t}"] = results["synaptic_ops"][t]["per_image"]
            metrics[f"snn/energy_uj_T{t}"] = results["energy"][t]["snn_uj"]
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        log_report(trainer.loggers, report)  # tables and plots where the logger shows them (W&B)
        path = Path(self.results_file)
        try:
            claimed = claimed or self._claim(trainer)  # claimed in setup; here for a direct call
            path = claimed[0]
            write_json_atomic(path, results)
        except (OSError, ValueError) as exc:
            release(claimed)
            raise OSError(
                f"the SNN results above were printed and logged, but writing {str(path)!r} failed: {exc}"
            ) from exc
        rank_zero_info(f"  results: {path}")
        try:
            if report.diagnostics is not None and len(claimed) > 1:
                self._dashboard(trainer, results, claimed[1])
            if self.export is not None:
                self._export(report, claimed[-1])
        finally:
            release(claimed[1:])  # a claimed file never written (a failed export) does not stay behind

    def _export(self, report: ConversionReport, path: Path) -> None:
        """The SNN as a NIR file beside the results (written and logged already)."""
        t = self.export_config.timesteps
        snn = next(s for s in report.snns if s.valid_at(t))
        try:
            export_nir(snn, path, self._input_shape, t, **self.export_config.options)
        except Exception as exc:
            raise type(exc)(f"the SNN results were written, but the NIR export failed: {exc}") from exc
        note = ""
        if snn.shift == "membrane":  # NIR has no initial potential: say which network the file holds
            note = (
                f"\n    (it holds the bias-shift SNN at T = {t}, a relative of the membrane-shift SNN measured above: "
                "NIR has no initial potential; import_nir restores the membrane shift; shift: bias exports the "
                "measured SNN itself; docs/EXPORT.md)"
            )
        rank_zero_info(f"  NIR export (T = {t}): {path}{note}")

    def _dashboard(self, trainer: pl.Trainer, results: dict[str, Any], png: Path) -> None:
        """The PNG dashboard beside the results (and in W&B); the numbers are saved already, so a
        failure to draw warns instead of failing the run."""
        try:
            write_dashboard(results, png)
        except Exception as exc:  # matplotlib or the file system: the JSON holds every number
            release([png])
            rank_zero_warn(f"could not draw the SNN dashboard {str(png)!r}: {type(exc).__name__}: {exc}")
            return
        rank_zero_info(f"  dashboard: {png}")
        log_dashboard(trainer.loggers, png)
