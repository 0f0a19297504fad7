"""Transformer translation (MLPerf training v0.5-v0.7 "translation": Transformer big on WMT14 en-de).

MLPerf's reference is TensorFlow's official Transformer with `--params=big` (model_params.TransformerBigParams);
NVIDIA's submissions and DeepLearningExamples run the same model in fairseq as `transformer_wmt_en_de_big_t2t`
with `--share-all-embeddings`. Both: 6 encoder and 6 decoder layers, d_model 1024, 16 heads, feed-forward 4096,
pre-layer-norm blocks with a final layer norm (the tensor2tensor layout), sinusoidal positions, one embedding
matrix shared by encoder, decoder and output projection, dropout 0.1, label smoothing 0.1, Adam with betas
(0.9, 0.997) and eps 1e-9 under a warm-up then inverse-square-root learning rate.

Batches are counted in tokens, as both implementations do: `Setup.batch_size` is the tokens per device batch
(the TF reference's `batch_size` 4096; fairseq's `--max-tokens`, 10240 per GPU in NVIDIA's MLPerf v0.7 DGX-1
submission, config_DGX1.sh), and a batch holds `batch_size // seq_len` sentence pairs of `seq_len` tokens on each
side. The real preset's sentences have 32 tokens (an assumed typical WMT14 en-de length in subword tokens; NVIDIA's
runs cap them at 64 with --max-source-positions); fairseq batches sentences of similar length with little padding,
which fixed-length sentences stand for.

Synthetic task and quality as `gnmt`: Markov-chain sentences to reverse, token accuracy under teacher forcing on
held-out pairs; `real_target` is MLPerf's BLEU 25.0.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.wmt16 import EOS, PAD
from ..run.training import Batch, Supervised, scheduled, seeded
from .metrics import teacher_forced_accuracy
from .registry import Preset, Quality, Setup, Workload, register
from .synthetic import reversal_pairs


class Attention(nn.Module):
    """Multi-head attention through `F.scaled_dot_product_attention` (flash / memory-efficient kernels on CUDA).
    Self-attention projects q, k, v with one fused matmul; encoder-decoder attention projects q from the decoder
    and k, v (fused) from the encoder output."""

    def __init__(self, d_model: int, heads: int, dropout: float, cross: bool = False) -> None:
        super().__init__()
        self.heads, self.dropout, self.cross = heads, dropout, cross
        if cross:
            self.q = nn.Linear(d_model, d_model)
            self.kv = nn.Linear(d_model, 2 * d_model)
        else:
            self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def _split(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x: Tensor, memory: Tensor | None = None, causal: bool = False) -> Tensor:
        if memory is None:
            q, k, v = self.qkv(x).chunk(3, dim=-1)
        else:
            q = self.q(x)
            k, v = self.kv(memory).chunk(2, dim=-1)
        out = F.scaled_dot_product_attention(
            self._split(q),
            self._split(k),
            self._split(v),
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal,
        )
        return self.out(out.transpose(1, 2).flatten(2))


class FeedForward(nn.Sequential):
    def __init__(self, d_model: int, ffn: int, dropout: float) -> None:
        super().__init__(nn.Linear(d_model, ffn), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(ffn, d_model))


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.self_attn_norm = nn.LayerNorm(d_model)
        self.self_attn = Attention(d_model, heads, dropout)
        self.ffn_norm = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, ffn, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.dropout(self.self_attn(self.self_attn_norm(x)))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.self_attn_norm = nn.LayerNorm(d_model)
        self.self_attn = Attention(d_model, heads, dropout)
        self.cross_attn_norm = nn.LayerNorm(d_model)
        self.cross_attn = Attention(d_model, heads, dropout, cross=True)
        self.ffn_norm = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, ffn, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        x = x + self.dropout(self.self_attn(self.self_attn_norm(x), causal=True))
        x = x + self.dropout(self.cross_attn(self.cross_attn_norm(x), memory))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


def sinusoids(length: int, d_model: int) -> Tensor:
    """The sinusoidal position encodings of "Attention is all you need" (sines in the first half, cosines after,
    as tensor2tensor and fairseq lay them out)."""
    half = d_model // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
    angles = torch.arange(length, dtype=torch.float32)[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class Transformer(nn.Module):
    """(source (b, t_s), decoder input (b, t_t)) -> logits (b, t_t, vocab); batch-first."""

    def __init__(
        self,
        vocab: int,
        d_model: int = 1024,
        heads: int = 16,
        ffn: int = 4096,
        layers: int = 6,
        dropout: float = 0.1,
        max_len: int = 256,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model, padding_idx=PAD)
        nn.init.normal_(self.embed.weight, 0.0, d_model**-0.5)
        self.scale = d_model**0.5
        self.register_buffer("positions", sinusoids(max_len, d_model), persistent=False)
        self.encoder = nn.ModuleList(EncoderLayer(d_model, heads, ffn, dropout) for _ in range(layers))
        self.decoder = nn.ModuleList(DecoderLayer(d_model, heads, ffn, dropout) for _ in range(layers))
        self.encoder_norm = nn.LayerNorm(d_model)
        self.decoder_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def _embed(self, tokens: Tensor) -> Tensor:
        x = self.embed(tokens) * self.scale + self.positions[: tokens.size(1)].to(self.embed.weight.dtype)
        return self.dropout(x)

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        memory = self._embed(src)
        for layer in self.encoder:
            memory = layer(memory)
        memory = self.encoder_norm(memory)
        x = self._embed(tgt_in)
        for layer in self.decoder:
            x = layer(x, memory)
        # Output projection tied to the shared embedding (--share-all-embeddings).
        return F.linear(self.decoder_norm(x), self.embed.weight)


def layout(src: Tensor, tgt: Tensor) -> Batch:
    """((source, fairseq's prev_output_tokens: EOS then the target without its last token), target)."""
    return (src, torch.cat([torch.full_like(tgt[:, :1], EOS), tgt[:, :-1]], 1)), tgt


def inverse_sqrt(warmup: int) -> Callable[[int], float]:
    """The reference's schedule as a factor of the peak lr: linear warm-up over `warmup` steps, then 1/sqrt(step)."""
    return lambda step: min((step + 1) / warmup, math.sqrt(warmup / (step + 1)))


def model(preset: Preset) -> Transformer:
    p = preset
    return Transformer(p["vocab"], p["d_model"], p["heads"], p["ffn"], p["layers"], p["dropout"], max_len=p["seq_len"])


def build(setup: Setup) -> Supervised:
    """Teacher-forced training on batch-first batches, Adam under the warm-up / inverse-square-root schedule of the
    reference (`lr` is the peak, reached after `warmup` steps)."""
    p = setup.preset
    seq_len, held_out = p["seq_len"], p["held_out"]
    sentences = max(1, setup.batch_size // seq_len)
    pairs = reversal_pairs(p["vocab"], seq_len - 1, sentences, p["batches"] + held_out, setup.device)
    batches = [layout(src, tgt) for src, tgt in pairs]
    smoothing = p["smoothing"]
    return Supervised(
        setup,
        seeded(lambda: model(p)),
        batches[:-held_out],
        loss=lambda logits, labels: F.cross_entropy(
            logits.float().flatten(0, 1), labels.flatten(), ignore_index=PAD, label_smoothing=smoothing
        ),
        optimizer=lambda m: scheduled(
            torch.optim.Adam(m.parameters(), lr=p["lr"], betas=(0.9, 0.997), eps=1e-9, fused=True),
            inverse_sqrt(p["warmup"]),
        ),
        metric=teacher_forced_accuracy,
        held_out=batches[-held_out:],
        # fairseq's "wps" (NVIDIA's Transformer tokens/s) counts sample["ntokens"]: the target tokens of the batch,
        # EOS included, one per predicted label; source tokens are not counted.
        items_per_step=sentences * seq_len,
    )


register(
    Workload(
        name="transformer",
        family="transformer",
        task="training",
        unit="tok/s",
        description="Transformer big (MLPerf translation), Adam with warm-up, batches in tokens, "
        "synthetic reversal task",
        presets={
            # MLPerf reference translation/tensorflow/transformer/model/model_params.py TransformerBigParams:
            # hidden 1024, 6 layers, 16 heads, filter 4096, dropout 0.1, smoothing 0.1, lr 2.0 * d^-0.5 with
            # 16000 warm-up steps (peak 2.0 / sqrt(1024 * 16000) = 4.94e-4); vocabulary 33708 (MLPerf's
            # WMT14 en-de subword vocabulary). 210.9M parameters (Vaswani et al. 2017, Table 3: big, 213M).
            "real": {
                "vocab": 33708,
                "d_model": 1024,
                "heads": 16,
                "ffn": 4096,
                "layers": 6,
                "dropout": 0.1,
                "seq_len": 32,
                "lr": 2.0 / math.sqrt(1024 * 16000),
                "warmup": 16000,
                "smoothing": 0.1,
                "batches": 4,
                "held_out": 1,
            },
            "cpu": {
                "vocab": 32,
                "d_model": 32,
                "heads": 2,
                "ffn": 128,
                "layers": 2,
                "dropout": 0.0,
                "seq_len": 10,
                "lr": 2e-2,
                "warmup": 10,
                "smoothing": 0.1,
                "batches": 8,
                "held_out": 2,
            },
        },
        build=build,
        # As gnmt's: the target side's Markov chain alone predicts about half the labels; 0.45 (untrained ~0.03)
        # takes 20-30 steps over initial weights.
        quality=Quality("held-out token accuracy (teacher forcing)", target=0.45, max_steps=60, real_target=25.0),
    )
)
