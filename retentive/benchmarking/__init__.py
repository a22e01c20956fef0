"""The benchmark harness: methods x scenarios x seeds, run chunk by chunk through state folders.

``run_benchmark`` is the Python API behind ``retentive benchmark``; ``run_scenario`` runs one
method on one scenario; ``PROTOCOLS`` holds the DER paper's tuned method settings; ``SCENARIOS``
the named scenarios.
"""

from retentive.benchmarking.benchmark import BenchmarkReport, resolve_method, run_benchmark, write_heatmaps
from retentive.benchmarking.heatmap import cell_label, heatmap_figure, heatmap_image, write_heatmap
from retentive.benchmarking.methods import PROTOCOLS, BenchmarkMethod, load_methods
from retentive.benchmarking.orders import ORDERS, chunk_difficulty, task_order
from retentive.benchmarking.progress import Progress
from retentive.benchmarking.report import SummaryRow, format_table, mean_std, read_runs, summarize_runs
from retentive.benchmarking.results import RunResult, ViewResult
from retentive.benchmarking.runner import run_scenario
from retentive.benchmarking.scenarios import SCENARIOS, Scenario, ScenarioOptions, build_scenario, load_mnist_pair

__all__ = [
    "BenchmarkReport",
    "BenchmarkMethod",
    "ORDERS",
    "PROTOCOLS",
    "Progress",
    "RunResult",
    "SCENARIOS",
    "Scenario",
    "ScenarioOptions",
    "SummaryRow",
    "ViewResult",
    "build_scenario",
    "chunk_difficulty",
    "format_table",
    "heatmap_image",
    "load_methods",
    "load_mnist_pair",
    "mean_std",
    "read_runs",
    "cell_label",
    "heatmap_figure",
    "resolve_method",
    "run_benchmark",
    "run_scenario",
    "summarize_runs",
    "task_order",
    "write_heatmap",
    "write_heatmaps",
]
