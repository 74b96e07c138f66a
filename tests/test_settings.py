"""core.settings: the one way settings classes read environment variables and flags."""
import argparse
import dataclasses
import json
import re
import subprocess
import sys

import pytest

from core import configs, settings
from tests.conftest import ROOT


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


@pytest.mark.parametrize("environ", [{"LETTERS_MAX_IMAGE_PIXELS": "-3"},
                                     {"LETTERS_CANARY_SHARE": "0.5", "LETTERS_MAX_IMAGE_PIXELS": "-3"}])
def test_the_web_clients_variables_at_fault_are_named_once_and_no_other(monkeypatch, environ):
    """LETTERS_MAX_IMAGE_PIXELS is one of the web client's variables like the others (its default had read it, so a
    bad value was blamed on whichever variables were set, or on none)."""
    from web.config import WebConfig
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as refused:
        WebConfig.from_env()
    assert str(refused.value) == "LETTERS_MAX_IMAGE_PIXELS='-3': max image pixels must be at least 1, got -3"
    assert WebConfig.from_env({"LETTERS_MAX_IMAGE_PIXELS": "100"}).max_image_pixels == 100   # the environ given
    assert WebConfig().max_image_pixels == configs.Config().max_image_pixels


def test_defaults_refused_are_blamed_on_no_variable():
    @dataclasses.dataclass(frozen=True)
    class BadDefault(Example):
        def __post_init__(self):
            raise ValueError("the defaults are wrong")

    with pytest.raises(ValueError, match="^the defaults are wrong$"):
        settings.from_env(BadDefault, ENV, {"EX_RATE": "2"})


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


# --- LETTERS_* variables that no setting reads ---------------------------------------------------------------

SOURCE_NAME = re.compile(r"\bLETTERS_[A-Z0-9_]+")   # a name ending in "_" is a prefix in prose: LETTERS_MONITOR_*


def tracked(*patterns) -> dict[str, str]:
    """The project's tracked files matching ``patterns``: path -> text."""
    paths = subprocess.run(["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    return {path: (ROOT / path).read_text(encoding="utf-8") for path in paths}


def test_every_letters_variable_the_code_names_is_a_known_one():
    """A variable read directly (os.environ, the Makefile) must be a settings class's or in configs.DIRECT_ENV, or
    every command would warn that it is ignored."""
    sources = {path: text for path, text in tracked("*.py", "Makefile").items() if not path.startswith("tests/")}
    named = {(name, path) for path, text in sources.items() for name in SOURCE_NAME.findall(text)
             if not name.endswith("_")}
    assert {name for name, _ in named} >= {"LETTERS_DATA_ROOT", "LETTERS_WEB_PORT", "LETTERS_KUBEFLOW_IMAGE",
                                           "LETTERS_FEEDBACK_DIR"}          # the scan sees them
    known = configs.KNOWN_ENV
    assert sorted((name, path) for name, path in named if name not in known) == []


def test_each_direct_variable_is_read_somewhere_and_each_settings_module_reads_its_own():
    sources = tracked("*.py", "Makefile")
    elsewhere = "".join(text for path, text in sources.items() if path != "core/configs.py")
    assert [name for name in configs.DIRECT_ENV if name not in elsewhere] == []
    readers = {path for path, text in sources.items() if "settings.from_env(" in text and not path.startswith("tests/")}
    assert readers == {"core/configs.py", "web/config.py"}   # whose maps are core.configs' ENV and WEB_ENV
    from web import config as web_config

    assert web_config.ENV is configs.WEB_ENV


def test_the_known_variables_are_read_without_importing_the_web_client():
    """core sits below web: knowing the web client's variables must not load it."""
    code = ("import sys; from core import configs; known = configs.KNOWN_ENV; "
            "print('LETTERS_WEB_PORT' in known, 'web.config' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.stdout.split() == ["True", "False"], result.stderr


def test_a_misspelled_variable_is_warned_of_with_the_name_meant(capsys):
    assert configs.warn_unknown_variables({"LETTERS_EPOCS": "30", "LETTERS_WEB_PROT": "9000"}) == {
        "LETTERS_EPOCS": "LETTERS_EPOCHS", "LETTERS_WEB_PROT": "LETTERS_WEB_PORT"}
    assert capsys.readouterr().err.splitlines() == [
        "warning: LETTERS_EPOCS is not a setting (did you mean LETTERS_EPOCHS?); it is ignored",
        "warning: LETTERS_WEB_PROT is not a setting (did you mean LETTERS_WEB_PORT?); it is ignored"]


def test_a_variable_like_no_setting_is_warned_of_without_a_suggestion(capsys):
    assert settings.unknown_variables(configs.KNOWN_ENV, {"LETTERS_XYZZY": "1"}) == {"LETTERS_XYZZY": None}
    configs.warn_unknown_variables({"LETTERS_XYZZY": "1"})
    assert capsys.readouterr().err == "warning: LETTERS_XYZZY is not a setting; it is ignored\n"


def test_known_names_other_variables_and_empty_ones_are_not_warned_of(capsys):
    environ = {"LETTERS_EPOCHS": "30", "LETTERS_MONITOR_MIN_ACCURACY": "0.9", "LETTERS_WEB_PORT": "9000",
               "LETTERS_KUBEFLOW_IMAGE": "x", "EPOCS": "30", "MY_LETTERS_EPOCS": "1", "letters_epocs": "1",
               "LETTERS_EPOCS": "", "PATH": "/bin"}
    assert configs.warn_unknown_variables(environ) == {}
    assert capsys.readouterr().err == ""


def test_a_misspelled_variable_changes_no_setting_and_stops_nothing(monkeypatch, tmp_path, capsys):
    from core import feedback_cli
    from core.feedback import FeedbackStore
    FeedbackStore(tmp_path / "store").close()   # an empty store
    monkeypatch.setenv("LETTERS_EPOCS", "30")
    assert configs.Config.from_env() == configs.Config()
    assert feedback_cli.main(["--feedback-dir", str(tmp_path / "store"), "stats"]) == 0
    out, err = capsys.readouterr()
    assert err.startswith("warning: LETTERS_EPOCS is not a setting (did you mean LETTERS_EPOCHS?)")
    assert json.loads(out)["records"] == 0


def test_a_url_is_refused_with_a_gsutil_hint_only_for_a_bucket_gsutil_copies_to():
    assert settings.url_refusal("out/here") is None
    assert settings.url_refusal("gs://b/data") == ("gs://b/data: the output is written to a local folder, not a URL; "
                                                   "give one and copy it to the bucket after (gsutil -m rsync -r "
                                                   "FOLDER gs://b/data)")
    assert settings.url_refusal("s3://b/s.png", "file").endswith("after (gsutil cp FILE s3://b/s.png)")
    for url in ("http://x/y", "ftp://x/y"):
        assert settings.url_refusal(url) == f"{url}: the output is written to a local folder, not a URL; give one"
        assert settings.url_refusal(url, "file") == f"{url}: the output is written to a local file, not a URL; give one"


def test_a_file_url_names_its_local_path_and_any_other_path_is_as_given():
    """file:///x is /x as TensorFlow's local file system reads it (the host, if any, dropped); a local path and
    another URL are as given."""
    assert settings.local_path("file:///srv/letters") == "/srv/letters"
    assert settings.local_path("file://localhost/srv/letters") == "/srv/letters"
    for path in ("/srv/letters", "letters", "gs://b/letters", "s3://b/l"):
        assert settings.local_path(path) == path
