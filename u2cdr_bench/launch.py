"""Run a grid beyond this process: submit the run configs as jobs through submitit (DESIGN.md "Scale").

Runs are independent, so a grid is an array of jobs, each running one config and writing its record into
the shared records folder (atomic writes make concurrent jobs safe). ``slurm`` submits a Slurm job array;
``submitit-local`` runs the same path with submitit's local executor (subprocesses on this machine), which
is how the path is tested without a cluster. No home-made scheduler.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from .data.registry import DataOptions
from .errors import UserError
from .runner import RunConfig, Runner

LAUNCHERS = ("local", "submitit-local", "slurm")


def run_one(
    config: dict[str, Any], options: dict[str, Any], out_dir: str, save: dict[str, bool] | None = None
) -> dict:
    """Job body: run one config (skipped when its record exists) and return the record.

    The job holds the config's lock (:func:`u2cdr_bench.outdir.config_lock`), waiting while another
    process runs the same config, and reuses the record that process wrote. ``save`` asks for the saved
    outputs (:class:`u2cdr_bench.artifacts.SaveOptions` fields).
    """
    from .artifacts import SaveOptions

    opts = DataOptions(
        **{k: (Path(v) if k in ("data_dir", "cache_dir") and v else v) for k, v in options.items()}
    )
    runner = Runner(opts, Path(out_dir), save=SaveOptions(**(save or {})))
    cfg = RunConfig(**config)
    if runner.is_done(cfg):
        return runner.existing(cfg)
    with runner.lock(cfg, wait=True):
        if runner.is_done(cfg):
            return runner.existing(cfg)
        return runner.run(cfg)


def submit(
    configs: list[RunConfig],
    options: DataOptions,
    out_dir: Path,
    launcher: str,
    slurm: dict[str, Any] | None = None,
    wait: bool = True,
    save: dict[str, bool] | None = None,
) -> list[dict]:
    """Submit one job per config; with ``wait`` return the records in config order."""
    import submitit

    if launcher not in ("submitit-local", "slurm"):
        raise UserError(f"Unknown launcher '{launcher}'; valid choices: {', '.join(LAUNCHERS)}.")
    folder = Path(out_dir) / ".submitit"
    cluster = "local" if launcher == "submitit-local" else "slurm"
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params = {"timeout_min": 60, "cpus_per_task": 2, "name": "u2cdr-bench"}
    params.update(slurm or {})
    executor.update_parameters(**params)
    opts = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()}
    jobs = executor.map_array(
        run_one,
        [c.as_dict() for c in configs],
        [opts] * len(configs),
        [str(out_dir)] * len(configs),
        [dict(save or {})] * len(configs),
    )
    if not wait:
        return []
    return [job.result() for job in jobs]
