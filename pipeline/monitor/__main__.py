import sys

import core  # noqa: F401  (fixes the Keras mode before TensorFlow loads)
from pipeline.monitor.cli import main

sys.exit(main())
