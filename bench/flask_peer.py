"""The serving peer users would pick otherwise: a Flask app that keeps the SavedModel in memory and calls its
``predict_images`` signature once per request (no batching), answering TF Serving's row format.

Run by gunicorn (a production WSGI server; threaded workers, the model loaded in each worker after the fork):

    gunicorn -k gthread -w 2 --threads 8 -b 127.0.0.1:8000 'bench.flask_peer:create_app("serving/models/letters/1")'
"""
import core  # noqa: F401  (fixes the Keras mode before TensorFlow loads)

import base64

from core import configs


def _plain(value):
    """A numpy row as JSON values (bytes as text)."""
    value = value.tolist()
    if isinstance(value, list):
        return [item.decode("utf-8", "replace") if isinstance(item, bytes) else item for item in value]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def create_app(model_dir: str):
    import tensorflow as tf
    from flask import Flask, request

    model = tf.saved_model.load(model_dir)
    signature = model.signatures[configs.IMAGE_SIGNATURE]
    app = Flask(__name__)
    app.config["model"] = model          # keeps the loaded model (and so the signature) alive

    @app.post("/v1/models/<name>:predict")
    def predict(name):
        images = [base64.b64decode(instance["b64"]) for instance in request.get_json(force=True)["instances"]]
        outputs = {key: value.numpy() for key, value in signature(images=tf.constant(images)).items()}
        return {"predictions": [{key: _plain(value[row]) for key, value in outputs.items()}
                                for row in range(len(images))]}

    return app
