import csv
import io
import json
from pathlib import Path

import pytest

from lsgbench.attention import VARIANTS, attention_label
from lsgbench.grouping import rows
from lsgbench.plots import pareto_front
from lsgbench.record import read_records
from lsgbench.published import cards_dir, identity, published
from lsgbench.report import format_table, main, table


def record(run_id, seed, accuracy, status="ok", block=64, error=None, factor=4, task="synth_keys",
           model="lsg_roberta", length=1024, speed=1000.0, sweep=None, init="random:tiny", metric="accuracy"):
    attention = {"type": "lsg", "block_size": block, "sparse_block_size": 32, "sparsity_factor": factor,
                 "sparsity_type": "pooling", "num_global_tokens": 1, "pool_with_global": True}
    return {"schema": 1, "run_id": run_id, "status": status, "task": task, "task_kind": "classification",
            "model": model, "attention": attention, "max_length": length,
            "metrics": {metric: accuracy} if status == "ok" else {},
            "efficiency": {"train_tokens_per_s": speed * seed, "eval_tokens_per_s": 5000.0,
                           "train_peak_mem_mb": 0.5 * length} if status == "ok" else {},
            "provenance": {"model_init": init}, "sweep": sweep,
            "config": {"seed": seed, "task": task, "model": {"attention": attention}, "max_length": length},
            "overrides": [f"seed={seed}"], "env": {}, "error": error}


@pytest.fixture
def store(tmp_path):
    runs = [record("a", 1, 80.0), record("b", 2, 90.0), record("c", 3, 100.0),
            record("d", 1, 0, status="oom", block=512, error="out of memory")]
    for r in runs:
        (tmp_path / f"{r['run_id']}.json").write_text(json.dumps(r))
    return tmp_path


def test_seeds_are_grouped_with_mean_std_and_failures_stay_visible(store):
    by = ["task", "model", "attention"]
    header, cells, notes = table(*rows(read_records([store]), by), by)
    text = format_table(header, cells, "md", notes)
    lines = text.splitlines()
    assert lines[0].startswith("| task | model | attention | accuracy ↑ |")
    assert "| lsg b=64 s=32 f=4 pooling g=1 | 90.00 ± 10.00 |" in lines[2]  # stdev of 80, 90, 100
    assert "2000 ± 1000" in lines[2] and "| 3/3 | ok |" in lines[2]
    assert "lsg b=512" in lines[3] and "| — |" in lines[3] and "| 0/1 | oom |" in lines[3]
    assert "out of memory" in text


def _tex_rows(text):
    body = text.split("\\midrule\n")[1].split("\\bottomrule")[0]
    return [[c.strip().replace("$\\pm$", "±").replace("--", "—").replace("\\_", "_") for c in line[:-2].split(" & ")]
            for line in body.strip().splitlines()]


def _md_rows(text):
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in text.splitlines()[2:] if line.startswith("|")]


def test_md_csv_and_tex_parse_back_to_the_same_numbers(store, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(store), "--format", "md,csv,tex", "--out", str(out), "--by", "model,attention"]) == 0
    rows = list(csv.reader(io.StringIO((out / "table.csv").read_text())))
    header, cells = rows[0], rows[1:]
    assert header[:4] == ["model", "attention", "accuracy", "accuracy std"] and "max_length" in header
    assert len(cells) == 2 and cells[0][2:4] == ["90.00", "10.00"] and cells[1][2:4] == ["", ""]
    assert cells[1][-1] == "oom"
    md = _md_rows((out / "table.md").read_text())
    assert md[0][2] == "90.00 ± 10.00" and md[1][2] == "—"
    means = [i for i, name in enumerate(header) if not name.endswith(" std")]
    assert [[c.split(" ± ")[0].replace("—", "") for c in row] for row in md] == [[row[i] for i in means] for row in cells]
    assert _tex_rows((out / "table.tex").read_text()) == md
    assert (out / "table.md").read_text() in capsys.readouterr().out


def test_report_errors_are_clear(tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    assert main([str(tmp_path)]) == 2
    assert "no run records or benchmark results" in capsys.readouterr().err
    assert main([str(tmp_path), "--by", "colour"]) == 2
    (tmp_path / "a.json").write_text(json.dumps(record("a", 1, 50.0)))
    assert main([str(tmp_path), "--format", "docx"]) == 2
    assert main([str(tmp_path), "--metric", "bleu"]) == 2
    err = capsys.readouterr().err
    assert "--format ['docx'] unknown; choose from md, csv, tex" in err
    assert "--metric ['bleu'] is not in the records; they have ['accuracy']" in err


def test_attention_labels():
    assert attention_label({"type": "local", "mode": "disjoint", "window": 512, "block_size": 128,
                            "num_global_tokens": 0}) == "local disjoint b=128 g=0"
    assert attention_label({"type": "full"}) == "full"
    assert attention_label({"type": "full", "implementation": "sdpa"}) == "full"  # the default is not named
    assert attention_label({"type": "full", "implementation": "eager"}) == "full eager"


def test_a_rerun_of_a_seed_replaces_the_earlier_run(tmp_path, capsys):
    runs = [record("a", 1, 0, status="failed", error="killed\nby the scheduler"), record("b", 1, 70.0),
            record("c", 2, 0, status="oom", error="out of memory")]
    for r in runs:
        (tmp_path / f"{r['run_id']}.json").write_text(json.dumps(r))
    assert main([str(tmp_path), "--format", "tex"]) == 0
    text = capsys.readouterr().out
    assert "& 70.00 & " in text and "& 1/2 & oom" in text  # seed 1's rerun counts, seed 2's OOM stays
    assert "killed" not in text and text.strip().splitlines()[-1].startswith("% ")  # notes stay comments


def test_benchmark_results_render_as_a_table_and_plots(tmp_path, capsys):
    rows = [{"model": "lsg_roberta", "attention": "lsg b=128", "size": "tiny", "dtype": "fp32", "bench_mode": "both",
             "seq_len": n, "batch": 16384 // n, "tokens": 16384, "phase": "train", "status": "ok", "step_s": 0.5,
             "tokens_per_s": 32768.0, "peak_mem_mb": 120.4, "kernel_ops": 2250, "flops_per_token": 2.5e6,
             "saved_bytes_per_token": 3072.0, "mfu": 0.4125}
            for n in (1024, 4096)]
    rows.append({"model": "roberta", "size": "tiny", "dtype": "fp32", "bench_mode": "both", "seq_len": 16384,
                 "batch": 1, "tokens": 16384, "phase": "train", "status": "oom", "error": "out of memory"})
    (tmp_path / "b.json").write_text(json.dumps({"schema": 1, "kind": "bench", "device": "cpu", "rows": rows}))
    assert main([str(tmp_path), "--format", "csv", "--out", str(tmp_path / "out")]) == 0
    table = list(csv.reader(io.StringIO(capsys.readouterr().out.split("\n\n")[0].strip())))
    assert table[0][-8:] == ["step ms", "tok/s", "peak MB", "ops", "MFLOP/tok", "saved KB/tok", "MFU %", "status"]
    assert table[1][-8:] == ["500.0", "32768", "120", "2250", "2.50", "3.0", "41.2", "ok"]
    assert table[3][-8:] == ["", "", "", "", "", "", "", "oom"]
    plot = (tmp_path / "out" / "bench_model_tiny_fp32_cpu.png").read_bytes()
    assert plot[:4] == b"\x89PNG" and len(plot) > 10_000


def test_decoder_generation_rows_show_the_first_token_the_decoding_rate_and_the_cache():
    from lsgbench.report import bench_table

    row = {"device": "cpu", "model": "mistral", "attention": "mistral W=257", "size": "tiny", "dtype": "fp32",
           "bench_mode": "generate", "head": "causal_lm", "seq_len": 4096, "batch": 1, "tokens": 4096, "phase": "greedy",
           "status": "ok", "step_s": 0.5, "tokens_per_s": 128.0, "peak_mem_mb": 50.0, "time_to_first_token_s": 0.0625,
           "decode_tokens_per_s": 140.0, "kv_cache_mb": 0.125, "kv_cache_bounded": True}
    header, cells, notes = bench_table([row, {**row, "model": "roberta", "bench_mode": "both", "phase": "train"} | {
        k: None for k in ("time_to_first_token_s", "decode_tokens_per_s", "kv_cache_mb", "kv_cache_bounded")}])
    columns = dict(zip(header, cells[0]))
    assert (columns["first token ms"], columns["decode tok/s"], columns["KV cache MB"]) == ("62.5", "140", "0.12")
    assert dict(zip(header, cells[1]))["first token ms"] == "—"
    assert "KV caches bounded by a sliding window (flat in length): mistral mistral W=257; the other" in notes[0]


def test_published_scores_sit_beside_the_runs_with_their_source(tmp_path, capsys):
    runs = [record("a", 1, 88.0, task="imdb", model="roberta", length=512, init="pretrained:FacebookAI/roberta-base"),
            record("b", 1, 91.0, task="imdb", model="lsg_roberta", length=4096, init="pretrained:FacebookAI/roberta-base"),
            record("c", 1, 61.0, task="imdb", model="roberta", length=512, factor=2),  # random init: no reference
            record("d", 1, 59.0, task="imdb", model="roberta", length=512, factor=3,
                   init="pretrained:outputs/x/pretrain/model")]  # a model another run pretrained: no reference
    runs[3]["provenance"]["pretrained_run"] = "x"
    runs[3]["config"]["model"]["pretrained"] = "run:x"
    for r in (runs[0], runs[3]):
        r["attention"] = r["config"]["model"]["attention"] = {"type": "full", "implementation": "sdpa"}
    for r in runs:
        (tmp_path / f"{r['run_id']}.json").write_text(json.dumps(r))
    assert main([str(tmp_path), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out.strip())))
    assert rows[0]["published accuracy"] == "95.3" and "Beltagy et al. 2020" in rows[0]["published source"]
    assert rows[1]["published accuracy"] == "" and rows[1]["published source"] == ""
    assert rows[2]["published accuracy"] == "" and rows[3]["published accuracy"] == ""


def test_every_task_card_reference_names_a_model_and_a_metric_of_its_task():
    from hydra import compose, initialize_config_dir

    from lsgbench.config import config_dir

    models = {p.stem for p in (Path(config_dir()) / "model").glob("*.yaml")}
    counted = 0
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):  # a task config extends its kind's
        for card in sorted(cards_dir().glob("*/README.md")):
            task = card.parent.name
            metrics = set(compose("config", overrides=[f"task={task}"]).task.metrics)
            for ((backbone, attention), metric), ref in published(task).items():
                assert backbone in models and attention in VARIANTS and metric in metrics, (task, backbone, metric)
                assert float(ref.score.split(" ± ")[0]) > 0 and ref.source
                counted += 1
    # imdb 3, arxiv_classification 2, hyperpartisan 4, arxiv 13, pubmed 10, multi_news 7, mediasum 4, big_patent 3,
    # triviaqa 3, wikihop 3, contract_nli 1, qmsum 6
    assert counted == 59  # (rows marked — excluded)


def test_published_scores_follow_the_backbone_and_the_attention_not_the_name():
    assert identity("lsg_bart") == identity("bart", "lsg") == ("bart", "lsg")
    assert identity("roberta") == ("roberta", "full") != identity("roberta", "lsg")
    assert identity("led") == ("led", "longformer")
    refs = published("pubmed")
    assert (identity("bart", "lsg"), "rouge1") in refs and (identity("roberta", "lsg"), "rouge1") not in refs


def test_pareto_front():
    points = [(1.0, 90.0), (2.0, 95.0), (3.0, 80.0), (3.0, 70.0), (0.5, 99.0), (2.5, 60.0)]
    assert pareto_front(points) == [4, 1, 2]
    assert pareto_front(points, higher_y_is_better=False) == [5, 3]  # where lower is better, (2.5, 60) beats the slower


def test_a_lower_is_better_metric_reads_as_such_in_tables_and_plots(tmp_path, capsys, monkeypatch):
    """A kind whose metric is lower-is-better (a loss): the header says ↓ and the Pareto front keeps low losses."""
    import lsgbench.kinds as kinds
    from lsgbench.kinds import Metric, TaskKind

    class Lossy(TaskKind):
        name, METRICS = "lossy", (Metric("loss", higher_is_better=False, unit="nats"),)

    monkeypatch.setitem(kinds.KINDS, "lossy", Lossy())
    drawn = {}
    monkeypatch.setattr("lsgbench.plots._front_line", lambda ax, points, higher: drawn.update(points=points,
                                                                                                higher=higher))
    runs = [record(f"r{i}", 1, loss, metric="loss", speed=speed, block=b)
            for i, (loss, speed, b) in enumerate([(2.0, 1000.0, 16), (1.5, 500.0, 32), (3.0, 2000.0, 64)])]
    for r in runs:
        r["task_kind"] = "lossy"
        (tmp_path / f"{r['run_id']}.json").write_text(json.dumps(r))
    assert main([str(tmp_path), "--format", "md,csv", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "| task | model | attention | max_length | loss ↓ |" in out
    assert (tmp_path / "out" / "table.csv").read_text().startswith("task,model,attention,max_length,loss,n eval")
    assert drawn["higher"] is False
    front = [drawn["points"][i] for i in pareto_front(drawn["points"], drawn["higher"])]
    assert front == [(500.0, 1.5), (1000.0, 2.0), (2000.0, 3.0)]  # each faster point trades loss for speed
    assert (tmp_path / "out" / "quality_speed_synth_keys.png").exists()


def test_plots_are_written_for_grids_lengths_and_quality_vs_speed(tmp_path, capsys):
    runs = [record(f"g{b}{f}", 1, 50.0 + b / 8 + f, block=b, factor=f) for b in (16, 32, 64) for f in (2, 4)]
    runs += [record(f"l{n}", 1, 70.0, model="local_roberta", length=n, speed=9e4 / (n / 1024) ** 0.5, sweep="s1")
             for n in (1024, 2048, 4096)]
    runs += [record("p1", 1, 30.0, task="pubmed", model="lsg_bart", metric="rouge1"),
             record("p2", 1, 35.0, task="pubmed", model="lsg_bart", block=128, metric="rouge1")]
    for r in runs:
        (tmp_path / f"{r['run_id']}.json").write_text(json.dumps(r))
    out = tmp_path / "out"
    assert main([str(tmp_path), "--out", str(out)]) == 0
    names = {p.name for p in out.glob("*.png")}
    assert names == {"quality_speed_synth_keys.png", "lsg_grid_synth_keys.png", "length_scaling.png",
                     "quality_speed_pubmed.png", "lsg_grid_pubmed.png"}  # each task on its own metric
    for name in names:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_grid_and_length_lines_join_only_comparable_runs():
    from lsgbench.plots import _grid, _sweep_series

    grid = [record(f"g{b}", 1, 50.0, block=b) for b in (16, 32, 64)]
    other = record("x", 1, 90.0, block=16)
    other["config"]["trainer"] = {"epochs": 4}  # another budget: not part of the grid
    lengths = [record(f"l{n}", 1, 70.0, model="local_roberta", length=n, sweep="s1") for n in (1024, 2048)]
    lengths.append(record("l9", 1, 70.0, model="local_roberta", length=4096))  # outside the sweep
    _, grouped = rows(grid + [other] + lengths, ["model", "attention", "max_length"])
    lsg = [r for r in grouped if r["model"] == "lsg_roberta"]
    assert sorted(r["knobs"]["block_size"] for r in _grid(lsg)) == [16, 32, 64]  # x (block 16) is not among them
    series = _sweep_series(grouped)
    assert [[r["max_length"] for r in line] for line in series.values()] == [[1024, 2048]]


def test_a_length_line_keeps_its_point_that_shares_a_label_outside_its_sweep_and_splits_by_another_knob():
    from lsgbench.plots import _sweep_series

    def run(run_id, length, sweep, lr):
        r = record(run_id, 1, 70.0, model="local_roberta", length=length, sweep=sweep)
        r["config"]["lr"], r["overrides"] = lr, [f"lr={lr}", *([f"sweep={sweep}"] if sweep else [])]
        return r

    elsewhere = run("x", 2048, None, 3)  # same label as a sweep point, another configuration
    _, grouped = rows([run("a", 1024, "s1", 1), run("b", 2048, "s1", 1), elsewhere], ["model", "attention", "max_length"])
    assert [[r["max_length"] for r in line] for line in _sweep_series(grouped).values()] == [[1024, 2048]]
    two_rates = [run(f"{n}-{lr}", n, "s2", lr) for n in (1024, 2048) for lr in (1, 2)]
    _, grouped = rows(two_rates, ["model", "attention", "max_length"])
    lines = _sweep_series(grouped)
    assert sorted(name for _, _, name in lines) == ["local_roberta lsg b=64 s=32 f=4 pooling g=1 [lr=1]",
                                                    "local_roberta lsg b=64 s=32 f=4 pooling g=1 [lr=2]"]
    assert [[r["max_length"] for r in line] for line in lines.values()] == [[1024, 2048], [1024, 2048]]


def _drawn(monkeypatch, plot, *args):
    """The figure `plot` draws, kept open instead of written."""
    from lsgbench import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path, bottom=0.0: figures.append(fig) or path)
    plot(*args)
    return figures[0]


def _budget(r, steps, n_train):
    r["efficiency"].update(train_steps=steps, device="cpu")
    r["provenance"]["n_train"] = n_train
    r["config"]["trainer"] = {"steps": steps}  # another budget: another configuration
    return r


def test_quality_speed_numbers_points_marks_budgets_and_steps_the_front(monkeypatch, tmp_path):
    from lsgbench.plots import _plain, quality_speed

    runs = [_budget(record(f"a{b}", 1, 50.0, block=b, speed=2000.0 * b), 192, 1024) for b in (16, 32, 64)]
    runs += [_budget(record("b", 1, 100.0, block=16, speed=3000.0), 16, 256),
             _budget(record("c", 1, 100.0, block=32, speed=3000.0), 16, 256)]  # c coincides with b
    _, grouped = rows(runs, ["model", "attention", "max_length"])
    assert {(r["n_train"], r["device"]) for r in grouped} == {(1024, "cpu"), (256, "cpu")}
    fig = _drawn(monkeypatch, quality_speed, grouped, "accuracy", True, tmp_path / "q.png", "synth_keys")
    ax, side = fig.axes
    front = next(line for line in ax.get_lines() if line.get_label() == "Pareto front")
    assert front.get_drawstyle() == "steps-pre" and len(front.get_xdata()) >= 3  # a drawn step line
    assert (128000.0, 50.0) in zip(front.get_xdata(), front.get_ydata())  # through the fastest point
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [
        "16 steps × 256 examples", "192 steps × 1024 examples", "Pareto front"]
    assert legend.legend_handles[-1].get_linestyle() == "--"  # the front's entry shows its line
    markers = {c.get_paths()[0].vertices.tobytes() for c in ax.collections[:2]}
    assert len(markers) == 2  # a marker shape per budget
    labels = sorted(t.get_text() for t in ax.texts)
    assert labels == ["1,2", "3", "4", "5"]  # short ids; the coinciding points share one
    names = [t.get_text() for t in side.texts]
    assert len(names) == 5 and names[0].startswith(" 1  lsg_roberta lsg b=16")
    caption = fig.texts[-1].get_text()
    assert "task=synth_keys, device=cpu" in caption and "varies:" in caption and "train steps" in caption
    assert [_plain(v) for v in (500, 2000, 50000, 3e6)] == ["500", "2k", "50k", "3M"]


def test_quality_speed_keeps_a_flat_zero_score_on_an_axis_from_zero(monkeypatch, tmp_path):
    from lsgbench.plots import quality_speed

    runs = [_budget(record(f"z{b}", 1, 0.0, block=b, speed=1000.0 * b), 24, 62) for b in (16, 32)]
    _, grouped = rows(runs, ["model", "attention", "max_length"])
    ax = _drawn(monkeypatch, quality_speed, grouped, "accuracy", True, tmp_path / "z.png", "hotpotqa").axes[0]
    assert ax.get_ylim() == (0.0, 1.0)  # not -0.06 to 0.06 around the two zeros
    runs = [_budget(record(f"h{b}", 1, 100.0, block=b, speed=1000.0 * b), 24, 62) for b in (16, 32)]
    _, grouped = rows(runs, ["model", "attention", "max_length"])
    ax = _drawn(monkeypatch, quality_speed, grouped, "accuracy", True, tmp_path / "h.png", "hotpotqa").axes[0]
    assert ax.get_ylim() == pytest.approx((0.0, 115.0))  # from zero, room above the points


def test_lsg_grid_lines_that_coincide_stay_visible(monkeypatch, tmp_path):
    from lsgbench.plots import lsg_grid

    runs = [_budget(record(f"g{b}{f}", 1, 50.0, block=b, factor=f), 192, 1024) for b in (32, 64) for f in (2, 4, 8)]
    _, grouped = rows(runs, ["model", "attention", "max_length"])
    fig = _drawn(monkeypatch, lsg_grid, grouped, "accuracy", tmp_path / "g.png", "synth_keys")
    for ax, (lines, points) in zip(fig.axes[:2], ((3, 2), (2, 3))):  # a line per sparsity factor, then block size
        drawn = [bars.lines[0] for bars in ax.containers]  # the data line of each errorbar
        assert len(drawn) == lines and {tuple(line.get_ydata()) for line in drawn} == {(50.0,) * points}
        assert len({tuple(line.get_xdata()) for line in drawn}) == lines  # dodged apart along x
        assert len({(line.get_marker(), line.get_linestyle()) for line in drawn}) == lines
        assert ax.get_legend().get_title().get_text().startswith("a line per")
    assert "held fixed: task=synth_keys, device=cpu, model=lsg_roberta" in fig.texts[-1].get_text()


def test_rows_with_the_same_label_say_how_their_configurations_differ(tmp_path):
    a, b = record("a", 1, 60.0), record("b", 1, 80.0)
    for r, extra in ((a, []), (b, ["trainer.args.learning_rate=1e-3"])):
        r["overrides"] = ["task=synth_keys", "model.size=tiny", *extra, "seed=1"]
        r["config"]["trainer"] = {"lr": extra}
    by = ["model", "attention"]
    header, cells, _ = table(*rows([a, b], by), by)
    assert header[:3] == ["model", "attention", "differs by"]  # a column of its own, not glued to a label
    assert [row[1:3] for row in cells] == [["lsg b=64 s=32 f=4 pooling g=1", "other defaults"],
                                           ["lsg b=64 s=32 f=4 pooling g=1", "trainer.args.learning_rate=1e-3"]]


def test_without_paths_the_report_reads_the_store_of_the_paths_config(tmp_path, monkeypatch, capsys):
    store = tmp_path / "store"
    store.mkdir()
    (store / "a.json").write_text(json.dumps(record("a", 1, 77.0)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LSGBENCH_STORE", str(store))
    assert main([]) == 0 and "| 77.00 |" in capsys.readouterr().out
    monkeypatch.delenv("LSGBENCH_STORE")
    assert main([]) == 2 and "['results/runs'] do not exist" in capsys.readouterr().err


def test_status_filter_kind_tables_unreadable_records_and_numeric_csv(tmp_path, capsys):
    runs = [record("a", 1, 80.0), record("b", 2, 90.0), record("c", 1, 0, status="oom", block=512, error="oom"),
            record("s", 1, 30.0, task="synth_extract", metric="rouge1")]
    runs[-1]["task_kind"] = "summarization"
    for r in runs:
        (tmp_path / f"{r['run_id']}.json").write_text(json.dumps(r))
    (tmp_path / "broken.json").write_text("{not json")
    assert main([str(tmp_path), "--format", "csv", "--status", "ok", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").glob("table_*.csv")) == ["table_classification.csv",
                                                                                "table_summarization.csv"]
    classification = list(csv.DictReader(io.StringIO((tmp_path / "out" / "table_classification.csv").read_text())))
    assert [row["status"] for row in classification] == ["ok"]  # the oom run is filtered out
    assert float(classification[0]["accuracy"]) == 85.0 and float(classification[0]["accuracy std"]) > 0
    assert "rouge1" not in classification[0] and "accuracy ↑" not in classification[0]
    assert main([str(tmp_path), "--format", "md"]) == 0
    assert "unreadable record" in capsys.readouterr().out and (tmp_path / "broken.json").read_text() == "{not json"


def test_runs_and_benchmark_rows_together_give_a_table_each(tmp_path, capsys):
    run = record("a", 1, 88.0, task="imdb", model="roberta", length=512)
    (tmp_path / "run.json").write_text(json.dumps(run))
    row = {"model": "roberta", "attention": "full", "size": "tiny", "dtype": "fp32", "bench_mode": "train",
           "head": "question_answering", "seq_len": 512,
           "batch": 2, "tokens": 1024, "phase": "train", "status": "ok", "step_s": 0.5, "tokens_per_s": 2048.0,
           "peak_mem_mb": 10.0}
    (tmp_path / "bench.json").write_text(json.dumps({"schema": 1, "kind": "bench", "device": "cpu", "rows": [row]}))
    assert main([str(tmp_path), "--format", "md", "--out", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("table_*.md")) == ["table_bench.md", "table_classification.md"]
    assert "| cpu | roberta | full | tiny | fp32 | train | question_answering | 512 | 2 | train | 500.0 | 2048 | 10 |" in \
        (tmp_path / "out" / "table_bench.md").read_text()


def test_runs_measured_before_their_kernel_changed_are_marked_and_not_reused(tmp_path, capsys):
    from lsgbench.attention import kernel_caveat
    from lsgbench.record import find_done

    changed = VARIANTS["lsg"].KERNEL_CHANGED
    old, new = record(f"{changed[:8]}T000000-old", 1, 80.0), record(f"{changed[:8]}T235959-new", 1, 90.0, block=128)
    assert "measured before lsgbench's lsg kernel changed on" in kernel_caveat(old) and kernel_caveat(new) is None
    assert kernel_caveat({**old, "attention": {"type": "full"}}) is None  # SDPA: not lsgbench's kernel
    for r in (old, new):
        r["provenance"]["data_fingerprint"], r["efficiency"]["device"] = "fp", "cpu"
        (tmp_path / f"{r['run_id']}.json").write_text(json.dumps(r))
    assert find_done(tmp_path, old["config"], "fp", "cpu", 1) is None  # only the stale run has this config
    assert find_done(tmp_path, new["config"], "fp", "cpu", 1)["run_id"] == new["run_id"]
    assert main([str(tmp_path), "--format", "md"]) == 0
    out = capsys.readouterr().out
    marked = [line for line in out.splitlines() if line.endswith("| ok † |")]
    assert len(marked) == 1 and "| 80.00 |" in marked[0]
    assert "- † measured before lsgbench's lsg kernel changed" in out


def test_tables_name_the_commits_of_their_runs():
    from lsgbench.report import _commits

    assert _commits(["a" * 40, "a" * 40, "b" * 40 + "+dirty", None]) == \
        "made by lsgbench commit aaaaaaa (2 runs), bbbbbbb+dirty (1 run), unknown (1 run)"
    assert _commits(["c" * 40], "row") == "made by lsgbench commit ccccccc (1 row)"


def test_runs_evaluated_at_another_length_get_an_evaluation_length_column_and_rows_of_their_own(tmp_path, capsys):
    same = record("a", 1, 80.0, length=1024)
    longer = {**record("b", 1, 60.0, length=1024), "eval_max_length": 4096}
    for r in (same, longer):
        (tmp_path / f"{r['run_id']}.json").write_text(json.dumps(r))
    assert main([str(tmp_path), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out.split("\n\n")[0].strip())))
    assert [(r["max_length"], r["eval_max_length"], r["accuracy"]) for r in rows] == [("1024", "1024", "80.00"),
                                                                                      ("1024", "4096", "60.00")]
    (tmp_path / "b.json").unlink()
    assert main([str(tmp_path), "--format", "csv"]) == 0
    assert "eval_max_length" not in capsys.readouterr().out  # all at their training length: no column


def test_the_pretraining_table_averages_only_fine_tunes_of_one_setup():
    """A full fine-tune and a globals-only one of the same pretrained model are two rows, each with its count
    (they were once averaged into one cell with no count and no fine-tune length)."""
    from lsgbench.report import pretraining_table

    pre = {**record("pre", 1, 0.0), "task": "wikitext103", "task_kind": "masked_lm",
           "metrics": {"mlm_loss": 5.0, "bits_per_token": 7.2}}
    pre["efficiency"]["train_steps"] = 100
    tuned = []
    for run_id, accuracy, trains in (("f1", 60.0, "all"), ("f2", 70.0, "all"), ("g1", 50.0, "globals")):
        r = record(run_id, 1, accuracy, length=4096)
        r["provenance"] = {"model_init": "pretrained:x", "pretrained_run": "pre", "trainable": {"choice": trains}}
        tuned.append(r)
    header, cells, _ = pretraining_table([pre, *tuned])
    assert header[7:] == ["fine-tuned at", "trains", "synth_keys: accuracy ↑"]
    assert [row[7:] for row in cells] == [["4096", "all", "65.00 ± 7.07 (n=2)"], ["4096", "globals", "50.00"]]


def test_rows_whose_evaluation_lost_tokens_or_answers_are_marked_with_the_figure():
    from lsgbench.grouping import cut_caveats

    windowed = record("w", 1, 40.0)
    windowed["provenance"]["truncation"] = {"eval": {"examples": 8, "inputs_cut": 0, "inputs_dropped_share": 0.0,
                                                     "answers_cut": 0, "answers_unreachable": 0}}
    cut = record("c", 1, 10.0, block=128)
    cut["provenance"]["truncation"] = {"eval": {"examples": 8, "inputs_cut": 8, "inputs_dropped_share": 0.966,
                                                "answers_cut": 7, "answers_unreachable": 6}}
    assert cut_caveats(windowed) == []
    assert cut_caveats(cut) == ["the evaluation inputs lost 97% of their tokens to the input length (8 of 8 cut)",
                                "6 of 8 questions no span can answer right (gold answers outside the windows or "
                                "longer than task.max_answer_length): exact match is at most 25.0"]
    by = ["task", "model", "attention"]
    header, cells, notes = table(*rows([windowed, cut], by), by)
    status = {row[2]: row[-1] for row in cells}
    assert status["lsg b=64 s=32 f=4 pooling g=1"] == "ok" and status["lsg b=128 s=32 f=4 pooling g=1"] == "ok †"
    assert any(n.startswith("† the evaluation inputs lost 97%") for n in notes)
