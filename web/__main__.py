"""``letters-web``: the letters web client (page + backend in front of TF Serving)."""
import core  # noqa: F401  (first: the project's Keras mode; the backend itself never loads TensorFlow)

import argparse
import errno
import logging
import sys

from core import configs, settings
from core.signals import stop_on_signals
from web.config import ENV, WebConfig


FLAGS = {   # WebConfig field -> help
    "host": "address to bind",
    "port": "port (0 = any free port)",
    "tf_serving_url": "TF Serving REST base URL",
    "model_name": "model name on TF Serving",
    "feedback_dir": "feedback store folder",
    "canary_share": "share of predictions sent to the 'canary' version label, 0..1 (the rest go to 'stable')",
    "max_upload_bytes": "largest accepted image",
    "max_image_pixels": "decompression-bomb guard, width*height",
    "serving_timeout": "seconds per TF Serving call",
    "idle_timeout": "seconds a connection may send nothing before it is closed (idle keep-alive, stalled body)",
    "request_timeout": "seconds a request may take to arrive whole, from its first byte (head and body), before a 408 "
                       "and the connection closed (a client trickling its request holds a handler thread no longer)",
    "request_log_dir": "write the predictions as TF Serving PredictionLog TFRecords to this folder ('' = off)",
    "request_log_sampling": "share of the predictions written to the request log, 0..1",
}


def path_values(args: argparse.Namespace, defaults: WebConfig) -> dict:
    """The path flags read as every command reads them (:func:`core.settings.path_or_default`): an empty
    --feedback-dir is the default store, an empty --request-log-dir no request log."""
    return {"feedback_dir": settings.path_or_default(args.feedback_dir, defaults.feedback_dir),
            "request_log_dir": settings.path_or_default(args.request_log_dir, "")}


def parse_args(argv=None) -> WebConfig:
    parser = argparse.ArgumentParser(formatter_class=settings.DefaultsHelpFormatter, prog="letters-web",
                                     description=__doc__.split(":", 1)[1].strip())
    try:
        defaults = WebConfig.from_env()
    except ValueError as err:
        parser.error(str(err))
    settings.add_flags(parser, WebConfig, {name: help_text + (f" (${ENV[name]})" if name in ENV else "")
                                           for name, help_text in FLAGS.items()}, defaults)
    parser.add_argument("--log-level", default="INFO", type=str.upper,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], help="the lowest level logged")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        # an empty --host is the default address, as an empty LETTERS_WEB_HOST is (not every interface)
        return defaults.replace(**{**settings.flag_values(args, FLAGS), **path_values(args, defaults),
                                   "host": args.host or defaults.host})
    except ValueError as err:
        parser.error(str(err))


def main(argv=None) -> int:
    configs.warn_unknown_variables()
    config = parse_args(argv)
    from core.feedback import FeedbackStoreError
    from web.server import Backend, bind

    try:   # the port first: a port that is taken leaves no new feedback store or request log behind
        server = bind(config)
    except OSError as err:   # the port is taken, the address is not this machine's, the host does not resolve
        hint = " (--port chooses another)" if err.errno in (errno.EADDRINUSE, errno.EACCES) else ""   # the port's fault
        print(f"error: cannot listen on {config.host}:{config.port}: {err.strerror or err}{hint}", file=sys.stderr)
        return 2
    try:
        server.attach(Backend(config))
    except FeedbackStoreError as err:
        server.server_close()
        print(f"error: {err} (the web client writes the store: --feedback-dir must name a writable store)",
              file=sys.stderr)
        return 2
    except OSError as err:   # a folder it cannot create or read: the page's own files, the request log's
        server.server_close()
        print(f"error: cannot start the web client: {err.strerror or err}: {err.filename}", file=sys.stderr)
        return 2
    print(f"letters web client at {server.url}/ -> TF Serving {config.tf_serving_url} "
          f"model {config.model_name!r} (canary share {config.canary_share:g}); feedback in {config.feedback_dir}"
          + (f"; request log in {config.request_log_dir} (sampling {config.request_log_sampling:g})"
             if config.request_log_dir else ""), flush=True)

    stop_on_signals(lambda _signum: server.shutdown())    # from a watcher thread, not the serving one
    try:
        server.serve_forever(poll_interval=0.2)
        # SIGTERM / SIGINT: no new connections (refused) or requests (WebServer.shutdown); requests being answered
        # finish (feedback is stored and answered)
        if not server.drain(config.request_timeout + config.serving_timeout):
            print("letters web client: stopping with requests still unanswered", file=sys.stderr)
    finally:
        server.server_close()
        server.backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
