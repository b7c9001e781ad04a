"""pass@k, edit similarity and the match rules against values worked out by hand."""

from __future__ import annotations

import math
from math import comb

import pytest

from codecomplete.eval import metrics


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (10, 0, 1, 0.0),  # nothing passes
        (10, 10, 1, 1.0),  # everything passes
        (10, 3, 1, 0.3),  # pass@1 is the fraction that passes: 1 - 7/10
        (10, 3, 10, 1.0),  # n - c < k: some sample in any 10 passes
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
        (20, 1, 10, 0.5),  # 1 - C(19,10)/C(20,10) = 1 - 10/20
        (6, 2, 3, 0.8),  # 1 - C(4,3)/C(6,3) = 1 - 4/20
    ],
)
def test_pass_at_k_matches_hand_computed_values(n, c, k, expected):
    assert metrics.pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_is_stable_where_the_binomials_are_huge():
    # C(200, 100) ~ 9e58: the product form must agree with exact integer arithmetic.
    n, c, k = 200, 7, 100
    exact = 1 - comb(n - c, k) / comb(n, k)
    assert metrics.pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-12)


def test_pass_at_k_rejects_k_above_n():
    with pytest.raises(ValueError, match="samples"):
        metrics.pass_at_k(5, 1, 10)


def test_mean_pass_at_k_averages_over_problems():
    # problem A: 2 of 4 pass -> pass@1 0.5; problem B: 0 of 4 -> 0
    assert metrics.mean_pass_at_k([(4, 2), (4, 0)], 1) == pytest.approx(0.25)


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ("kitten", "sitting", 100 * 8 / 13),  # LCS "ittn" = 4: 2*4/(6+7); fuzz.ratio rounds to 62
        ("abc", "abc", 100.0),
        ("abc", "xyz", 0.0),
        ("return x", "return y", 100 * 14 / 16),  # LCS 7 of 8 + 8
        ("", "", 100.0),
        ("", "abc", 0.0),
        ("foo(a, b)", "foo(a)", 100 * 2 * 6 / 15),  # "foo(a" + ")" in common
    ],
)
def test_edit_similarity_matches_hand_computed_values(a, b, expected):
    assert metrics.edit_similarity(a, b) == pytest.approx(expected)
    assert metrics.edit_similarity(b, a) == pytest.approx(expected)


def test_line_exact_match_ignores_whitespace_only():
    assert metrics.line_exact_match("  return  x + 1 ", "return x + 1")
    assert not metrics.line_exact_match("return x+1", "return x + 1")  # tokens differ


def test_normalize_block_keeps_indentation_drops_trailing_space_and_blank_edges():
    assert metrics.normalize_block("\n    x = 1   \n    y = 2\n\n") == "    x = 1\n    y = 2"
    assert metrics.normalize_block("x = 1") != metrics.normalize_block("    x = 1")


def test_perplexity_is_exp_of_mean_nll():
    assert metrics.perplexity(2 * 10, 10) == pytest.approx(math.e**2)
    assert math.isnan(metrics.perplexity(0.0, 0))


@pytest.mark.parametrize(
    "completion, line, done",
    [
        ("\n    return x\n    y = 1", "    return x", True),  # the next line, indentation kept
        ("\n\n  \nclass A:\n", "class A:", True),  # blank lines skipped
        ("\n    return", "    return", False),  # might still grow
        ("  \n", "", False),  # only the line break so far
        (" + 1\n    return x\n", None, True),  # went on writing the prompt's line: no next line
        ("", None, False),
    ],
)
def test_next_line_of_a_completion(completion, line, done):
    from codecomplete.eval.backends import next_line, next_line_done

    assert next_line(completion) == line
    assert next_line_done(completion) is done
