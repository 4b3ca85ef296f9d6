import numpy as np
import pytest

from cskd.analysis.hierarchy import group_error_key, hierarchical_accuracy, hierarchical_confusion, top1_error_by_group
from cskd.data.cifar100_meta import CIFAR100_COARSE_NAMES, CIFAR100_COARSE_OF_FINE, CIFAR100_FINE_NAMES

# fine labels 0..4 -> coarse groups [0, 0, 1, 1, 2]
MAP = [0, 0, 1, 1, 2]
TRUE = [0, 1, 2, 3, 4, 4]  # true coarse [0, 0, 1, 1, 2, 2]
PRED = [1, 2, 2, 0, 4, 0]  # pred coarse [0, 1, 1, 0, 2, 0]


def test_hierarchical_confusion_hand_computed():
    h = hierarchical_confusion(PRED, TRUE, MAP)
    # row g: where the samples of true group g went
    # g=0: predicted groups {0, 1}; g=1: {1, 0}; g=2: {2, 0}
    np.testing.assert_allclose(h, [[0.5, 0.5, 0.0],
                                   [0.5, 0.5, 0.0],
                                   [0.5, 0.0, 0.5]])


def test_empty_row_is_nan_and_other_rows_sum_to_one():
    h = hierarchical_confusion(PRED, TRUE, MAP, n_coarse=4)
    assert h.shape == (4, 4)
    assert np.all(np.isnan(h[3]))
    np.testing.assert_allclose(h[:3].sum(axis=1), 1.0)


def test_hierarchical_accuracy_hand_computed():
    # same group for samples 0, 2, 4 of 6 -> 0.5
    assert hierarchical_accuracy(PRED, TRUE, MAP) == pytest.approx(0.5)
    assert hierarchical_accuracy(TRUE, TRUE, MAP) == 1.0


def test_top1_error_by_group_hand_computed():
    # fine labels wrong on samples 0 (0->1), 1 (1->2), 3 (3->0), 5 (4->0); right on 2 and 4
    # group 0 = samples {0, 1}: both wrong -> 1; group 1 = {2, 3}: 1 of 2; group 2 = {4, 5}: 1 of 2
    np.testing.assert_allclose(top1_error_by_group(PRED, TRUE, MAP), [1.0, 0.5, 0.5])
    # a fine-label error inside the right group still counts (sample 0: 0->1, both group 0)
    np.testing.assert_allclose(top1_error_by_group([1], [0], MAP, n_coarse=4), [1.0, np.nan, np.nan, np.nan])
    assert group_error_key("vehicles_1") == "top1_error[vehicles_1]"


@pytest.mark.parametrize("call, message", [
    (lambda: hierarchical_confusion([0, 5], [0, 1], MAP),
     "pred_fine must lie in [0, 5) for 5 classes; got 5"),
    (lambda: hierarchical_confusion([0], [0, 1], MAP),
     "pred_fine has 1 entries but true_fine has 2 rows"),
    (lambda: hierarchical_confusion([0], [0], MAP, n_coarse=2),
     "fine_to_coarse must lie in [0, 2); got 2"),
    (lambda: hierarchical_accuracy([0], [0], [[0, 1]]),
     "fine_to_coarse must be a non-empty 1-D array (one coarse id per fine label); got shape (1, 2)"),
])
def test_input_checks(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value) == message


# Superclass membership as listed with the CIFAR-100 data set, written out by name so that the
# integer table in cskd.cifar100_meta is checked against an independent description.
SUPERCLASSES = {
    "aquatic_mammals": "beaver dolphin otter seal whale",
    "fish": "aquarium_fish flatfish ray shark trout",
    "flowers": "orchid poppy rose sunflower tulip",
    "food_containers": "bottle bowl can cup plate",
    "fruit_and_vegetables": "apple mushroom orange pear sweet_pepper",
    "household_electrical_devices": "clock keyboard lamp telephone television",
    "household_furniture": "bed chair couch table wardrobe",
    "insects": "bee beetle butterfly caterpillar cockroach",
    "large_carnivores": "bear leopard lion tiger wolf",
    "large_man-made_outdoor_things": "bridge castle house road skyscraper",
    "large_natural_outdoor_scenes": "cloud forest mountain plain sea",
    "large_omnivores_and_herbivores": "camel cattle chimpanzee elephant kangaroo",
    "medium_mammals": "fox porcupine possum raccoon skunk",
    "non-insect_invertebrates": "crab lobster snail spider worm",
    "people": "baby boy girl man woman",
    "reptiles": "crocodile dinosaur lizard snake turtle",
    "small_mammals": "hamster mouse rabbit shrew squirrel",
    "trees": "maple_tree oak_tree palm_tree pine_tree willow_tree",
    "vehicles_1": "bicycle bus motorcycle pickup_truck train",
    "vehicles_2": "lawn_mower rocket streetcar tank tractor",
}


def test_cifar100_meta_shapes_and_order():
    assert len(CIFAR100_FINE_NAMES) == 100 and len(set(CIFAR100_FINE_NAMES)) == 100
    assert list(CIFAR100_FINE_NAMES) == sorted(CIFAR100_FINE_NAMES)  # torchvision's order
    assert len(CIFAR100_COARSE_NAMES) == 20 and list(CIFAR100_COARSE_NAMES) == sorted(SUPERCLASSES)
    assert len(CIFAR100_COARSE_OF_FINE) == 100
    assert np.bincount(CIFAR100_COARSE_OF_FINE, minlength=20).tolist() == [5] * 20


def test_cifar100_mapping_matches_superclass_lists():
    for fine, coarse in zip(CIFAR100_FINE_NAMES, CIFAR100_COARSE_OF_FINE):
        assert fine in SUPERCLASSES[CIFAR100_COARSE_NAMES[coarse]].split(), fine
