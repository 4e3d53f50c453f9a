"""A figure's name in the words a verdict uses (studies/figure_words.py)."""
import pytest

from downpour.studies.figure_words import figure_words
from downpour.studies.holm import family_paragraph, holm
from downpour.studies.stats import record_test


@pytest.mark.parametrize("name, said", [
    ("delta_heldout_recon", "held-out reconstruction error"), ("d_probe_digits", "digits probe accuracy"),
    ("hoyer", "Hoyer sparsity"), ("d_inv_shift_auc", "translation range of the AUC"),
    ("delta_probe_lfw_stage2", "lfw probe accuracy on stage 2"), ("delta_vs_success", "success rate"),
    ("d_some_new_figure", "some new figure"),
])
def test_a_figure_reads_in_words_without_its_paired_prefix(name, said):
    assert figure_words(name) == said


def test_holms_paragraph_names_the_readings_it_keeps_in_words_not_by_their_keys():
    """'more/l1=0.01: delta_heldout_recon higher': the costs study's quick verdict printed its stored key."""
    rows = [{"condition": "more/l1=0.01", "tests": {}}]
    record_test(rows[0], "delta_heldout_recon", "higher", 0.001)
    holm(rows)
    said = family_paragraph(rows)
    assert "more/l1=0.01: held-out reconstruction error higher." in said and "delta_" not in said


def test_mechanisms_verdict_names_each_compared_figure_as_the_comparisons_table_does():
    """The table said "scale range (by AUC)" where the verdict beside it said "scale range of the AUC (octaves)"."""
    from downpour.studies.mechanisms import LABELS, RESOLUTION

    for key in RESOLUTION:
        assert LABELS[key].split(" (")[0] == figure_words("d_" + key).split(" (")[0]
    assert figure_words("d_inv_scale_up_octaves_auc") == "scale range of the AUC's upper end"
