"""Answer checking: extraction and SymPy-backed equivalence (``verify``), and the check of a
reply's own arithmetic (``calc``)."""
