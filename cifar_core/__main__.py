import os
import sys

# Before TensorFlow is imported (a command imports it when it first needs it): its logging reads this at start-up.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cifar_core.base.quiet_start import drop_tensorflow_start_up_lines  # noqa: E402  (after the setting above)

drop_tensorflow_start_up_lines()

from cifar_core.cli.main import main  # noqa: E402

sys.exit(main())
