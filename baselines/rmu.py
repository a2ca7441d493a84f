"""RMU: steer the forget text's hidden states at one layer toward a fixed random direction.

Paper: The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning (Li et al.,
ICML 2024, arXiv 2403.03218), section 5 (Representation Misdirection for Unlearning).
Loss, with h_l the output of decoder layer l (batch, seq, d_model) and the mean over the real
(non-padding) tokens and the d_model coordinates:

    L = mean ||h_l(x_forget) - c * u||^2 + alpha * mean ||h_l(x_retain) - h_l^ref(x_retain)||^2

u a fixed random unit vector (uniform [0, 1) coordinates, normalised, as in the paper's code;
drawn from the run's seed), c the steering coefficient, h^ref the frozen model before
unlearning. Only the MLPs (every MLP weight) of layers l-2, l-1 and l are trained (those below
0 dropped). The paper's Zephyr-7B settings (32 layers): l = 7, c = 6.5, alpha = 1200, AdamW lr
5e-5. ``layer: null`` takes the paper's relative depth on the target, round(7 / 32 * layers).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from simu_bench.errors import UserError
from simu_bench.simu import attribution
from simu_bench.unlearning.config import setting
from simu_bench.unlearning.unlearner import Unlearner

PAPER_LAYER, PAPER_DEPTH = 7, 32  # Zephyr-7B: steer layer 7 of 32


@dataclass
class RmuOptions:
    """RMU's settings (the ``options`` block of rmu.yaml)."""

    layer: int | None = setting(None, ge=0, doc="decoder layer steered; null: round(7 / 32 * layers)")
    steering_coeff: float = setting(6.5, gt=0.0, doc="c: the norm of the target direction")
    alpha: float = setting(1200.0, ge=0.0, doc="weight of the retain hidden-state term")


class Rmu(Unlearner):
    """RMU: forget hidden states -> c*u, retain hidden states -> the frozen model's, on layer l."""

    paper = "The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning (arXiv 2403.03218)"
    Options = RmuOptions
    retain_weight = "alpha"
    uses_reference = True

    def prepare(self, model, tokenizer, data) -> None:
        family = attribution.model_family(model)
        if family not in attribution.FAMILIES:
            attribution.down_projections(model)  # raises the UserError naming the supported families
        layers_path, down_path = attribution.FAMILIES[family]
        self._layers_path, self._mlp_path = layers_path, down_path.rpartition(".")[0]
        depth = len(model.get_submodule(layers_path))
        layer = self.options.layer
        if layer is None:
            layer = round(PAPER_LAYER / PAPER_DEPTH * depth)
        if not 0 <= layer < depth:
            raise UserError(
                f"{self.config.source or 'rmu config'}: options.layer: got {layer}, expected a decoder layer "
                f"in 0..{depth - 1} (the model has {depth} layers); set options.layer in range, or null for "
                f"the paper's relative depth"
            )
        self.layer = layer
        generator = torch.Generator().manual_seed(torch.initial_seed())  # the run's seed (set by the loop)
        hidden = model.get_input_embeddings().weight.shape[1]
        u = torch.rand(hidden, generator=generator)
        device = next(model.parameters()).device
        self.control = (self.options.steering_coeff * u / u.norm()).to(device)  # (d_model,)

    def parameters_to_train(self, model):
        layers = model.get_submodule(self._layers_path)
        chosen = []
        for index in range(max(0, self.layer - 2), self.layer + 1):
            mlp = layers[index].get_submodule(self._mlp_path)
            chosen += [(f"{self._layers_path}.{index}.{self._mlp_path}.{n}", p) for n, p in mlp.named_parameters()]
        return chosen

    def hidden(self, model, batch) -> torch.Tensor:
        """Layer l's output on ``batch``, (batch, seq, d_model)."""
        captured = []

        def keep(module, args, output):
            captured.append(output[0] if isinstance(output, tuple) else output)

        handle = model.get_submodule(f"{self._layers_path}.{self.layer}").register_forward_hook(keep)
        try:
            model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        finally:
            handle.remove()
        return captured[0].float()

    def loss(self, model, batch):
        forget_mask = batch.forget.attention_mask.bool()  # (batch, seq)
        forget = (self.hidden(model, batch.forget)[forget_mask] - self.control).pow(2).mean()
        retain_mask = batch.retain.attention_mask.bool()
        with torch.no_grad():
            target = self.hidden(self.reference, batch.retain)[retain_mask]
        retain = (self.hidden(model, batch.retain)[retain_mask] - target).pow(2).mean()
        return forget + self.options.alpha * retain

    def summary(self) -> dict:
        return {"rmu": {"layer": self.layer, "trained_layers": list(range(max(0, self.layer - 2), self.layer + 1))}}
