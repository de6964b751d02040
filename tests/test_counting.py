import pytest

from lenet_utils import LeNet5, ModernLeNet5, count_connections, count_parameters, layer_counts
from lenet_utils.counting import count_table, trainable_parameters
from lenet_utils.paper import PAPER_COUNTS, PAPER_TOTAL_CONNECTIONS, PAPER_TOTAL_PARAMETERS


@pytest.mark.parametrize("row", layer_counts(LeNet5()), ids=lambda r: r.name)
def test_each_layer_matches_the_paper(row):
    assert (row.parameters, row.connections) == PAPER_COUNTS[row.name]


def test_totals_match_the_paper():
    model = LeNet5()
    assert count_parameters(model) == PAPER_TOTAL_PARAMETERS == 60_000
    assert count_connections(model) == PAPER_TOTAL_CONNECTIONS == 340_908


def test_trainable_means_can_receive_a_gradient():
    """60,900 stored entries, of which C3's 900 absent kernel weights cannot learn."""
    model = LeNet5()
    stored = sum(p.numel() for p in model.parameters())
    assert stored == 60_900
    assert sum(trainable_parameters(layer) for _, layer in model.layers()) == 60_000


def test_modern_variant_counts():
    rows = {r.name: r for r in layer_counts(ModernLeNet5())}
    assert rows["C3"].parameters == 16 * (6 * 25 + 1)   # dense: every S2 map
    assert rows["S2"].parameters == 0                    # max-pooling learns nothing
    assert rows["output"].parameters == 84 * 10 + 10


def test_count_table_lists_every_layer():
    text = count_table(LeNet5())
    for name in PAPER_COUNTS:
        assert name in text
    assert "60,000" in text and "340,908" in text
