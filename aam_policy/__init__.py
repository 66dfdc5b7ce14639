"""aam-policy: Agentic Access Management as policy-as-code."""

__version__ = "0.1.0"
