"""Settings.load: defaults, then ENGRAM_* variables, then overrides; bad values refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from engine.errors import ConfigurationError
from engine.settings import NatsSettings, Settings, StreamSettings


def test_defaults_with_an_empty_environment() -> None:
    """With no ENGRAM_* variable and no override, load gives the documented defaults."""
    settings = Settings.load(environ={})
    assert settings == Settings()
    assert settings.stream.name == "ENGRAM"
    assert settings.stream.subjects == ("memory.>",)
    assert settings.nats.url is None
    assert settings.data_dir == Path("engram-data")
    assert settings.server_dir == Path("engram-data") / "nats"


def test_environment_sets_top_level_and_nested_fields() -> None:
    """ENGRAM_X sets x and ENGRAM_SECTION__X sets section.x, converted to the field types."""
    settings = Settings.load(
        environ={
            "ENGRAM_DATA_DIR": "/var/lib/engram",
            "ENGRAM_PUBLISH_MAX_IN_FLIGHT": "64",
            "ENGRAM_EMBEDDED_SYNC_ALWAYS": "true",
            "ENGRAM_STREAM__NAME": "MEMORY_TEST",
            "ENGRAM_STREAM__DUPLICATE_WINDOW_S": "30",
            "ENGRAM_STREAM__REPLICAS": "3",
            "ENGRAM_NATS__REQUEST_TIMEOUT_S": "1.5",
            "ENGRAM_NATS__USER": "agent",
        }
    )
    assert settings.data_dir == Path("/var/lib/engram")
    assert settings.server_dir == Path("/var/lib/engram/nats")
    assert settings.publish_max_in_flight == 64
    assert settings.embedded_sync_always is True
    assert settings.stream == StreamSettings(
        name="MEMORY_TEST", duplicate_window_s=30.0, replicas=3
    )
    assert settings.nats.request_timeout_s == 1.5
    assert settings.nats.user == "agent"


def test_nats_url_has_a_short_variable() -> None:
    """ENGRAM_NATS_URL (one underscore) sets nats.url, like ENGRAM_NATS__URL does."""
    short = Settings.load(environ={"ENGRAM_NATS_URL": "nats://broker:4222"})
    long = Settings.load(environ={"ENGRAM_NATS__URL": "nats://broker:4222"})
    assert short.nats == long.nats == NatsSettings(url="nats://broker:4222")


def test_other_variables_are_ignored() -> None:
    """Variables without the ENGRAM_ prefix change nothing."""
    settings = Settings.load(environ={"NATS_URL": "nats://x:1", "HOME": "/root", "engram_x": "1"})
    assert settings == Settings()


def test_overrides_win_over_the_environment() -> None:
    """A dotted override replaces the variable's value; a None override keeps it."""
    environ = {"ENGRAM_STREAM__NAME": "FROM_ENV", "ENGRAM_NATS_URL": "nats://env:4222"}
    settings = Settings.load(
        environ=environ, **{"stream.name": "FROM_FLAG", "nats.url": None, "log_level": "debug"}
    )
    assert settings.stream.name == "FROM_FLAG"
    assert settings.nats.url == "nats://env:4222"
    assert settings.log_level == "debug"


def test_overrides_alone_build_nested_settings(tmp_path: Path) -> None:
    """Overrides work without any variable, including whole values like paths."""
    settings = Settings.load(environ={}, data_dir=tmp_path, **{"stream.max_age_s": 3600})
    assert settings.data_dir == tmp_path
    assert settings.stream.max_age_s == 3600.0


def test_load_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an explicit environ, load reads os.environ."""
    monkeypatch.setenv("ENGRAM_STREAM__NAME", "FROM_PROCESS")
    assert Settings.load().stream.name == "FROM_PROCESS"


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"ENGRAM_STREAM__NAME": "has space"}, "stream.name"),
        ({"ENGRAM_STREAM__REPLICAS": "7"}, "stream.replicas"),
        ({"ENGRAM_STREAM__DUPLICATE_WINDOW_S": "0"}, "stream.duplicate_window_s"),
        ({"ENGRAM_PUBLISH_MAX_IN_FLIGHT": "lots"}, "publish_max_in_flight"),
        ({"ENGRAM_EMBEDDED_PORT": "70000"}, "embedded_port"),
        ({"ENGRAM_EMBEDDED_SYNC_ALWAYS": "sometimes"}, "embedded_sync_always"),
        ({"ENGRAM_NATS__CONNECT_TIMEOUT_S": "-1"}, "nats.connect_timeout_s"),
        ({"ENGRAM_DATA_DIRR": "/tmp/x"}, "data_dirr"),
        ({"ENGRAM_STREAM__NAM": "X"}, "stream.nam"),
    ],
)
def test_invalid_values_raise_configuration_error(environ: dict[str, str], named: str) -> None:
    """A bad value or an unknown (misspelt) variable raises ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match="invalid settings") as info:
        Settings.load(environ=environ)
    assert named in str(info.value)


def test_invalid_override_raises_configuration_error() -> None:
    """An invalid override is refused like an invalid variable."""
    with pytest.raises(ConfigurationError, match=r"stream\.replicas"):
        Settings.load(environ={}, **{"stream.replicas": 0})


@pytest.mark.parametrize(
    "environ",
    [
        {"ENGRAM_STREAM": "X", "ENGRAM_STREAM__NAME": "Y"},
        {"ENGRAM_STREAM__NAME": "Y", "ENGRAM_STREAM": "X"},
    ],
)
def test_a_value_and_a_section_of_the_same_name_conflict(environ: dict[str, str]) -> None:
    """A section given both as a value and as nested fields is refused, in either order."""
    with pytest.raises(ConfigurationError, match="stream"):
        Settings.load(environ=environ)


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after load (they are passed around, never mutated)."""
    settings = Settings.load(environ={})
    with pytest.raises(ValidationError, match="frozen"):
        settings.log_level = "debug"  # type: ignore[misc]
    assert settings.log_level == "info"
