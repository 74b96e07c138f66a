"""core.settings: the one way settings classes read environment variables and flags."""
import argparse
import dataclasses

import pytest

from core import settings


@dataclasses.dataclass(frozen=True)
class Example:
    count: int = 3
    rate: float = 0.5
    name: str = "a"
    enabled: bool = False

    def __post_init__(self):
        if self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")
        if self.enabled and self.name == "off":
            raise ValueError("an enabled example needs a name")


ENV = {"count": "EX_COUNT", "rate": "EX_RATE", "name": "EX_NAME", "enabled": "EX_ENABLED"}


def test_environment_values_take_the_field_types():
    got = settings.from_env(Example, ENV, {"EX_COUNT": "7", "EX_RATE": "1e-3", "EX_NAME": "b", "EX_ENABLED": "on"})
    assert got == Example(count=7, rate=0.001, name="b", enabled=True)
    assert settings.from_env(Example, ENV, {"EX_COUNT": ""}) == Example()       # empty = unset


def test_a_home_relative_path_is_expanded_in_path_fields_only(monkeypatch, tmp_path):
    """LETTERS_DATA_ROOT=~/letters names the folder in the home, as the flag's ~/letters does; other fields keep
    a "~" as written."""
    from core import configs
    from web.config import WebConfig
    monkeypatch.setenv("HOME", str(tmp_path))
    got = settings.from_env(Example, ENV, {"EX_NAME": "~/x"}, paths=("name",))
    assert got.name == str(tmp_path / "x")
    assert settings.from_env(Example, ENV, {"EX_NAME": "~/x"}).name == "~/x"
    config = configs.Config.from_env({"LETTERS_DATA_ROOT": "~/letters", "LETTERS_FEEDBACK_DIR": "~",
                                      "LETTERS_CONV_WIDTHS": "", "LETTERS_BASE_MODEL": "gs://b/~m"})
    assert (config.data_root, config.feedback_dir, config.base_model) == (str(tmp_path / "letters"), str(tmp_path),
                                                                          "gs://b/~m")
    web = WebConfig.from_env({"LETTERS_FEEDBACK_DIR": "~/fb", "LETTERS_REQUEST_LOG_DIR": "~/logs"})
    assert (web.feedback_dir, web.request_log_dir) == (str(tmp_path / "fb"), str(tmp_path / "logs"))


@pytest.mark.parametrize("environ, message", [
    ({"EX_COUNT": "many"}, "EX_COUNT='many' is not a valid int"),
    ({"EX_ENABLED": "perhaps"}, "EX_ENABLED='perhaps' is not a valid bool"),
    ({"EX_COUNT": "-1", "EX_RATE": "2"}, "^EX_COUNT='-1': count must be >= 0, got -1$"),   # the class's own check
    ({"EX_ENABLED": "1", "EX_NAME": "off", "EX_RATE": "2"},                     # wrong only together: all named
     "^EX_RATE='2', EX_NAME='off', EX_ENABLED='1': an enabled example needs a name$"),
])
def test_bad_environment_values_are_errors_naming_the_variable(environ, message):
    with pytest.raises(ValueError, match=message):
        settings.from_env(Example, ENV, environ)


def test_flags_are_typed_like_the_fields_and_only_given_ones_are_changes():
    parser = argparse.ArgumentParser()
    settings.add_flags(parser, Example, {"count": "how many", "enabled": "switch", "name": "label"},
                       choices={"name": ("a", "b")})
    args = parser.parse_args(["--count", "4", "--enabled"])
    assert settings.flag_values(args, ("count", "enabled", "name")) == {"count": 4, "enabled": True}
    assert parser.parse_args(["--enabled=false"]).enabled is False
    with pytest.raises(SystemExit):
        parser.parse_args(["--name", "c"])                                        # not a choice


def test_flags_with_defaults_and_underscored_names(capsys):
    parser = argparse.ArgumentParser()
    settings.add_flags(parser, Example, {"rate": "a rate of 5%"}, Example(rate=0.25), dashes=False)
    assert parser.parse_args([]).rate == 0.25 and parser.parse_args(["--rate=2"]).rate == 2.0
    with pytest.raises(SystemExit):
        parser.parse_args(["--rate=fast"])
    assert "--rate='fast' is not a valid float" in capsys.readouterr().err
