"""Standalone strategies: Verdict moves traffic itself (`verdict canary run`, `verdict demo`)."""
