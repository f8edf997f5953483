"""SCALE (selective resource allocation for math test-time scaling) as a DSPy program.

Layers, each importing only those below it (checked by import-linter, see pyproject.toml):
``scale.cli`` (commands); ``scale.serve``, ``scale.doctor``, ``scale.bench`` (applications);
``scale.optimizers`` (compiling); ``scale.tracking`` (MLflow); ``scale.harness`` (datasets,
evaluation, results files, replay); ``scale.programs`` (the stage modules, SCALE, baselines,
presets); ``scale.signatures`` (typed stage signatures); ``scale.models`` (LMs, adapters,
pools, local runtimes); ``scale.sandbox`` and ``scale.grading`` (answer checking).
"""

import importlib
import importlib.abc
import importlib.util
import os
import sys

# litellm fetches a price table from the network when first imported unless told not to;
# scale's modules may import it (through dspy) before any of them could say so.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.2.0"


# Modules that moved when the package took its layers (0.3): the old paths import the same
# module objects, so code and logged MLflow models that name them keep working.
# (scale.optimizers.evaluate and .replay are not here: those names are the functions
# ``from scale.optimizers import evaluate, replay`` gives, as before; the modules are
# scale.harness.evaluate and scale.harness.replay.)
MOVED = {
    "scale.lm": "scale.models.lm",
    "scale.adapter": "scale.models.adapter",
    "scale.router": "scale.models.pools",
    "scale.local": "scale.models.local",
    "scale.llama_server": "scale.models.llama_server",
    "scale.packaged": "scale.models.packaged",
    "scale.buildcheck": "scale.models.buildcheck",
    "scale.verify": "scale.grading.verify",
    "scale.calc": "scale.grading.calc",
    "scale.datasets": "scale.harness.datasets",
    "scale.recorded": "scale.harness.recorded",
    "scale.budgeted": "scale.harness.budgeted",
    "scale.optimizers.results": "scale.harness.results",
    "scale.report": "scale.bench.report",
    "scale.plots": "scale.bench.plots",
    "scale.throughput": "scale.bench.throughput",
    "scale.fakeserver": "scale.bench.fakeserver",
    "scale.mlflow_model": "scale.tracking.mlflow_model",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves each old module path in ``MOVED`` as the module it moved to."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):
        pass


sys.meta_path.append(_MovedModules())
