"""SCALE (selective resource allocation for math test-time scaling) as a DSPy program.

Subpackages: ``scale.signatures`` (typed stage signatures), ``scale.programs`` (the stage
modules, SCALE, baselines, presets), ``scale.optimizers`` (metrics, evaluation, routing
search, the optimizer); glue: ``scale.lm`` (models), ``scale.datasets``, ``scale.verify``
(answer checking), ``scale.tracking`` (MLflow), ``scale.cli``.
"""

import os

# litellm fetches a price table from the network when first imported unless told not to;
# scale's modules may import it (through dspy) before any of them could say so.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.2.0"
