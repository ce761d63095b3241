"""Training: one loop for pretraining and fine-tuning, exact resume, DDP/FSDP via torch.distributed."""

from gptkit.train.config import TrainConfig, load_config
from gptkit.train.data import BatchSource, PretrainBatches
from gptkit.train.loop import TrainingDivergedError, TrainResult, train

__all__ = [
    "BatchSource",
    "PretrainBatches",
    "TrainConfig",
    "TrainResult",
    "TrainingDivergedError",
    "load_config",
    "train",
]
