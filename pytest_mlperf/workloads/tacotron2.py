"""Tacotron 2 (Shen et al. 2017, "Natural TTS Synthesis by Conditioning WaveNet on Mel Spectrogram Predictions") as
NVIDIA DeepLearningExamples PyTorch/SpeechSynthesis/Tacotron2 trains it (tacotron2/model.py, loss_function.py,
arg_parser.py defaults), the code behind Lambda's Tacotron2 column.

- Encoder: a 512-wide character embedding, 3 convolutions (kernel 5, BatchNorm, ReLU, dropout 0.5) and a
  bidirectional LSTM (256 per direction) over the packed sequences.
- Decoder, one mel frame per step (n_frames_per_step 1), teacher-forced: a prenet of two 256-wide ReLU layers whose
  dropout 0.5 stays on in eval mode too (Tacotron 2's source of output variation), an attention LSTMCell (1024),
  location-sensitive attention (128-dim, 32 location filters of kernel 31 over the previous and cumulative
  alignments), a decoder LSTMCell (1024), dropout 0.1 on both LSTM outputs, and linear projections of
  [decoder state, attention context] to the 80 mel channels and to the stop-token ("gate") logit.
- Postnet: 5 convolutions (512 channels, kernel 5, BatchNorm, tanh but the last, dropout 0.5) whose output is added
  to the decoder's mel frames.
- Loss (Tacotron2Loss): MSE(mel) + MSE(postnet mel) + BCE-with-logits(gate), over the padded batch (DLE's
  mask_padding is off by default). Adam lr 1e-3, weight decay 1e-6, gradient norm clipped to 1.0 (the DLE README's
  training-performance command; Lambda runs it with lr 0, which costs the same). Xavier initialisation with DLE's
  gains, BatchNorm weights uniform(0, 1) (DLE's default `uniform_initialize_bn_weight`).

Parameters: 28,193,153 (28.2M) with DLE's 148 symbols (padding, punctuation, letters and ARPAbet phonemes).

Throughput unit: mel frames/s. DLE's tacotron2/data_function.py counts a batch's items as sum(output_lengths), the
unpadded target frames, and train.py reports `train_items_per_sec` from it.

Synthetic data (`text_mel_batches`): texts over `voiced` (8) of the 148 symbols (the embedding keeps its real
size), each symbol sounding a steady spectrum (`spectra`: `bands` (8) N(0, 1) levels over as many groups of
adjacent mel channels, a coarse spectral envelope) for `frames_per_char` frames; an utterance's mel is its
characters' spectra one after the other (PAD is silence, zeros). Inside a character the previous frame (the prenet's
teacher-forced input) tells the next one, but at every character boundary the decoder must know the next
character, which only attention to the right place in the text tells it. Text lengths are spread evenly between a
minimum and a maximum in every batch (sorted longest first, as DLE's collate function sorts them), so every step
processes the same number of frames. The pool holds at least `pool_chars` characters (and `batches` batches), so
every symbol is seen many times whatever the batch and text lengths; the held-out batch holds `held_out_chars`
characters, drawn from its own seed, the same for every batch size.

Simplifications: no lr annealing (it acts over hundreds of epochs); lengths live on the host with the batch (DLE
copies them to the host every step for packing, a sync the harness avoids).

Precision: on CPUs without bf16 instructions, CPU bf16 autocast cannot run LSTMs (see `layers.LSTM`); there the
LSTM and the two LSTMCells run in float32 with autocast off, everything else under autocast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..run.training import Updater, autocast, evaluating, prepare, seeded
from .layers import LSTMCell, recurrent
from .registry import Preset, Quality, Setup, Workload, register

PAD = 0  #: symbol id of padding, whose spectrogram is silence


def linear(in_dim: int, out_dim: int, bias: bool = True, gain: str = "linear") -> nn.Linear:
    """DLE's LinearNorm: a Linear layer with Xavier-uniform weights for the activation that follows."""
    layer = nn.Linear(in_dim, out_dim, bias=bias)
    nn.init.xavier_uniform_(layer.weight, gain=nn.init.calculate_gain(gain))
    return layer


def conv(in_dim: int, out_dim: int, kernel: int, bias: bool = True, gain: str = "linear") -> nn.Conv1d:
    """DLE's ConvNorm: a same-padded Conv1d with Xavier-uniform weights."""
    layer = nn.Conv1d(in_dim, out_dim, kernel, padding=(kernel - 1) // 2, bias=bias)
    nn.init.xavier_uniform_(layer.weight, gain=nn.init.calculate_gain(gain))
    return layer


def conv_bn(in_dim: int, out_dim: int, kernel: int, gain: str) -> nn.Sequential:
    return nn.Sequential(conv(in_dim, out_dim, kernel, gain=gain), nn.BatchNorm1d(out_dim))


class Encoder(nn.Module):
    """Convolutions then a bidirectional LSTM over the packed (longest-first) sequences."""

    def __init__(self, n_convolutions: int, dim: int, kernel: int) -> None:
        super().__init__()
        self.convolutions = nn.ModuleList(conv_bn(dim, dim, kernel, "relu") for _ in range(n_convolutions))
        self.lstm = nn.LSTM(dim, dim // 2, 1, batch_first=True, bidirectional=True)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """x (B, dim, T_in) -> (B, T_in, dim); `lengths` on the host, descending."""
        for layer in self.convolutions:
            x = F.dropout(F.relu(layer(x)), 0.5, self.training)
        return recurrent(self._recur, x.transpose(1, 2), lengths)

    def _recur(self, x: Tensor, lengths: Tensor) -> Tensor:
        outputs, _ = self.lstm(pack_padded_sequence(x, lengths, batch_first=True))
        return pad_packed_sequence(outputs, batch_first=True, total_length=x.size(1))[0]


class LocationSensitiveAttention(nn.Module):
    def __init__(self, query_dim: int, memory_dim: int, attention_dim: int, n_filters: int, kernel: int) -> None:
        super().__init__()
        self.query_layer = linear(query_dim, attention_dim, bias=False, gain="tanh")
        self.memory_layer = linear(memory_dim, attention_dim, bias=False, gain="tanh")
        self.v = linear(attention_dim, 1, bias=False)
        self.location_conv = conv(2, n_filters, kernel, bias=False)
        self.location_dense = linear(n_filters, attention_dim, bias=False, gain="tanh")

    def forward(
        self, query: Tensor, memory: Tensor, processed_memory: Tensor, previous: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """query (B, query_dim), memory (B, T_in, memory_dim), previous (B, 2, T_in) = (last, cumulative)
        alignments, mask (B, T_in) True on padding -> context (B, memory_dim), alignment (B, T_in)."""
        location = self.location_dense(self.location_conv(previous).transpose(1, 2))
        energies = self.v(torch.tanh(self.query_layer(query).unsqueeze(1) + location + processed_memory))
        alignment = F.softmax(energies.squeeze(2).float().masked_fill(mask, -math.inf), dim=1)
        context = torch.bmm(alignment.unsqueeze(1).to(memory.dtype), memory).squeeze(1)
        return context, alignment


class Prenet(nn.Module):
    """Two ReLU layers without bias, dropout 0.5 in training and inference alike."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([linear(in_dim, dim, bias=False), linear(dim, dim, bias=False)])

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = F.dropout(F.relu(layer(x)), p=0.5, training=True)
        return x


class Postnet(nn.Module):
    def __init__(self, n_mel: int, dim: int, kernel: int, n_convolutions: int) -> None:
        super().__init__()
        widths = [n_mel] + [dim] * (n_convolutions - 1) + [n_mel]
        gains = ["tanh"] * (n_convolutions - 1) + ["linear"]
        self.convolutions = nn.ModuleList(
            conv_bn(i, o, kernel, gain) for i, o, gain in zip(widths[:-1], widths[1:], gains, strict=True)
        )

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.convolutions[:-1]:
            x = F.dropout(torch.tanh(layer(x)), 0.5, self.training)
        return F.dropout(self.convolutions[-1](x), 0.5, self.training)


class Decoder(nn.Module):
    def __init__(self, p: Preset) -> None:
        super().__init__()
        memory, n_mel = p["encoder_dim"], p["n_mel"]
        self.attention_rnn_dim, self.decoder_rnn_dim = p["attention_rnn_dim"], p["decoder_rnn_dim"]
        self.p_attention_dropout, self.p_decoder_dropout = p["p_attention_dropout"], p["p_decoder_dropout"]
        self.prenet = Prenet(n_mel, p["prenet_dim"])
        self.attention_rnn = LSTMCell(p["prenet_dim"] + memory, self.attention_rnn_dim)
        self.attention_layer = LocationSensitiveAttention(
            self.attention_rnn_dim, memory, p["attention_dim"], p["location_filters"], p["location_kernel"]
        )
        self.decoder_rnn = LSTMCell(self.attention_rnn_dim + memory, self.decoder_rnn_dim)
        self.linear_projection = linear(self.decoder_rnn_dim + memory, n_mel)
        self.gate_layer = linear(self.decoder_rnn_dim + memory, 1, gain="sigmoid")

    def forward(self, memory: Tensor, mel: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Teacher forcing: memory (B, T_in, dim), target mel (B, n_mel, T_out), mask (B, T_in) True on padding ->
        mel (B, n_mel, T_out), gate logits (B, T_out), alignments (B, T_out, T_in)."""
        batch, steps = memory.size(0), mel.size(2)
        frames = mel.permute(2, 0, 1)  # T_out, B, n_mel
        go = frames.new_zeros(1, batch, frames.size(2))
        inputs = self.prenet(torch.cat([go, frames[:-1]]))  # the previous frame at each step
        processed_memory = self.attention_layer.memory_layer(memory)
        new = memory.new_zeros
        attention_h, attention_c = new(batch, self.attention_rnn_dim), new(batch, self.attention_rnn_dim)
        decoder_h, decoder_c = new(batch, self.decoder_rnn_dim), new(batch, self.decoder_rnn_dim)
        alignment = cumulative = new(batch, memory.size(1), dtype=torch.float32)
        context = new(batch, memory.size(2))
        outputs, gates, alignments = [], [], []
        for t in range(steps):
            attention_h, attention_c = self.attention_rnn(
                torch.cat([inputs[t], context.to(inputs.dtype)], -1), (attention_h, attention_c)
            )
            attention_h = F.dropout(attention_h, self.p_attention_dropout, self.training)
            previous = torch.stack([alignment, cumulative], 1).to(memory.dtype)
            context, alignment = self.attention_layer(attention_h, memory, processed_memory, previous, mask)
            cumulative = cumulative + alignment
            decoder_h, decoder_c = self.decoder_rnn(torch.cat([attention_h, context], -1), (decoder_h, decoder_c))
            decoder_h = F.dropout(decoder_h, self.p_decoder_dropout, self.training)
            features = torch.cat([decoder_h, context.to(decoder_h.dtype)], 1)
            outputs.append(self.linear_projection(features))
            gates.append(self.gate_layer(features).squeeze(1))
            alignments.append(alignment)
        return torch.stack(outputs, 2), torch.stack(gates, 1), torch.stack(alignments, 1)


class Tacotron2(nn.Module):
    def __init__(self, p: Preset) -> None:
        super().__init__()
        self.embedding = nn.Embedding(p["n_symbols"], p["embedding_dim"])
        bound = math.sqrt(3.0) * math.sqrt(2.0 / (p["n_symbols"] + p["embedding_dim"]))
        nn.init.uniform_(self.embedding.weight, -bound, bound)
        self.encoder = Encoder(p["encoder_convolutions"], p["encoder_dim"], p["encoder_kernel"])
        self.decoder = Decoder(p)
        self.postnet = Postnet(p["n_mel"], p["postnet_dim"], p["postnet_kernel"], p["postnet_convolutions"])
        for module in self.modules():
            if isinstance(module, nn.BatchNorm1d):
                nn.init.uniform_(module.weight)

    def forward(
        self, text: Tensor, text_lengths: Tensor, text_mask: Tensor, mel: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        memory = self.encoder(self.embedding(text).transpose(1, 2), text_lengths)
        mel_out, gate_out, alignments = self.decoder(memory, mel, text_mask)
        return mel_out, mel_out + self.postnet(mel_out), gate_out, alignments


def tacotron2_loss(outputs: Sequence[Tensor], mel: Tensor, gate: Tensor) -> Tensor:
    """DLE's Tacotron2Loss, in float32."""
    mel_out, mel_post, gate_out, _ = outputs
    mel = mel.float()
    return (
        F.mse_loss(mel_out.float(), mel)
        + F.mse_loss(mel_post.float(), mel)
        + F.binary_cross_entropy_with_logits(gate_out.float(), gate.float())
    )


class TextMel(NamedTuple):
    """One collated batch, as DLE's TextMelCollate makes it (longest text first)."""

    text: Tensor  #: (B, T_in) symbol ids, PAD after each text's length
    text_lengths: Tensor  #: (B,) on the host, for packing
    text_mask: Tensor  #: (B, T_in) True on padding
    mel: Tensor  #: (B, n_mel, T_out), zeros after each target's length
    gate: Tensor  #: (B, T_out) stop-token targets: 1 from each target's last frame on
    mel_mask: Tensor  #: (B, T_out) True on real frames

    def to(self, device: torch.device, dtype: torch.dtype) -> TextMel:
        return TextMel(
            self.text.to(device),
            self.text_lengths,
            self.text_mask.to(device),
            self.mel.to(device, dtype),
            self.gate.to(device, dtype),
            self.mel_mask.to(device),
        )


def text_lengths(p: Preset, batch_size: int) -> Tensor:
    """Text lengths spread evenly from p["max_text"] down to p["min_text"] (just the longest for batch 1)."""
    return torch.linspace(p["max_text"], p["min_text"], batch_size).round().long()


def spectra(p: Preset) -> Tensor:
    """(n_symbols, n_mel) the steady spectrum each symbol sounds: p["bands"] N(0, 1) levels, each over n_mel / bands
    adjacent mel channels (a coarse spectral envelope); PAD's is silence. The same for every batch and seed."""
    levels = torch.randn(p["n_symbols"], p["bands"], generator=torch.Generator().manual_seed(0))
    levels[PAD] = 0
    return levels.repeat_interleave(p["n_mel"] // p["bands"], 1)


def text_mel_batches(p: Preset, batch_size: int, count: int, seed: int) -> list[TextMel]:
    """`count` batches of random texts over the p["voiced"] symbols after PAD, and their mel spectrograms, on the
    host: each character is its symbol's spectrum (`spectra`) held for p["frames_per_char"] frames."""
    g = torch.Generator().manual_seed(seed)
    per_char, sounds = p["frames_per_char"], spectra(p)
    lengths = text_lengths(p, batch_size)
    text_mask = torch.arange(p["max_text"]) >= lengths[:, None]
    mel_lengths = lengths * per_char
    mel_mask = torch.arange(p["max_text"] * per_char) < mel_lengths[:, None]
    gate = (torch.arange(p["max_text"] * per_char) >= mel_lengths[:, None] - 1).float()
    batches = []
    for _ in range(count):
        text = torch.randint(1, p["voiced"] + 1, (batch_size, p["max_text"]), generator=g).masked_fill(text_mask, PAD)
        mel = sounds[text].repeat_interleave(per_char, 1).transpose(1, 2).contiguous()  # B, n_mel, T_in * per_char
        batches.append(TextMel(text, lengths, text_mask, mel, gate, mel_mask))
    return batches


def masked_mse(prediction: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """MSE over the real (unpadded) frames of (B, n_mel, T_out) spectrograms, in float32."""
    squared = (prediction.float() - target.float()).square().sum(1)
    return (squared * mask).sum() / (mask.sum() * target.size(1))


class Tacotron2Trainer:
    """Teacher-forced Tacotron 2 training over a pool of batches cycled on the device."""

    def __init__(self, setup: Setup, model: Tacotron2, batches: Sequence[TextMel], held_out: Sequence[TextMel]) -> None:
        p = setup.preset
        self.model = prepare(model, setup)
        dtype = setup.precision.params
        self.batches = [b.to(setup.device, dtype) for b in batches]
        self.held_out = [b.to(setup.device, dtype) for b in held_out]
        optimizer = torch.optim.Adam(self.model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"], fused=True)
        self.update = Updater(optimizer, setup, clip=p["clip"])
        self.autocast = autocast(setup)
        # DLE's num_items: sum(output_lengths), the unpadded target frames (the same in every batch here).
        self.items_per_step = int(batches[0].mel_mask.sum())
        self.steps = 0

    def _forward(self, b: TextMel) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.model(b.text, b.text_lengths, b.text_mask, b.mel)

    def step(self) -> Tensor:
        b = self.batches[self.steps % len(self.batches)]
        self.steps += 1
        with self.autocast:
            outputs = self._forward(b)
        loss = tacotron2_loss(outputs, b.mel, b.gate)
        self.update(loss)
        return loss.detach()

    def evaluate(self) -> float:
        """Held-out MSE of the postnet's mel frames (teacher forcing, prenet dropout on as in DLE's validation)."""
        with evaluating(self.model, self.autocast):
            errors = [masked_mse(self._forward(b)[1], b.mel, b.mel_mask) for b in self.held_out]
        return float(torch.stack(errors).mean())


def model(p: Preset) -> Tacotron2:
    return Tacotron2(p)


def build(setup: Setup) -> Tacotron2Trainer:
    p, batch = setup.preset, setup.batch_size
    # At least p["pool_chars"] characters to train on and p["held_out_chars"] to evaluate on (in one batch), whatever
    # the batch and the text lengths: every voiced symbol is seen many times, and every case evaluates on the same
    # held-out texts.
    pool = max(p["batches"], -(-p["pool_chars"] // int(text_lengths(p, batch).sum())))
    held_out = -(-p["held_out_chars"] // ((p["min_text"] + p["max_text"]) // 2))
    return Tacotron2Trainer(
        setup,
        seeded(lambda: model(p)),
        text_mel_batches(p, batch, pool, seed=1),
        text_mel_batches(p, held_out, 1, seed=2),
    )


#: The synthetic task, the same in every preset: texts over 8 symbols of 8-band spectra, a pool of at least 1024
#: characters (and 4 batches), 128 held-out characters in one batch.
TASK = {"voiced": 8, "bands": 8, "batches": 4, "pool_chars": 1024, "held_out_chars": 128}

register(
    Workload(
        name="tacotron2",
        family="tacotron2",
        task="training",
        unit="mel frames/s",
        description="Tacotron 2 (NVIDIA DeepLearningExamples), teacher-forced, Adam 1e-3, synthetic "
        "character-spectrogram texts",
        presets={
            # DLE tacotron2/arg_parser.py defaults and the README's training-performance command (-lr 1e-3
            # --weight-decay 1e-6 --grad-clip-thresh 1.0). LJSpeech, as Lambda trains on it: about 100 characters
            # and 570 mel frames per utterance on average; here 40-160 characters of 6 frames (600 on average).
            "real": {
                "n_symbols": 148,
                "embedding_dim": 512,
                "encoder_convolutions": 3,
                "encoder_kernel": 5,
                "encoder_dim": 512,
                "n_mel": 80,
                "prenet_dim": 256,
                "attention_rnn_dim": 1024,
                "attention_dim": 128,
                "location_filters": 32,
                "location_kernel": 31,
                "decoder_rnn_dim": 1024,
                "p_attention_dropout": 0.1,
                "p_decoder_dropout": 0.1,
                "postnet_dim": 512,
                "postnet_kernel": 5,
                "postnet_convolutions": 5,
                "min_text": 40,
                "max_text": 160,
                "frames_per_char": 6,
                **TASK,
                "lr": 1e-3,
                "weight_decay": 1e-6,
                "clip": 1.0,
            },
            # A tenth of the widths, 8 mel channels, texts of 3-6 characters of 3 frames (9-18 decoder steps), the
            # same layers and dropouts. lr 0.02: at DLE's 1e-3 these widths leave the held-out MSE at about 0.7
            # after 150 steps.
            "cpu": {
                "n_symbols": 148,
                "embedding_dim": 32,
                "encoder_convolutions": 3,
                "encoder_kernel": 5,
                "encoder_dim": 32,
                "n_mel": 8,
                "prenet_dim": 32,
                "attention_rnn_dim": 64,
                "attention_dim": 16,
                "location_filters": 8,
                "location_kernel": 7,
                "decoder_rnn_dim": 64,
                "p_attention_dropout": 0.1,
                "p_decoder_dropout": 0.1,
                "postnet_dim": 32,
                "postnet_kernel": 5,
                "postnet_convolutions": 5,
                "min_text": 3,
                "max_text": 6,
                "frames_per_char": 3,
                **TASK,
                "lr": 0.02,
                "weight_decay": 1e-6,
                "clip": 1.0,
            },
        },
        build=build,
        # For the walk of the shipped cases (tests/test_quality_reach.py): narrower layers (at Adam's 1e-3 a step
        # moves a narrower network's output less, so the reduced model is the slower learner) and texts of one
        # character (6 decoder steps; the pool and the held-out batch keep their characters). The mel keeps its 80
        # channels: with fewer, the spectra are learnt in fewer steps.
        reductions={
            "embedding_dim": 32,
            "encoder_dim": 32,
            "prenet_dim": 64,
            "attention_rnn_dim": 64,
            "attention_dim": 16,
            "location_filters": 8,
            "decoder_rnn_dim": 64,
            "postnet_dim": 16,
            "min_text": 1,
            "max_text": 1,
        },
        # Untrained about 1.2; silence scores the spectra's mean square (1.15), the best constant answer (each
        # channel's mean) about 0.97. 0.5 takes telling the symbols apart: from the previous frame inside a
        # character (5 frames of 6), or from attention to the character. With only `reductions` applied the real
        # preset reaches it in 45-70 steps at every shipped batch (36-256), at DLE's lr 1e-3; the cpu preset in
        # about 55. Lambda's runs measure throughput only: no real_target.
        quality=Quality("held-out postnet mel MSE", target=0.5, max_steps=150, higher_is_better=False),
    )
)
