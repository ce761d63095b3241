"""Log-likelihood scoring shared by the task pipelines and the evaluations: log p(continuation | context).

This package sits below both ``gptkit.tasks`` and ``gptkit.eval`` and imports neither. Its ``__init__``
imports nothing heavy, so command-line parsers can read the default batch size without loading torch.
"""

SCORING_BATCH_SIZE = 16  # rows per forward pass when scoring
