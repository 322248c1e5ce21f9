"""Training the body with unlabelled images (fit --unlabelled U --adapt fixmatch|mcc|dann), on the engine.

Each step takes a batch of labelled images and as many unlabelled ones (FixMatch: two views of each) through
one forward pass, so that BatchNorm sees both, and adds the unlabelled loss to the labelled one:

  fixmatch   consistency (Sohn et al., 2020): a weak view of each U image (the labelled images' crop and flip)
             labels it where the network is at least THRESHOLD sure; a strong view of it (RandAugment on the
             crop) is trained toward that label. For a U from DATA's own domain.
  mcc        minimum class confusion (Jin et al., 2020): the classes' confusion over the U batch (from
             predictions at TEMPERATURE, each example weighted by its certainty), its share off the diagonal
             made small. For a U from another domain (another camera, site or period).
  dann       domain-adversarial training (Ganin et al., 2016): a small network (the domain discriminator)
             learns to tell DATA's pooled body features from U's, and the body learns to make them alike
             through a gradient reversal, its strength rising from 0 to 1 over the run (the paper's
             2 / (1 + exp(-10 p)) - 1). For a U from another domain. The discriminator trains, is
             checkpointed and resumes with the run (engine.Task.extra_modules), and is not part of its weights.

The paper's FixMatch draws 7 unlabelled images per labelled one; on a CPU each costs a forward and backward
pass, so here it is one (UNLABELLED_PER_LABELLED). Every epoch's U batches and views are drawn from
(seed, epoch), so a killed run resumes exactly as the labelled ones do.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.transforms import TrainLoader
from ..engine import PhaseData
from ..strategies import Phase
from .task import ClassificationTask

THRESHOLD = 0.95  # FixMatch: the weak view's confidence from which its label is trained (the paper's)
WEIGHT = 1.0  # the unlabelled loss's weight against the labelled one (both papers')
TEMPERATURE = 2.5  # MCC's (the paper's, for domain adaptation)
UNLABELLED_PER_LABELLED = 1


def mcc_loss(logits: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """Minimum class confusion of a batch's class logits: the share of the batch's class-correlation matrix
    (predictions at `temperature`, each example weighted by its certainty, rows normalised) off its diagonal."""
    k = logits.shape[1]
    p = torch.softmax(logits.float() / temperature, dim=1)
    entropy = -(p * torch.log(p + 1e-5)).sum(1)
    w = 1 + torch.exp(-entropy)
    w = (len(p) * w / w.sum()).detach().unsqueeze(1)
    confusion = (p * w).t() @ p
    confusion = confusion / confusion.sum(1, keepdim=True)
    return (confusion.sum() - torch.trace(confusion)) / k


class _Reverse(torch.autograd.Function):
    """Identity forward; the gradient times -coeff backward (DANN's gradient reversal)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coeff * grad, None


class DomainAdversarial(nn.Module):
    """The model and its domain discriminator as the one module the engine wraps (DDP averages gradients through
    its forward): forward(x) is the model's logits; forward(x, coeff) also the discriminator's logit for each
    example's features, through a gradient reversal of strength `coeff`."""

    def __init__(self, model: nn.Module, discriminator: nn.Module) -> None:
        super().__init__()
        self.model, self.discriminator = model, discriminator

    def forward(self, x: torch.Tensor, coeff: float | None = None) -> Any:
        if coeff is None:
            return self.model(x)
        features = self.model.forward_features(x)
        return self.model.head(features), self.discriminator(_Reverse.apply(features, coeff)).squeeze(1)


def discriminator(in_features: int, hidden: int = 256) -> nn.Module:
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 1))


class StrongView:
    """uint8 HWC -> uint8 HWC: RandAugment (two operations at magnitude 9, torchvision's defaults), seeded."""

    def __init__(self) -> None:
        from torchvision.transforms import v2

        self.augment = v2.RandAugment()

    def __call__(self, image: torch.Tensor, seed: int) -> torch.Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.augment(image.permute(2, 0, 1)).permute(1, 2, 0).contiguous()


class UnlabelledImages(torch.utils.data.Dataset):
    """U's images as (weak view,) or (weak view, strong view), each view seeded by (seed, epoch, index)."""

    def __init__(self, paths: list[Any], load: TrainLoader, strong: bool, seed: int) -> None:
        self.paths, self.load, self.seed = [str(p) for p in paths], load, seed
        self.strong = StrongView() if strong else None
        self.epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self.epoch.fill_(epoch)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        a, b = np.random.SeedSequence([self.seed, 7, int(self.epoch), i]).generate_state(2)
        weak = self.load(self.paths[i], int(a))
        return (weak,) if self.strong is None else (weak, self.strong(weak, int(b)))


class AdaptingTask(ClassificationTask):
    """ClassificationTask whose body phases also learn from U's images by `method` (headstart.adapt.ENGINE_METHODS)."""

    def __init__(self, *args: Any, unlabelled: list[Any], method: str, num_features: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.method, self.unlabelled = method, list(unlabelled)
        self.seen = 0  # U's images trained on (FixMatch: counted once for its two views)
        self.confident = 0  # FixMatch: those whose weak view's label was trained on
        self.adversarial = DomainAdversarial(self.model, discriminator(num_features)) if method == "dann" else None
        self.step = 0  # within the epoch (DANN's reversal grows with the run's progress)

    def extra_modules(self) -> dict[str, nn.Module]:
        return {"domain_discriminator": self.adversarial.discriminator} if self.adversarial is not None else {}

    def trained_module(self) -> nn.Module:
        return self.adversarial if self.adversarial is not None else self.model

    def phase_info(self) -> dict[str, Any]:
        """FixMatch: the share of U's weak views sure enough to train on (this process's, since the phase (or
        its resumption) started)."""
        info = super().phase_info()
        if self.method == "fixmatch":
            info["pseudo_labelled_share"] = round(self.confident / self.seen, 4) if self.seen else None
        self.seen = self.confident = 0
        return info

    def start_phase(self, index: int, phase: Phase, of: int, acc) -> PhaseData:
        data = super().start_phase(index, phase, of, acc)
        u_set = UnlabelledImages(self.unlabelled, TrainLoader(self.card.preprocessing, "crop-flip"),
                                 self.method == "fixmatch", self.cfg.seed)
        batch = min(self.cfg.batch_size, len(self.train_idx)) * UNLABELLED_PER_LABELLED
        count = data.steps_per_epoch * batch
        # the sampler draws in this process when an epoch starts, from a generator batches() seeds: the loader's
        # workers (started once a phase, as the labelled loader's) only decode
        self.u_generator = torch.Generator()
        sampler = torch.utils.data.RandomSampler(u_set, replacement=len(u_set) < count, num_samples=count,
                                                 generator=self.u_generator)
        self.u_set, self.u_loader = u_set, torch.utils.data.DataLoader(
            u_set, batch_size=batch, sampler=sampler, drop_last=True, num_workers=data.workers,
            persistent_workers=data.workers > 0)
        data.info["unlabelled_per_epoch"] = count * self.acc.num_processes
        self.steps = data.steps_per_epoch
        if self.adversarial is not None:
            self.adversarial.discriminator.to(acc.device)
        return data

    def batches(self, data: PhaseData, global_epoch: int):
        """The labelled batches, each with a batch of U drawn (with replacement where U is smaller than an
        epoch's draw) from the randomness the engine seeded for this epoch; each process of a DDP run draws its
        own."""
        labelled = super().batches(data, global_epoch)
        self.u_set.set_epoch(global_epoch)
        self.u_generator.manual_seed(int(torch.randint(0, 2**62, ())) + self.acc.process_index)
        self.epoch, self.step = global_epoch, 0
        return zip(labelled, self.u_loader)

    def _reversal(self) -> float:
        """DANN's reversal strength at this step: 2 / (1 + exp(-10 p)) - 1, p the share of the run's epochs done."""
        p = min(1.0, (self.epoch + self.step / max(1, self.steps)) / max(1, self.cfg.epochs))
        return float(2.0 / (1.0 + np.exp(-10.0 * p)) - 1.0)

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        (inputs, labels), views = batch
        n, m = len(labels), len(views[0])
        # the labelled batch comes on the device (Accelerate's loader), U's views from their own loader
        x = self._input(torch.cat([inputs, *(v.to(inputs.device, non_blocking=True) for v in views)]))
        self.seen += m
        if self.method == "dann":
            logits, domain = model(x, self._reversal())
            self.step += 1
            side = torch.cat([torch.zeros(n), torch.ones(m)]).to(domain.device)
            unlabelled = nn.functional.binary_cross_entropy_with_logits(domain.float(), side)
            return self.loss_fn(logits[:n], labels) + WEIGHT * unlabelled, n
        logits = model(x)
        loss = self.loss_fn(logits[:n], labels)
        if self.method == "fixmatch":
            weak, strong = logits[n:n + m], logits[n + m:]
            conf, target = torch.softmax(weak.detach().float(), 1).max(1)
            keep = (conf >= THRESHOLD).float()
            unlabelled = (nn.functional.cross_entropy(strong.float(), target, reduction="none") * keep).mean()
            self.confident += int(keep.sum())
        else:
            unlabelled = mcc_loss(logits[n:])
        return loss + WEIGHT * unlabelled, n
