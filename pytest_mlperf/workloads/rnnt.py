"""RNN-T speech recognition: MLPerf Inference (from v0.7) "rnnt" and MLPerf Training (from v1.0) RNN-T, LibriSpeech.

The model is the inference reference's (mlcommons/inference speech_recognition/rnnt, pytorch/model_separable_rnnt.py
and rnn.py with the [rnnt] section of its rnnt.toml): 80 log-mel filterbank features every 10 ms, three consecutive
frames stacked and every third kept ("frame splicing", 240 features every 30 ms); an encoder of 2 LSTM layers of
1024, a time-stacking reduction of factor 2 (pairs of frames concatenated: 60 ms), 3 more LSTM layers of 1024; a
prediction network of an embedding of the 28 characters and 2 LSTM layers of 320, fed a zero vector as
start-of-sequence; a joint network Linear(1024 + 320, 512), ReLU, Linear(512, 29) over the 28 characters and the
blank (the last output). LSTM forget-gate biases start at 1 (bias_ih; bias_hh at 0) and dropout is 0.32, as rnn.py.
Its README gives "45.3 million parameters"; this model has 45,323,037. (MLPerf Training's v1.0 model,
rnn_speech_recognition/pytorch configs/baseline_v3-1023sp.yaml, has the same encoder but 1023 sentencepieces and a
prediction network of 512: 49,006,080 parameters; the training quality target below is its 0.058 WER.) The joint's
first Linear is computed as two, Linear(1024, 512) on encoder frames plus Linear(320, 512, bias=False) on prediction
outputs, broadcast-added: the same function and parameter count as the reference's Linear on the concatenation,
without materialising the (batch, T, U + 1, 1344) concatenation.

Decoding is the reference's greedy decoder (decoders.py `ScriptGreedyDecoder`): at each encoder frame, feed the last
emitted symbol to the prediction network and emit the joint's argmax until it is blank, at most
`MAX_SYMBOLS_PER_STEP` = 30 symbols a frame. The module's forward with targets returns the joint's logits (batch, T,
U + 1, 29) for the loss; without them (held-out inputs, served ones), the greedy transcripts as character ids (batch,
`TRANSCRIPT`) padded with -1, which is what `Serving.answer` passes on. Training minimises the RNN-T loss (Graves
2012, `rnnt_loss`: torchaudio is not a dependency) with Adam (the reference's LAMB, EMA and learning-rate schedule
matter over epochs, not here). Quality is the word error rate of the greedy transcripts (the reference's
`word_error_rate`: word-level Levenshtein distances summed over utterances over the reference words); served, it is
MLPerf Inference's accuracy 100 - WER in percent (the benchmark must keep 99% of the FP32 model's).

Synthetic data: sentences of words drawn from a random lexicon over the 26 letters and the apostrophe, words
separated by spaces, "spoken" frame by frame: each character lasts a random number of 10 ms frames and sounds as its
own random spectral pattern over the filterbank bins plus Gaussian noise. No letter repeats within a word (an "ll"
would sound as one long "l"), so the transcript is recoverable from the sound. Held-out utterances are new sentences
of the same lexicon. Features are padded to the preset's longest utterance, transcripts to its longest sentence
(padding -1) with lengths beside them; training batches are then trimmed to their own longest, as the reference's
collate pads to the batch's longest.

Throughput is utterances/s: the training reference logs "throughput" as utterances a second, and MLPerf Inference
counts one utterance as one sample (Offline samples/s).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..run.training import Batch, Supervised, seeded
from .layers import recurrent
from .registry import Preset, Quality, Serving, Setup, Workload, register

#: The reference's labels (rnnt.toml [labels]); the blank is the output after them.
LABELS = " abcdefghijklmnopqrstuvwxyz'"
SPACE = 0
BLANK = len(LABELS)
#: decoders.py's max_symbols_per_step
MAX_SYMBOLS_PER_STEP = 30
#: characters of a greedy transcript (longer ones are cut), the width of a served answer in every preset; the
#: longest dev-clean utterances the inference benchmark keeps (15 s) have about 250 characters
TRANSCRIPT = 256


def stack_frames(x: Tensor, lengths: Tensor, factor: int) -> tuple[Tensor, Tensor]:
    """(batch, T, features) -> (batch, ceil(T / factor), factor * features): runs of `factor` frames concatenated,
    zero-padded at the end, as the reference's frame splicing and StackTime (whose lengths are ceil(length/factor))."""
    batch, frames, features = x.shape
    x = F.pad(x, (0, 0, 0, -frames % factor))
    return x.reshape(batch, -1, factor * features), (lengths + factor - 1) // factor


class Recurrent(nn.Module):
    """The reference's LstmDrop: a batch-first `nn.LSTM` (a plain one, which quantize_dynamic swaps for its int8
    version) whose forget gates start open (bias_ih 1, bias_hh 0), dropout between its layers and on its output.
    Run through `recurrent` so CPU bf16 autocast works on CPUs without bf16 RNN kernels."""

    def __init__(self, inputs: int, hidden: int, layers: int, dropout: float, forget_gate_bias: float) -> None:
        super().__init__()
        self.lstm = nn.LSTM(inputs, hidden, layers, dropout=dropout if layers > 1 else 0.0, batch_first=True)
        with torch.no_grad():
            for name, bias in self.lstm.named_parameters():
                if name.startswith("bias_"):
                    bias[hidden : 2 * hidden] = forget_gate_bias if name.startswith("bias_ih") else 0.0
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        out, state = recurrent(self.lstm, x, state)
        return self.dropout(out), state


class Encoder(nn.Module):
    """Filterbank frames (batch, T, n_mels) -> encoder frames (batch, ~T / 6, hidden) and their lengths."""

    def __init__(self, p: Preset) -> None:
        super().__init__()
        self.frame_stack, self.time_stack, hidden = p["frame_stack"], p["time_stack"], p["enc_hidden"]
        self.pre_rnn = Recurrent(p["n_mels"] * self.frame_stack, hidden, p["pre_layers"], p["dropout"], 1.0)
        self.post_rnn = Recurrent(self.time_stack * hidden, hidden, p["post_layers"], p["dropout"], 1.0)

    def forward(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        x, lengths = stack_frames(features, lengths, self.frame_stack)
        x, _ = self.pre_rnn(x)
        x, lengths = stack_frames(x, lengths, self.time_stack)
        x, _ = self.post_rnn(x)
        return x, lengths


class Prediction(nn.Module):
    """Symbols (batch, U) -> (batch, U, hidden); symbol -1 (start of sequence, padding) embeds as zeros, as the
    reference's _SOS."""

    def __init__(self, p: Preset) -> None:
        super().__init__()
        self.embed = nn.Embedding(len(LABELS), p["pred_hidden"])
        self.dec_rnn = Recurrent(p["pred_hidden"], p["pred_hidden"], p["pred_layers"], p["dropout"], 1.0)

    def forward(
        self, symbols: Tensor, state: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        y = self.embed(symbols.clamp(min=0)) * (symbols >= 0).unsqueeze(-1)
        return self.dec_rnn(y, state)


class Joint(nn.Module):
    """out(ReLU(enc(f) + pred(g))): the reference's Linear on [f, g] split in two, then ReLU, dropout, Linear."""

    def __init__(self, p: Preset) -> None:
        super().__init__()
        self.enc = nn.Linear(p["enc_hidden"], p["joint_hidden"])
        self.pred = nn.Linear(p["pred_hidden"], p["joint_hidden"], bias=False)
        self.out = nn.Sequential(nn.ReLU(), nn.Dropout(p["dropout"]), nn.Linear(p["joint_hidden"], BLANK + 1))

    def forward(self, f: Tensor, g: Tensor) -> Tensor:
        """f (batch, T, enc_hidden), g (batch, U + 1, pred_hidden) -> logits (batch, T, U + 1, 29)."""
        return self.out(self.enc(f).unsqueeze(2) + self.pred(g).unsqueeze(1))


class RNNT(nn.Module):
    """(features (batch, T, n_mels), lengths (batch,), transcripts (batch, U) padded with -1) -> (joint logits
    (batch, T', U + 1, 29), encoder lengths (batch,)); without transcripts, the greedy transcripts (batch,
    `TRANSCRIPT`) padded with -1."""

    def __init__(self, p: Preset) -> None:
        super().__init__()
        self.encoder = Encoder(p)
        self.prediction = Prediction(p)
        self.joint = Joint(p)

    def forward(
        self, features: Tensor, lengths: Tensor, transcripts: Tensor | None = None
    ) -> Tensor | tuple[Tensor, Tensor]:
        f, lengths = self.encoder(features, lengths)
        if transcripts is None:
            return self.greedy(f, lengths)
        start = transcripts.new_full((len(transcripts), 1), -1)
        g, _ = self.prediction(torch.cat([start, transcripts], 1))
        return self.joint(f, g), lengths

    def greedy(self, f: Tensor, lengths: Tensor) -> Tensor:
        """The reference's batched greedy decoding: every utterance at its own frame, advancing on blank (or after
        `MAX_SYMBOLS_PER_STEP` symbols), the prediction network stepped on the symbols emitted."""
        batch, frames, _ = f.shape
        enc = self.joint.enc(f)
        rows = torch.arange(batch, device=f.device)
        out = torch.full((batch, TRANSCRIPT + 1), -1, dtype=torch.long, device=f.device)  # last column: discarded
        t, emitted, symbols = (torch.zeros(batch, dtype=torch.long, device=f.device) for _ in range(3))
        g, state = self.prediction(torch.full((batch, 1), -1, device=f.device))
        while bool((active := t < lengths).any()):
            logits = self.joint.out(enc[rows, t.clamp(max=frames - 1)] + self.joint.pred(g[:, 0]))
            k = logits.argmax(-1)
            emit = active & (k != BLANK)
            out[rows, torch.where(emit, emitted.clamp(max=TRANSCRIPT), TRANSCRIPT)] = k
            emitted += emit
            symbols += emit
            advance = active & (~emit | (symbols >= MAX_SYMBOLS_PER_STEP))
            t += advance
            symbols.masked_fill_(advance, 0)
            if bool(emit.any()):
                g_new, state_new = self.prediction(torch.where(emit, k, -1).unsqueeze(1), state)
                keep = emit[:, None, None]
                g = torch.where(keep, g_new, g)
                state = (
                    torch.where(keep.transpose(0, 1), state_new[0], state[0]),
                    torch.where(keep.transpose(0, 1), state_new[1], state[1]),
                )
        return out[:, :TRANSCRIPT]


def rnnt_loss(logits: Tensor, transcripts: Tensor, lengths: Tensor, transcript_lengths: Tensor) -> Tensor:
    """The RNN-T negative log-likelihood (Graves 2012) of each utterance: -log of the sum over all alignments of
    `transcripts` (batch, U, padded with anything) to `lengths` frames of `logits` (batch, T, U + 1, 29), blank last.

    The forward variable alpha[t, u] = logaddexp(alpha[t-1, u] + blank[t-1, u], alpha[t, u-1] + emit[t, u-1]) is
    computed frame by frame: within a frame, the recurrence along u is linear in log space, so with the cumulative
    emissions c[u] = emit[t, 0] + ... + emit[t, u-1], alpha[t, u] = c[u] + logcumsumexp(alpha[t-1] + blank[t-1] - c)[u]
    (T steps of whole-row operations, in float32)."""
    logp = logits.float().log_softmax(-1)
    batch, frames, width, _ = logp.shape
    labels = transcripts[:, : width - 1].clamp(min=0)
    blank = logp[..., BLANK]
    emit = logp[:, :, :-1].gather(3, labels[:, None, :, None].expand(-1, frames, -1, 1)).squeeze(3)
    cumulative = F.pad(emit.cumsum(2), (1, 0))  # (batch, T, U + 1)
    alpha = cumulative[:, 0]
    alphas = [alpha]
    for t in range(1, frames):
        alpha = cumulative[:, t] + torch.logcumsumexp(alpha + blank[:, t - 1] - cumulative[:, t], 1)
        alphas.append(alpha)
    rows, last = torch.arange(batch, device=logp.device), lengths - 1
    return -(torch.stack(alphas, 1) + blank)[rows, last, transcript_lengths]


def transducer_loss(outputs: tuple[Tensor, Tensor], targets: tuple[Tensor, Tensor]) -> Tensor:
    """The mean over utterances of their RNN-T loss (warp-rnnt's "mean", as the training reference uses it)."""
    (logits, lengths), (transcripts, transcript_lengths) = outputs, targets
    return rnnt_loss(logits, transcripts, lengths, transcript_lengths).mean()


def text(ids: Iterable[int]) -> str:
    """Character ids (padding -1 skipped) -> text."""
    return "".join(LABELS[i] for i in ids if i >= 0)


def ids(sentence: str) -> list[int]:
    return [LABELS.index(c) for c in sentence]


def edit_distance(hypothesis: Sequence[str], reference: Sequence[str]) -> int:
    """Levenshtein distance between two word sequences: the fewest substitutions, insertions and deletions."""
    previous = list(range(len(reference) + 1))
    for i, word in enumerate(hypothesis, 1):
        current = [i]
        for j, ref in enumerate(reference, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != ref)))
        previous = current
    return previous[-1]


def word_errors(hypotheses: Tensor | np.ndarray, references: Tensor | np.ndarray) -> tuple[int, int]:
    """(word errors, reference words) of transcripts given as rows of character ids padded with -1, as the
    reference's word_error_rate counts them (words are what `str.split` finds)."""
    errors = words = 0
    for hypothesis, reference in zip(hypotheses.tolist(), references.tolist(), strict=True):
        ref = text(reference).split()
        errors += edit_distance(text(hypothesis).split(), ref)
        words += len(ref)
    return errors, words


def word_error_rate(model: nn.Module, batches: Iterable[Batch]) -> float:
    """WER of the model's greedy transcripts of held-out ((features, lengths), (transcripts, lengths)) batches."""
    errors = words = 0
    for (features, lengths), (transcripts, _) in batches:
        e, w = word_errors(model(features, lengths), transcripts)
        errors, words = errors + e, words + w
    return errors / words


def word_accuracy(answers: np.ndarray, targets: tuple[Tensor, Tensor]) -> float:
    """MLPerf Inference's RNN-T accuracy: 100 - WER, in percent."""
    errors, words = word_errors(answers, targets[0].cpu())
    return 100 * (1 - errors / words)


#: Served to LoadGen: each answer is the greedy transcript's character ids padded with -1 (what the reference's
#: accuracy log holds), scored with 100 - WER.
TRANSCRIPTS = Serving(
    "word accuracy (100 - WER, %)",
    answer=lambda transcripts, _: transcripts,
    score=word_accuracy,
)


def lexicon(p: Preset, g: torch.Generator) -> list[list[int]]:
    """`p["lexicon"]` random words of `p["word_len"]` letters (ids 1-27), no letter twice in a row: each letter is
    the previous one moved 1 to 26 places along the cycle of the 27."""
    letters = len(LABELS) - 1
    shortest, longest_word = p["word_len"]
    sizes = torch.randint(shortest, longest_word + 1, (p["lexicon"],), generator=g, device=g.device).tolist()
    words = []
    for size in sizes:
        start = int(torch.randint(letters, (), generator=g, device=g.device))
        moves = torch.randint(1, letters, (size - 1,), generator=g, device=g.device).cumsum(0).tolist()
        words.append([1 + (start + move) % letters for move in [0, *moves]])
    return words


def longest(p: Preset) -> tuple[int, int]:
    """(characters, frames) of the preset's longest utterance: the padded shapes."""
    characters = p["words"][1] * (p["word_len"][1] + 1) - 1
    return characters, characters * p["duration"][1]


def utterances(
    p: Preset, words: list[list[int]], patterns: Tensor, count: int, g: torch.Generator
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """`count` spoken sentences: (features (count, frames, n_mels), their lengths, transcripts (count, characters)
    padded with -1, their lengths), padded to `longest(p)`."""
    device = g.device
    characters, frames = longest(p)
    lengths = torch.randint(p["words"][0], p["words"][1] + 1, (count,), generator=g, device=device).tolist()
    choices = torch.randint(len(words), (sum(lengths),), generator=g, device=device).tolist()
    starts = np.cumsum([0, *lengths])
    sentences = [[c for i in choices[a:b] for c in [SPACE, *words[i]]][1:] for a, b in itertools.pairwise(starts)]
    transcripts = torch.tensor([s + [-1] * (characters - len(s)) for s in sentences], device=device)
    transcript_lengths = (transcripts >= 0).sum(1)
    shortest, longest_sound = p["duration"]
    durations = torch.randint(shortest, longest_sound + 1, (count, characters), generator=g, device=device)
    ends = (durations * (transcripts >= 0)).cumsum(1)
    frame = torch.arange(frames, device=device).expand(count, -1).contiguous()
    which = torch.searchsorted(ends, frame, right=True).clamp(max=characters - 1)
    sound = patterns[transcripts.gather(1, which).clamp(min=0)]
    noise = p["noise"] * torch.randn(count, frames, p["n_mels"], generator=g, device=device)
    feature_lengths = ends[:, -1]
    features = (sound + noise) * (frame < feature_lengths[:, None]).unsqueeze(-1)
    return features, feature_lengths, transcripts, transcript_lengths


def dataset(p: Preset, batch_size: int, device: torch.device, seed: int = 0) -> tuple[list[Batch], list[Batch]]:
    """(training batches ((features, lengths, transcripts), (transcripts, lengths)) trimmed to their longest
    utterance, held-out batches ((features, lengths), (transcripts, lengths)) at the preset's padded shapes). The
    lexicon and the characters' sounds come first from the seed, so every batch size gets the same task."""
    g = torch.Generator(device=device).manual_seed(seed)
    words = lexicon(p, g)
    patterns = torch.randn(len(LABELS), p["n_mels"], generator=g, device=device)
    train, held_out = [], []
    for i in range(p["batches"] + p["held_out"]):
        features, lengths, transcripts, transcript_lengths = utterances(p, words, patterns, batch_size, g)
        if i < p["batches"]:
            features, transcripts = features[:, : int(lengths.max())], transcripts[:, : int(transcript_lengths.max())]
            train.append(((features, lengths, transcripts), (transcripts, transcript_lengths)))
        else:
            held_out.append(((features, lengths), (transcripts, transcript_lengths)))
    return train, held_out


def build(setup: Setup) -> Supervised:
    p = setup.preset
    train, held_out = dataset(p, setup.batch_size, setup.device)
    return Supervised(
        setup,
        seeded(lambda: RNNT(p)),
        train,
        loss=transducer_loss,
        optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=p["lr"], fused=True),
        metric=word_error_rate,
        held_out=held_out,
        clip=p["clip"],
    )


register(
    Workload(
        name="rnnt",
        family="rnnt",
        task="training",
        unit="utterances/s",
        description="RNN-T speech recognition (MLPerf Inference rnnt / Training RNN-T, LibriSpeech), RNN-T loss, "
        "greedy decoding, synthetic spoken sentences, WER",
        presets={
            # The inference reference's model (rnnt.toml [input] and [rnnt]): 80 filterbank features spliced by 3,
            # encoder 2 + 3 LSTM layers of 1024 around a time stacking by 2, prediction 2 LSTM layers of 320, joint
            # 512, 29 outputs, dropout 0.32. Sentences of 10-25 words of 2-7 letters, 40-80 ms a character, up to 16 s
            # (the training reference keeps utterances up to 16.7 s). Adam at 1e-3, unclipped (the reference's
            # CLIP_NORM is unset).
            "real": {
                "n_mels": 80,
                "frame_stack": 3,
                "time_stack": 2,
                "enc_hidden": 1024,
                "pre_layers": 2,
                "post_layers": 3,
                "pred_hidden": 320,
                "pred_layers": 2,
                "joint_hidden": 512,
                "dropout": 0.32,
                "lexicon": 1000,
                "word_len": (2, 7),
                "words": (10, 25),
                "duration": (4, 8),
                "noise": 0.5,
                "lr": 1e-3,
                "clip": None,
                "batches": 4,
                "held_out": 1,
            },
            # 40 bins, encoder 1 + 1 LSTM layers of 128, prediction 1 of 64, joint 64; sentences of 2-4 words of a
            # 16-word lexicon, 50-90 ms a character.
            "cpu": {
                "n_mels": 40,
                "frame_stack": 3,
                "time_stack": 2,
                "enc_hidden": 128,
                "pre_layers": 1,
                "post_layers": 1,
                "pred_hidden": 64,
                "pred_layers": 1,
                "joint_hidden": 64,
                "dropout": 0.0,
                "lexicon": 16,
                "word_len": (2, 4),
                "words": (2, 4),
                "duration": (5, 9),
                "noise": 0.5,
                "lr": 5e-3,
                "clip": 1.0,
                "batches": 8,
                "held_out": 2,
            },
        },
        build=build,
        # An untrained model emits nothing (WER 1.0); the cpu preset gets below 0.1 in about 60 steps.
        quality=Quality(
            "word error rate", target=0.1, max_steps=200, eval_every=10, real_target=0.058, higher_is_better=False
        ),
        serving=TRANSCRIPTS,
    )
)
