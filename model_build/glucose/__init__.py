"""The glucose forecaster's builder (issue 6): CGM sets in, the int8 ``glucose`` bundle and its card out.

    data        load any set in the shared layout by subject; the cleaning rules; the data's identity
    baselines   persistence, linear extrapolation, Nightscout's AR2, ridge AR
    model       the network (a small dilated 1D-CNN), its loss, seeded training (TensorFlow inside only)
    tuning      choices made on TRAIN validation subjects: baselines, interval offsets, the predicted-low rule
    metrics     RMSE, MAE, MARD, Clarke zones, time lag, coverage
    hypo        hypoglycaemia events, alert episodes replayed through the agent, and how they match
    evaluate    every figure per horizon, set and subject; issue 6's bars; tables
    build       ``vigil build glucose``: the whole build, TEST sets read once at the end to measure
    shipped     ``vigil models evaluate glucose``: the shipped bundle on any sets
    excerpt     the committed test fixture (``tests/fixtures/cgm``)
    errors      ``GlucoseBuildError`` and its children

The device side is ``agent/forecast.py`` (numpy only); windows come from ``agent/signals/glucose.py`` in both.
"""
