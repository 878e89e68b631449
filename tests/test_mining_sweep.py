"""A k-sweep through the real CLI mines once; another miner setting re-ranks without re-encoding."""

# A range_max no other test uses, so this module's mine entries start out missing.
OWN_RANGE = "miner.range_max=90"
MINE_METRICS = ["mine/rows_short", "mine/rows_out", "mine/candidates_per_query",
                "mine/removed_by_margin", "mine/score_gap_mean", "time/mine_cut_s"]


def test_a_k_sweep_mines_once_then_hits_and_another_setting_reuses_the_embeddings(cli):
    result = cli("hydra.mode=MULTIRUN", "k=1,4,16", OWN_RANGE)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(cli.runs(), key=lambda run: run.info.start_time)
    assert [run.data.params["k"] for run in runs] == ["1", "4", "16"]
    assert all(run.info.status == "FINISHED" for run in runs)
    assert [run.data.tags["cache/mine_hit"] for run in runs] == ["false", "true", "true"]
    assert len({run.data.tags["cache/mine_key"] for run in runs}) == 1
    assert len({run.data.metrics["time/mine_build_s"] for run in runs}) == 1  # hits report the one build
    for run in runs:
        for name in MINE_METRICS:
            assert name in run.data.metrics, name
        metrics = run.data.metrics
        assert metrics["mine/rows_out"] + metrics["mine/rows_short"] == metrics["mine/rows_in"]
    embed_key = runs[0].data.tags["cache/embed_key"]  # only the miss needed embeddings

    other = cli("k=2", OWN_RANGE, "miner=nv_retriever")
    assert other.returncode == 0, other.stderr[-3000:]
    latest = cli.runs()[0]
    assert latest.data.tags["cache/mine_key"] != runs[0].data.tags["cache/mine_key"]
    assert latest.data.tags["cache/mine_hit"] == "false"
    assert (latest.data.tags["cache/embed_key"], latest.data.tags["cache/embed_hit"]) == (embed_key, "true")
    assert latest.data.metrics["mine/removed_by_margin"] > 0
