"""SCALE (selective resource allocation for math test-time scaling) as a DSPy program.

Subpackages: ``scale.signatures`` (typed stage signatures), ``scale.programs`` (the stage
modules, SCALE, baselines, presets), ``scale.optimizers`` (metrics, evaluation, routing
search, the optimizer); glue: ``scale.lm`` (models), ``scale.datasets``, ``scale.verify``
(answer checking), ``scale.tracking`` (MLflow), ``scale.cli``.
"""

__version__ = "0.2.0"
