"""``python -m lenet_utils.data import DIR --root data`` (see :func:`lenet_utils.data.main`)."""
import sys

from . import main

sys.exit(main())
