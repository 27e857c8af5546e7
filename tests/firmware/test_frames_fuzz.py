"""A short libFuzzer run of the C frame reader under ASan/UBSan (the long run: python -m tools.fuzz_frames)."""

from tools.dev.fuzz_frames import run_fuzzer


def test_short_libfuzzer_run_finds_no_failing_input(tmp_path):
    result = run_fuzzer(seconds=10, seed=1, runs=40_000, workdir=tmp_path)
    assert result.ok, f"libFuzzer failed on {result.crash_file}"
    assert result.runs >= 40_000
    assert result.corpus_files > 30  # the seed corpus of codec-made frames was used
