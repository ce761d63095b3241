"""Evaluation: log-likelihood scoring, perplexity, multiple choice, classification, generation metrics,
a CrowS-Pairs-style bias probe and closed-form training cost (see docs/evaluation.md)."""
