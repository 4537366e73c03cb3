"""``usblp-emu bench``: the lifetime strategies side by side, measured in one run.

Four measurements, each run once per strategy in the same process, so every ratio compares
numbers taken on the same machine within the same minute or two:

1. open throughput (``_open``): opens of different printers, each taking 5 ms to resume;
2. disconnect-to-free latency (``_latency``, rcu and hazard): unplug to free under long readers;
3. unreclaimed objects with one stalled reader (``_unreclaimed``, rcu and hazard);
4. driver ops/s (``_ops``): open / write / ioctl / poll / close, profiled when below target.

Each measurement's module explains it and holds its result record. ``_common`` runs the
threads and turns violations into verdicts; ``_report`` runs the measurements in rounds and
builds the report (ratios, targets: what ``--json`` prints); ``_render`` draws it with rich,
``_plot`` with matplotlib; ``_cli`` has the options and ``run``.
"""

from __future__ import annotations

from usblp_emu._bench._cli import add_arguments as add_arguments
from usblp_emu._bench._cli import run as run
from usblp_emu._bench._common import BenchConfig as BenchConfig
from usblp_emu._bench._common import BenchUsageError as BenchUsageError
from usblp_emu._bench._render import render_report as render_report
from usblp_emu._bench._report import run_bench as run_bench

__all__ = ["BenchConfig", "BenchUsageError", "add_arguments", "render_report", "run", "run_bench"]
