"""rnnt: the RNN-T loss against a brute-force sum over alignments, WER on known strings, the greedy decoder against
the reference's one-utterance loop, the synthetic speech, the cpu preset learning in fp32 (and bf16 steps), the
served transcripts scoring as the training metric, in bf16 and int8 too, and the real preset's published size."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from helpers import assert_learns, assert_losses_fall
from torch import Tensor, nn

from pytest_mlperf.run import serving
from pytest_mlperf.run.precision import resolve
from pytest_mlperf.workloads import rnnt
from pytest_mlperf.workloads.registry import Setup, Trainer, get

CPU = torch.device("cpu")
BATCH = 16
SAMPLES = 256  # served held-out utterances, as systems/cpu.yaml serves
ACCURACY = 0.99  # MLPerf Inference RNN-T: 99% of the FP32 model's accuracy


def build(precision: str) -> Trainer:
    workload = get("rnnt")
    return workload.build(Setup(workload.presets["cpu"], BATCH, CPU, resolve(precision, CPU)))


def test_registered() -> None:
    workload = get("rnnt")
    assert (workload.family, workload.task, workload.unit) == ("rnnt", "training", "utterances/s")
    assert set(workload.presets) == {"cpu", "real"}
    assert workload.quality.real_target == 0.058  # MLPerf Training v1.0 RNN-T: WER on dev-clean
    assert not workload.quality.higher_is_better
    assert workload.quality.reached(0.05) and not workload.quality.reached(0.5)
    assert workload.serving is rnnt.TRANSCRIPTS


def test_real_preset_is_the_inference_reference() -> None:
    # mlcommons/inference speech_recognition/rnnt README: "The model has 45.3 million parameters".
    with torch.device("meta"):
        model = rnnt.RNNT(get("rnnt").presets["real"])
    assert sum(p.numel() for p in model.parameters()) == 45_323_037
    pre, post, pred = model.encoder.pre_rnn.lstm, model.encoder.post_rnn.lstm, model.prediction.dec_rnn.lstm
    assert (pre.input_size, pre.hidden_size, pre.num_layers) == (240, 1024, 2)  # 80 features x 3 frames
    assert (post.input_size, post.hidden_size, post.num_layers) == (2048, 1024, 3)  # 2 frames stacked
    assert (pred.input_size, pred.hidden_size, pred.num_layers) == (320, 320, 2)
    assert model.prediction.embed.num_embeddings == 28
    assert model.joint.out[-1].out_features == 29 and model.joint.enc.out_features == 512


def test_forget_gates_start_open_and_joint_is_the_reference_linear_on_concatenation() -> None:
    p = get("rnnt").presets["cpu"]
    model = rnnt.RNNT(p)
    hidden = p["enc_hidden"]
    bias_ih, bias_hh = model.encoder.pre_rnn.lstm.bias_ih_l0, model.encoder.pre_rnn.lstm.bias_hh_l0
    assert (bias_ih[hidden : 2 * hidden] == 1).all() and (bias_hh[hidden : 2 * hidden] == 0).all()
    assert not (bias_ih[:hidden] == 1).all()
    joint = model.joint
    concatenated = nn.Linear(p["enc_hidden"] + p["pred_hidden"], p["joint_hidden"])
    with torch.no_grad():
        concatenated.weight.copy_(torch.cat([joint.enc.weight, joint.pred.weight], 1))
        concatenated.bias.copy_(joint.enc.bias)
    f, g = torch.randn(2, 5, p["enc_hidden"]), torch.randn(2, 3, p["pred_hidden"])
    pairs = torch.cat([f.unsqueeze(2).expand(-1, -1, 3, -1), g.unsqueeze(1).expand(-1, 5, -1, -1)], -1)
    expected = joint.out(concatenated(pairs))
    torch.testing.assert_close(joint(f, g), expected, rtol=1e-5, atol=1e-5)


def test_stack_frames_concatenates_runs_and_rounds_lengths_up() -> None:
    x = torch.arange(2 * 7 * 2.0).reshape(2, 7, 2)
    stacked, lengths = rnnt.stack_frames(x, torch.tensor([7, 4]), 3)
    assert stacked.shape == (2, 3, 6)
    assert stacked[0, 0].tolist() == [0, 1, 2, 3, 4, 5]
    assert stacked[0, 2].tolist() == [12, 13, 0, 0, 0, 0]  # zero-padded
    assert lengths.tolist() == [3, 2]
    # the reference's StackTime: (length + 2 * factor - 1) // factor - 1
    for length in range(1, 12):
        _, (out,) = rnnt.stack_frames(torch.zeros(1, 12, 1), torch.tensor([length]), 2)
        assert int(out) == (length + 3) // 2 - 1 == math.ceil(length / 2)


def brute_force_nll(logits: Tensor, labels: list[int], frames: int) -> Tensor:
    """-log of the sum over every alignment: T blanks and U labels in any order with a blank last, each a path
    through the lattice starting at (0, 0)."""
    logp = logits.log_softmax(-1)
    paths = []
    for emitted_at in itertools.combinations(range(frames + len(labels) - 1), len(labels)):
        t = u = 0
        total = logp.new_zeros(())
        for move in range(frames + len(labels) - 1):
            if move in emitted_at:
                total = total + logp[t, u, labels[u]]
                u += 1
            else:
                total = total + logp[t, u, rnnt.BLANK]
                t += 1
        paths.append(total + logp[frames - 1, len(labels), rnnt.BLANK])
    return -torch.logsumexp(torch.stack(paths), 0)


def test_rnnt_loss_is_the_sum_over_alignments_with_variable_lengths() -> None:
    g = torch.Generator().manual_seed(0)
    frames, labels = (5, 3, 4, 1), ([3, 7, 7], [1, 2], [], [5, 9, 12])
    logits = torch.randn(4, 5, 4, 29, generator=g, requires_grad=True)
    padded = torch.full((4, 3), -1)
    for row, label in enumerate(labels):
        padded[row, : len(label)] = torch.tensor(label, dtype=torch.long)
    lengths, label_lengths = torch.tensor(frames), torch.tensor([len(x) for x in labels])
    loss = rnnt.rnnt_loss(logits, padded, lengths, label_lengths)
    expected = torch.stack([brute_force_nll(logits[i], labels[i], frames[i]) for i in range(4)])
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-4)
    (grad,) = torch.autograd.grad(loss.sum(), logits)
    (expected_grad,) = torch.autograd.grad(expected.sum(), logits)
    assert grad.isfinite().all() and grad.abs().sum() > 0
    torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-5)
    # padding frames and labels get no gradient
    assert (grad[1, 3:] == 0).all() and (grad[1, :, 3] == 0).all()


def test_rnnt_loss_of_single_alignments() -> None:
    logits = torch.randn(1, 1, 2, 29)
    logp = logits.log_softmax(-1)[0, 0]
    # one frame, no label: only blank; one frame, one label: the label then blank
    assert torch.allclose(
        rnnt.rnnt_loss(logits, torch.tensor([[4]]), torch.tensor([1]), torch.tensor([0])), -logp[0, rnnt.BLANK]
    )
    assert torch.allclose(
        rnnt.rnnt_loss(logits, torch.tensor([[4]]), torch.tensor([1]), torch.tensor([1])),
        -(logp[0, 4] + logp[1, rnnt.BLANK]),
    )
    # uniform outputs: every one of the C(T + U - 1, U) alignments has probability 29^-(T + U)
    frames, count = 6, 4
    uniform = torch.zeros(1, frames, count + 1, 29)
    loss = rnnt.rnnt_loss(
        uniform, torch.ones(1, count, dtype=torch.long), torch.tensor([frames]), torch.tensor([count])
    )
    expected = (frames + count) * math.log(29) - math.log(math.comb(frames + count - 1, count))
    assert math.isclose(float(loss), expected, rel_tol=1e-5)


def as_ids(*sentences: str) -> Tensor:
    rows = torch.full((len(sentences), 40), -1)
    for i, sentence in enumerate(sentences):
        rows[i, : len(sentence)] = torch.tensor(rnnt.ids(sentence))
    return rows


def test_word_error_rate_on_known_strings() -> None:
    assert rnnt.edit_distance(list("kitten"), list("sitting")) == 3
    assert rnnt.edit_distance([], ["a", "b"]) == 2
    references = as_ids("the cat sat", "on the mat", "it's here")
    hypotheses = as_ids(
        "the cat sat",  # 0 errors
        "on a  mat now",  # a substitution and an insertion (double spaces split as one)
        "",  # 2 deletions
    )
    assert rnnt.word_errors(hypotheses, references) == (4, 8)
    assert rnnt.text(references[2].tolist()) == "it's here"
    assert rnnt.word_accuracy(hypotheses.int().numpy(), (references, torch.tensor([11, 10, 9]))) == 50.0


def test_synthetic_speech() -> None:
    p = get("rnnt").presets["cpu"]
    train, held_out = rnnt.dataset(p, 8, CPU)
    assert (len(train), len(held_out)) == (p["batches"], p["held_out"])
    words = {tuple(w) for w in rnnt.lexicon(p, torch.Generator().manual_seed(0))}
    characters, frames = rnnt.longest(p)
    for (features, lengths), (transcripts, transcript_lengths) in held_out:
        assert features.shape == (8, frames, p["n_mels"]) and transcripts.shape == (8, characters)
        for row in range(8):
            n, sentence = int(transcript_lengths[row]), rnnt.text(transcripts[row].tolist())
            assert len(sentence) == n and (transcripts[row, n:] == -1).all()
            spoken = [tuple(rnnt.ids(w)) for w in sentence.split(" ")]
            assert p["words"][0] <= len(spoken) <= p["words"][1] and set(spoken) <= words
            assert all(a != b for w in spoken for a, b in itertools.pairwise(w))
            assert n * p["duration"][0] <= int(lengths[row]) <= n * p["duration"][1]
            assert (features[row, int(lengths[row]) :] == 0).all() and (features[row, : int(lengths[row])] != 0).all()
    (features, lengths, transcripts), (labels, label_lengths) = train[0]
    assert transcripts is labels and features.shape[1] == int(lengths.max())
    assert transcripts.shape[1] == int(label_lengths.max())
    # the same task whatever the batch: the held-out sentences of another batch size use the same lexicon
    (_, (other, _)), *_ = rnnt.dataset(p, 3, CPU)[1]
    assert {tuple(rnnt.ids(w)) for row in other.tolist() for w in rnnt.text(row).split()} <= words


def test_cpu_preset_learns_in_fp32() -> None:
    assert_learns(build("fp32"), get("rnnt").quality)


def test_bf16_autocast_steps_give_finite_falling_losses() -> None:
    trainer = build("bf16")
    assert_losses_fall(trainer, 25, 5, by=0.6)


def one_at_a_time(model: rnnt.RNNT, f: Tensor, frames: int) -> list[int]:
    """The reference's _greedy_decode, one utterance (f: (T, hidden)) and one symbol at a time."""
    labels: list[int] = []
    g, state = model.prediction(torch.tensor([[-1]]))
    for t in range(frames):
        for _ in range(rnnt.MAX_SYMBOLS_PER_STEP):
            k = int(model.joint(f[None, t : t + 1], g).argmax(-1))
            if k == rnnt.BLANK:
                break
            labels.append(k)
            g, state = model.prediction(torch.tensor([[k]]), state)
    return labels


@pytest.fixture(scope="module")
def trained() -> serving.Trained:
    return serving.trained(get("rnnt"), "cpu", CPU, BATCH, SAMPLES)


def answers(trained: serving.Trained, precision: str = "fp32") -> np.ndarray:
    workload = get("rnnt")
    model, context = serving.served(trained.model, precision, CPU)
    predict = serving.Answerer(model, trained.inputs, workload.serving, workload.presets["cpu"], context)
    return serving.predict_all(predict, SAMPLES, BATCH)


@pytest.fixture(scope="module")
def fp32_answers(trained: serving.Trained) -> np.ndarray:
    return answers(trained)


def test_batched_greedy_decoding_is_the_reference_loop(trained: serving.Trained) -> None:
    model = trained.model
    features, lengths = trained.inputs
    with torch.no_grad():
        decoded = model(features[:8], lengths[:8])
        f, frames = model.encoder(features[:8], lengths[:8])
        for row in range(8):
            expected = one_at_a_time(model, f[row], int(frames[row]))
            assert decoded[row].tolist() == expected + [-1] * (rnnt.TRANSCRIPT - len(expected))


def test_greedy_decoding_stops_at_max_symbols_per_frame() -> None:
    p = get("rnnt").presets["cpu"]
    model = rnnt.RNNT(p).eval()
    features, lengths = torch.randn(2, 24, p["n_mels"]), torch.tensor([24, 7])  # 4 and 2 encoder frames
    with torch.no_grad():
        model.joint.out[-1].bias[5] = 1e4  # "e" always wins
        decoded = model(features, lengths)
        assert ((decoded == 5).sum(1)).tolist() == [4 * 30, 2 * 30]
        model.joint.out[-1].bias[rnnt.BLANK] = 1e5  # blank always wins
        assert (model(features, lengths) == -1).all()


def test_served_transcripts_score_as_the_training_metric(trained: serving.Trained, fp32_answers: np.ndarray) -> None:
    workload = get("rnnt")
    assert fp32_answers.shape == (SAMPLES, rnnt.TRANSCRIPT) and fp32_answers.dtype == "int32"
    score = workload.serving.score(fp32_answers, serving.labels_of(trained, SAMPLES))
    (features, lengths), (transcripts, transcript_lengths) = trained.inputs, trained.labels
    held_out = [
        (
            (features[i : i + BATCH], lengths[i : i + BATCH]),
            (transcripts[i : i + BATCH], transcript_lengths[i : i + BATCH]),
        )
        for i in range(0, SAMPLES, BATCH)
    ]
    with torch.no_grad():
        wer = rnnt.word_error_rate(trained.model, held_out)
    assert math.isclose(score, 100 * (1 - wer))
    assert wer < 2 * workload.quality.target  # new sentences: about the WER reached on the training held-out set


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_low_precision_serving_keeps_the_accuracy(
    trained: serving.Trained, fp32_answers: np.ndarray, precision: str
) -> None:
    if precision == "int8":  # every LSTM and Linear swapped for its dynamically quantised version
        model, _ = serving.served(trained.model, precision, CPU)
        modules = (model.encoder.pre_rnn.lstm, model.prediction.dec_rnn.lstm, model.joint.enc, model.joint.out[-1])
        assert all(type(m).__module__.startswith("torch.ao.nn.quantized.dynamic") for m in modules)
    targets, score = serving.labels_of(trained, SAMPLES), get("rnnt").serving.score
    fp32, low = score(fp32_answers, targets), score(answers(trained, precision), targets)
    assert low >= ACCURACY * fp32, (low, fp32)
