"""What the REST and gRPC APIs and warm-up share: which servable a request names, model status, signature maps,
the classify/regress signature checks and their tf.Example inputs, the classify/regress results, and a whole
MultiInference request (the gRPC call and a warm-up ``multi_inference_log`` record run the same checks).

The behaviour and messages are TF Serving's: ServerCore::ServableRequestFromModelSpec and GetServableHandle,
get_model_status_impl.cc, classifier.cc / regressor.cc (PreProcess*/PostProcess*), util.cc
(InputToSerializedExampleTensor, MakeModelSpec) and multi_inference.cc (TensorFlowMultiInferenceRunner::Infer).
"""
from __future__ import annotations

import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, regression_pb2)

from serving import tensor_proto
from serving.debug_string import debug_string
from serving.status import ServingError, invalid

DEFAULT_SIGNATURE = "serving_default"
CLASSIFY = "classify"
REGRESS = "regress"
METHOD_NAMES = {"tensorflow/serving/classify": CLASSIFY, "tensorflow/serving/regress": REGRESS}


# ------------------------------------------------------------------------------------------ models
def resolve(core, name: str, version: int | None = None, label: str | None = None):
    """The servable a request names (latest when neither ``version`` nor ``label`` is given)."""
    if not name:
        raise invalid("ModelSpec has no name specified.")
    manager = core.manager(name)
    if manager is None:
        if label is not None:   # no label map at all -> unrecognized label
            raise invalid(f"Unrecognized servable version label: {label}")
        if version is not None:
            raise ServingError("NOT_FOUND", f"Servable not found for request: Specific({name}, {version})")
        raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({name})")
    return manager.resolve(version=version, label=label)


def resolve_spec(core, model_spec):
    """The servable a ``ModelSpec`` names (its ``version`` or ``version_label``, else the latest)."""
    choice = model_spec.WhichOneof("version_choice")
    version = model_spec.version.value if choice == "version" else None
    label = model_spec.version_label if choice == "version_label" else None
    return resolve(core, model_spec.name, version, label)


def model_status(core, name: str, version: int | None = None) -> get_model_status_pb2.GetModelStatusResponse:
    manager = core.manager(name)
    if manager is None:
        if version is not None:
            raise ServingError("NOT_FOUND", f"Could not find version {version} of model {name}")
        raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
    return manager.status(version)


def signature_def_map(servable) -> get_model_metadata_pb2.SignatureDefMap:
    signatures = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in servable.signature_defs.items():
        signatures.signature_def[key].CopyFrom(signature)
    return signatures


def make_model_spec(spec, name: str, signature_name: str | None, version: int | None) -> None:
    """util.cc MakeModelSpec: a response's spec names the model, the signature run and (when known) the version."""
    spec.Clear()
    spec.name = name
    if signature_name is not None:
        spec.signature_name = signature_name or DEFAULT_SIGNATURE
    if version is not None:
        spec.version.value = version


# ------------------------------------------------------------------------------------------ predict
def predict_request(servable, signature_name: str, request) -> tuple[dict, list]:
    """A PredictRequest checked as RunPredict checks it (predict_util.cc): its signature, inputs (count, names,
    defaults), output filter and feed types; (the input arrays, the output aliases to return)."""
    signature = servable.signature_defs.get(signature_name)
    if signature is None:
        raise ServingError("FAILED_PRECONDITION", f'Serving signature key "{signature_name}" not found.')
    arrays = predict_inputs(signature, request.inputs)
    aliases = output_aliases(signature, request.output_filter)
    check_feeds(signature, arrays)
    return arrays, aliases


def predict_inputs(signature, inputs) -> dict:
    """VerifyRequestInputsSize + saved_model::GetInputValues: the request's tensors, one per signature input."""
    requested, expected = set(inputs), set(signature.inputs)
    if len(requested) > len(expected) or (len(requested) < len(expected) and not signature.defaults):
        raise invalid(f"input size does not match signature: {len(requested)}!={len(expected)} "
                      f"len({{{','.join(sorted(requested))}}}) != len({{{','.join(sorted(expected))}}}). "
                      f"Sent extra: {{{','.join(sorted(requested - expected))}}}. "
                      f"Missing but required: {{{','.join(sorted(expected - requested))}}}.")
    arrays = {}
    for alias in sorted(expected):
        if alias in inputs:
            proto = inputs[alias]
        elif alias in signature.defaults:
            proto = signature.defaults[alias]
        else:
            raise invalid(f"Signature input alias: {alias}(feed name: {signature.inputs[alias].name}) not found in "
                          f"request and no default value provided. Inputs expected to be in the request "
                          f"{{{','.join(sorted(requested))}}}, or default input alias set: "
                          f"{','.join(sorted(signature.defaults))}")
        arrays[alias] = tensor_proto.to_array(proto, alias, signature.inputs[alias].dtype)
    if requested - expected:
        raise invalid(f"Inputs contains invalid name. Used request inputs: {','.join(sorted(requested & expected))}"
                      f", request input: {','.join(sorted(requested))}")
    return arrays


def output_aliases(signature, output_filter) -> list:
    """The outputs to return: ``output_filter`` (checked) or every output of the signature."""
    aliases = []
    for alias in output_filter:
        if alias not in signature.outputs:
            raise invalid(f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                          f"{{{','.join(sorted(signature.outputs))}}}.")
        if alias in aliases:
            raise invalid(f"duplicate output tensor alias: {alias}")
        aliases.append(alias)
    return aliases or sorted(signature.outputs)


def check_feeds(signature, arrays: dict) -> None:
    """Feeds of the signature's dtypes, before the signature runs: TensorFlow's message for a mistyped feed (the
    session's call frame, which numbers the feeds in the order of their tensor names, not of their aliases: inputs
    ``a`` and ``a0`` fed as ``serving_default_a:0`` and ``serving_default_a0:0`` are arg[1] and arg[0]). Shapes
    are not checked, as TF Serving's Predict checks none: a mis-shaped feed fails in the first op that minds,
    with that op's error, over gRPC as over REST."""
    from serving.tensor_proto import dtype_enum

    for index, alias in enumerate(sorted(arrays, key=lambda alias: (signature.inputs[alias].name, alias))):
        given = dtype_enum(arrays[alias])
        if given != signature.inputs[alias].dtype:
            raise mistyped_feed(index, signature.inputs[alias].dtype, given)


def mistyped_feed(index: int, expected: int, given: int) -> ServingError:
    """The session's INVALID_ARGUMENT for feed ``index`` of DataType ``given`` where ``expected`` is wanted."""
    from serving.tensors import dtype_name

    return invalid(f"Expects arg[{index}] to be {dtype_name(expected)} but {dtype_name(given)} is provided")


# ------------------------------------------------------------------------------- classify / regress
def example_signature(servable, signature_name: str, method: str):
    """The SignatureDef ``method`` (classify or regress) runs, checked as TF Serving checks it."""
    signature_name = signature_name or DEFAULT_SIGNATURE
    signature = servable.signature_defs.get(signature_name)
    if signature is None:
        raise invalid(f"No signature was found with the name: {signature_name}")
    check_example_signature(signature, method)
    return signature


def check_example_signature(signature, method: str) -> None:
    """The checks of classifier.cc's PreProcessClassification / regressor.cc's PreProcessRegression; a message
    that quotes the signature has it as its DebugString() (:mod:`serving.debug_string`)."""
    if len(signature.inputs) != 1:
        raise invalid("Expected one input Tensor.")
    if method == CLASSIFY:
        if len(signature.outputs) not in (1, 2):
            raise invalid(f"Expected one or two output Tensors, found {len(signature.outputs)}")
        if "inputs" not in signature.inputs:
            raise invalid(f"No classification inputs found in SignatureDef: {debug_string(signature)}")
        if "classes" not in signature.outputs and "scores" not in signature.outputs:
            raise invalid('Expected classification signature outputs to contain at least one of "classes" or '
                          f'"scores". Signature was: {debug_string(signature)}')
    else:
        if len(signature.outputs) != 1:
            raise invalid("Expected one output Tensor.")
        if "inputs" not in signature.inputs:
            raise invalid(f"No regression inputs found in SignatureDef: {debug_string(signature)}")
        if "outputs" not in signature.outputs:
            raise invalid(f"No regression outputs found in SignatureDef: {debug_string(signature)}")


def examples_batch(examples: list, *signatures) -> dict:
    """Serialized tf.Examples -> the ``{"inputs": [N] string}`` feed of the classify/regress ``signatures`` (those
    of a MultiInference, or one). TF Serving does not check the input's dtype: the session refuses a string feed
    for an input of another dtype, in :func:`check_feeds`' words, its feeds (one per input tensor name) in the
    order of their names."""
    feeds = sorted({signature.inputs["inputs"].name: signature.inputs["inputs"].dtype
                    for signature in signatures}.items())
    for index, (_, dtype) in enumerate(feeds):
        if dtype != types_pb2.DT_STRING:
            raise mistyped_feed(index, dtype, types_pb2.DT_STRING)
    array = np.empty(len(examples), dtype=object)
    array[:] = examples
    return {"inputs": array}


def input_examples(input_proto) -> list:
    """A ``tensorflow.serving.Input`` -> serialized tf.Examples (the context's bytes prefixed to each)."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        examples = [e.SerializeToString() for e in input_proto.example_list.examples]
    elif kind == "example_list_with_context":
        context = input_proto.example_list_with_context.context.SerializeToString()
        examples = [context + e.SerializeToString() for e in input_proto.example_list_with_context.examples]
    else:
        examples = []
    if not examples:
        raise invalid("Input is empty.")
    return examples


def multi_inference(servable, request, run, metrics=None,
                    version: int | None = None) -> inference_pb2.MultiInferenceResponse:
    """A MultiInferenceRequest on ``servable`` as TensorFlowMultiInferenceRunner::Infer runs it: every task names
    the same, non-empty model and a distinct signature of the graph that can classify or regress; then the input's
    tf.Examples ("Input is empty." without any) go through each task's signature, ``run(signature name, arrays)``
    -> outputs; ``metrics`` (serving.metrics.Metrics) counts the examples. The gRPC MultiInference call and a
    warm-up ``multi_inference_log`` record both come here, so that a record the API refuses fails the load as in
    TF Serving. ``version`` goes into the results' model specs (warm-up runs without one)."""
    model_name, plan = "", {}
    for task in request.tasks:
        name = task.model_spec.name
        if not name:
            raise invalid("Found ModelSpec with an empty model name.")
        if model_name and name != model_name:
            raise invalid("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
        model_name = name
        signature_name = task.model_spec.signature_name or DEFAULT_SIGNATURE
        if signature_name in plan:
            raise invalid(f"Duplicate evaluation of signature: {signature_name}")
        signature = servable.signature_defs.get(signature_name)
        if signature is None:
            raise invalid(f"Requested signature not found in model graph: {signature_name}")
        method = METHOD_NAMES.get(task.method_name)
        if method is None:
            raise ServingError("UNIMPLEMENTED", f"Unsupported signature method_name: {task.method_name}")
        check_example_signature(signature, method)
        plan[signature_name] = method
    examples = input_examples(request.input)
    if not plan:    # the session run with nothing to fetch (only a warm-up record gets here: the API needs a model)
        raise invalid("Must specify at least one target to fetch or execute.")
    batch = examples_batch(examples, *(servable.signature_defs[signature_name] for signature_name in plan))
    outputs = {signature_name: run(signature_name, batch) for signature_name in plan}
    if metrics is not None:
        metrics.examples(model_name, len(examples))
    response = inference_pb2.MultiInferenceResponse()
    for task in request.tasks:
        signature_name = task.model_spec.signature_name or DEFAULT_SIGNATURE
        result = response.results.add()
        if plan[signature_name] == CLASSIFY:
            classification_result(outputs[signature_name], len(examples), result.classification_result)
        else:
            regression_result(outputs[signature_name], len(examples), result.regression_result)
        make_model_spec(result.model_spec, task.model_spec.name, task.model_spec.signature_name, version)
    return response


def _shape_text(array) -> str:
    return "[" + ",".join(str(d) for d in array.shape) + "]"


def classification_result(outputs: dict, num_examples: int, result) -> None:
    """Fills a ``ClassificationResult`` from the ``classes``/``scores`` outputs (PostProcessClassificationResult)."""
    classes, scores = outputs.get("classes"), outputs.get("scores")
    for name, array, wanted in (("classes", classes, types_pb2.DT_STRING), ("scores", scores, types_pb2.DT_FLOAT)):
        if array is None:
            continue
        if array.ndim != 2:
            raise invalid(f"Expected Tensor shape: [batch_size num_classes] but got {_shape_text(array)}")
        if tensor_proto.dtype_enum(array) != wanted:
            raise invalid(f"Expected {name} Tensor of {types_pb2.DataType.Name(wanted)}. Got: {_dtype_name(array)}")
        if array.shape[0] != num_examples:
            raise invalid(f"Expected {name} output batch size of {num_examples}. Got: {array.shape[0]}")
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise invalid(f"Tensors class and score should match in dim_size(1). Got {classes.shape[1]} vs. "
                      f"{scores.shape[1]}")
    num_classes = (classes if classes is not None else scores).shape[1]
    for i in range(num_examples):
        classifications = result.classifications.add()
        for c in range(num_classes):
            entry = classifications.classes.add()
            if classes is not None:
                entry.label = classes[i, c].decode("utf-8", "replace")
            if scores is not None:
                entry.score = float(scores[i, c])


def regression_result(outputs: dict, num_examples: int, result) -> None:
    """Fills a ``RegressionResult`` from the ``outputs`` output (PostProcessRegressionResult)."""
    values = outputs["outputs"]
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise invalid("Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
                      f"{_shape_text(values)}")
    if values.shape[0] != num_examples:
        raise invalid(f"Input batch size did not match output batch size: {num_examples} vs. {values.shape[0]}")
    if tensor_proto.dtype_enum(values) != types_pb2.DT_FLOAT:
        raise invalid(f"Expected output Tensor of DT_FLOAT.  Got: {_dtype_name(values)}")
    for value in values.reshape(-1).tolist():
        result.regressions.add(value=value)


def examples_result(method: str, outputs: dict, num_examples: int):
    """A Classify or Regress run's outputs as a new ``ClassificationResult`` / ``RegressionResult`` (``method``:
    CLASSIFY or REGRESS), checked as :func:`classification_result` / :func:`regression_result` check them."""
    if method == CLASSIFY:
        result = classification_pb2.ClassificationResult()
        classification_result(outputs, num_examples, result)
    else:
        result = regression_pb2.RegressionResult()
        regression_result(outputs, num_examples, result)
    return result


def _dtype_name(array) -> str:
    """The array's DataType as TensorFlow's DataType_Name writes it in these messages: the enum's name (DT_DOUBLE,
    DT_HALF; numpy's and tf.DType's names, float64 and float16, are not TensorFlow's)."""
    return types_pb2.DataType.Name(tensor_proto.dtype_enum(array))
