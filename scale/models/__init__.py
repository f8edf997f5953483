"""Reaching models: DSPy LMs with the call ledger (``lm``), the adapters that format and read
replies (``adapter``), litellm Router pools (``pools``), the embedded local models
(``packaged``, ``local``, ``llama_server``, ``buildcheck``)."""
