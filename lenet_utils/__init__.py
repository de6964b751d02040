"""lenet_utils: LeNet-5 as in LeCun et al. (1998), layer by layer, for the book's chapters."""
from .counting import count_connections, count_parameters, count_table, layer_counts
from .data import load_mnist, to_lenet_input
from .model import LAYER_NAMES, LeNet5, ModernLeNet5
from .pretrained import load_pretrained
from .runtime import get_device, seed_everything

__all__ = [
    "LAYER_NAMES", "LeNet5", "ModernLeNet5", "count_connections", "count_parameters",
    "count_table", "get_device", "layer_counts", "load_mnist", "load_pretrained",
    "seed_everything", "to_lenet_input",
]
__version__ = "0.1.0"
