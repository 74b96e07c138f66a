"""A serving directory's versions as the model server reads them (core.model_dirs)."""
import pytest

from core.model_dirs import SAVED_MODEL, SAVED_MODEL_TEXT, resolve_model_dir
from tests.support.serving import stand_in_version


def test_a_serving_dir_stands_for_the_newest_version_the_server_would_serve(tmp_path):
    """A folder named above 2^63 - 1 is no version to TF Serving (ParseVersionNumber: tsl::strings::safe_strto64
    into int64), nor to the project's server: letters-evaluate --model DIR and letters-demo-serve had taken it as
    the newest. The names the server reads are the versions; the server's own listing agrees."""
    from serving import versions
    for name in ("5", " 7", "+8", "9223372036854775808", "99999999999999999999", "v9"):
        stand_in_version(tmp_path / name)
    assert resolve_model_dir(str(tmp_path)) == str(tmp_path / " 7")
    served = versions.list_versions(str(tmp_path), "letters", warn=False)
    assert sorted(served) == [5, 7] and served[7] == resolve_model_dir(str(tmp_path))
    assert resolve_model_dir(str(tmp_path), version=7) == str(tmp_path / " 7")
    stand_in_version(tmp_path / "9223372036854775807")        # int64's largest: a version
    assert resolve_model_dir(str(tmp_path)) == str(tmp_path / "9223372036854775807")


def test_a_version_stored_as_text_is_a_version_as_the_server_serves_it(tmp_path):
    """The server serves a version holding saved_model.pbtxt (TensorFlow's loader reads either form):
    letters-evaluate --model DIR and letters-batch-predict must take the version it serves, not an older one."""
    for name, graphs in (("3", SAVED_MODEL), ("4", SAVED_MODEL_TEXT)):
        stand_in_version(tmp_path / name, graphs)
    assert resolve_model_dir(str(tmp_path)) == str(tmp_path / "4")
    assert resolve_model_dir(str(tmp_path / "4")) == str(tmp_path / "4")   # a version folder as given
    assert resolve_model_dir(str(tmp_path), version=4) == str(tmp_path / "4")


def test_a_version_without_its_variables_index_is_not_taken_as_one_a_server_loads(tmp_path):
    """A newest version with saved_model.pb but no variables/variables.index (a copy caught halfway), which the
    embedded server refuses and letters-releases lists as not loadable, had been the version a serving dir stood
    for (letters-evaluate --model DIR, --base-model DIR, the run summary's version served): the one before it is.
    Given, or asked for, by itself it is refused as incomplete, as is a serving dir holding only such versions."""
    from core.model_dirs import loadable_versions
    from tests.support.serving import publish_version
    serving = tmp_path / "serving"
    publish_version(str(serving), 1)
    publish_version(str(serving), 2, without_variables=True)
    assert loadable_versions(str(serving)) == {1: str(serving / "1")}
    assert resolve_model_dir(str(serving)) == str(serving / "1")
    incomplete = f"{serving / '2'} is incomplete (no variables/variables.index)"
    for given, version in ((serving / "2", None), (serving, 2), (serving / "2", 2)):
        with pytest.raises(FileNotFoundError) as caught:
            resolve_model_dir(str(given), version=version)
        assert str(caught.value) == f"{incomplete}: no server loads it"
    (serving / "1" / "variables" / "variables.index").unlink()
    with pytest.raises(FileNotFoundError) as caught:
        resolve_model_dir(str(serving))
    assert str(caught.value) == (f"{serving} holds no SavedModel a server can load: {serving / '1'}, "
                                 f"{serving / '2'} are incomplete (no variables/variables.index)")


def test_version_names_are_read_as_tsl_safe_strto64_reads_them_into_int64():
    """ParseVersionNumber is tsl::strings::safe_strto64: C-locale spaces either side, a leading '-' but no '+',
    leading zeros, ASCII digits, int64. A folder named +1796602336 had been served, and pushed over, as version
    1796602336; TF Serving ignores it."""
    from core.model_dirs import version_number
    assert version_number(" 12 ") == 12 and version_number("-9223372036854775808") == -2 ** 63
    assert version_number("\t8") == 8 and version_number("\v9\f\r\n") == 9 and version_number("007") == 7
    assert version_number("-7") == -7 and version_number("-0") == 0
    for name in ("+1796602336", "+7", "-+7", "+-7", "--7", "- 7", "7 8", "", " ", "-", "0x10", "1e3", "7\u00a0",
                 "\x1c7", "-9223372036854775809", "9223372036854775808", "\uff11\uff12", "\u0661"):
        assert version_number(name) is None, repr(name)

