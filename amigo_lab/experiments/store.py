"""Many sessions at once: DuckDB over the per-run Parquet files, with the same numbers as the pandas path.

Every run of :func:`amigo_lab.experiments.run` writes its rows to
``OUT/turns/scenario=<name>/run=<n>/part-0.parquet`` (hive-partitioned; thousands of runs stay thousands of
small files that no one has to load whole). :func:`session_metrics` asks DuckDB for count, mean, p50, p90
and p95 of every metric (``*_ms`` column), over the primary row of each answered step, grouped by
scenario (or any columns). :func:`session_metrics_pandas` computes the same with pandas and numpy, for
checking and for small folders: both use linear interpolation between order statistics (numpy's default,
DuckDB's ``quantile_cont``), so they agree to floating-point rounding.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from amigo_lab.experiments.experiment import (
    PERCENTILES,
    TURNS_DIR,
    ExperimentError,
    metric_summary,
)

__all__ = ["session_metrics", "session_metrics_pandas", "turn_files"]


def turn_files(out: str | os.PathLike[str]) -> str:
    """The glob of an experiment folder's per-run Parquet files (what DuckDB reads)."""
    folder = Path(out) / TURNS_DIR
    if not folder.is_dir():
        raise ExperimentError(f"{str(out)!r} has no {TURNS_DIR}/ folder; write one with amigo-lab run --out DIR")
    return str(folder / "**" / "*.parquet")


def session_metrics(out: str | os.PathLike[str], *, by: Sequence[str] = ("scenario",)) -> pd.DataFrame:
    """count, mean, p50, p90, p95 of every metric over all runs in ``out``, via DuckDB (no full load).

    Columns: ``by`` columns, ``metric``, ``count``, ``mean``, ``p50``, ``p90``, ``p95``. ``run`` and
    ``scenario`` come from the partition paths. Next: plot it, or compare with another folder.
    """
    import duckdb

    source = turn_files(out)
    con = duckdb.connect()
    try:
        relation = f"read_parquet('{source}', hive_partitioning = true, union_by_name = true)"
        schema = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
        numeric = ("DOUBLE", "FLOAT", "BIGINT", "INTEGER", "DECIMAL")
        metrics = [name for name, kind, *_ in schema if name.endswith("_ms") and str(kind).upper().startswith(numeric)]
        missing = [c for c in by if c not in {name for name, *_ in schema}]
        if missing:
            raise ExperimentError(f"cannot group by {missing}: the turns files have no such column")
        if not metrics:
            return pd.DataFrame(columns=[*by, "metric", "count", "mean", *(f"p{q}" for q in PERCENTILES)])
        keys = ", ".join(f'"{c}"' for c in by)
        unpivot = " UNION ALL ".join(
            f"SELECT {keys}{', ' if keys else ''}'{m}' AS metric, CAST(\"{m}\" AS DOUBLE) AS value FROM rows"
            for m in metrics)
        quantiles = ", ".join(f"quantile_cont(value, {q / 100}) AS p{q}" for q in PERCENTILES)
        group = f"{keys}, metric" if keys else "metric"
        query = (f"WITH rows AS (SELECT * FROM {relation} WHERE \"primary\" AND step >= 0), "
                 f"long AS ({unpivot}) "
                 f"SELECT {group}, count(value) AS count, avg(value) AS mean, {quantiles} "
                 f"FROM long GROUP BY {group} HAVING count(value) > 0")
        table = con.execute(query).df()
    finally:
        con.close()
    order = {m: i for i, m in enumerate(metrics)}
    table["_order"] = table["metric"].map(order)
    table = table.sort_values([*by, "_order"]).drop(columns="_order").reset_index(drop=True)
    table["count"] = table["count"].astype("int64")
    return table


def session_metrics_pandas(out: str | os.PathLike[str], *, by: Sequence[str] = ("scenario",)) -> pd.DataFrame:
    """The same table as :func:`session_metrics`, reading every file with pandas (to check, or small runs)."""
    files = sorted((Path(out) / TURNS_DIR).glob("scenario=*/run=*/*.parquet"))
    if not files:
        raise ExperimentError(f"{str(out)!r} has no {TURNS_DIR}/ files; write them with amigo-lab run --out DIR")
    parts = []
    for file in files:
        part = pd.read_parquet(file)
        part["scenario"] = file.parent.parent.name.split("=", 1)[1]
        part["run"] = int(file.parent.name.split("=", 1)[1])
        parts.append(part)
    table = metric_summary(pd.concat(parts, ignore_index=True), by=list(by))
    return table[table["count"] > 0].reset_index(drop=True)
