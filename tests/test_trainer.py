"""The Trainer's entry point (models.trainer.run_fn): what its training summary says."""
import json
import time
import types

from core import configs
from models import trainer


def test_the_training_summarys_seconds_leave_out_the_export(tmp_path, monkeypatch):
    """train_seconds (the closing summary's "training: … in N s") had run to the end of the export, 30–60 s of
    building the serving graph and writing the SavedModel on top of the epochs."""
    history = types.SimpleNamespace(history={"loss": [0.5]})
    model = types.SimpleNamespace(count_params=lambda: 10)
    monkeypatch.setattr(trainer.tft, "TFTransformOutput", lambda uri: uri)
    monkeypatch.setattr(trainer, "train", lambda *a, **k: (time.sleep(0.2), (model, history,
                                                                            configs.training_budget(64, 32)))[1])
    monkeypatch.setattr(trainer.export, "export_model", lambda *a: time.sleep(1.0))
    fn_args = types.SimpleNamespace(custom_config={}, transform_output="t", train_files=[], eval_files=[],
                                    base_model=None, serving_model_dir=str(tmp_path / "serving"),
                                    model_run_dir=str(tmp_path / "run"))
    trainer.run_fn(fn_args)
    summary = json.loads((tmp_path / "run" / trainer.TRAINING_SUMMARY_FILE).read_text())
    assert 0.2 <= summary["train_seconds"] < 0.9
    assert summary["export_seconds"] >= 1.0
