from pathlib import Path

from lsgbench.record import (REQUIRED_KEYS, BenchResult, BenchRow, RunRecord, bench_results, json_documents,
                             new_bench_result, new_run_record, run_records)

RESULTS = Path(__file__).resolve().parents[1] / "results"


def test_every_committed_result_fits_its_schema():
    documents = list(json_documents([RESULTS]))
    records, benchmarks = run_records(documents), bench_results(documents)
    assert records and benchmarks and len(records) + len(benchmarks) == len(documents)
    for record in records:
        assert set(REQUIRED_KEYS) <= set(record) <= set(RunRecord.__annotations__), record["run_id"]
    for result in benchmarks:
        assert set(result) == set(BenchResult.__annotations__)
        for row in result["rows"]:
            assert BenchRow.__required_keys__ <= set(row) <= set(BenchRow.__annotations__)


def test_a_new_run_record_has_every_field_and_has_failed_until_it_runs():
    record = new_run_record("imdb", "classification", "lsg_roberta", 3, ("seed=3",), "sweep-1")
    assert list(record) == list(RunRecord.__annotations__)
    assert "sweep" not in REQUIRED_KEYS  # records from before sweeps were recorded lack it
    assert "-imdb-lsg_roberta-" in record["run_id"]
    assert (record["status"], record["provenance"]["seed"], record["overrides"], record["sweep"]) == \
        ("failed", 3, ["seed=3"], "sweep-1")


def test_a_new_bench_result_is_a_bench_document():
    result = new_bench_result("cpu", {"torch": "2.4"}, {"seed": 0}, [])
    assert bench_results([result]) == [result] and list(result) == list(BenchResult.__annotations__)
