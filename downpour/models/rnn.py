"""A recurrent (GRU) autoencoder over sequences (Srivastava et al. 2015, with GRUs): an encoder GRU
reads the sequence, its last state becomes the code, and a decoder GRU started from the code
writes the sequence back. It trains through the shared objective like every other model
(``reconstruction``; ``denoising`` and ``contractive`` also work, through ``encode``/``decode``).

What a "sequence" is depends on the input shape the model is built for:

- (T, F): already a sequence of T steps of F features;
- (C, H, W): an image read row by row, T = H steps of F = C·W features;
- (T, C, H, W): a clip of T video frames, F = C·H·W features per frame.

The decoder is unconditioned (it never sees the data; its input at every step is the code), so
everything it writes must pass through the code; with ``reverse`` it writes the sequence last step first (as
Srivastava et al. and Sutskever et al., for whom it shortened the path from the code to the steps the encoder saw
last; here the decoder is fed the code at every step, which weakens that argument). Measured 2026-12-06 on rnn-rows,
``downpour train --config rnn-rows --steps 400 --seed S --set model.reverse=true|false``: final_loss 0.418 vs 0.434
(seed 0), 0.426 vs 0.437 (seed 1), 0.403 vs 0.430 (seed 2): lower reversed on 3 of 3 seeds, by 2.5-6%; a small
effect, not a claim that it trains faster in general (docs/models-rbm-cnn-rnn.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from downpour.batch import Batch, Outputs
from downpour.models.base import FeatureModel
from downpour.models.registry import register_model
from downpour.settings import Section, setting



@dataclass
class RNNConfig(Section):
    section: ClassVar[str] = "model"
    hidden: int = setting(64, within="[1, inf)")   # GRU state size, encoder and decoder
    code: int = setting(32, within="[1, inf)")     # code size (a linear, tanh-squashed map of the encoder's last state)
    layers: int = setting(1, within="[1, inf)")    # stacked GRU layers, encoder and decoder
    reverse: bool = True      # the decoder writes the sequence backwards (then it is flipped back)
    output: str = setting("linear", choices=("linear", "sigmoid"))   # linear: real-valued data | sigmoid: data in [0, 1]


class RNNAutoencoder(FeatureModel):
    """GRU encoder -> code (B, code) -> GRU decoder; ``forward`` returns the code."""

    config_class = RNNConfig
    filters_what = ("an RNN has no image filters: these are its encoder GRU's input weights into the candidate "
                    "(\"new\") gate, one per hidden unit: the weights it reads one step of the sequence with (of an "
                    "image read row by row, one row, the same for every row in turn; of a clip, one frame), drawn as "
                    "that step")

    def __init__(self, config: RNNConfig, input_shape: tuple[int, ...]):
        super().__init__()
        shape = tuple(input_shape)
        if len(shape) == 2:
            steps, feats = shape
        elif len(shape) == 3:
            steps, feats = shape[1], shape[0] * shape[2]
        elif len(shape) == 4:
            steps, feats = shape[0], shape[1] * shape[2] * shape[3]
        else:
            raise ValueError(f"RNN autoencoder needs input (T, F), (C, H, W) or (T, C, H, W), got {shape}")
        self.config = config
        self.input_shape = shape
        self.steps, self.feats = steps, feats
        self.encoder = nn.GRU(feats, config.hidden, num_layers=config.layers, batch_first=True)
        self.to_code = nn.Linear(config.hidden, config.code)
        self.from_code = nn.Linear(config.code, config.hidden * config.layers)
        self.decoder = nn.GRU(config.code, config.hidden, num_layers=config.layers, batch_first=True)
        self.readout = nn.Linear(config.hidden, feats)

    @property
    def code_size(self) -> int:
        """The code's width (models.data_fit warns where a variant's is no smaller than the samples it is given)."""
        return self.config.code

    # --- layout: model input <-> (B, T, F) sequence ------------------------------------------
    def to_sequence(self, x: Tensor) -> Tensor:
        """(B, *input_shape) -> (B, T, F)."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"RNN autoencoder built for inputs {self.input_shape}, got a batch of shape {tuple(x.shape)}")
        if len(self.input_shape) == 3:          # (B, C, H, W): rows are the steps, channels side by side
            return x.permute(0, 2, 1, 3).reshape(x.shape[0], self.steps, self.feats)
        return x.reshape(x.shape[0], self.steps, self.feats)

    def from_sequence(self, seq: Tensor) -> Tensor:
        """(B, T, F) -> (B, *input_shape); the inverse of :meth:`to_sequence`."""
        if len(self.input_shape) == 3:
            c, h, w = self.input_shape
            return seq.reshape(seq.shape[0], h, c, w).permute(0, 2, 1, 3)
        return seq.reshape(seq.shape[0], *self.input_shape)

    def tensor_layouts(self) -> dict[str, str]:
        """Each tensor's axes and use in words (model.safetensors' metadata): torch.nn.GRU's own tensors, with what a
        step of the sequence is."""
        h, code, feats, steps = self.config.hidden, self.config.code, self.feats, self.steps
        step = {2: f"(T, F) = {list(self.input_shape)}: row t of the sample",
                3: f"image row t of (C, H, W) = {list(self.input_shape)}: its (C, W) values flattened row-major",
                4: f"frame t of (T, C, H, W) = {list(self.input_shape)}: its (C, H, W) flattened row-major"}
        gru = ("torch.nn.GRU (batch_first), rows in blocks reset | update | new of {h} each: r = sigmoid(W_ir x + b_ir "
               "+ W_hr h + b_hr), z = sigmoid(W_iz x + b_iz + W_hz h + b_hz), n = tanh(W_in x + b_in + r * (W_hn h + "
               "b_hn)), h' = (1 - z) * n + z * h")
        out: dict[str, str] = {}
        for part, n_in, what in (("encoder", feats, f"step t of {steps} = {step[len(self.input_shape)]}"),
                                 ("decoder", code, "the code, the same at every step")):
            for k in range(self.config.layers):
                into = (n_in, what) if k == 0 else (h, f"layer {k}'s states")
                g = f"the {part} {gru.format(h=h)}"
                rows = f"(gates x hidden {3 * h}"
                out |= {f"{part}.weight_ih_l{k}": f"{rows}, inputs {into[0]}: {into[1]}): {g}",
                        f"{part}.weight_hh_l{k}": f"{rows}, hidden {h}): {g}",
                        f"{part}.bias_ih_l{k}": f"{rows}): b_ir | b_iz | b_in of the {part}, layer {k}",
                        f"{part}.bias_hh_l{k}": f"{rows}): b_hr | b_hz | b_hn of the {part}, layer {k}"}
        back = "reversed in time, " if self.config.reverse else ""
        squash = "sigmoid of " if self.config.output == "sigmoid" else ""
        return out | {
            "to_code.weight": f"(code {code}, hidden {h}): code = tanh(the encoder's last layer's final state @ "
                              "to_code.weight.T + to_code.bias)",
            "to_code.bias": f"(code {code}): added before the code's tanh",
            "from_code.weight": f"(layers x hidden {self.config.layers * h}, code {code}): the decoder's first state, "
                                f"tanh(code @ from_code.weight.T + from_code.bias), reshaped (layers, hidden)",
            "from_code.bias": f"(layers x hidden {self.config.layers * h}): added before the first state's tanh",
            "readout.weight": f"(step features {feats}, hidden {h}): reconstruction = {squash}the decoder's states @ "
                              f"readout.weight.T + readout.bias, {back}each step laid back as it was read",
            "readout.bias": f"(step features {feats}): added to each step's reconstruction"}

    # --- the autoencoder ---------------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        """(B, *input_shape) -> codes (B, code)."""
        _, last = self.encoder(self.to_sequence(x))       # last: (layers, B, hidden)
        return torch.tanh(self.to_code(last[-1]))

    def decode(self, codes: Tensor) -> Tensor:
        """codes (B, code) -> reconstruction (B, *input_shape)."""
        b = codes.shape[0]
        h0 = torch.tanh(self.from_code(codes)).reshape(b, self.config.layers, self.config.hidden)
        h0 = h0.transpose(0, 1).contiguous()              # (layers, B, hidden)
        inputs = codes.unsqueeze(1).expand(b, self.steps, codes.shape[1])   # the code at every step, (B, T, code)
        states, _ = self.decoder(inputs, h0)              # (B, T, hidden)
        seq = self.readout(states)                        # (B, T, F)
        if self.config.reverse:
            seq = seq.flip(1)
        if self.config.output == "sigmoid":
            seq = torch.sigmoid(seq)
        return self.from_sequence(seq)

    def forward(self, x: Tensor) -> Tensor:
        """(B, *input_shape) -> codes (B, code)."""
        return self.encode(x)

    def forward_train(self, batch: Batch) -> dict[str, Outputs]:
        codes = self.encode(batch.x)
        weights = tuple(p for name, p in self.named_parameters() if "weight" in name)
        return {"": Outputs(x=batch.x, codes=codes, recon=self.decode(codes), weights=weights,
                            encode=self.encode, decode=self.decode)}

    GATES = ("reset", "update", "new")        # torch's order of the three blocks of rows in weight_ih (r | z | n)

    def gate_filters(self) -> dict[str, Tensor] | None:
        """The encoder's input weights of each GRU gate as images, ``{"reset", "update", "new"}`` -> (hidden, C, 1, W)
        when a step is an image row (C, 1, W), (hidden, C, H, W) when it is a frame; None for (T, F) sequences."""
        if len(self.input_shape) not in (3, 4):
            return None
        w = self.encoder.weight_ih_l0.detach()            # (3*hidden, F)
        step = (self.input_shape[0], 1, self.input_shape[2]) if len(self.input_shape) == 3 else self.input_shape[1:]
        return {gate: rows.reshape(-1, *step) for gate, rows in zip(self.GATES, w.chunk(3))}

    def first_layer_filters(self) -> Tensor | None:
        """The candidate ("new") gate's input weights as images, (hidden, C, 1, W) or (hidden, C, H, W); None for
        (T, F) sequences. The candidate gate is the one that writes the input into the state, h' = (1 - z)·n + z·h
        with n = tanh(W_in x + ...), so its rows are the features the code is built from; the reset and update
        gates only weigh it (:meth:`gate_filters` gives all three): all 3·hidden rows would put the three gates
        side by side in one picture and one edge count."""
        gates = self.gate_filters()
        return None if gates is None else gates["new"]


_RECON = {"reconstruction": 1.0}

register_model("rnn-rows", RNNAutoencoder, description="GRU autoencoder reading 8x8 images row by row: 8 steps of 8 pixels -> code 32",
               objective=_RECON, input_shape=(1, 8, 8), hidden=64, code=32)
register_model("rnn-rows-faces", RNNAutoencoder, description="GRU autoencoder over the 25 rows of 25x25 face crops -> code 64",
               objective=_RECON, input_shape=(1, 25, 25), hidden=128, code=64)
