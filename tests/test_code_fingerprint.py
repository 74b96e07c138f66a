"""The source fingerprints in Transform's and Trainer's custom_config: a change to any file their output
depends on re-runs them (TFX's cache would not notice code named by module path), other changes do not."""
import shutil

from pipeline import pipeline as pl


def copy_project(tmp_path):
    for name in set(pl.TRAINER_CODE):
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(pl.PROJECT_DIR / name, target)
    return tmp_path


def test_the_listed_files_exist_and_cover_what_the_exported_model_imports():
    for name in pl.TRAINER_CODE:
        assert (pl.PROJECT_DIR / name).is_file(), name
    assert set(pl.TRANSFORM_CODE) <= set(pl.TRAINER_CODE)
    export = (pl.PROJECT_DIR / "models/export.py").read_text()
    # the model carries warm-up requests (serving/warmup.py) and the class list (pipeline/labels.py)
    assert "from serving import warmup" in export and "serving/warmup.py" in pl.TRAINER_CODE
    assert "pipeline.labels import" in export and "pipeline/labels.py" in pl.TRAINER_CODE


def test_each_file_changes_the_fingerprint(tmp_path):
    root = copy_project(tmp_path)
    before = pl.code_fingerprint(*pl.TRAINER_CODE, root=root)
    assert before == pl.code_fingerprint(*pl.TRAINER_CODE, root=root)   # deterministic
    assert before == pl.code_fingerprint(*pl.TRAINER_CODE)               # same content as the project's
    for name in pl.TRAINER_CODE:
        original = (root / name).read_bytes()
        (root / name).write_bytes(original + b"\n# changed\n")
        assert pl.code_fingerprint(*pl.TRAINER_CODE, root=root) != before, name
        (root / name).write_bytes(original)
    transform = pl.code_fingerprint(*pl.TRANSFORM_CODE, root=root)
    (root / "models/network.py").write_bytes(b"# not Transform's code\n")
    assert pl.code_fingerprint(*pl.TRANSFORM_CODE, root=root) == transform
