"""Running programs over datasets: loading examples (``datasets``), evaluation with
resumable results files (``evaluate``, ``results``), replays of stored samples (``replay``),
the recorded runtime (``recorded``) and the dataset-level token budget (``budgeted``)."""
