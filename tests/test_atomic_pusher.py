"""The Pusher's publishing step: whole versions only, increasing numbers, no duplicates."""
import os
import time

import pytest
import tensorflow as tf

from components import atomic_pusher


def fake_model(path, content=b"graph"):
    os.makedirs(os.path.join(path, "variables"), exist_ok=True)
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
        f.write(content)
    with open(os.path.join(path, "variables", "variables.index"), "wb") as f:
        f.write(b"index")
    return str(path)


def test_push_publishes_complete_versions_and_skips_identical_models(tmp_path):
    base = str(tmp_path / "serving")
    m1, m2 = fake_model(tmp_path / "m1", b"one"), fake_model(tmp_path / "m2", b"two")
    v1, copied1 = atomic_pusher.push_model(m1, base, {"model_artifact_id": 7})
    again, copied_again = atomic_pusher.push_model(m1, base)
    v2, copied2 = atomic_pusher.push_model(m2, base)
    assert copied1 and not copied_again and copied2
    assert again == v1 and v2 > v1
    assert sorted(os.listdir(base)) == sorted([str(v1), str(v2)])      # no .incoming-* left behind
    for version, model in ((v1, m1), (v2, m2)):
        for rel in ("saved_model.pb", "variables/variables.index"):
            with open(os.path.join(base, str(version), rel), "rb") as a, open(os.path.join(model, rel), "rb") as b:
                assert a.read() == b.read()
    records = atomic_pusher.pushed_versions(base)
    assert records[v1]["model_artifact_id"] == 7 and records[v1]["fingerprint"] != records[v2]["fingerprint"]
    assert atomic_pusher.model_fingerprint(os.path.join(base, str(v1))) == records[v1]["fingerprint"]
    # the first model blessed again after the second: served only if it becomes the newest version
    v3, copied3 = atomic_pusher.push_model(m1, base)
    assert copied3 and v3 > v2 and max(atomic_pusher.pushed_versions(base)) == v3


def test_non_integer_entries_are_not_versions(tmp_path):
    """Nor is +9999999999, which TF Serving's safe_strto64 does not read: it had been taken for the newest pushed
    version, the next push numbered above it."""
    base = tmp_path / "serving"
    (base / ".incoming-5-1").mkdir(parents=True)
    (base / "notes").mkdir()
    fake_model(base / "+9999999999")
    version, copied = atomic_pusher.push_model(fake_model(tmp_path / "m"), str(base))
    assert copied and version < 9999999999
    assert list(atomic_pusher.pushed_versions(str(base))) == [version]


def test_object_store_push_writes_saved_model_last_into_the_version(tmp_path):
    """Pushed again, the model is found served: an ``assets/`` folder beside ``assets.extra/`` (which a listing by
    prefix shows as a file ``assets/.extra``) is no file of the model to read."""
    base = "ram://letters-push-test/serving"
    model = fake_model(tmp_path / "m")
    os.makedirs(os.path.join(model, "assets"))
    with open(os.path.join(model, "assets", "labels.txt"), "wb") as f:
        f.write(b"letters")
    version, copied = atomic_pusher.push_model(model, base)
    assert copied
    assert tf.io.gfile.listdir(base) == [str(version)] or tf.io.gfile.listdir(base) == [f"{version}/"]
    assert tf.io.gfile.exists(f"{base}/{version}/saved_model.pb")
    assert tf.io.gfile.exists(f"{base}/{version}/variables/variables.index")
    assert tf.io.gfile.exists(f"{base}/{version}/assets/labels.txt")
    assert atomic_pusher.push_model(model, base) == (version, False)


def test_a_version_taken_meanwhile_moves_the_push_to_the_next_number(tmp_path, monkeypatch):
    """Two pushes in one second choose the same number; the one that renames second takes the next free number
    (its record says so) instead of failing and leaving its staging folder behind."""
    import json
    import time as time_module

    base = tmp_path / "serving dir"
    now = int(time_module.time()) + 1000
    monkeypatch.setattr(atomic_pusher.time, "time", lambda: now)
    real_rename = os.rename

    def rename(src, dst):       # the other push publishes the same number just before this one renames
        if not os.path.exists(dst) and os.path.basename(dst) == str(now):
            os.makedirs(os.path.join(dst, "variables"))
            open(os.path.join(dst, "saved_model.pb"), "wb").close()
        real_rename(src, dst)

    monkeypatch.setattr(atomic_pusher.os, "rename", rename)
    version, copied = atomic_pusher.push_model(fake_model(tmp_path / "m"), str(base))
    assert copied and version == now + 1
    assert sorted(os.listdir(base)) == [str(now), str(now + 1)]          # no staging folder left
    record = json.loads((base / str(version) / atomic_pusher.PUSH_RECORD).read_text())
    assert record["version"] == version


def test_failed_push_leaves_no_staging_folder_and_huge_names_are_not_versions(tmp_path, monkeypatch):
    base = tmp_path / "serving"
    (base / "99999999999999999999").mkdir(parents=True)     # past int64: TF Serving never serves it
    assert atomic_pusher.pushed_versions(str(base)) == {}

    def broken_copy(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic_pusher.io_utils, "copy_file", broken_copy)
    with pytest.raises(atomic_pusher.PushFailed) as failed:
        atomic_pusher.push_model(fake_model(tmp_path / "m"), str(base))
    assert str(failed.value) == f"could not write to {base}: No space left on device"
    assert failed.value.__cause__.errno == 28
    assert os.listdir(base) == ["99999999999999999999"]


def test_a_write_tensorflow_refuses_is_a_push_failure_in_the_systems_words(tmp_path, monkeypatch):
    """TensorFlow's file functions say the path, then why (``<path>; No space left on device``): the failure is
    the serving dir and why, the path left out; the staging folder the copy had filled is removed."""
    base = tmp_path / "serving"
    copy_dir = atomic_pusher.io_utils.copy_dir

    def full_disk(src, dst, **kwargs):
        copy_dir(src, dst, **kwargs)
        raise tf.errors.ResourceExhaustedError(None, None, f"{dst}/variables/variables.index; No space left on device")

    monkeypatch.setattr(atomic_pusher.io_utils, "copy_dir", full_disk)
    with pytest.raises(atomic_pusher.PushFailed) as failed:
        atomic_pusher.push_model(fake_model(tmp_path / "m"), str(base))
    assert (failed.value.base, failed.value.reason) == (str(base), "No space left on device")
    assert os.listdir(base) == []


def test_a_killed_push_leaves_nothing_after_a_later_push(tmp_path, capsys):
    """Staging folders nothing was written into for an hour are an interrupted push's (by age: a push in another
    container shares the serving dir, not the process ids); a push in progress keeps its folder."""
    base = tmp_path / "serving"
    stale = base / f"{atomic_pusher.INCOMING_PREFIX}1796000000-1"
    live = base / f"{atomic_pusher.INCOMING_PREFIX}1796000001-1"
    for folder in (stale, live):
        (folder / "variables").mkdir(parents=True)
        (folder / "variables" / "variables.index").write_bytes(b"index")
    old = time.time() - atomic_pusher.STALE_STAGING_SECONDS - 60
    for path in (stale, stale / "variables", stale / "variables" / "variables.index"):
        os.utime(path, (old, old))
    atomic_pusher.push_model(fake_model(tmp_path / "m1", b"one"), str(base))
    assert not stale.exists() and live.exists()
    assert f"removed {stale.name}" in capsys.readouterr().out


def test_a_process_asked_to_stop_pushes_nothing_even_if_its_interrupt_was_lost(tmp_path, monkeypatch):
    import signal
    import pytest
    from core import signals
    base = tmp_path / "serving"
    monkeypatch.setattr(signals, "_stop_requested", int(signal.SIGTERM))   # recorded; no KeyboardInterrupt came
    with pytest.raises(KeyboardInterrupt):
        atomic_pusher.push_model(fake_model(tmp_path / "m"), str(base))
    assert not base.exists() or os.listdir(base) == []
    # and when the stop comes while the files are copied: the staging folder goes, no version appears
    monkeypatch.setattr(signals, "_stop_requested", None)
    real_record = atomic_pusher._write_record

    def record_then_stop(folder, record):
        real_record(folder, record)
        monkeypatch.setattr(signals, "_stop_requested", int(signal.SIGINT))

    monkeypatch.setattr(atomic_pusher, "_write_record", record_then_stop)
    with pytest.raises(KeyboardInterrupt):
        atomic_pusher.push_model(fake_model(tmp_path / "m"), str(base))
    assert os.listdir(base) == []


def test_an_unfinished_object_store_push_is_removed_and_the_next_push_copies_the_model(tmp_path, monkeypatch,
                                                                                        capsys):
    """Stopped before saved_model.pb, the push removes the version it was writing; one it could not remove (a
    kill, a failing store) holds the push record but not the model, and the next push pushes a newer version."""
    import pytest
    base = f"ram://letters-unfinished-push/{tmp_path.name}"
    model = fake_model(tmp_path / "m")
    real_copy, real_rmtree = atomic_pusher.io_utils.copy_file, atomic_pusher.fileio.rmtree

    def stopped_at_saved_model(src, dst, *args, **kwargs):
        if os.path.basename(src) == "saved_model.pb":
            raise KeyboardInterrupt
        return real_copy(src, dst, *args, **kwargs)

    def rmtree_fails(path):
        raise OSError("the store refused")

    monkeypatch.setattr(atomic_pusher.io_utils, "copy_file", stopped_at_saved_model)
    with pytest.raises(KeyboardInterrupt):
        atomic_pusher.push_model(model, base)
    assert tf.io.gfile.listdir(base) == []
    assert "removed its unfinished version" in capsys.readouterr().out
    monkeypatch.setattr(atomic_pusher.fileio, "rmtree", rmtree_fails)
    with pytest.raises(KeyboardInterrupt):
        atomic_pusher.push_model(model, base)
    (broken,) = atomic_pusher.pushed_versions(base)
    assert "could not be removed" in capsys.readouterr().out
    monkeypatch.setattr(atomic_pusher.io_utils, "copy_file", real_copy)
    monkeypatch.setattr(atomic_pusher.fileio, "rmtree", real_rmtree)
    version, copied = atomic_pusher.push_model(model, base)
    assert copied and version > broken
    assert tf.io.gfile.exists(f"{base}/{version}/saved_model.pb")
    assert f"version {broken} ({base}/{broken}) lacks files" in capsys.readouterr().out


def test_a_version_whose_files_were_removed_does_not_count_as_holding_the_model(tmp_path, capsys):
    import shutil
    base = tmp_path / "serving"
    model = fake_model(tmp_path / "m")
    v1, _ = atomic_pusher.push_model(model, str(base))
    shutil.rmtree(base / str(v1) / "variables")
    v2, copied = atomic_pusher.push_model(model, str(base))
    assert copied and v2 > v1
    assert (base / str(v2) / "variables" / "variables.index").read_bytes() == b"index"
    assert sorted(os.listdir(base)) == sorted([str(v1), str(v2)])        # the damaged one left as it is
    assert f"version {v1} ({base / str(v1)}) lacks files" in capsys.readouterr().out
    assert atomic_pusher.push_model(model, str(base)) == (v2, False)


def test_files_added_to_the_served_version_do_not_push_the_model_again(tmp_path, capsys):
    """A file added to the newest version by hand (warm-up requests) is no reason to push the model again; one of
    the model's own files changed there is."""
    base = tmp_path / "serving"
    model = fake_model(tmp_path / "m")
    v1, _ = atomic_pusher.push_model(model, str(base))
    (base / str(v1) / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"requests")
    assert atomic_pusher.push_model(model, str(base)) == (v1, False)
    assert os.listdir(base) == [str(v1)]
    assert "lacks files" not in capsys.readouterr().out
    (base / str(v1) / "variables" / "variables.index").write_bytes(b"changed")
    v2, copied = atomic_pusher.push_model(model, str(base))
    assert copied and v2 > v1
    assert f"version {v1} ({base / str(v1)}) lacks files" in capsys.readouterr().out


def test_a_push_into_a_file_names_it(tmp_path):
    import re

    import pytest
    base = tmp_path / "serving"
    base.write_text("not a directory")
    with pytest.raises(NotADirectoryError, match=re.escape(f"{base} is not a directory")):
        atomic_pusher.push_model(fake_model(tmp_path / "m"), str(base))


def _push_with_the_executor(tmp_path, base):
    """The Pusher executor's run on a blessed model (its Format-Serving a :func:`fake_model`): its PushedModel."""
    from tfx.proto import pusher_pb2
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils

    model, blessing, pushed = standard_artifacts.Model(), standard_artifacts.ModelBlessing(), \
        standard_artifacts.PushedModel()
    model.uri, blessing.uri, pushed.uri = str(tmp_path / "model"), str(tmp_path / "blessing"), str(tmp_path / "push")
    fake_model(tmp_path / "model" / "Format-Serving", b"one")
    blessing.set_int_custom_property("blessed", 1)
    destination = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base))
    atomic_pusher.Executor().Do({"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]},
                                {"push_destination": proto_utils.proto_to_json(destination)})
    return pushed


def test_a_model_served_from_a_folder_named_with_leading_zeros_is_recorded_in_that_folder(tmp_path):
    """A pushed version copied by hand to 0001999999999 (the same model, its push record too) is the version the
    server serves, 1999999999: the push found the model served there, and had recorded <base>/1999999999, a folder
    that does not exist, as its destination."""
    base = tmp_path / "serving"
    pushed = _push_with_the_executor(tmp_path, str(base))
    (version,) = os.listdir(base)
    os.rename(base / version, base / f"000{version}")
    pushed = _push_with_the_executor(tmp_path, str(base))
    assert pushed.get_int_custom_property(atomic_pusher.COPIED_KEY) == 0
    assert pushed.get_string_custom_property("pushed_version") == version
    destination = pushed.get_string_custom_property("pushed_destination")
    assert destination == str(base / f"000{version}") and os.path.isfile(os.path.join(destination, "saved_model.pb"))
