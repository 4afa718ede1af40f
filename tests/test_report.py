"""The PNG figures: extras grids draw maps and signed images on shared scales."""

import numpy as np

import reconad.report.plots as plots


def _capture(monkeypatch):
    figs = []

    def keep(fig, path):
        figs.append(fig)
        return path

    monkeypatch.setattr(plots, "_save", keep)
    return figs


def test_signed_panels_are_centred_on_zero(monkeypatch, tmp_path):
    figs = _capture(monkeypatch)
    rng = np.random.default_rng(0)
    x = rng.random((3, 1, 8, 8)).astype(np.float32)
    x_r = (rng.random((3, 3, 8, 8)) - 0.7).astype(np.float32)  # mostly negative
    err = rng.random((3, 8, 8)).astype(np.float32) * 2
    plots.save_extras_grid({"input": x, "x_r": x_r, "residual": err}, tmp_path / "g.png")
    fig = figs[0]
    axes = np.array(fig.axes).reshape(3, 3)
    top = float(np.abs(x_r).max())
    for i in range(3):
        im = axes[i, 1].images[0]
        assert im.get_cmap().name == "coolwarm"
        assert im.get_clim() == (-top, top)
        # channels averaged, sign kept (not clipped to [0, 1])
        np.testing.assert_allclose(im.get_array(), x_r[i].mean(axis=0), rtol=1e-6)
        assert float(np.min(im.get_array())) < 0
        # the error map keeps its shared [0, max] scale, the input its [0, 1]
        assert axes[i, 2].images[0].get_clim() == (0, float(err.max()))
        assert axes[i, 0].images[0].get_clim() == (0, 1)
