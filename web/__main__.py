"""``python -m web``: the letters web client (page + backend in front of TF Serving)."""
import pipeline  # noqa: F401  (first: the project's Keras mode; the backend itself never loads TensorFlow)

import argparse
import logging
import signal
import sys
import threading

from web.config import ENV, WebConfig


def parse_args(argv=None) -> WebConfig:
    defaults = WebConfig.from_env()
    parser = argparse.ArgumentParser(prog="python -m web", description=__doc__.split(":", 1)[1].strip())
    add = parser.add_argument
    add("--host", help=f"address to bind (default {defaults.host}; ${ENV['host']})")
    add("--port", type=int, help=f"port (default {defaults.port}; 0 = any free port; ${ENV['port']})")
    add("--tf-serving-url", help=f"TF Serving REST base URL (default {defaults.tf_serving_url}; "
                                 f"${ENV['tf_serving_url']})")
    add("--model-name", help=f"model name on TF Serving (default {defaults.model_name})")
    add("--feedback-dir", help=f"feedback store folder (default {defaults.feedback_dir}; ${ENV['feedback_dir']})")
    add("--canary-share", type=float, help="share of predictions sent to the 'canary' version label, 0..1 "
                                           f"(default {defaults.canary_share}; the rest go to 'stable')")
    add("--max-upload-bytes", type=int, help=f"largest accepted image (default {defaults.max_upload_bytes})")
    add("--max-image-pixels", type=int, help=f"decompression-bomb guard, width*height "
                                             f"(default {defaults.max_image_pixels})")
    add("--serving-timeout", type=float, help=f"seconds per TF Serving call (default {defaults.serving_timeout})")
    add("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return defaults.replace(host=args.host, port=args.port, tf_serving_url=args.tf_serving_url,
                                model_name=args.model_name, feedback_dir=args.feedback_dir,
                                canary_share=args.canary_share, max_upload_bytes=args.max_upload_bytes,
                                max_image_pixels=args.max_image_pixels, serving_timeout=args.serving_timeout)
    except ValueError as err:
        parser.error(str(err))


def main(argv=None) -> int:
    config = parse_args(argv)
    from web.server import make_server

    server = make_server(config)
    host, port = server.server_address[:2]
    print(f"letters web client at http://{host}:{port}/ -> TF Serving {config.tf_serving_url} "
          f"model {config.model_name!r} (canary share {config.canary_share:g}); feedback in {config.feedback_dir}",
          flush=True)

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        server.backend.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
