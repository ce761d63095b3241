"""Training: one loop for pretraining and fine-tuning, exact resume, DDP/FSDP via torch.distributed."""

from gptkit._lazy import lazy_getattr

_EXPORTS = {
    "BatchSource": "gptkit.train.data",
    "PretrainBatches": "gptkit.train.data",
    "TrainConfig": "gptkit.train.config",
    "load_config": "gptkit.train.config",
    "TrainResult": "gptkit.train.progress",
    "TrainingDivergedError": "gptkit.train.loop",
    "train": "gptkit.train.loop",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
