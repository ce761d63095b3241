"""Evaluation: perplexity, multiple choice, classification, generation metrics, a CrowS-Pairs-style bias
probe and closed-form training cost (see docs/evaluation.md); the scoring itself is ``gptkit.scoring``."""
