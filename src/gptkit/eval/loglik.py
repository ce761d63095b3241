"""The scorer's former home: it lives in :mod:`gptkit.scoring.loglik`; these names stay importable here."""

from gptkit.scoring.loglik import SCORING_BATCH_SIZE, Loglik, fit_to_context, score_continuations

__all__ = ["SCORING_BATCH_SIZE", "Loglik", "fit_to_context", "score_continuations"]
