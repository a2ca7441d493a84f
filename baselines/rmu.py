"""RMU: steer the forget text's hidden states at one layer toward a fixed random direction.

Paper: The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning (Li et al.,
ICML 2024, arXiv 2403.03218), section 5 (Representation Misdirection for Unlearning); code
centerforaisafety/wmdp, `rmu/unlearn.py`.
Loss, with h_l the output of decoder layer l (batch, seq, d_model) and the mean over the real
(non-padding) tokens and the d_model coordinates:

    L = mean ||h_l(x_forget) - c * u||^2 + alpha * mean ||h_l(x_retain) - h_l^ref(x_retain)||^2

u a fixed random unit vector (uniform [0, 1) coordinates, normalised, as in the authors' code;
drawn from the run's seed), c the steering coefficient, h^ref the frozen model before
unlearning. Trained, in layers l-2, l-1 and l (those below 0 dropped), by ``params``:
``down_proj`` (the default, as the authors' code: ``param_ids=[6]`` is the MLP's down
projection of a Zephyr/Mistral decoder layer), ``mlp`` (every MLP weight) or ``all`` (every
weight of those layers). The paper's Zephyr-7B settings (32 layers): l = 7, c = 6.5,
alpha = 1200, AdamW lr 5e-5, 150 batches of 4 in the released command. ``layer: null`` takes
the paper's relative depth on the target, round(7 / 32 * layers).

c = 6.5 was chosen for Zephyr's layer-7 activations; how large it is depends on the target's
activation norm. `prepare` measures mean ||h_l|| over the forget tokens of the model before
unlearning (in `summary()` with c / mean ||h_l||), and ``c_relative`` sets c as that multiple
of it instead of the absolute ``steering_coeff``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from simu_bench.data import pairing
from simu_bench.errors import UserError
from simu_bench.simu import attribution
from simu_bench.unlearning.config import setting
from simu_bench.unlearning.unlearner import Unlearner

PAPER_LAYER, PAPER_DEPTH = 7, 32  # Zephyr-7B: steer layer 7 of 32
PARAMS = ("down_proj", "mlp", "all")
NORM_BATCH = 8  # forget examples per forward pass when measuring mean ||h_l||


@dataclass
class RmuOptions:
    """RMU's settings (the ``options`` block of rmu.yaml)."""

    layer: int | None = setting(None, ge=0, doc="decoder layer steered; null: round(7 / 32 * layers)")
    steering_coeff: float = setting(6.5, gt=0.0, doc="c: the norm of the target direction")
    c_relative: float | None = setting(
        None, gt=0.0, doc="c as this multiple of mean ||h_l|| on the forget text before unlearning; "
                          "null: c = steering_coeff")
    alpha: float = setting(1200.0, ge=0.0, doc="weight of the retain hidden-state term")
    params: str = setting("down_proj", choices=PARAMS,
                          doc="trained in layers l-2..l: down_proj (the authors' code) | mlp | all")


class Rmu(Unlearner):
    """RMU: forget hidden states -> c*u, retain hidden states -> the frozen model's, on layer l."""

    paper = "The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning (arXiv 2403.03218)"
    Options = RmuOptions
    retain_weight = "alpha"
    uses_reference = True

    @classmethod
    def check_config(cls, config, model=None) -> list[str]:
        """With the target's shape: its family is mapped and options.layer is one of its layers."""
        if model is None:
            return []
        problems = attribution.unsupported(model.model_type)
        layer = config.options.layer
        if layer is not None and layer >= model.layers:
            problems.append(f"options.layer: got {layer}, expected a decoder layer in 0..{model.layers - 1} (the "
                            f"model has {model.layers} layers); set options.layer in range, or null for the paper's "
                            "relative depth")
        return problems

    def prepare(self, model, tokenizer, data) -> None:
        family = attribution.model_family(model)
        if family not in attribution.FAMILIES:
            attribution.down_projections(model)  # raises the UserError naming the supported families
        layers_path, down_path = attribution.FAMILIES[family]
        self._layers_path, self._down_path = layers_path, down_path
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
        self.hidden_norm = self.mean_hidden_norm(model, tokenizer, list(data.forget))
        relative = self.options.c_relative
        self.steering_coeff = relative * self.hidden_norm if relative is not None else self.options.steering_coeff
        generator = torch.Generator().manual_seed(torch.initial_seed())  # the run's seed (set by the loop)
        hidden = model.get_input_embeddings().weight.shape[1]
        u = torch.rand(hidden, generator=generator)  # (d_model,), every coordinate in [0, 1)
        device = next(model.parameters()).device
        self.control = (self.steering_coeff * u / u.norm()).to(device)  # (d_model,)

    @torch.no_grad()
    def mean_hidden_norm(self, model, tokenizer, examples) -> float:
        """Mean ||h_l|| over the real tokens of ``examples``, as the model is now."""
        was_training = model.training
        model.eval()
        total, tokens = 0.0, 0
        device = next(model.parameters()).device
        try:
            for start in range(0, len(examples), NORM_BATCH):
                batch = pairing.collate(tokenizer, examples[start : start + NORM_BATCH],
                                        self.config.train.max_length).to(device)
                norms = self.hidden(model, batch)[batch.attention_mask.bool()].norm(dim=-1)  # (tokens,)
                total, tokens = total + float(norms.sum()), tokens + norms.numel()
        finally:
            model.train(was_training)
        return total / max(tokens, 1)

    def parameters_to_train(self, model):
        layers = model.get_submodule(self._layers_path)
        scope = {"down_proj": self._down_path, "mlp": self._down_path.rpartition(".")[0], "all": ""}
        path = scope[self.options.params]
        chosen = []
        for index in self.trained_layers():
            module = layers[index].get_submodule(path)
            prefix = ".".join(p for p in (self._layers_path, str(index), path) if p)
            chosen += [(f"{prefix}.{n}", p) for n, p in module.named_parameters()]
        return chosen

    def trained_layers(self) -> list[int]:
        return list(range(max(0, self.layer - 2), self.layer + 1))

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
        return {"rmu": {"layer": self.layer, "trained_layers": self.trained_layers(), "params": self.options.params,
                        "hidden_norm": self.hidden_norm, "steering_coeff": self.steering_coeff,
                        "c_over_hidden_norm": self.steering_coeff / self.hidden_norm if self.hidden_norm else None}}
