import keras
import pytest

from tfft import child_run, precision, train

CPU_INFO = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu sse2 avx512f avx512_bf16 {extra}
bugs\t\t: spectre_v1

processor\t: 1
flags\t\t: fpu sse2 avx512f avx512_bf16 {extra}
"""


def test_cpu_flags_are_read_from_the_flags_line(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPU_INFO.format(extra="amx_bf16 amx_tile"))
    assert {"avx512_bf16", "amx_bf16", "amx_tile"} <= precision.cpu_flags(path)
    assert "spectre_v1" not in precision.cpu_flags(path)
    assert precision.cpu_flags(tmp_path / "missing") == set()


@pytest.mark.parametrize(
    "mixed_precision, flags, hinted",
    [("none", {"avx512_bf16", "amx_bf16"}, True),
     ("none", {"avx512_bf16"}, False),  # bfloat16 without AMX was slower than float32 on one such CPU
     ("mixed_bfloat16", {"amx_bf16"}, False),
     ("mixed_float16", {"amx_bf16"}, False)],
)
def test_the_bfloat16_hint_is_for_float32_runs_on_amx(mixed_precision, flags, hinted):
    hint = precision.bfloat16_hint(mixed_precision, flags)
    assert (hint is not None) == hinted
    if hinted:
        assert "`--set train.mixed_precision=mixed_bfloat16`" in hint and "stays in float32" in hint


class FitStarted(Exception):
    pass


def fit_started(*args, **kwargs):
    """Stands in for `keras.Model.fit`: the run got as far as training."""
    raise FitStarted


def test_a_float32_run_on_amx_logs_the_hint_and_trains_in_float32(make_config, monkeypatch, caplog):
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"amx_bf16"})
    policies = []

    def fit(model, *args, **kwargs):
        policies.append(model.dtype_policy.name)
        raise FitStarted

    monkeypatch.setattr(keras.Model, "fit", fit)
    with caplog.at_level("INFO"), pytest.raises(FitStarted):
        train.run(make_config("train.epochs=1"))
    assert caplog.text.count("This CPU has AMX (`amx_bf16`)") == 1
    assert policies == ["float32"]


def test_a_later_run_of_a_search_or_cv_does_not_repeat_the_hint(make_config, monkeypatch, caplog):
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"amx_bf16"})
    monkeypatch.setenv(child_run.LATER_RUN, "1")
    monkeypatch.setattr(keras.Model, "fit", fit_started)
    with caplog.at_level("INFO"), pytest.raises(FitStarted):
        train.run(make_config("train.epochs=1"))
    assert "This CPU has AMX" not in caplog.text
