"""The one training engine under every task (headstart.engine.loop): configuration, state, checkpoints,
device and precision. A task gives it a model, batches, a loss and a validation score."""

from .accelerator import epoch_seed, make_accelerator, mixed_precision, seed_everything, start_trackers
from .checkpoint import Checkpoint
from .config import TrainConfig
from .loop import Callback, Diverged, Engine, PhaseData, Task, Validation, evaluating
from .module import ModuleFit, ModuleTask, fit_module
from .state import RunState

__all__ = ["Callback", "Checkpoint", "Diverged", "Engine", "ModuleFit", "ModuleTask", "PhaseData", "RunState", "Task",
           "TrainConfig", "Validation", "epoch_seed", "evaluating", "fit_module", "make_accelerator", "mixed_precision",
           "seed_everything", "start_trackers"]
