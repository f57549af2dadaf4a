"""Scaling as the seeds do it, reversible, and safe for constant features."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

import compclust as cc


def test_minmax_and_standard_match_sklearn(rng):
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    X = rng.normal(size=(50, 4)) * [1, 10, 100, 0.1] + [0, 5, -3, 1]
    np.testing.assert_allclose(cc.transform(cc.fit_scaler(X, "minmax"), X), MinMaxScaler().fit_transform(X),
                               atol=1e-6)
    np.testing.assert_allclose(cc.transform(cc.fit_scaler(X, "standard"), X), StandardScaler().fit_transform(X),
                               atol=1e-5)


def test_global_norm_divides_by_the_frobenius_norm(rng):
    X = rng.normal(size=(30, 3))
    np.testing.assert_allclose(cc.transform(cc.fit_scaler(X, "global_norm"), X), X / np.linalg.norm(X), rtol=1e-6)


@pytest.mark.parametrize("method", ["minmax", "standard", "global_norm"])
def test_constant_feature_does_not_divide_by_zero(method):
    X = np.array([[1.0, 7.0], [2.0, 7.0], [3.0, 7.0]])
    out = cc.transform(cc.fit_scaler(X, method), X)
    assert np.isfinite(out).all()
    if method != "global_norm":
        np.testing.assert_array_equal(out[:, 1], 0.0)
    zeros = np.zeros((4, 2))
    assert np.isfinite(cc.transform(cc.fit_scaler(zeros, method), zeros)).all()


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 20), st.integers(1, 5)), elements=st.floats(-1e4, 1e4)),
       st.sampled_from(["minmax", "standard", "global_norm"]))
def test_inverse_transform_round_trips(X, method):
    scaler = cc.fit_scaler(X, method)
    back = cc.inverse_transform(scaler, cc.transform(scaler, X))
    np.testing.assert_allclose(back, X, rtol=1e-5, atol=1e-6 * (1 + np.abs(X).max()))


def test_scaler_applies_to_new_data_and_reports_centroids_in_original_units(rng):
    X = rng.normal(size=(40, 2)) * 50 + 100
    scaler = cc.fit_scaler(X, "minmax")
    new = cc.transform(scaler, X[:5] + 1000)
    assert new.max() > 1  # new data is mapped with the fitted scaling, not refitted
    centres = np.array([[0.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(cc.inverse_transform(scaler, centres), [X.min(0), X.max(0)])


def test_bad_input_to_scalers():
    with pytest.raises(ValueError, match="unknown scaling"):
        cc.fit_scaler(np.ones((3, 2)), "robust")
    with pytest.raises(ValueError, match="non-finite"):
        cc.fit_scaler(np.array([[1.0, np.nan]]))
    scaler = cc.fit_scaler(np.ones((3, 2)))
    with pytest.raises(ValueError, match="3 features but the scaler was fitted on 2"):
        cc.transform(scaler, np.ones((2, 3)))
