"""The DLRM workload: its data, exact AUC, convergence on the cpu preset (fp32 and bf16) and the real model's size."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_learns

from pytest_mlperf.run.precision import resolve
from pytest_mlperf.run.quality import converge
from pytest_mlperf.run.training import Supervised
from pytest_mlperf.workloads.dlrm import CRITEO_TB_TABLES, DLRM, ClickLogs
from pytest_mlperf.workloads.metrics import auc, roc_auc
from pytest_mlperf.workloads.registry import Setup, get

CPU = torch.device("cpu")
WORKLOAD = get("dlrm")
CPU_BATCH = 1024  #: click-log samples per step on the cpu preset
BF16_BATCH = 256  #: bfloat16 matmuls are slow on CPUs without AVX-512 bf16


def trainer(precision: str, batch: int) -> Supervised:
    return WORKLOAD.build(Setup(WORKLOAD.presets["cpu"], batch, CPU, resolve(precision, CPU)))


def test_registered() -> None:
    assert (WORKLOAD.family, WORKLOAD.task, WORKLOAD.unit) == ("dlrm", "training", "samples/s")
    assert WORKLOAD.quality.real_target == 0.8025  # MLPerf's AUC target on Criteo Terabyte
    assert set(WORKLOAD.presets) == {"cpu", "real"}


def test_roc_auc_is_exact_with_ties() -> None:
    g = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 20, (300,), generator=g).float()  # many ties
    labels = (torch.rand(300, generator=g) < torch.sigmoid(scores / 5 - 2)).float()
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = (pos[:, None] > neg[None, :]).double() + 0.5 * (pos[:, None] == neg[None, :]).double()
    assert roc_auc(scores, labels) == pytest.approx(float(pairs.mean()), abs=1e-12)
    assert roc_auc(torch.arange(4.0), torch.tensor([0, 0, 1, 1])) == 1.0
    assert roc_auc(torch.zeros(4), torch.tensor([0, 1, 0, 1])) == 0.5
    assert math.isnan(roc_auc(torch.arange(3.0), torch.ones(3)))


def test_click_logs_have_criteo_shapes_and_a_learnable_signal() -> None:
    tables = (5, 1000, 3)
    logs = ClickLogs(tables, hot=4, cold=0.5, dense_scale=1.5, sparse_scale=2.5, bias=-1.0, device=CPU)
    (dense, ids), clicks = logs.batch(4000)
    assert dense.shape == (4000, 13) and dense.dtype == torch.float32 and bool((dense > 0).all())
    assert ids.shape == (4000, 3) and ids.dtype == torch.int64 and clicks.shape == (4000,)
    assert bool((ids >= 0).all()) and bool((ids < torch.tensor(tables)).all())
    hot = set(logs.rows[logs.offsets[1] : logs.offsets[1] + 4].tolist())
    assert 0.4 < sum(i in hot for i in ids[:, 1].tolist()) / 4000 < 0.6  # half hot, half the long tail
    assert 0.1 < float(clicks.mean()) < 0.9


def test_learns_in_fp32() -> None:
    run = trainer("fp32", CPU_BATCH)
    assert run.items_per_step == CPU_BATCH  # one click-log line per sample
    assert_learns(run, WORKLOAD.quality)


def test_learns_in_bf16() -> None:
    result = converge(trainer("bf16", BF16_BATCH), WORKLOAD.quality, 0)
    assert result.reached, result


def test_embedding_gradients_are_sparse() -> None:
    run = trainer("fp32", 64)
    inputs, clicks = run.batches[0]
    run.loss(run.model(*inputs), clicks).backward()
    assert all(table.weight.grad.is_sparse for table in run.model.embeddings)
    run.model.zero_grad(set_to_none=True)


def test_real_preset_is_mlperfs_dlrm() -> None:
    p = WORKLOAD.presets["real"]
    assert tuple(p["tables"]) == CRITEO_TB_TABLES and len(CRITEO_TB_TABLES) == 26
    assert (p["dim"], tuple(p["bottom"]), tuple(p["top"])) == (128, (512, 256, 128), (1024, 1024, 512, 256, 1))
    with torch.device("meta"):  # 96 GB of weights: no memory is allocated on the meta device
        model = DLRM(p["tables"], p["dim"], p["bottom"], p["top"])
    assert model.top[0].in_features == 128 + 27 * 26 // 2  # 479, the reference's ln_top[0]
    embeddings = sum(t.weight.numel() for t in model.embeddings)
    count = sum(w.numel() for w in model.parameters())
    assert embeddings == 187_767_399 * 128
    # The reference's arithmetic (facebookresearch/dlrm, --max-ind-range=40000000): 24,034,227,072 embedding
    # weights plus 171,392 in the bottom MLP and 2,197,505 in the top one. Published: "100GB of embedding memory
    # (25+ billion parameters)" (Desai & Shrivastava, NeurIPS 2022, on the MLPerf Criteo-TB DLRM); 24.04e9 fp32
    # weights are 96.1 GB.
    assert count == 24_036_595_969
    assert count == pytest.approx(25e9, rel=0.05)
    assert 4 * count / 1e9 == pytest.approx(100, rel=0.05)


def test_served_click_probabilities_score_the_models_auc() -> None:
    from pytest_mlperf.run.serving import Answerer, labels_of, predict_all, served, trained

    model = trained(WORKLOAD, "cpu", CPU, CPU_BATCH, 4096)
    serving, clicks = WORKLOAD.serving, labels_of(model, 4096)
    assert serving is not None and serving.metric == "ROC AUC"
    with torch.no_grad():
        direct = auc(model.model, [(model.inputs, clicks)])  # ranked by logits
    for precision in ("fp32", "int8"):
        served_model, context = served(model.model, precision, CPU)
        answers = predict_all(
            Answerer(served_model, model.inputs, serving, WORKLOAD.presets["cpu"], context), 4096, 512
        )
        assert answers.shape == (4096,) and answers.dtype == "float32" and ((answers >= 0) & (answers <= 1)).all()
        score = serving.score(answers, clicks)
        if precision == "fp32":
            assert score == pytest.approx(direct, abs=1e-6)  # probabilities rank as the logits do
        assert score >= 0.99 * direct
