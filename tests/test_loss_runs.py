"""Each loss trains end to end, and the run records its cost model, memory and hardware."""

from pipeline.losses import LOSSES
from pipeline.stages import cost


def test_losses_for_static_models_train_end_to_end_with_their_cost_recorded(cli):
    result = cli.multirun("loss=hn_only,triplet", "k=2")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = cli.runs()
    assert sorted(run.data.params["loss.name"] for run in runs) == ["hn_only", "triplet"]
    for run in runs:
        metrics, tags = run.data.metrics, run.data.tags
        assert run.info.status == "FINISHED"
        assert metrics["train/steps"] == 6
        assert metrics["cost/texts_per_step"] == cost.texts_per_step(16, 2) == 64
        rows, cols = LOSSES[run.data.params["loss.name"]].score_shape(16, 2)
        assert (metrics["cost/score_rows"], metrics["cost/score_cols"]) == (rows, cols)
        assert metrics["cost/steps"] == 6
        assert metrics["cost/texts_per_epoch"] == metrics["mine/rows_out"] * 4
        assert 0 < metrics["cost/tokens_per_step_real"] <= metrics["cost/tokens_per_step_padded"]
        assert metrics["train/peak_rss_mb"] > 100  # torch alone is more
        assert metrics["train/texts_per_s"] > 0 and metrics["train/s_per_step"] > 0
        assert (tags["hardware/device"], tags["hardware/precision"], tags["hardware/device_count"]) \
            == ("cpu", "fp32", "1")
        assert {"version/torch", "version/transformers", "version/sentence_transformers",
                "version/accelerate"} <= set(tags)


TINY_MINILM = ["model=minilm", "model.max_seq_length=32", "k=1", "train.batch_size=4",
               "train.max_steps=2", "eval.test_distractors=50", "data.max_rows=300"]


def test_gist_and_cached_mnrl_train_on_a_transformer(cli):
    # Both refuse StaticEmbedding, so MiniLM, kept tiny; GIST's guide is the frozen base model.
    for overrides in (["loss=gist"], ["loss=cached_mnrl", "loss.mini_batch_size=2"]):
        result = cli(*TINY_MINILM, *overrides)
        assert result.returncode == 0, result.stderr[-3000:]
    runs = {run.data.params["loss.name"]: run for run in cli.runs()}
    assert all(run.info.status == "FINISHED" for run in runs.values())
    assert runs["gist"].data.params["loss.guide"] == "None"
    assert runs["cached_mnrl"].data.params["loss.mini_batch_size"] == "2"
    for name, cols in (("gist", 16), ("cached_mnrl", 8)):
        metrics = runs[name].data.metrics
        assert (metrics["cost/score_rows"], metrics["cost/score_cols"]) == (4, cols)
        assert metrics["cost/tokens_per_step_real"] < metrics["cost/tokens_per_step_padded"]
